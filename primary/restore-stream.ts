/**
 * The streamed half of a restore (restore.ts): a snapshot object (docs/FORMAT.md, its backup objects
 * section) written to the file as it arrives, its file checksum (Hash64) and the image's database
 * checksum computed on the way, both checked once the last byte is in; and the restored file re-read
 * in pieces for the final check. Memory stays at a piece and a page, not the database's size.
 */
import { fdatasync, readSync, write, writeSync } from 'node:fs';
import { promisify } from 'node:util';
import { corruptObject, decodeSnapshotHead, isSnapshotStart, SNAPSHOT_HEADER_SIZE, SNAPSHOT_TRAILER_SIZE, type SnapshotHead } from '../shared/backup-objects.ts';
import type { SnapshotObject } from '../shared/backup-layout.ts';
import { DatabaseChecksum, Hash64, lockPageNumber } from '../shared/checksum.ts';
import { EdgeliteError } from '../shared/errors.ts';
import type { ObjectStore } from '../shared/object-store.ts';
import { formatChecksum, concatBytes } from '../shared/types.ts';

const writeAsync = promisify(write);
const fdatasyncAsync = promisify(fdatasync);

/** STREAM_IDLE_MS bounds the wait for each piece of a streamed object. */
export const STREAM_IDLE_MS = 30_000;
/** VERIFY_CHUNK is the piece the final check reads (a multiple of every page size). */
const VERIFY_CHUNK = 4 * 1024 * 1024;

/**
 * streamSnapshot writes snapshot `snap`'s image into `fd` (from offset 0) as it arrives and returns its
 * head and checksum, the checksum read back from the file (what was written is what is checked); BACKUP_CORRUPT (the caller drops the file) for any damage. Null when the store
 * cannot stream, or the object does not start like a snapshot (an encrypted one, say): the caller then
 * reads it whole, through the path that knows what to do with it.
 */
export async function streamSnapshot(objects: ObjectStore, snap: SnapshotObject, fd: number, onBytes?: (n: number) => void): Promise<{ head: SnapshotHead; sum: DatabaseChecksum } | null> {
  if (!objects.getStream) return null;
  const body = await objects.getStream(snap.key);
  if (body === null) throw corruptObject(snap.key, 'listed but missing');
  const reader = body.getReader();
  let image: ImageSink | null = null;
  try {
    const read = (): Promise<Uint8Array | null> => readWithin(reader, snap.key);
    // The header first: enough to know the layout, or that this is no plain snapshot.
    let first: Uint8Array = new Uint8Array(0);
    while (first.length < SNAPSHOT_HEADER_SIZE) {
      const piece = await read();
      if (piece === null) break;
      first = concatBytes([first, piece]);
    }
    if (!isSnapshotStart(first)) {
      await reader.cancel();
      return null;
    }
    const head = decodeSnapshotHead(snap.key, first, snap.size);
    image = new ImageSink(fd);
    const imageEnd = SNAPSHOT_HEADER_SIZE + head.pageCount * head.pageSize;
    const hash = new Hash64();
    const trailer = new Uint8Array(SNAPSHOT_TRAILER_SIZE);
    let received = 0;
    for (let piece: Uint8Array | null = first; piece !== null; piece = await read()) {
      onBytes?.(piece.length);
      const start = received;
      received += piece.length;
      if (received > snap.size) throw corruptObject(snap.key, `longer than the ${snap.size} bytes listed`);
      const hashed = piece.subarray(0, Math.max(0, Math.min(piece.length, imageEnd - start)));
      hash.update(hashed);
      const from = Math.max(0, SNAPSHOT_HEADER_SIZE - start);
      if (from < hashed.length) await image.write(hashed.subarray(from), start + from - SNAPSHOT_HEADER_SIZE);
      if (hashed.length < piece.length) trailer.set(piece.subarray(hashed.length), start + hashed.length - imageEnd);
    }
    if (received !== snap.size) throw corruptObject(snap.key, `${received} bytes, listed as ${snap.size} (truncated)`);
    if (hash.digest() !== new DataView(trailer.buffer).getBigUint64(0)) throw corruptObject(snap.key, 'file checksum mismatch');
    await image.finish();
    const sum = fileChecksum(fd, head.pageSize);
    if (sum.value !== head.checksum) throw corruptObject(snap.key, `image checksum ${formatChecksum(sum.value)}, header says ${formatChecksum(head.checksum)}`);
    return { head, sum };
  } catch (err) {
    // The error above is the one reported; cancelling only lets the connection go.
    await reader.cancel(err).catch(() => undefined);
    await image?.abandon();
    throw err;
  }
}

/** readWithin is one read of the stream, UNAVAILABLE if the store sends nothing for STREAM_IDLE_MS or fails. */
async function readWithin(reader: ReadableStreamDefaultReader<Uint8Array>, key: string): Promise<Uint8Array | null> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const idle = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new EdgeliteError('UNAVAILABLE', `GET ${key}: nothing received for ${STREAM_IDLE_MS} ms`)), STREAM_IDLE_MS);
  });
  try {
    const r = await Promise.race([reader.read(), idle]);
    return r.done ? null : r.value;
  } catch (err) {
    if (err instanceof EdgeliteError) throw err;
    throw new EdgeliteError('UNAVAILABLE', `GET ${key}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  } finally {
    clearTimeout(timer);
  }
}

/** WRITE_CHUNK: image bytes are written in pieces of this size, WRITES_IN_FLIGHT at a time, off the main thread. */
const WRITE_CHUNK = 4 * 1024 * 1024;
const WRITES_IN_FLIGHT = 4;
/** SYNC_EVERY: after this many bytes written, an fdatasync starts in the background (one at a time). */
const SYNC_EVERY = 64 * 1024 * 1024;

/**
 * ImageSink takes the image's bytes in order and writes them in WRITE_CHUNK pieces with asynchronous
 * writes (libuv's threads), so the disk works while this thread reads the next bytes off the network.
 * The image's database checksum is computed afterwards, from the file (fileChecksum): what is checked
 * is what was written, and this thread hashes the bytes once on the way (the object's file checksum).
 */
class ImageSink {
  readonly #fd: number;
  #chunk = new Uint8Array(WRITE_CHUNK);
  #chunkAt = 0;
  #chunkUsed = 0;
  readonly #writes: Array<Promise<void>> = [];
  #unsynced = 0;
  #syncing: Promise<void> | null = null;

  constructor(fd: number) {
    this.#fd = fd;
  }

  /** write takes the next bytes of the image (which start at image offset `at`); resolves when it may take more. */
  async write(bytes: Uint8Array, at: number): Promise<void> {
    for (let i = 0; i < bytes.length; ) {
      if (this.#chunkUsed === 0) this.#chunkAt = at + i;
      const n = Math.min(WRITE_CHUNK - this.#chunkUsed, bytes.length - i);
      this.#chunk.set(bytes.subarray(i, i + n), this.#chunkUsed);
      this.#chunkUsed += n;
      i += n;
      if (this.#chunkUsed === WRITE_CHUNK) await this.#flush();
    }
  }

  async #flush(): Promise<void> {
    if (this.#chunkUsed === 0) return;
    const data = this.#chunk.subarray(0, this.#chunkUsed);
    const position = this.#chunkAt;
    const written = writeAllAsync(this.#fd, data, position);
    // Awaited below or in finish/abandon; marked handled now so a failure before then is not "unhandled".
    written.catch(() => undefined);
    this.#writes.push(written);
    this.#chunk = new Uint8Array(WRITE_CHUNK);
    this.#chunkUsed = 0;
    this.#unsynced += data.length;
    if (this.#writes.length >= WRITES_IN_FLIGHT) await this.#writes.shift();
    // Start writeback while the download goes on, so the final fsync has little left to do.
    if (this.#unsynced >= SYNC_EVERY && this.#syncing === null) {
      this.#unsynced = 0;
      const synced = fdatasyncAsync(this.#fd).finally(() => (this.#syncing = null));
      synced.catch(() => undefined);
      this.#syncing = synced;
    }
  }

  /** finish writes what is left and waits for every write. */
  async finish(): Promise<void> {
    await this.#flush();
    await Promise.all(this.#writes.splice(0));
    await this.#syncing;
  }

  /** abandon waits for the writes in flight (their errors are the caller's error's consequence). */
  async abandon(): Promise<void> {
    await Promise.allSettled([...this.#writes.splice(0), this.#syncing]);
  }
}

async function writeAllAsync(fd: number, data: Uint8Array, position: number): Promise<void> {
  for (let done = 0; done < data.length; ) {
    const { bytesWritten } = await writeAsync(fd, data, done, data.length - done, position + done);
    done += bytesWritten;
  }
}

/** fileChecksum re-reads a restored file in pieces and returns its database checksum. */
export function fileChecksum(fd: number, pageSize: number): DatabaseChecksum {
  const buf = new Uint8Array(VERIFY_CHUNK);
  const lockPage = lockPageNumber(pageSize);
  const sum = new DatabaseChecksum(pageSize);
  let pgno = 1;
  for (let pos = 0; ; ) {
    let n = 0;
    for (let r = -1; r !== 0 && n < buf.length; n += r) r = readSync(fd, buf, n, buf.length - n, pos + n);
    if (n % pageSize !== 0) throw new EdgeliteError('CHECKSUM_MISMATCH', `restored file is not a whole number of ${pageSize}-byte pages`);
    for (let off = 0; off < n; off += pageSize, pgno++) if (pgno !== lockPage) sum.setPage(pgno, buf.subarray(off, off + pageSize));
    if (n < buf.length) break;
    pos += n;
  }
  sum.truncate(pgno - 1);
  return sum;
}

export function writeAll(fd: number, data: Uint8Array, position: number): void {
  let done = 0;
  while (done < data.length) done += writeSync(fd, data, done, data.length - done, position + done);
}

