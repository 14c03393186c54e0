/**
 * A replica's snapshot download (bootstrap and re-snapshot) shows its progress (README.md#progress): on
 * a terminal a bar of MiB redrawn in place, and no progress log lines; off a terminal (or while another
 * bar is drawn there) the log lines of before; a failed download ends its bar, so the next one draws.
 * Real temp files, a source serving a real image in 64 KiB chunks as the primary client does.
 */
import Database from 'better-sqlite3';
import { randomFillSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { beforeAll, describe, expect, it } from 'vitest';
import { DatabaseChecksum } from '../../shared/checksum.ts';
import type { SnapshotHead } from '../../shared/primary-client.ts';
import { isDrawing, progress } from '../../shared/node/progress.ts';
import { downloadSnapshot, PROGRESS_MIN_BYTES, type SnapshotSource } from '../../replica/snapshot-file.ts';
import { stopsAfterEach, tempDir } from '../helpers.ts';

class Sink extends Writable {
  text = '';
  constructor(readonly isTTY: boolean) {
    super();
  }
  override _write(chunk: Buffer | string, _enc: BufferEncoding, done: () => void): void {
    this.text += chunk.toString();
    done();
  }
}

/** IMAGE: a real SQLite file of about 9 MiB (4096-byte pages), just over PROGRESS_MIN_BYTES. */
let IMAGE = new Uint8Array(0);
const SIZE = '9.0 MiB';

beforeAll(() => {
  const t = tempDir('snapshot-progress-src');
  const db = new Database(join(t.dir, 'src.db'));
  db.exec('CREATE TABLE b (v BLOB)');
  db.prepare('INSERT INTO b VALUES (?)').run(randomFillSync(Buffer.alloc(PROGRESS_MIN_BYTES + 1000 * 1024)));
  db.close();
  IMAGE = new Uint8Array(readFileSync(join(t.dir, 'src.db')));
  t.cleanup();
  expect((IMAGE.length / (1024 * 1024)).toFixed(1)).toBe('9.0');
});

/** source serves IMAGE (or a checksum that differs, with `wrong`) in 64 KiB chunks, pausing halfway. */
function source(wrong = false): SnapshotSource {
  return {
    async snapshot(_db, sink) {
      const checksum = DatabaseChecksum.fromFile(IMAGE).value;
      const head: SnapshotHead = { position: { generation: 1, txid: 9, checksum: wrong ? checksum ^ 1n : checksum }, databaseId: 3, pageSize: 4096, length: IMAGE.length };
      await sink.open(head);
      const half = Math.floor(IMAGE.length / 2 / 65536) * 65536;
      for (let at = 0; at < IMAGE.length; at += 65536) {
        // Halfway, a pause as a slow network makes: the bar redraws on its timer (10 per second).
        if (at === half) await new Promise((r) => setTimeout(r, 300));
        await sink.write(IMAGE.subarray(at, at + 65536));
      }
      return head;
    },
  };
}

describe('snapshot download progress', () => {
  const stops = stopsAfterEach();
  function path(): string {
    const t = tempDir('snapshot-progress');
    stops.push(t.cleanup);
    return join(t.dir, 'app.db.snapshot-tmp');
  }

  it('draws a bar of MiB on a terminal, to 100%, and logs no progress lines', async () => {
    const tty = new Sink(true);
    const logs: Array<Record<string, unknown>> = [];
    const to = path();
    const file = await downloadSnapshot(source(), 'app', to, { logger: (e) => logs.push(e), terminal: tty });
    expect(readFileSync(to).equals(IMAGE)).toBe(true);
    file.remove();
    expect(tty.text).toContain('snapshot app [');
    expect(tty.text).toContain(`100% ${SIZE}/${SIZE} verified`);
    expect(tty.text).toMatch(/\] (4[0-9]|5[0-9])% 4\.\d MiB\/9\.0 MiB /); // the frame drawn halfway
    expect(logs.filter((e) => String(e.msg).startsWith('snapshot download'))).toEqual([]);
    expect(isDrawing(tty)).toBe(false);
  });

  it('logs lines off a terminal, and while another bar is drawn on it', async () => {
    const pipe = new Sink(false);
    const logs: Array<Record<string, unknown>> = [];
    (await downloadSnapshot(source(), 'app', path(), { logger: (e) => logs.push(e), terminal: pipe })).remove();
    expect(pipe.text).toBe('');
    const msgs = (l: Array<Record<string, unknown>>) => l.map((e) => e.msg).filter((m) => String(m).startsWith('snapshot download'));
    expect(msgs(logs)[0]).toBe('snapshot download started');
    expect(logs.at(-1)).toMatchObject({ msg: 'snapshot download', bytes: IMAGE.length, percent: 100 });

    const tty = new Sink(true);
    const other = progress({ label: 'other', total: 2, logger: () => {}, stream: tty });
    const beside: Array<Record<string, unknown>> = [];
    (await downloadSnapshot(source(), 'app', path(), { logger: (e) => beside.push(e), terminal: tty })).remove();
    other.stop();
    expect(tty.text).not.toContain('snapshot app');
    expect(msgs(beside)).toEqual(msgs(logs));
  });

  it('a failed download ends its bar, so the next download draws one', async () => {
    const tty = new Sink(true);
    const err = await downloadSnapshot(source(true), 'app', path(), { logger: () => {}, terminal: tty }).then(() => null, (e: unknown) => e);
    expect(err).toMatchObject({ code: 'CHECKSUM_MISMATCH' });
    expect(isDrawing(tty)).toBe(false);
    expect(tty.text).toContain('snapshot app [');
    const before = tty.text.length;
    (await downloadSnapshot(source(), 'app', path(), { logger: () => {}, terminal: tty })).remove();
    expect(tty.text.slice(before)).toContain(`100% ${SIZE}/${SIZE} verified`);
  });
});
