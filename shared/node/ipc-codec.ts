/**
 * ipc-codec is what the QueryPool (query-pool.ts) and its SQL processes (sql-process.ts) say to each
 * other, over the child's fd 3, as messages of `u32le length ‖ msgpack body`. Not the stream's frames
 * (shared/frames.ts: big-endian, hashed, replica-facing): a local pipe between two processes of one
 * machine, hence its own names (`encodeIpcMessage`, `IpcMessageDecoder`) so neither is taken for the other.
 *
 *   parent → child  {id, path, statements}          a read
 *                   {id, path, batch, sync}         a batch of writes (group commit, see below)
 *                   {id, commit: true}              go ahead with a prepared batch
 *                   {id: 0, forget: path}           close that file's connections
 *   child → parent  {id: 0, ready: pid} once, then per request
 *                   {id, results} | {id, error}     a read's answer
 *                   {id, done: i}                   batch write i has run (progress, not committed)
 *                   {id, prepared: true}            every write of the batch has run
 *                   {id, outcomes} | {id, error}    the batch's answer, after its commit
 *
 * A batch holds the writes (each a list of statements, each its own transaction to its client) that
 * queued for one database while the previous batch ran: one SQLite transaction for all of them, each
 * inside its own SAVEPOINT, so one write's error rolls back that write only. It runs in two steps so
 * that QUERY_TIMEOUT always means "not applied": the process runs the writes inside BEGIN IMMEDIATE
 * and answers `prepared`; the parent sends `commit` only if the time limit has not passed (otherwise
 * it kills the process, which rolls everything back), and the process commits and answers with one
 * outcome per write. A write SQLite refuses to run inside a transaction (VACUUM) comes back as
 * `{alone: true}` when it shared its batch (the parent sends it again on its own), and runs in one step
 * when alone. A failed COMMIT (a deferred constraint) fails the batch; the parent retries each write
 * of it alone, so the error reaches only the write that caused it.
 */
import { Packr, Unpackr } from 'msgpackr';
import type { ErrorBody } from '../errors.ts';
import type { QueryResult, Statement } from '../protocol.ts';

export const IPC_HEADER_BYTES = 4;
/** The child's end of the channel (stdio index in the parent's `spawn`). */
export const CHANNEL_FD = 3;

export type WriteSync = 'normal' | 'full';

export interface QueryRequest {
  id: number;
  path: string;
  statements: Statement[];
}

export interface WriteRequest {
  id: number;
  path: string;
  batch: Statement[][];
  /** The writer connection's `synchronous`, as the primary's own writer. */
  sync: WriteSync;
}

export interface CommitRequest {
  id: number;
  commit: true;
}

export interface ForgetRequest {
  id: 0;
  forget: string;
}

export type IpcRequest = QueryRequest | WriteRequest | CommitRequest | ForgetRequest;

export type IpcError = ErrorBody['error'];

/** What became of one write of a batch. */
export type SavepointResult = { results: QueryResult[] } | { error: IpcError } | { alone: true };

export type IpcReply =
  | { id: 0; ready: number }
  | { id: number; results: QueryResult[] }
  | { id: number; error: IpcError }
  | { id: number; done: number }
  | { id: number; prepared: true }
  | { id: number; outcomes: SavepointResult[] };

// Records off: every message is a plain object, and both ends must agree without shared state. A
// bigint (a parameter or cell beyond 2^53, README.md#http-api) packs as int64 and must come out as one:
// 'auto' decodes int64 as a number when safe and a bigint otherwise, as the HTTP body decode does.
const packr = new Packr({ useRecords: false });
const unpackr = new Unpackr({ useRecords: false, int64AsType: 'auto' } as unknown as ConstructorParameters<typeof Unpackr>[0]);

/** encodeIpcMessage packs one message with its length prefix. */
export function encodeIpcMessage(message: IpcRequest | IpcReply): Buffer {
  const body = packr.pack(message);
  const out = Buffer.allocUnsafe(IPC_HEADER_BYTES + body.length);
  out.writeUInt32LE(body.length, 0);
  body.copy(out, IPC_HEADER_BYTES);
  return out;
}

/** IpcMessageDecoder reassembles messages from pipe chunks (a pipe splits and merges writes freely). */
export class IpcMessageDecoder {
  #pending: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): unknown[] {
    let buf = this.#pending.length === 0 ? chunk : Buffer.concat([this.#pending, chunk]);
    const out: unknown[] = [];
    while (buf.length >= IPC_HEADER_BYTES) {
      const size = buf.readUInt32LE(0);
      if (buf.length < IPC_HEADER_BYTES + size) break;
      out.push(unpackr.unpack(buf.subarray(IPC_HEADER_BYTES, IPC_HEADER_BYTES + size)));
      buf = buf.subarray(IPC_HEADER_BYTES + size);
    }
    // Copy the leftover, so a retained tail does not pin the whole chunk.
    this.#pending = buf.length === 0 ? Buffer.alloc(0) : Buffer.from(buf);
    return out;
  }
}
