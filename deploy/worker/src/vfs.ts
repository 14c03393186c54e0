/**
 * PageMapVfs is a read-only SQLite VFS for wa-sqlite whose main database file is a page map owned by the
 * Durable Object (PageSource): SQLite reads pages straight from it, and an apply replaces pages in the
 * map between two queries; nothing is reopened.
 *
 * How the file is presented, and why (facts found with wa-sqlite 1.0.0 / SQLite 3.44 in workerd):
 * - Bytes 18–19 of page 1 are presented as 1 (rollback journal): this SQLite has no shared memory for a
 *   WAL index, and a file that says WAL would send it looking for one.
 * - SQLite keeps its page cache across read transactions unless the 16 bytes at offset 24 of page 1
 *   changed. The primary's page 1 does not change on every transaction (its WAL-mode connection keeps
 *   the change counter), so the file change counter (24–27) and version-valid-for (92–95) are presented
 *   as the source's own `version`, which changes on every apply, and the in-header database size (28–31)
 *   as the source's page count.
 * The checksums ignore exactly those bytes (shared/checksum.ts), and only the presented copy is patched:
 * the stored page 1 stays the primary's.
 * Every other file SQLite opens (temporary tables, sorter spill) lives in memory.
 */

/** PageSource is what the VFS reads the database from. Pages are the primary's images. */
export interface PageSource {
  readonly pageSize: number;
  readonly pageCount: number;
  /** Changes whenever any page changes (an apply or a snapshot), so SQLite drops its page cache. */
  readonly version: number;
  /** page returns the image of `pgno` (1..pageCount); a view the VFS only reads. */
  page(pgno: number): Uint8Array;
}

const SQLITE_OK = 0;
const SQLITE_IOERR = 10;
const SQLITE_IOERR_SHORT_READ = 522;
const SQLITE_READONLY = 8;
const SQLITE_CANTOPEN = 14;
const SQLITE_NOTFOUND = 12;
const SQLITE_OPEN_MAIN_DB = 0x100;
const SQLITE_OPEN_READONLY = 0x1;
const SQLITE_OPEN_DELETEONCLOSE = 0x8;

/** MAIN_FILE is the name the replica opens its database under. */
export const MAIN_FILE = 'main.db';

interface MemoryFile {
  data: Uint8Array;
  size: number;
  deleteOnClose: boolean;
  name: string;
}

type OpenFile = { kind: 'main' } | { kind: 'memory'; file: MemoryFile };

/**
 * presentHeader patches `out`, the bytes of page 1 from file offset `fileOffset`, into what SQLite must
 * see: bytes 18–19 = 1, change counter and version-valid-for = `version`, database size = `pageCount`.
 */
export function presentHeader(out: Uint8Array, fileOffset: number, pageCount: number, version: number): void {
  const put = (offset: number, value: number, width: number) => {
    for (let k = 0; k < width; k++) {
      const at = offset + k - fileOffset;
      if (at >= 0 && at < out.length) out[at] = (value >>> (8 * (width - 1 - k))) & 0xff;
    }
  };
  put(18, 1, 1);
  put(19, 1, 1);
  put(24, version, 4);
  put(28, pageCount, 4);
  put(92, version, 4);
}

export class PageMapVfs {
  readonly name: string;
  readonly mxPathName = 64;
  #source: PageSource | null = null;
  readonly #open = new Map<number, OpenFile>();
  readonly #memory = new Map<string, MemoryFile>();
  /** Pages SQLite asked for (for the describe endpoint). */
  pageReads = 0;
  /** Why the last read failed: the VFS can only return an error code, so the cause is kept here. */
  lastError: unknown = null;

  constructor(name: string) {
    this.name = name;
  }

  /** attach sets the page map the main file reads from (null: the file does not exist yet). */
  attach(source: PageSource | null): void {
    this.#source = source;
  }

  xOpen(name: string | null, fileId: number, flags: number, pOutFlags: DataView): number {
    if (flags & SQLITE_OPEN_MAIN_DB) {
      if (name !== MAIN_FILE || !this.#source) return SQLITE_CANTOPEN;
      this.#open.set(fileId, { kind: 'main' });
      pOutFlags.setInt32(0, flags | SQLITE_OPEN_READONLY, true);
      return SQLITE_OK;
    }
    const key = name ?? `temp-${fileId}-${Math.random().toString(36).slice(2)}`;
    let file = this.#memory.get(key);
    if (!file) {
      file = { data: new Uint8Array(0), size: 0, deleteOnClose: (flags & SQLITE_OPEN_DELETEONCLOSE) !== 0 || name === null, name: key };
      this.#memory.set(key, file);
    }
    this.#open.set(fileId, { kind: 'memory', file });
    pOutFlags.setInt32(0, flags, true);
    return SQLITE_OK;
  }

  xClose(fileId: number): number {
    const f = this.#open.get(fileId);
    this.#open.delete(fileId);
    if (f?.kind === 'memory' && f.file.deleteOnClose) this.#memory.delete(f.file.name);
    return SQLITE_OK;
  }

  xRead(fileId: number, pData: Uint8Array, iOffset: number): number {
    const f = this.#open.get(fileId);
    if (!f) return SQLITE_IOERR;
    if (f.kind === 'memory') return readMemory(f.file, pData, iOffset);
    const src = this.#source;
    if (!src) return SQLITE_IOERR;
    const size = src.pageSize;
    const end = Math.min(iOffset + pData.length, src.pageCount * size);
    let at = iOffset;
    try {
      while (at < end) {
        const pgno = Math.floor(at / size) + 1;
        const within = at - (pgno - 1) * size;
        const n = Math.min(size - within, end - at);
        const image = src.page(pgno);
        this.pageReads++;
        const target = pData.subarray(at - iOffset, at - iOffset + n);
        target.set(image.subarray(within, within + n));
        if (pgno === 1) presentHeader(target, within, src.pageCount, src.version);
        at += n;
      }
    } catch (err) {
      this.lastError = err;
      return SQLITE_IOERR;
    }
    if (at < iOffset + pData.length) {
      pData.fill(0, Math.max(0, at - iOffset));
      return SQLITE_IOERR_SHORT_READ;
    }
    return SQLITE_OK;
  }

  xWrite(fileId: number, pData: Uint8Array, iOffset: number): number {
    const f = this.#open.get(fileId);
    if (!f || f.kind === 'main') return SQLITE_READONLY;
    const file = f.file;
    const need = iOffset + pData.length;
    if (need > file.data.length) {
      const grown = new Uint8Array(Math.max(need, file.data.length * 2, 4096));
      grown.set(file.data.subarray(0, file.size));
      file.data = grown;
    }
    file.data.set(pData, iOffset);
    file.size = Math.max(file.size, need);
    return SQLITE_OK;
  }

  xTruncate(fileId: number, iSize: number): number {
    const f = this.#open.get(fileId);
    if (!f || f.kind === 'main') return SQLITE_READONLY;
    f.file.size = Math.min(f.file.size, iSize);
    return SQLITE_OK;
  }

  xSync(): number {
    return SQLITE_OK;
  }

  xFileSize(fileId: number, pSize64: DataView): number {
    const f = this.#open.get(fileId);
    if (!f) return SQLITE_IOERR;
    const size = f.kind === 'memory' ? f.file.size : this.#source ? this.#source.pageCount * this.#source.pageSize : 0;
    pSize64.setBigInt64(0, BigInt(size), true);
    return SQLITE_OK;
  }

  xLock(): number {
    return SQLITE_OK;
  }

  xUnlock(): number {
    return SQLITE_OK;
  }

  xCheckReservedLock(_fileId: number, pResOut: DataView): number {
    pResOut.setInt32(0, 0, true);
    return SQLITE_OK;
  }

  xFileControl(): number {
    return SQLITE_NOTFOUND;
  }

  xSectorSize(): number {
    return 512;
  }

  xDeviceCharacteristics(): number {
    return 0;
  }

  xDelete(name: string): number {
    this.#memory.delete(name);
    return SQLITE_OK;
  }

  /** xAccess: no journal, WAL or other side file of the main database ever exists. */
  xAccess(name: string, _flags: number, pResOut: DataView): number {
    pResOut.setInt32(0, this.#memory.has(name) ? 1 : 0, true);
    return SQLITE_OK;
  }
}

function readMemory(file: MemoryFile, pData: Uint8Array, iOffset: number): number {
  const n = Math.max(0, Math.min(pData.length, file.size - iOffset));
  if (n > 0) pData.set(file.data.subarray(iOffset, iOffset + n));
  if (n < pData.length) {
    pData.fill(0, n);
    return SQLITE_IOERR_SHORT_READ;
  }
  return SQLITE_OK;
}
