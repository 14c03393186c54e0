/**
 * The ORM adapters' shared rules (shared/orm/statements.ts, README.md#drizzle-and-kysely): where a
 * statement goes by its first keyword, which statements are refused as transaction control, how the
 * session is chosen, and the integer convention. The adapters against real servers are in
 * test/integration/drizzle.test.ts and kysely.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { connect } from '../../shared/client.ts';
import { exactCell, refuseTransactionControl, routeOf, sessionOf } from '../../shared/orm/statements.ts';
import { thrownEdgelite } from '../helpers.ts';

describe('routeOf', () => {
  it.each([
    ['SELECT 1', 'read'],
    ['  select * from t', 'read'],
    ['-- a comment\n/* another */ SELECT 1', 'read'],
    ['(SELECT 1) UNION SELECT 2', 'read'],
    ['VALUES (1), (2)', 'read'],
    ['EXPLAIN QUERY PLAN SELECT 1', 'read'],
    ['PRAGMA table_info(t)', 'read'],
    ['pragma user_version', 'read'],
    ['PRAGMA user_version = 3', 'write'],
    ['insert into t values (1) returning id', 'write'],
    ['UPDATE t SET v = 1', 'write'],
    ['DELETE FROM t', 'write'],
    ['REPLACE INTO t VALUES (1)', 'write'],
    ['CREATE TABLE t (x)', 'write'],
    ['DROP INDEX i', 'write'],
    ['ALTER TABLE t ADD COLUMN y', 'write'],
    ['WITH n AS (SELECT 1) INSERT INTO t SELECT * FROM n', 'unknown'],
    ['WITH n AS (SELECT 1) SELECT * FROM n', 'unknown'],
    ['selective', 'unknown'],
  ])('%j → %s', (sql, route) => {
    expect(routeOf(sql)).toBe(route);
  });
});

describe('refuseTransactionControl', () => {
  it.each(['BEGIN', 'begin immediate', ' COMMIT', 'END', 'ROLLBACK', 'savepoint sp1', 'RELEASE sp1', '/* x */ BEGIN'])('refuses %j, naming the alternative', (sql) => {
    const err = thrownEdgelite(() => refuseTransactionControl(sql, 'edgelite/test', 'db.batch([...])'));
    expect(err.code).toBe('BAD_REQUEST');
    expect(err.message).toMatch(/^edgelite\/test: interactive transactions are not possible.*db\.batch\(\[\.\.\.\]\)/);
  });
  it.each(['SELECT 1', 'INSERT INTO begin_log VALUES (1)', 'beginning'])('lets %j through', (sql) => {
    expect(() => refuseTransactionControl(sql, 'edgelite/test', 'x')).not.toThrow();
  });
});

describe('sessionOf', () => {
  const client = connect({ replicas: ['http://127.0.0.1:1'], probeIntervalMs: 0 });

  it('makes a session on the database for a Client, and keeps a Session as it is', () => {
    const s = sessionOf(client, { database: 'app', consistency: 'eventual' }, 'edgelite/test');
    expect(s).toMatchObject({ db: 'app', consistency: 'eventual' });
    const given = client.session('app');
    expect(sessionOf(given, {}, 'edgelite/test')).toBe(given);
    expect(sessionOf(given, { database: 'app' }, 'edgelite/test')).toBe(given);
  });

  it('refuses a Client without a database, a mismatched database, session options on a Session, and anything else', () => {
    expect(thrownEdgelite(() => sessionOf(client, {}, 'edgelite/test')).message).toMatch(/"database"/);
    expect(thrownEdgelite(() => sessionOf(client.session('app'), { database: 'other' }, 'edgelite/test')).message).toMatch(/"app", not "other"/);
    expect(thrownEdgelite(() => sessionOf(client.session('app'), { consistency: 'strong' }, 'edgelite/test')).code).toBe('BAD_REQUEST');
    expect(thrownEdgelite(() => sessionOf({} as never, { database: 'app' }, 'edgelite/test')).message).toMatch(/Client .* or a Session/);
    expect(thrownEdgelite(() => sessionOf(client, { database: '../x' }, 'edgelite/test')).code).toBe('INVALID_DATABASE_NAME');
  });
});

describe('exactCell', () => {
  it('makes a bigint a number where that is exact, and keeps it a bigint beyond', () => {
    expect(exactCell(5n)).toBe(5);
    expect(exactCell(BigInt(Number.MAX_SAFE_INTEGER))).toBe(Number.MAX_SAFE_INTEGER);
    expect(exactCell(BigInt(Number.MIN_SAFE_INTEGER))).toBe(Number.MIN_SAFE_INTEGER);
    expect(exactCell(2n ** 53n)).toBe(2n ** 53n);
    expect(exactCell(-(2n ** 63n))).toBe(-(2n ** 63n));
    expect(exactCell('9223372036854775807')).toBe('9223372036854775807');
    expect(exactCell(1.5)).toBe(1.5);
    expect(exactCell(null)).toBe(null);
  });
});
