/**
 * Exact numbers and every parameter style over real HTTP (README.md#http-api): a primary (API writes and
 * reads in its query processes) and a replica in this process, on loopback. Integers at 2^53 + 1, -2^63
 * and 2^63 - 1 go in as JSON literals and as msgpack int64, straight to the primary's /exec and
 * forwarded by the replica; each is read back with the sqlite3 CLI on the primary's file, exact and an
 * INTEGER, and through /query as JSON (strings) and msgpack (int64). 2^63 is refused with 400. Then
 * `?`, `?1`, `?NNN`, `:a`, `@a` and `$a` on query and exec, on both servers, and the three edge integers
 * bound in each style (JSON and msgpack), read back with the sqlite3 CLI. The client library
 * sends bigints exactly with either encoding and reads them back as bigints with msgpack.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { Packr, Unpackr } from 'msgpackr';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AUTH_DISABLED } from '../../shared/auth.ts';
import { connect } from '../../shared/client.ts';
import { silentLogger } from '../../shared/log.ts';
import { parsePrimaryConfig } from '../../primary/config.ts';
import { startPrimary, type PrimaryHandle } from '../../primary/server.ts';
import { parseReplicaConfig } from '../../replica/config.ts';
import { startReplica, type ReplicaHandle } from '../../replica/server.ts';
import { tempDir } from '../helpers.ts';
import { converge } from '../kit/api.ts';

const DB = 'exact';
const EDGES = ['9007199254740993', '-9223372036854775808', '9223372036854775807'];
const packr = new Packr({ useRecords: false });
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'bigint' } as ConstructorParameters<typeof Unpackr>[0]);

let primary: PrimaryHandle;
let replica: ReplicaHandle;
let cleanup = () => {};

interface Answer {
  status: number;
  body: any;
}

async function post(url: string, route: 'query' | 'exec', body: string | Uint8Array, msgpack = false): Promise<Answer> {
  const res = await fetch(`${url}/v1/db/${DB}/${route}`, {
    method: 'POST',
    headers: msgpack ? { 'content-type': 'application/msgpack', accept: 'application/msgpack' } : { 'content-type': 'application/json' },
    body: body as BodyInit,
  });
  const bytes = new Uint8Array(await res.arrayBuffer());
  const isMsgpack = (res.headers.get('content-type') ?? '').includes('msgpack');
  return { status: res.status, body: isMsgpack ? unpackr.unpack(bytes) : JSON.parse(new TextDecoder().decode(bytes)) };
}

/** cli reads the primary's file with the sqlite3 command-line shell, one `|`-separated line per row. */
function cli(sql: string): string[] {
  const file = primary.store.get(DB)!.path;
  return execFileSync('sqlite3', [file, sql], { encoding: 'utf8' }).trim().split('\n').filter((l) => l !== '');
}

beforeAll(async () => {
  const t = tempDir('exact-numbers');
  primary = await startPrimary({ ...parsePrimaryConfig(['--data', join(t.dir, 'p'), '--listen', '127.0.0.1:0'], {}), auth: AUTH_DISABLED }, silentLogger);
  await fetch(`${primary.url}/v1/db/${DB}`, { method: 'PUT' });
  const schema = await post(primary.url, 'exec', JSON.stringify({ statements: [
    { sql: 'CREATE TABLE t (id INTEGER PRIMARY KEY, via TEXT, v INTEGER, w)' },
    { sql: 'CREATE TABLE p (id INTEGER PRIMARY KEY, style TEXT, a, b)' },
  ] }));
  expect(schema.status).toBe(200);
  replica = await startReplica(parseReplicaConfig(['--primary', primary.url, '--data', join(t.dir, 'r'), '--listen', '127.0.0.1:0'], {}), silentLogger);
  await converge(primary.url, [replica.url], DB);
  cleanup = t.cleanup;
}, 60_000);

afterAll(async () => {
  await replica?.close();
  await primary?.close();
  cleanup();
});

describe('integers beyond 2^53', () => {
  const servers = () => [['primary', primary.url], ['replica', replica.url]] as const;

  it('arrive exactly as JSON literals and as msgpack int64, on the primary and forwarded', async () => {
    const want: string[] = [];
    for (const [name, url] of servers()) {
      for (const v of EDGES) {
        const json = await post(url, 'exec', `{"sql": "INSERT INTO t (via, v, w) VALUES (?, ?, ?)", "params": ["${name}-json", ${v}, ${v}]}`);
        expect(json.status, JSON.stringify(json.body)).toBe(200);
        const packed = packr.pack({ sql: 'INSERT INTO t (via, v, w) VALUES (?, ?, ?)', params: [`${name}-msgpack`, BigInt(v), BigInt(v)] });
        const mp = await post(url, 'exec', packed, true);
        expect(mp.status, JSON.stringify(mp.body, (_k, x) => (typeof x === 'bigint' ? String(x) : x))).toBe(200);
        want.push(`${name}-json|integer|${v}|integer|${v}`, `${name}-msgpack|integer|${v}|integer|${v}`);
      }
    }
    const got = cli('SELECT via, typeof(v), v, typeof(w), w FROM t ORDER BY id');
    expect([...got].sort()).toEqual([...want].sort());
  });

  it('are refused with 400 BAD_REQUEST past int64, never stored', async () => {
    const before = cli('SELECT count(*) FROM t');
    for (const [, url] of servers()) {
      for (const v of ['9223372036854775808', '-9223372036854775809', '18446744073709551616']) {
        const r = await post(url, 'exec', `{"sql": "INSERT INTO t (via, v) VALUES ('refused', ?)", "params": [${v}]}`);
        expect(r.status).toBe(400);
        expect(r.body.error.code).toBe('BAD_REQUEST');
        expect(r.body.error.message).toContain(`integer ${v} is outside SQLite's 64-bit integer range`);
      }
      const mp = await post(url, 'exec', packr.pack({ sql: "INSERT INTO t (via, v) VALUES ('refused', ?)", params: [2n ** 63n] }), true);
      expect(mp.status).toBe(400);
      expect(mp.body.error.code).toBe('BAD_REQUEST');
      expect(mp.body.error.message).toContain('params[0]: integer 9223372036854775808 is outside');
    }
    expect(cli('SELECT count(*) FROM t')).toEqual(before);
  });

  it('read back exactly: strings in JSON, int64 in msgpack, on both servers', async () => {
    await converge(primary.url, [replica.url], DB);
    for (const [, url] of servers()) {
      const json = await post(url, 'query', `{"sql": "SELECT v, ? FROM t WHERE via = 'primary-json' ORDER BY id", "params": [9007199254740993]}`);
      expect(json.status).toBe(200);
      expect(json.body.results[0].rows).toEqual(EDGES.map((v) => [v, '9007199254740993']));
      const mp = await post(url, 'query', packr.pack({ sql: "SELECT v, ? FROM t WHERE via = 'replica-msgpack' ORDER BY id", params: [-(2n ** 63n)] }), true);
      expect(mp.status).toBe(200);
      expect(mp.body.results[0].rows).toEqual(EDGES.map((v) => [BigInt(v), -(2n ** 63n)]));
    }
  });
});

describe('the client library', () => {
  it('sends bigints exactly as JSON and as msgpack, and reads int64 back with msgpack', async () => {
    const json = connect({ replicas: [replica.url], probeIntervalMs: 0 });
    const mp = connect({ replicas: [replica.url], probeIntervalMs: 0, encoding: 'msgpack' });
    try {
      const edges = EDGES.map((v) => BigInt(v));
      for (const [name, client] of [['client-json', json], ['client-msgpack', mp]] as const) {
        const s = client.session(DB);
        await s.batch(edges.map((v) => ({ sql: 'INSERT INTO t (via, v, w) VALUES (?, ?, ?)', params: [name, v, v] })));
        const r = await s.query('SELECT v, w FROM t WHERE via = ? ORDER BY id', [name]);
        expect(r.rows).toEqual(edges.map((v) => (client === mp ? [v, v] : [String(v), String(v)])));
      }
      expect(cli("SELECT via, typeof(v), v, typeof(w), w FROM t WHERE via LIKE 'client-%' ORDER BY id")).toEqual(
        ['client-json', 'client-msgpack'].flatMap((via) => EDGES.map((v) => `${via}|integer|${v}|integer|${v}`)),
      );
      const row = await mp.session(DB).exec('INSERT INTO t (id, via) VALUES (?, ?)', [2n ** 63n - 1n, 'max-rowid']);
      expect(row.lastInsertRowid).toBe(2n ** 63n - 1n);
      await expect(json.session(DB).exec('INSERT INTO t (v) VALUES (?)', [2n ** 63n])).rejects.toMatchObject({ code: 'BAD_REQUEST' });
    } finally {
      json.close();
      mp.close();
    }
  });
});

describe('every parameter style', () => {
  const STYLES: Array<{ style: string; sql: string; params: unknown; read: string; readParams: unknown }> = [
    { style: '?', sql: 'INSERT INTO p (style, a, b) VALUES (?, ?, ?)', params: ['?', 1, 'one'], read: 'SELECT a, b FROM p WHERE style = ? AND a = ?', readParams: ['?', 1] },
    { style: '?1', sql: 'INSERT INTO p (style, a, b) VALUES (?1, ?2, ?2)', params: ['?1', 2], read: 'SELECT ?1, a, b FROM p WHERE style = ?2 AND a = ?1', readParams: [2, '?1'] },
    { style: '?NNN', sql: 'INSERT INTO p (style, a, b) VALUES (?3, ?12, ?1)', params: ['three', null, '?NNN', null, null, null, null, null, null, null, null, 12], read: 'SELECT a, b FROM p WHERE style = ?10', readParams: [0, 0, 0, 0, 0, 0, 0, 0, 0, '?NNN'] },
    { style: ':a', sql: 'INSERT INTO p (style, a, b) VALUES (:s, :a, :a)', params: { s: ':a', a: 4 }, read: 'SELECT a, b FROM p WHERE style = :s', readParams: { ':s': ':a' } },
    { style: '@a', sql: 'INSERT INTO p (style, a, b) VALUES (@s, @a, @b)', params: { '@s': '@a', a: 5, '@b': 'five' }, read: 'SELECT a, b FROM p WHERE style = @s', readParams: { s: '@a' } },
    { style: '$a', sql: 'INSERT INTO p (style, a, b) VALUES ($s, $a, $b)', params: { $s: '$a', $a: 6, b: 'six' }, read: 'SELECT a, b FROM p WHERE style = $s', readParams: { $s: '$a' } },
  ];
  const want: Record<string, unknown[]> = { '?': [1, 'one'], '?1': [2, 2], '?NNN': [12, 'three'], ':a': [4, 4], '@a': [5, 'five'], '$a': [6, 'six'] };

  it('bind on exec (primary and forwarded by the replica) and on query (both servers)', async () => {
    for (const [name, url] of [['primary', primary.url], ['replica', replica.url]] as const) {
      for (const s of STYLES) {
        const w = await post(url, 'exec', JSON.stringify({ sql: s.sql, params: s.params }));
        expect(w.status, `${name} exec ${s.style}: ${JSON.stringify(w.body)}`).toBe(200);
      }
    }
    expect(cli('SELECT style, a, b FROM p ORDER BY id')).toEqual(
      [...STYLES, ...STYLES].map((s) => `${s.style}|${want[s.style]!.join('|')}`),
    );
    await converge(primary.url, [replica.url], DB);
    for (const [name, url] of [['primary', primary.url], ['replica', replica.url]] as const) {
      for (const s of STYLES) {
        const r = await post(url, 'query', JSON.stringify({ sql: s.read, params: s.readParams }));
        expect(r.status, `${name} query ${s.style}: ${JSON.stringify(r.body)}`).toBe(200);
        const rows = r.body.results[0].rows as unknown[][];
        const expected = s.style === '?1' ? [2, ...want[s.style]!] : want[s.style]!;
        expect(rows, `${name} query ${s.style}`).toEqual([expected, expected]);
      }
      const answer = await post(url, 'query', '{"sql": "select ?1, ?1", "params": [5]}');
      expect(answer.body.results[0].rows).toEqual([[5, 5]]);
    }
  });

  it('binds 2^53 + 1, -2^63 and 2^63 - 1 exactly in every style, as JSON literals and as msgpack int64 (sqlite3 CLI on the primary)', async () => {
    // [style, SQL, params as JSON text with the value as a bare literal at @V, the same params for msgpack]
    const forms = (v: string): Array<[string, string, string, unknown]> => [
      ['?', 'INSERT INTO p (style, a) VALUES (?, ?)', '["edge ?", @V]', ['edge ?', BigInt(v)]],
      ['?1', 'INSERT INTO p (style, a, b) VALUES (?2, ?1, ?1)', '[@V, "edge ?1"]', [BigInt(v), 'edge ?1']],
      [':a', 'INSERT INTO p (style, a) VALUES (:s, :a)', '{"s": "edge :a", ":a": @V}', { s: 'edge :a', ':a': BigInt(v) }],
      ['@a', 'INSERT INTO p (style, a) VALUES (@s, @a)', '{"@s": "edge @a", "a": @V}', { '@s': 'edge @a', a: BigInt(v) }],
      ['$a', 'INSERT INTO p (style, a) VALUES ($s, $a)', '{"$s": "edge $a", "$a": @V}', { $s: 'edge $a', $a: BigInt(v) }],
    ];
    const want: string[] = [];
    for (const [name, url] of [['primary', primary.url], ['replica', replica.url]] as const) {
      for (const v of EDGES) {
        for (const [style, sql, json, packed] of forms(v)) {
          const j = await post(url, 'exec', `{"sql": ${JSON.stringify(sql)}, "params": ${json.replace('@V', v)}}`);
          expect(j.status, `${name} json ${style} ${v}: ${JSON.stringify(j.body)}`).toBe(200);
          const m = await post(url, 'exec', packr.pack({ sql, params: packed }), true);
          expect(m.status, `${name} msgpack ${style} ${v}`).toBe(200);
          want.push(`edge ${style}|integer|${v}`, `edge ${style}|integer|${v}`);
        }
      }
    }
    const got = cli("SELECT style, typeof(a), a FROM p WHERE style LIKE 'edge %' ORDER BY id");
    expect([...got].sort()).toEqual([...want].sort());
    expect(cli("SELECT count(*) FROM p WHERE style = 'edge ?1' AND b IS NOT a")).toEqual(['0']);
  });

  it('refuses a key given with and without its prefix', async () => {
    const r = await post(primary.url, 'query', '{"sql": "SELECT :a", "params": {"a": 1, ":a": 2}}');
    expect(r.status).toBe(400);
    expect(r.body.error.code).toBe('BAD_REQUEST');
    expect(r.body.error.message).toMatch(/given twice/);
  });
});
