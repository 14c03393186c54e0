/**
 * `edgelite/drizzle` (README.md#drizzle-and-kysely) against a real primary and two real replicas over
 * loopback HTTP (test/kit/orm-cluster.ts): schema, insert, select and the relational query API; reads on
 * a replica's /query and writes on /exec; a batch as one transaction (a failing statement leaves
 * nothing); db.transaction() refused before anything is sent; the integer convention; and
 * read-your-writes across two replicas through the session's token.
 */
import { DrizzleQueryError, eq, relations, sql } from 'drizzle-orm';
import { blob, integer, numeric, sqliteTable, text } from 'drizzle-orm/sqlite-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { drizzle } from '../../shared/orm/drizzle.ts';
import { decodeToken } from '../../shared/token.ts';
import { rejectedEdgelite } from '../helpers.ts';
import { ORM_DB, startOrmCluster, type OrmCluster } from '../kit/orm-cluster.ts';
import { sleep } from '../kit/wait.ts';

const users = sqliteTable('users', {
  id: integer('id').primaryKey({ autoIncrement: true }),
  name: text('name').notNull().unique(),
  avatar: blob('avatar', { mode: 'buffer' }),
  /** drizzle's exact 64-bit form: the decimal digits in a BLOB. */
  balance: blob('balance', { mode: 'bigint' }),
  active: integer('active', { mode: 'boolean' }).notNull().default(true),
});

/** drizzle's 64-bit integer column: bigints both ways, stored as INTEGER through NUMERIC affinity. */
const counters = sqliteTable('counters', { name: text('name').primaryKey(), n: numeric('n', { mode: 'bigint' }).notNull() });

const wide = sqliteTable('wide', { id: integer('id').primaryKey(), name: text('name').notNull() });

const posts = sqliteTable('posts', {
  id: integer('id').primaryKey(),
  authorId: integer('author_id').notNull().references(() => users.id),
  title: text('title').notNull(),
});

const usersRelations = relations(users, ({ many }) => ({ posts: many(posts) }));
const postsRelations = relations(posts, ({ one }) => ({ author: one(users, { fields: [posts.authorId], references: [users.id] }) }));
const schema = { users, posts, usersRelations, postsRelations };

let c: OrmCluster;
beforeAll(async () => {
  c = await startOrmCluster('drizzle');
});
afterAll(async () => {
  await c?.stop();
});

/** causeOf unwraps drizzle's DrizzleQueryError ("Failed query: ...") to the EdgeliteError it carries. */
function causeOf<T>(p: Promise<T>): Promise<T> {
  return p.catch((err: unknown) => {
    throw err instanceof DrizzleQueryError ? err.cause : err;
  });
}

/** primaryTxid is the primary's position now. */
const primaryTxid = (): number => c.primary.store.get(ORM_DB)!.position.txid;

/** primaryRows reads straight from the primary's HTTP API, not through the adapter under test. */
async function primaryRows(sqlText: string): Promise<unknown[][]> {
  const res = await fetch(`${c.primary.url}/v1/db/${ORM_DB}/query`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sql: sqlText }) });
  expect(res.status).toBe(200);
  return ((await res.json()) as { results: Array<{ rows: unknown[][] }> }).results[0]!.rows;
}

describe('edgelite/drizzle', () => {
  it('creates the schema, inserts and selects through a replica: reads on /query, writes on /exec', async () => {
    const db = drizzle(c.clientA, { database: ORM_DB, schema });
    await db.run(sql`CREATE TABLE users (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, avatar BLOB, balance BLOB, active INTEGER NOT NULL DEFAULT 1)`);
    await db.run(sql`CREATE TABLE posts (id INTEGER PRIMARY KEY, author_id INTEGER NOT NULL REFERENCES users(id), title TEXT NOT NULL)`);
    expect(await primaryRows("SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('users', 'posts') ORDER BY name")).toEqual([['posts'], ['users']]);

    c.requests.length = 0;
    const avatar = Buffer.from([0, 1, 2, 250, 255]);
    const inserted = await db.insert(users).values({ name: 'ada', avatar, balance: 2n ** 63n - 1n }).returning({ id: users.id, name: users.name });
    expect(inserted).toEqual([{ id: 1, name: 'ada' }]);
    const run = await db.insert(users).values([{ name: 'bob', active: false }, { name: 'cy' }]).run();
    expect(run).toMatchObject({ changes: 2, lastInsertRowid: 3 });
    await db.insert(posts).values([{ id: 10, authorId: 1, title: 'hello' }, { id: 11, authorId: 1, title: 'again' }]);
    expect(c.requests.every((r) => r === `A POST /v1/db/${ORM_DB}/exec`)).toBe(true);

    c.requests.length = 0;
    const ada = await db.select().from(users).where(eq(users.name, 'ada')).get();
    expect(ada).toMatchObject({ id: 1, name: 'ada', balance: 2n ** 63n - 1n, active: true });
    expect(Buffer.from(ada!.avatar!)).toEqual(avatar);
    const names = await db.select({ name: users.name, active: users.active }).from(users).orderBy(users.id).all();
    expect(names).toEqual([{ name: 'ada', active: true }, { name: 'bob', active: false }, { name: 'cy', active: true }]);
    expect(await db.select({ name: users.name }).from(users).where(eq(users.name, 'nobody')).get()).toBeUndefined();
    expect(await db.select({ id: users.id, name: users.name }).from(users).orderBy(users.id).values()).toEqual([[1, 'ada'], [2, 'bob'], [3, 'cy']]);
    const withPosts = await db.query.users.findFirst({ where: eq(users.id, 1), columns: { name: true }, with: { posts: { columns: { title: true }, orderBy: posts.id } } });
    expect(withPosts).toEqual({ name: 'ada', posts: [{ title: 'hello' }, { title: 'again' }] });
    const joined = await db.select({ title: posts.title, author: users.name }).from(posts).innerJoin(users, eq(posts.authorId, users.id)).orderBy(posts.id);
    expect(joined).toEqual([{ title: 'hello', author: 'ada' }, { title: 'again', author: 'ada' }]);
    expect(c.requests.length).toBe(6);
    expect(c.requests.every((r) => r === `A POST /v1/db/${ORM_DB}/query`)).toBe(true);

    // UPDATE and DELETE go to /exec; a statement that starts like a read but writes (WITH ... INSERT) is
    // refused by /query before it runs (READ_ONLY) and sent on to /exec, once.
    c.requests.length = 0;
    expect(await db.update(users).set({ active: false }).where(eq(users.name, 'cy')).run()).toMatchObject({ changes: 1 });
    await db.run(sql`WITH n(name) AS (SELECT 'dee') INSERT INTO users (name) SELECT name FROM n`);
    expect(await db.delete(users).where(eq(users.name, 'dee')).returning({ name: users.name })).toEqual([{ name: 'dee' }]);
    expect(c.requests).toEqual([`A POST /v1/db/${ORM_DB}/exec`, `A POST /v1/db/${ORM_DB}/query`, `A POST /v1/db/${ORM_DB}/exec`, `A POST /v1/db/${ORM_DB}/exec`]);
    expect(await primaryRows('SELECT name, active, typeof(balance), CAST(balance AS TEXT) FROM users ORDER BY id')).toEqual([
      ['ada', 1, 'blob', '9223372036854775807'],
      ['bob', 0, 'null', null],
      ['cy', 0, 'null', null],
    ]);
  });

  it('keeps integers exact: numbers within 2^53, a bigint beyond carried exactly or refused, never rounded', async () => {
    const db = drizzle(c.clientA, { database: ORM_DB });
    // Its own table: rowids this large in users would move AUTOINCREMENT past 2^53 for later inserts.
    await db.run(sql`CREATE TABLE wide (id INTEGER PRIMARY KEY, name TEXT NOT NULL)`);
    await db.insert(wide).values([{ id: Number.MAX_SAFE_INTEGER, name: 'max' }, { id: -(2 ** 53) + 1, name: 'min' }]);
    const rows = await db.all(sql`SELECT id, typeof(id) FROM wide ORDER BY id`);
    expect(rows).toEqual([[-(2 ** 53) + 1, 'integer'], [Number.MAX_SAFE_INTEGER, 'integer']]);
    expect(await primaryRows('SELECT CAST(id AS TEXT) FROM wide ORDER BY id')).toEqual([['-9007199254740991'], ['9007199254740991']]);
    // A bigint beyond 2^53 in an integer column is carried exactly or refused (BAD_REQUEST), never rounded.
    const big = await db.insert(wide).values({ id: (2n ** 53n + 1n) as unknown as number, name: 'big' }).then(() => null, (e: unknown) => (e instanceof DrizzleQueryError ? e.cause : e));
    const stored = await primaryRows("SELECT CAST(id AS TEXT) FROM wide WHERE name = 'big'");
    if (big === null) expect(stored).toEqual([['9007199254740993']]);
    else expect([(big as { code?: unknown }).code, stored]).toEqual(['BAD_REQUEST', []]);

    // drizzle's numeric({ mode: 'bigint' }) sends the digits, which NUMERIC affinity stores as an exact INTEGER.
    await db.run(sql`CREATE TABLE counters (name TEXT PRIMARY KEY, n NUMERIC NOT NULL)`);
    await db.insert(counters).values([{ name: 'max', n: 2n ** 63n - 1n }, { name: 'min', n: -(2n ** 63n) }, { name: 'small', n: 42n }]);
    expect(await primaryRows('SELECT name, typeof(n), CAST(n AS TEXT) FROM counters ORDER BY name')).toEqual([
      ['max', 'integer', '9223372036854775807'],
      ['min', 'integer', '-9223372036854775808'],
      ['small', 'integer', '42'],
    ]);
    expect(await db.select({ n: counters.n }).from(counters).where(eq(counters.name, 'small')).get()).toEqual({ n: 42n });
    // Read back exact where the server answers such a cell exactly (README.md#http-api: beyond 2^53 as its
    // decimal digits, which numeric's BigInt() takes); a server that still rounds results beyond 2^53
    // answers a number here, and then only the stored form above is checked.
    const [[raw]] = (await primaryRows("SELECT n FROM counters WHERE name = 'max'")) as [[unknown]];
    if (raw === '9223372036854775807') expect(await db.select({ n: counters.n }).from(counters).orderBy(counters.name)).toEqual([{ n: 2n ** 63n - 1n }, { n: -(2n ** 63n) }, { n: 42n }]);
  });

  it('runs a batch as one transaction: all applied at one txid, or nothing when a statement fails', async () => {
    const db = drizzle(c.clientA, { database: ORM_DB, schema });
    await db.insert(users).values({ name: 'batch-base' });
    const before = decodeToken(db.$session.token!).txid;
    c.requests.length = 0;
    const [ins, upd, sel, first] = await db.batch([
      db.insert(users).values({ name: 'eve' }).returning({ id: users.id }),
      db.update(users).set({ active: false }).where(eq(users.name, 'eve')),
      db.select({ name: users.name, active: users.active }).from(users).where(eq(users.name, 'eve')),
      db.query.users.findFirst({ where: eq(users.name, 'eve'), columns: { name: true } }),
    ]);
    expect(c.requests).toEqual([`A POST /v1/db/${ORM_DB}/exec`]);
    expect(ins).toEqual([{ id: expect.any(Number) }]);
    expect(upd).toMatchObject({ rows: [] });
    expect(sel).toEqual([{ name: 'eve', active: false }]);
    expect(first).toEqual({ name: 'eve' });
    expect(decodeToken(db.$session.token!).txid).toBe(before + 1);

    const txid = primaryTxid();
    const state = "SELECT count(*), sum(active), sum(name = 'fay') FROM users";
    const was = await primaryRows(state);
    expect(was[0]![1]).toBeGreaterThan(0);
    const failed = await rejectedEdgelite(
      db.batch([db.insert(users).values({ name: 'fay' }), db.update(users).set({ active: false }), db.insert(users).values({ name: 'eve' })]),
    );
    expect(failed.code).toBe('CONSTRAINT_VIOLATION');
    expect(await primaryRows(state)).toEqual(was);
    expect(primaryTxid()).toBe(txid);
  });

  it('refuses db.transaction() before anything is sent, naming db.batch', async () => {
    const db = drizzle(c.clientA, { database: ORM_DB, schema });
    c.requests.length = 0;
    const txid = primaryTxid();
    const err = await rejectedEdgelite(db.transaction(async (tx) => tx.insert(users).values({ name: 'tx' })));
    expect(err.code).toBe('BAD_REQUEST');
    expect(err.message).toMatch(/interactive transactions are not possible.*db\.batch/);
    expect(c.requests).toEqual([]);
    expect(primaryTxid()).toBe(txid);
    expect(() => drizzle(c.clientA)).toThrow(expect.objectContaining({ code: 'BAD_REQUEST', message: expect.stringMatching(/"database"/) }));
    expect(() => drizzle(c.clientA.session(ORM_DB), { database: 'other' })).toThrow(expect.objectContaining({ code: 'BAD_REQUEST' }));
  });

  it('reads its write at once through the other replica with the session token, which makes that replica wait', async () => {
    const writer = drizzle(c.clientA, { database: ORM_DB, schema });
    await writer.insert(users).values({ name: 'ryw-1' });
    // At once, on replica B, a session started from the writer's token sees the write.
    const reader = drizzle(c.clientB.session(ORM_DB, { token: writer.$session.token }), { schema });
    expect(await reader.select({ name: users.name }).from(users).where(eq(users.name, 'ryw-1'))).toEqual([{ name: 'ryw-1' }]);
    expect(decodeToken(reader.$session.token!).txid).toBeGreaterThanOrEqual(decodeToken(writer.$session.token!).txid);

    // With B's stream held, B cannot have the next write: an eventual read there misses it, and the
    // session's read waits on B until the stream is let go, then sees it.
    const release = c.holdB();
    try {
      await writer.insert(users).values({ name: 'ryw-2' });
      const wrote = decodeToken(writer.$session.token!).txid;
      expect(c.applied(c.b)).toBeLessThan(wrote);
      const eventual = drizzle(c.clientB, { database: ORM_DB, consistency: 'eventual' });
      expect(await eventual.select({ name: users.name }).from(users).where(eq(users.name, 'ryw-2'))).toEqual([]);
      const follower = drizzle(c.clientB.session(ORM_DB, { token: writer.$session.token }), { schema });
      let settled = false;
      const read = follower.select({ name: users.name }).from(users).where(eq(users.name, 'ryw-2')).then((rows) => {
        settled = true;
        return rows;
      });
      await sleep(300); // hold the fault open: the read must still be waiting on B
      expect(settled).toBe(false);
      release();
      expect(await read).toEqual([{ name: 'ryw-2' }]);
      expect(c.requests.filter((r) => r.startsWith('B ')).every((r) => r === `B POST /v1/db/${ORM_DB}/query`)).toBe(true);
    } finally {
      release();
    }
  });
});
