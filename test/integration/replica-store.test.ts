/** ReplicaStore: a snapshot with another page size cannot go into the existing file; recreate takes it. */
import Database from 'better-sqlite3';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DatabaseChecksum } from '../../shared/checksum.ts';
import { EdgeliteError } from '../../shared/errors.ts';
import { silentLogger } from '../../shared/log.ts';
import { ReplicaStore } from '../../replica/store.ts';
import { tempDir } from '../helpers.ts';

function image(dir: string, name: string, pageSize: number, value: string): Uint8Array {
  const path = join(dir, name);
  const db = new Database(path);
  db.pragma(`page_size = ${pageSize}`);
  db.exec(`CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('${value}')`);
  db.close();
  return new Uint8Array(readFileSync(path));
}

describe('ReplicaStore.recreate', () => {
  it('drops the local copy so a snapshot of another page size can be installed', async () => {
    const t = tempDir('store');
    try {
      const big = image(t.dir, 'big.db', 4096, 'four');
      const small = image(t.dir, 'small.db', 1024, 'one');
      const store = new ReplicaStore(join(t.dir, 'replica'), { busyTimeoutMs: 1000, logger: silentLogger });
      const pos = (img: Uint8Array, txid: number) => ({ generation: 1, txid, checksum: DatabaseChecksum.fromFile(img).value });
      store.ensure('x').restore(big, pos(big, 5), 7, Date.now());
      expect((await store.get('x')!.query([{ sql: 'SELECT v FROM t', params: [] }]))[0]!.rows).toEqual([['four']]);
      let err: unknown;
      try {
        store.get('x')!.restore(small, pos(small, 9), 7, Date.now());
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(EdgeliteError);
      expect((err as EdgeliteError).details?.reason).toBe('page-size');
      const fresh = store.recreate('x');
      fresh.restore(small, pos(small, 9), 7, Date.now());
      expect(fresh.position?.txid).toBe(9);
      expect((await fresh.query([{ sql: 'SELECT v FROM t', params: [] }]))[0]!.rows).toEqual([['one']]);
      store.close();
    } finally {
      t.cleanup();
    }
  });
});
