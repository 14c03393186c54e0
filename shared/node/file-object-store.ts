/**
 * FileObjectStore: the ObjectStore in a local directory (`file:///dir`), one file per key. A put is
 * atomic and durable: written to a temp file, fsynced, renamed over the key, and the directory fsynced,
 * so a crash leaves either the old object or the whole new one, never a torn one.
 */
import { promises as fsp } from 'node:fs';
import { dirname, join, relative, sep } from 'node:path';
import { Readable } from 'node:stream';
import { EdgeliteError } from '../errors.ts';
import type { ObjectInfo, ObjectStore } from '../object-store.ts';

const TEMP_SUFFIX = '.tmp-upload';
/** STREAM_CHUNK is the piece size getStream reads. */
const STREAM_CHUNK = 1024 * 1024;

export class FileObjectStore implements ObjectStore {
  readonly description: string;
  readonly #dir: string;

  constructor(dir: string) {
    this.#dir = dir;
    this.description = `file://${dir}/`;
  }

  async put(key: string, bytes: Uint8Array): Promise<void> {
    const path = this.#path(key);
    const tmp = `${path}.${process.pid}.${Math.random().toString(36).slice(2)}${TEMP_SUFFIX}`;
    try {
      await fsp.mkdir(dirname(path), { recursive: true });
      const fh = await fsp.open(tmp, 'w');
      try {
        await fh.writeFile(bytes);
        await fh.sync();
      } finally {
        await fh.close();
      }
      await fsp.rename(tmp, path);
      const d = await fsp.open(dirname(path), 'r');
      try {
        await d.sync();
      } finally {
        await d.close();
      }
    } catch (err) {
      await fsp.rm(tmp, { force: true }).catch(() => undefined);
      throw ioError('put', path, err);
    }
  }

  async get(key: string): Promise<Uint8Array | null> {
    const path = this.#path(key);
    try {
      return new Uint8Array(await fsp.readFile(path));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw ioError('get', path, err);
    }
  }

  async getStream(key: string): Promise<ReadableStream<Uint8Array> | null> {
    const path = this.#path(key);
    let fh: fsp.FileHandle;
    try {
      fh = await fsp.open(path, 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw ioError('get', path, err);
    }
    // The stream closes the handle when it ends, fails or is cancelled.
    return Readable.toWeb(fh.createReadStream({ highWaterMark: STREAM_CHUNK })) as ReadableStream<Uint8Array>;
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    const out: ObjectInfo[] = [];
    const walk = async (dir: string): Promise<void> => {
      let entries;
      try {
        entries = await fsp.readdir(dir, { withFileTypes: true });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
        throw ioError('list', dir, err);
      }
      for (const e of entries) {
        const full = join(dir, e.name);
        if (e.isDirectory()) await walk(full);
        else if (e.isFile() && !e.name.endsWith(TEMP_SUFFIX)) {
          const key = relative(this.#dir, full).split(sep).join('/');
          if (key.startsWith(prefix)) out.push({ key, size: (await fsp.stat(full)).size });
        }
      }
    };
    // Only the directories the prefix can be in are walked.
    const slash = prefix.lastIndexOf('/');
    await walk(slash < 0 ? this.#dir : this.#path(prefix.slice(0, slash)));
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async delete(key: string): Promise<void> {
    await fsp.rm(this.#path(key), { force: true }).catch((err: unknown) => {
      throw ioError('delete', this.#path(key), err);
    });
  }

  #path(key: string): string {
    if (key === '' || key.split('/').some((part) => part === '' || part === '.' || part === '..')) {
      throw new EdgeliteError('BAD_REQUEST', `invalid object key "${key}"`);
    }
    return join(this.#dir, ...key.split('/'));
  }
}

function ioError(op: string, path: string, err: unknown): EdgeliteError {
  return new EdgeliteError('IO_ERROR', `${op} ${path}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
}
