/**
 * Idle close on the Node replica (README.md#many-databases), on real SQLite files fed by a real source
 * database (source-db.ts): PageApplier.suspend closes the writer and the sidecar's descriptor, the next
 * apply reopens without reading the file while it is unchanged and reads it again (checking it against
 * its position) when it changed; ReplicaStore keeps at most maxOpen databases open, least recently used
 * closed first, and closeIdle closes what was not used since a cutoff, reopened by the next read.
 */
import fs from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { PageApplier } from '../../replica/apply.ts';
import { parseReplicaConfig } from '../../replica/config.ts';
import { ReplicaStore } from '../../replica/store.ts';
import { tempDir } from '../helpers.ts';
import { Source } from './source-db.ts';

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) c();
});

function fdsTo(path: string): number {
  let n = 0;
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      if (fs.readlinkSync(`/proc/self/fd/${fd}`).startsWith(path)) n++;
    } catch {
      // the directory's own descriptor, gone by now
    }
  }
  return n;
}

function source(dir: string): Source {
  const s = new Source(join(dir, 'source.db'), 4096, 'WAL');
  cleanups.push(() => s.close());
  s.commit('CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT)');
  return s;
}

describe('replica idle close', () => {
  it('PageApplier.suspend closes every descriptor; the next apply reopens without a re-read, or with one when the file changed', () => {
    const t = tempDir('replica-idle');
    cleanups.push(t.cleanup);
    const s = source(t.dir);
    const file = join(t.dir, 'replica.db');
    const applier = PageApplier.open(file, { log: () => {} });
    cleanups.push(() => applier.close());
    applier.restoreSnapshot(s.image(), s.position, s.databaseId);
    expect(applier.recovery.source).toBe('none'); // from open(): nothing read since
    applier.apply([s.commit("INSERT INTO kv VALUES (1, 'one')")]);
    expect(fdsTo(file)).toBeGreaterThan(0);

    applier.suspend();
    expect(applier.isOpen).toBe(false);
    expect(fdsTo(file)).toBe(0); // the database, its WAL and SHM, the sidecar
    expect(applier.position).toEqual(s.position); // still known, from memory
    applier.apply([s.commit("INSERT INTO kv VALUES (2, 'two')")]);
    expect(applier.isOpen).toBe(true);
    expect(applier.recovery.source).toBe('none'); // unchanged file: not read again
    expect(applier.position).toEqual(s.position);

    applier.suspend();
    const later = new Date(Date.now() + 5000);
    fs.utimesSync(file, later, later); // another signature: the file is read and checked again
    applier.apply([s.commit("INSERT INTO kv VALUES (3, 'three')")]);
    expect(applier.recovery.source).toBe('committed');
    expect(applier.position).toEqual(s.position);
    expect(applier.fileChecksum()).toBe(s.position.checksum);
  });

  it('ReplicaStore: at most maxOpen open (least recently used closed first), closeIdle closes the unused, a read reopens', async () => {
    const t = tempDir('replica-idle-store');
    cleanups.push(t.cleanup);
    const s = source(t.dir);
    const logs: Array<Record<string, unknown>> = [];
    const store = new ReplicaStore(join(t.dir, 'r'), { busyTimeoutMs: 1000, logger: (e) => logs.push(e), idleCloseMs: 60_000, maxOpen: 3 });
    cleanups.push(() => store.close());
    const names = ['a', 'b', 'c', 'd', 'e'];
    for (const n of names) {
      store.ensure(n).restore(s.image(), s.position, s.databaseId, Date.now());
      expect(store.counts().open).toBeLessThanOrEqual(3);
    }
    expect(store.counts()).toEqual({ databases: 5, open: 3 });
    expect(names.map((n) => store.get(n)!.isOpen)).toEqual([false, false, true, true, true]);
    expect(fdsTo(join(t.dir, 'r', 'a.db'))).toBe(0);

    // A read of a closed one reopens it and closes the least recently used other.
    expect(await store.get('a')!.query([{ sql: 'SELECT count(*) AS n FROM kv', params: [] }])).toEqual([expect.objectContaining({ rows: [[0]] })]);
    expect(names.map((n) => store.get(n)!.isOpen)).toEqual([true, false, false, true, true]);

    expect(store.closeIdle(Date.now() + 1)).toBe(3);
    expect(store.counts()).toEqual({ databases: 5, open: 0 });
    expect(logs.some((e) => e.msg === 'closed idle databases' && e.count === 3)).toBe(true);
    for (const n of names) expect(fdsTo(join(t.dir, 'r', `${n}.db`))).toBe(0);
    // Positions stay known while closed, and an apply reopens.
    expect(store.positions('*').e).toEqual(s.position);
    const cs = s.commit("INSERT INTO kv VALUES (1, 'x')");
    store.get('e')!.apply([cs]);
    expect(store.get('e')!.isOpen).toBe(true);
    expect(store.get('e')!.prepare('SELECT v FROM kv').pluck().get()).toBe('x');
  });

  it('the flags: --bootstrap-concurrency (8), --idle-close-ms (60000, 0 allowed), --max-open-databases (512), env too; bad values are MISCONFIGURED naming the flag', () => {
    const base = ['--primary', 'http://127.0.0.1:1', '--data', '/tmp/x'];
    const d = parseReplicaConfig(base, {});
    expect([d.bootstrapConcurrency, d.idleCloseMs, d.maxOpenDatabases]).toEqual([8, 60_000, 512]);
    const c = parseReplicaConfig([...base, '--bootstrap-concurrency', '3', '--idle-close-ms', '0', '--max-open-databases', '10'], {});
    expect([c.bootstrapConcurrency, c.idleCloseMs, c.maxOpenDatabases]).toEqual([3, 0, 10]);
    const e = parseReplicaConfig(base, { EDGELITE_BOOTSTRAP_CONCURRENCY: '2', EDGELITE_IDLE_CLOSE_MS: '500', EDGELITE_MAX_OPEN_DATABASES: '7' });
    expect([e.bootstrapConcurrency, e.idleCloseMs, e.maxOpenDatabases]).toEqual([2, 500, 7]);
    for (const [flag, value] of [['--bootstrap-concurrency', '0'], ['--idle-close-ms', '-1'], ['--idle-close-ms', '1s'], ['--max-open-databases', '0']] as const) {
      expect(() => parseReplicaConfig([...base, flag, value], {})).toThrow(expect.objectContaining({ code: 'MISCONFIGURED', message: expect.stringContaining(flag) }));
    }
  });
});
