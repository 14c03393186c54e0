/**
 * The download side of replica/snapshot-file.ts with more than one staging buffer's worth of pages:
 * the next chunks are received and hashed while the previous buffer is written, so a write's failure
 * comes back on a later write (or at the end). Checked here: several buffers (and a last, partial one)
 * give the image byte for byte under its checksum; a full disk (a real ENOSPC: the temp path is a
 * symlink to /dev/full) is DISK_FULL, reported before the rest of the body is taken, and the temp name
 * is removed; a download cut while a write is in flight reports the cut and leaves no file.
 */
import Database from 'better-sqlite3';
import { existsSync, lstatSync, readFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DatabaseChecksum } from '../../shared/checksum.ts';
import { EdgeliteError } from '../../shared/errors.ts';
import { silentLogger } from '../../shared/log.ts';
import type { SnapshotHead } from '../../shared/primary-client.ts';
import { downloadSnapshot, SNAPSHOT_TEMP_SUFFIX, type SnapshotSource } from '../../replica/snapshot-file.ts';
import { stopsAfterEach, tempDir } from '../helpers.ts';

const stops = stopsAfterEach();
/** IMAGE_BYTES: a few staging buffers (1 MiB each) and a partial one. */
const IMAGE_BYTES = 5 * 1024 * 1024 + 300_000;

function image(dir: string): Uint8Array {
  const file = join(dir, 'src.db');
  const db = new Database(file);
  db.exec('CREATE TABLE big (id INTEGER PRIMARY KEY, v BLOB NOT NULL)');
  db.prepare(`INSERT INTO big (v) WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < ?) SELECT randomblob(1000) FROM c`).run(Math.ceil(IMAGE_BYTES / 1030));
  db.close();
  return new Uint8Array(readFileSync(file));
}

/** Source serves `data` in `chunk`-byte chunks, counting them; `cutAt`: it fails after that many bytes. */
class Source implements SnapshotSource {
  delivered = 0;
  constructor(readonly data: Uint8Array, readonly chunk: number, readonly cutAt = Infinity) {}
  async snapshot(_db: string, sink: Parameters<SnapshotSource['snapshot']>[1]): Promise<SnapshotHead> {
    const head: SnapshotHead = { position: { generation: 1, txid: 2, checksum: DatabaseChecksum.fromFile(this.data).value }, databaseId: 3, pageSize: 4096, length: this.data.length };
    await sink.open(head);
    for (let at = 0; at < this.data.length; at += this.chunk) {
      if (at >= this.cutAt) throw new EdgeliteError('PRIMARY_UNAVAILABLE', `cut at ${at}`);
      await sink.write(this.data.subarray(at, at + this.chunk));
      this.delivered = Math.min(this.data.length, at + this.chunk);
    }
    return head;
  }
}

async function failure(run: () => Promise<unknown>): Promise<EdgeliteError> {
  const err = await run().then(() => null, (e: unknown) => e);
  expect(err).toBeInstanceOf(EdgeliteError);
  return err as EdgeliteError;
}

describe('snapshot download through two staging buffers', () => {
  it('writes several buffers and a partial last one: the image byte for byte, under its checksum', async () => {
    const t = tempDir('snapsink');
    stops.push(t.cleanup);
    const data = image(t.dir);
    expect(data.length).toBeGreaterThan(3 * 1024 * 1024);
    const path = join(t.dir, `app.db${SNAPSHOT_TEMP_SUFFIX}`);
    for (const chunk of [65536, 10_007, 3 * 1024 * 1024]) {
      const file = await downloadSnapshot(new Source(data, chunk), 'app', path, { logger: silentLogger });
      expect(file.checksum.value).toBe(DatabaseChecksum.fromFile(data).value);
      expect(readFileSync(path).equals(data)).toBe(true);
      file.remove();
    }
  });

  it('a full disk: DISK_FULL from a later write, before the whole body is taken, and the temp name removed', async () => {
    const t = tempDir('snapsink');
    stops.push(t.cleanup);
    const data = image(t.dir);
    const path = join(t.dir, `app.db${SNAPSHOT_TEMP_SUFFIX}`);
    symlinkSync('/dev/full', path);
    const source = new Source(data, 65536);
    const err = await failure(() => downloadSnapshot(source, 'app', path, { logger: silentLogger }));
    expect(err.code).toBe('DISK_FULL');
    expect(source.delivered).toBeLessThan(data.length);
    expect(() => lstatSync(path)).toThrow();
    expect(existsSync('/dev/full')).toBe(true);
  });

  it('a cut while a write is in flight: the cut is the error, and no file is left', async () => {
    const t = tempDir('snapsink');
    stops.push(t.cleanup);
    const data = image(t.dir);
    const path = join(t.dir, `app.db${SNAPSHOT_TEMP_SUFFIX}`);
    const err = await failure(() => downloadSnapshot(new Source(data, 65536, 2 * 1024 * 1024 + 65536), 'app', path, { logger: silentLogger }));
    expect([err.code, err.message]).toEqual(['PRIMARY_UNAVAILABLE', `cut at ${2 * 1024 * 1024 + 65536}`]);
    expect(existsSync(path)).toBe(false);
  });
});
