/**
 * The embedded replica with drizzle-orm's better-sqlite3 driver (README.md#drizzle-and-kysely): a real
 * primary over loopback HTTP, `openReplica()` in this process, and drizzle reading the replica's local
 * file through its own read-only better-sqlite3 connection (no network per read). Writes built with
 * drizzle's `toSQL()` go through `replica.exec`, which answers once the write is applied locally, so the
 * next local read sees it; a write made elsewhere is awaited with its token.
 */
import Database from 'better-sqlite3';
import { eq, sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/better-sqlite3';
import { integer, sqliteTable, text } from 'drizzle-orm/sqlite-core';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AUTH_DISABLED } from '../../shared/auth.ts';
import { silentLogger } from '../../shared/log.ts';
import type { SqlValue } from '../../shared/protocol.ts';
import { parsePrimaryConfig } from '../../primary/config.ts';
import { startPrimary } from '../../primary/server.ts';
import { openReplica } from '../../replica/index.ts';
import { postJson, stopsAfterEach, tempDir } from '../helpers.ts';

const DB = 'app';
const notes = sqliteTable('notes', {
  id: integer('id').primaryKey(),
  body: text('body').notNull(),
  pinned: integer('pinned', { mode: 'boolean' }).notNull().default(false),
});

const stops = stopsAfterEach();

describe('openReplica() with drizzle-orm/better-sqlite3', () => {
  it('reads the local file in process, sees its own writes at once and others\' once their token is applied', async () => {
    const t = tempDir('drizzle-embedded');
    stops.push(t.cleanup);
    const primary = await startPrimary({ ...parsePrimaryConfig(['--data', join(t.dir, 'p'), '--listen', '127.0.0.1:0'], {}), auth: AUTH_DISABLED }, silentLogger);
    stops.push(() => primary.close());
    expect((await fetch(`${primary.url}/v1/db/${DB}`, { method: 'PUT' })).status).toBe(201);
    expect((await postJson(`${primary.url}/v1/db/${DB}/exec`, { sql: 'CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL, pinned INTEGER NOT NULL DEFAULT 0)' })).status).toBe(200);

    const dir = join(t.dir, 'replica');
    const replica = await openReplica({ primary: primary.url, dir, databases: [DB] });
    stops.push(() => replica.close());
    await replica.ready(DB);
    const file = new Database(join(dir, `${DB}.db`), { readonly: true, fileMustExist: true });
    stops.push(() => void file.close());
    const local = drizzle({ client: file, schema: { notes } });
    expect(local.select().from(notes).all()).toEqual([]);

    // A write built by drizzle, sent through the replica (forwarded to the primary): applied here when
    // exec answers, so the next local read, synchronous and in process, sees it.
    const insert = local.insert(notes).values([{ id: 1, body: 'first', pinned: true }, { id: 2, body: 'second' }]).toSQL();
    const w = await replica.exec(DB, insert.sql, insert.params as SqlValue[]);
    expect(w.applied).toBe(true);
    expect(local.select().from(notes).orderBy(notes.id).all()).toEqual([
      { id: 1, body: 'first', pinned: true },
      { id: 2, body: 'second', pinned: false },
    ]);

    // A write made elsewhere (straight to the primary): waiting for its token makes it visible locally.
    const other = await postJson(`${primary.url}/v1/db/${DB}/exec`, { sql: "UPDATE notes SET body = 'edited' WHERE id = 2" });
    expect(other.status).toBe(200);
    await replica.query(DB, 'SELECT 1', [], { token: other.json.token as string });
    expect(local.select({ body: notes.body }).from(notes).where(eq(notes.id, 2)).get()).toEqual({ body: 'edited' });
    expect(local.get<{ n: number }>(sql`SELECT count(*) AS n FROM notes`)).toEqual({ n: 2 });

    // The local connection only reads: writes go through the replica (and the primary).
    expect(() => local.insert(notes).values({ id: 3, body: 'direct' }).run()).toThrow(/readonly/i);
    expect(local.select().from(notes).all()).toHaveLength(2);
  });
});
