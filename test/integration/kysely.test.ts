/**
 * `edgelite/kysely` (README.md#drizzle-and-kysely) against a real primary and two real replicas over
 * loopback HTTP (test/kit/orm-cluster.ts): schema through Kysely's schema builder, insert, select,
 * update, delete and introspection; reads on a replica's /query and writes on /exec; `batch()` as one
 * transaction (a failing query leaves nothing); interactive transactions refused before anything is
 * sent; the integer convention; and read-your-writes across two replicas through the session's token.
 */
import { CamelCasePlugin, Kysely, sql, type Generated } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { batch, EdgeliteDialect } from '../../shared/orm/kysely.ts';
import { decodeToken } from '../../shared/token.ts';
import { rejectedEdgelite } from '../helpers.ts';
import { ORM_DB, startOrmCluster, type OrmCluster } from '../kit/orm-cluster.ts';
import { sleep } from '../kit/wait.ts';

interface DB {
  accounts: { id: Generated<number>; owner: string; balance: number; note: string | null; photo: Uint8Array | null };
  ledger: { id: Generated<number>; accountId: number; amount: number };
}

let c: OrmCluster;
beforeAll(async () => {
  c = await startOrmCluster('kysely');
});
afterAll(async () => {
  await c?.stop();
});

const primaryTxid = (): number => c.primary.store.get(ORM_DB)!.position.txid;

/** primaryRows reads straight from the primary's HTTP API, not through the adapter under test. */
async function primaryRows(sqlText: string): Promise<unknown[][]> {
  const res = await fetch(`${c.primary.url}/v1/db/${ORM_DB}/query`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sql: sqlText }) });
  expect(res.status).toBe(200);
  return ((await res.json()) as { results: Array<{ rows: unknown[][] }> }).results[0]!.rows;
}

function kysely(dialect: EdgeliteDialect): Kysely<DB> {
  return new Kysely<DB>({ dialect, plugins: [new CamelCasePlugin()] });
}

describe('edgelite/kysely', () => {
  it('creates the schema, inserts and selects through a replica: reads on /query, writes on /exec', async () => {
    const db = kysely(new EdgeliteDialect({ client: c.clientA, database: ORM_DB }));
    await db.schema
      .createTable('accounts')
      .addColumn('id', 'integer', (col) => col.primaryKey().autoIncrement())
      .addColumn('owner', 'text', (col) => col.notNull().unique())
      .addColumn('balance', 'integer', (col) => col.notNull().check(sql`balance >= 0`))
      .addColumn('note', 'text')
      .addColumn('photo', 'blob')
      .execute();
    await db.schema
      .createTable('ledger')
      .addColumn('id', 'integer', (col) => col.primaryKey())
      .addColumn('account_id', 'integer', (col) => col.notNull().references('accounts.id'))
      .addColumn('amount', 'integer', (col) => col.notNull())
      .execute();
    await db.schema.createIndex('ledger_account').on('ledger').column('account_id').execute();
    const tables = await db.introspection.getTables();
    expect(tables.map((t) => t.name).sort()).toEqual(['accounts', 'ledger']);
    expect(tables.find((t) => t.name === 'ledger')!.columns.map((col) => col.name)).toEqual(['id', 'account_id', 'amount']);

    c.requests.length = 0;
    const photo = new Uint8Array([0, 255, 7, 128]);
    const ins = await db.insertInto('accounts').values({ owner: 'ada', balance: 100, photo }).executeTakeFirstOrThrow();
    expect(ins).toMatchObject({ insertId: 1n, numInsertedOrUpdatedRows: 1n });
    const ret = await db.insertInto('accounts').values([{ owner: 'bob', balance: 5 }, { owner: 'cy', balance: 0, note: 'née' }]).returning(['id', 'owner']).execute();
    expect(ret).toEqual([{ id: 2, owner: 'bob' }, { id: 3, owner: 'cy' }]);
    await db.insertInto('ledger').values([{ accountId: 1, amount: 100 }, { accountId: 2, amount: 5 }]).execute();
    expect(c.requests.every((r) => r === `A POST /v1/db/${ORM_DB}/exec`)).toBe(true);

    c.requests.length = 0;
    const ada = await db.selectFrom('accounts').selectAll().where('owner', '=', 'ada').executeTakeFirstOrThrow();
    expect(ada).toMatchObject({ id: 1, owner: 'ada', balance: 100, note: null });
    expect(Array.from(ada.photo!)).toEqual(Array.from(photo));
    const joined = await db
      .selectFrom('ledger')
      .innerJoin('accounts', 'accounts.id', 'ledger.accountId')
      .select(['accounts.owner', 'ledger.amount'])
      .orderBy('ledger.id')
      .execute();
    expect(joined).toEqual([{ owner: 'ada', amount: 100 }, { owner: 'bob', amount: 5 }]);
    expect(await db.selectFrom('accounts').select('note').where('owner', '=', 'cy').executeTakeFirst()).toEqual({ note: 'née' });
    expect(await db.selectFrom('accounts').select('id').where('owner', '=', 'nobody').executeTakeFirst()).toBeUndefined();
    const streamed: string[] = [];
    for await (const row of db.selectFrom('accounts').select('owner').orderBy('id').stream(2)) streamed.push(row.owner);
    expect(streamed).toEqual(['ada', 'bob', 'cy']);
    expect(c.requests.every((r) => r === `A POST /v1/db/${ORM_DB}/query`)).toBe(true);

    c.requests.length = 0;
    const upd = await db.updateTable('accounts').set({ balance: sql`balance + 1` }).where('balance', '<', 50).executeTakeFirst();
    expect(upd.numUpdatedRows).toBe(2n);
    const none = await db.updateTable('accounts').set({ note: 'x' }).where('owner', '=', 'nobody').executeTakeFirst();
    expect(none.numUpdatedRows).toBe(0n);
    const del = await db.deleteFrom('ledger').where('amount', '=', 5).executeTakeFirst();
    expect(del.numDeletedRows).toBe(1n);
    expect(c.requests).toEqual([`A POST /v1/db/${ORM_DB}/exec`, `A POST /v1/db/${ORM_DB}/exec`, `A POST /v1/db/${ORM_DB}/exec`]);
    expect(await primaryRows('SELECT owner, balance FROM accounts ORDER BY id')).toEqual([['ada', 100], ['bob', 6], ['cy', 1]]);
  });

  it('keeps integers exact: numbers within 2^53, a bigint beyond carried exactly or refused, never rounded; TEXT exact', async () => {
    const db = kysely(new EdgeliteDialect({ client: c.clientA, database: ORM_DB }));
    await db.insertInto('accounts').values({ owner: 'max', balance: Number.MAX_SAFE_INTEGER }).execute();
    expect(await db.selectFrom('accounts').select('balance').where('owner', '=', 'max').executeTakeFirst()).toEqual({ balance: Number.MAX_SAFE_INTEGER });
    // A bigint beyond 2^53 is carried exactly or refused (BAD_REQUEST), never rounded.
    const big = await db.insertInto('accounts').values({ owner: 'big', balance: (2n ** 63n - 1n) as unknown as number }).execute().then(() => null, (e: unknown) => e);
    const stored = await primaryRows("SELECT typeof(balance), CAST(balance AS TEXT) FROM accounts WHERE owner = 'big'");
    if (big === null) expect(stored).toEqual([['integer', '9223372036854775807']]);
    else expect([(big as { code?: unknown }).code, stored]).toEqual(['BAD_REQUEST', []]);
    await db.deleteFrom('accounts').where('owner', '=', 'big').execute();
    // Beyond 2^53, text is exact both ways.
    const text = await sql<{ v: string }>`SELECT CAST(${'9223372036854775807'} AS INTEGER) + 0 = 9223372036854775807 AS ok, CAST(9223372036854775807 AS TEXT) AS v`.execute(db);
    expect(text.rows).toEqual([{ ok: 1, v: '9223372036854775807' }]);
    await db.deleteFrom('accounts').where('owner', '=', 'max').execute();
  });

  it('runs batch() as one transaction: all applied at one txid, or nothing when a query fails', async () => {
    const dialect = new EdgeliteDialect({ client: c.clientA, database: ORM_DB });
    const db = kysely(dialect);
    await db.insertInto('accounts').values({ owner: 'batch-base', balance: 1 }).execute();
    const before = decodeToken(dialect.session.token!).txid;
    c.requests.length = 0;
    const [ins, upd, sel, camel] = await batch(db, [
      db.insertInto('accounts').values({ owner: 'eve', balance: 10 }).returning('id'),
      db.updateTable('accounts').set({ balance: 20 }).where('owner', '=', 'eve'),
      db.selectFrom('accounts').select(['owner', 'balance']).where('owner', '=', 'eve'),
      db.selectFrom('ledger').select('accountId').where('id', '=', 1),
    ]);
    expect(c.requests).toEqual([`A POST /v1/db/${ORM_DB}/exec`]);
    expect(ins!.rows).toEqual([{ id: expect.any(Number) }]);
    expect(upd!.numAffectedRows).toBe(1n);
    expect(sel!.rows).toEqual([{ owner: 'eve', balance: 20 }]);
    expect(camel!.rows).toEqual([{ accountId: 1 }]); // the instance's plugins (CamelCasePlugin) apply to batch results
    expect(decodeToken(dialect.session.token!).txid).toBe(before + 1);

    const txid = primaryTxid();
    const state = "SELECT count(*), sum(balance), sum(owner = 'fay') FROM accounts";
    const was = await primaryRows(state);
    // The CHECK (balance >= 0) fails on the last query: the insert and the update before it are undone.
    const failed = await rejectedEdgelite(
      batch(db, [
        db.insertInto('accounts').values({ owner: 'fay', balance: 1 }),
        db.updateTable('accounts').set({ balance: sql`balance + 1000` }),
        db.updateTable('accounts').set({ balance: -1 }).where('owner', '=', 'eve'),
      ]),
    );
    expect(failed.code).toBe('CONSTRAINT_VIOLATION');
    expect(await primaryRows(state)).toEqual(was);
    expect(primaryTxid()).toBe(txid);
  });

  it('refuses interactive transactions before anything is sent, naming batch()', async () => {
    const db = kysely(new EdgeliteDialect({ client: c.clientA, database: ORM_DB }));
    c.requests.length = 0;
    const txid = primaryTxid();
    const err = await rejectedEdgelite(db.transaction().execute(async (tx) => tx.insertInto('accounts').values({ owner: 'tx', balance: 1 }).execute()));
    expect(err.code).toBe('BAD_REQUEST');
    expect(err.message).toMatch(/interactive transactions are not possible.*batch\(db/);
    expect((await rejectedEdgelite(db.startTransaction().execute())).code).toBe('BAD_REQUEST');
    expect((await rejectedEdgelite(sql`BEGIN`.execute(db))).code).toBe('BAD_REQUEST');
    expect(c.requests).toEqual([]);
    expect(primaryTxid()).toBe(txid);
    expect(() => new EdgeliteDialect({ client: c.clientA } as never)).toThrow(expect.objectContaining({ code: 'BAD_REQUEST' }));
  });

  it('reads its write at once through the other replica with the session token, which makes that replica wait', async () => {
    const writerDialect = new EdgeliteDialect({ client: c.clientA, database: ORM_DB });
    const writer = kysely(writerDialect);
    await writer.insertInto('accounts').values({ owner: 'ryw-1', balance: 1 }).execute();
    // At once, on replica B, a session started from the writer's token sees the write.
    const reader = kysely(new EdgeliteDialect({ client: c.clientB, database: ORM_DB, token: writerDialect.session.token }));
    expect(await reader.selectFrom('accounts').select('owner').where('owner', '=', 'ryw-1').execute()).toEqual([{ owner: 'ryw-1' }]);

    // With B's stream held, B cannot have the next write: an eventual read there misses it, and the
    // session's read waits on B until the stream is let go, then sees it.
    const release = c.holdB();
    try {
      await writer.insertInto('accounts').values({ owner: 'ryw-2', balance: 2 }).execute();
      expect(c.applied(c.b)).toBeLessThan(decodeToken(writerDialect.session.token!).txid);
      const eventual = kysely(new EdgeliteDialect({ client: c.clientB, database: ORM_DB, consistency: 'eventual' }));
      expect(await eventual.selectFrom('accounts').select('owner').where('owner', '=', 'ryw-2').execute()).toEqual([]);
      const follower = kysely(new EdgeliteDialect({ session: c.clientB.session(ORM_DB, { token: writerDialect.session.token }) }));
      let settled = false;
      const read = follower
        .selectFrom('accounts')
        .select('owner')
        .where('owner', '=', 'ryw-2')
        .execute()
        .then((rows) => {
          settled = true;
          return rows;
        });
      await sleep(300); // hold the fault open: the read must still be waiting on B
      expect(settled).toBe(false);
      release();
      expect(await read).toEqual([{ owner: 'ryw-2' }]);
      expect(c.requests.filter((r) => r.startsWith('B ')).every((r) => r === `B POST /v1/db/${ORM_DB}/query`)).toBe(true);
    } finally {
      release();
    }
  });
});
