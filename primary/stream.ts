/**
 * The replication stream (docs/ARCHITECTURE.md#the-stream-protocol): a replica posts its positions, the primary answers with a
 * never-ending body of frames. Per database a subscription is either catching up (reading the durable
 * log in bounded batches, paced by the client's reads) or live (fed by the hub the moment a change set
 * is captured, the same encoded bytes for every subscriber). A live subscriber that falls behind its
 * socket is moved back to catching up, so a slow replica costs the primary log reads, not memory.
 */
import { readChangeSetHeader } from '../shared/changeset.ts';
import { EdgeliteError } from '../shared/errors.ts';
import { compilePatterns, type DatabaseMatcher, isPattern } from '../shared/db-pattern.ts';
import { encodeFrame, type Frame } from '../shared/frames.ts';
import type { StreamRequest } from '../shared/protocol.ts';
import type { Position } from '../shared/types.ts';
import type { Captured } from './capture.ts';
import type { PrimaryDatabase } from './database.ts';

/** CATCH_UP_BATCH_BYTES bounds one log read while catching up. */
const CATCH_UP_BATCH_BYTES = 1024 * 1024;
/** MAX_BUFFERED_BYTES: a live subscriber with more than this unread is demoted to catching up. */
const MAX_BUFFERED_BYTES = 8 * 1024 * 1024;
export const HEARTBEAT_INTERVAL_MS = 1000;

/**
 * StreamSource is the store as the stream sees it: `info` without opening a database (positions,
 * heartbeats), `get` opening it when its log must be read (a subscriber that is behind).
 */
export interface StreamSource {
  info(name: string): StreamDbInfo | undefined;
  get(name: string): PrimaryDatabase | undefined;
  names(): string[];
}

/** What the stream needs of a database it does not read the log of (the store's DbInfo). */
export interface StreamDbInfo {
  readonly position: Position;
  readonly lastCommitTime: number;
}

interface DbCursor {
  mode: 'catch-up' | 'live' | 'snapshot';
  generation: number;
  txid: number;
}

/**
 * resumeProblem is the resume rule (docs/ARCHITECTURE.md#the-stream-protocol): why a replica at `pos`
 * cannot continue from the primary's log, or null when it can.
 */
export function resumeProblem(db: StreamDbInfo, pos: Position, open: () => PrimaryDatabase | undefined = () => db as PrimaryDatabase): string | null {
  const cur = db.position;
  if (pos.generation !== cur.generation) return `generation ${pos.generation} is not the current ${cur.generation}`;
  if (pos.txid > cur.txid) return `txid ${pos.txid} is ahead of the primary (${cur.txid})`;
  if (pos.txid === cur.txid) return pos.checksum === cur.checksum ? null : 'checksum differs at the current txid';
  // Behind: only the log can say whether it resumes (this opens a closed database).
  const opened = open();
  if (!opened) return 'database is gone';
  const recs = opened.log.iterateSince(pos.generation, pos.txid, 1);
  if (!recs || recs.length === 0) return `txid ${pos.txid} is outside the retained log`;
  const pre = readChangeSetHeader(recs[0]!.payload).preChecksum;
  return pre === pos.checksum ? null : `checksum differs at txid ${pos.txid}`;
}

/** StreamHub fans captured change sets out to every live subscription. */
export class StreamHub {
  readonly #subs = new Set<Subscription>();

  get size(): number {
    return this.#subs.size;
  }

  /** deltaSubscribers counts subscriptions that asked for delta change sets. */
  get deltaSubscribers(): number {
    let n = 0;
    for (const s of this.#subs) if (s.deltas) n++;
    return n;
  }

  /** publish encodes each form of a change set at most once and writes the same bytes to every subscriber. */
  publish(c: Captured): void {
    if (this.#subs.size === 0) return;
    let full: Uint8Array | null = null;
    let delta: Uint8Array | null = null;
    const frame = (wantDelta: boolean): Uint8Array => {
      if (wantDelta && c.deltaBytes) return (delta ??= encodeFrame({ type: 'changeset', db: c.db, data: c.deltaBytes }));
      return (full ??= encodeFrame({ type: 'changeset', db: c.db, data: c.bytes }));
    };
    for (const s of this.#subs) s.offer(c, frame);
  }

  /** publishEvent tells every subscription about a database event (created, dropped, new generation). */
  publishEvent(db: string, event: 'created' | 'dropped' | 'generation'): void {
    for (const s of this.#subs) s.event(db, event);
  }

  add(s: Subscription): void {
    this.#subs.add(s);
  }

  delete(s: Subscription): void {
    this.#subs.delete(s);
  }
}

/** SubscribeRequest is a parsed stream request (shared/protocol.ts, where its JSON shape is documented). */
export type SubscribeRequest = StreamRequest;

/** Subscription is one replica's stream. Its body is `stream`. */
export class Subscription {
  readonly stream: ReadableStream<Uint8Array>;
  readonly #source: StreamSource;
  readonly #hub: StreamHub;
  /** Which databases the stream carries: a database created later that matches joins it. */
  readonly #wanted: DatabaseMatcher;
  readonly deltas: boolean;
  readonly #dbs = new Map<string, DbCursor>();
  /**
   * The databases in `catch-up` mode, in the order they entered it: what #pump walks. Walking all of
   * `#dbs` instead made every pull O(databases), and a stream of 10,000 quadratic (#setMode keeps it).
   */
  readonly #catchingUp = new Set<string>();
  #controller!: ReadableStreamDefaultController<Uint8Array>;
  #heartbeat: ReturnType<typeof setInterval> | undefined;
  #closed = false;

  /**
   * `limit` narrows the request to what its token may see (a tenant-scoped replicate token,
   * README.md#tenant-scoped-tokens); the caller has already refused a listed name outside it.
   */
  constructor(source: StreamSource, hub: StreamHub, req: SubscribeRequest, limit: DatabaseMatcher = () => true) {
    this.#source = source;
    this.#hub = hub;
    const asked = req.databases === '*' ? () => true : compilePatterns(req.databases);
    this.#wanted = (name) => asked(name) && limit(name);
    this.deltas = req.deltas;
    // Listed names are opened even when absent (they are reported and join once created); patterns match what exists.
    const listed = req.databases === '*' ? [] : req.databases.filter((e) => !isPattern(e) && limit(e));
    const names = [...new Set([...listed, ...source.names().filter(this.#wanted)])];
    this.stream = new ReadableStream<Uint8Array>(
      {
        start: (controller) => {
          this.#controller = controller;
          for (const name of names) this.#open(name, req.positions[name] ?? null);
          hub.add(this);
          this.#heartbeat = setInterval(() => this.#sendHeartbeat(), HEARTBEAT_INTERVAL_MS);
          this.#sendHeartbeat();
        },
        pull: () => this.#pump(),
        cancel: () => this.close(),
      },
      { highWaterMark: CATCH_UP_BATCH_BYTES, size: (chunk) => chunk.byteLength },
    );
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#heartbeat);
    this.#hub.delete(this);
  }

  /** #open decides, for one database, whether the replica can resume from its position. */
  #open(name: string, pos: Position | null): void {
    const db = this.#source.info(name);
    if (!db) {
      // Not an error for the whole stream: the database joins it when it is created (db-created).
      this.#send({ type: 'error', code: 'DATABASE_NOT_FOUND', message: `database ${name} does not exist yet; it will follow once created` });
      return;
    }
    const reason = pos ? resumeProblem(db, pos, () => this.#source.get(name)) : 'replica has no position';
    if (reason) {
      this.#dbs.set(name, { mode: 'snapshot', generation: db.position.generation, txid: db.position.txid });
      this.#catchingUp.delete(name);
      this.#send({ type: 'snapshot-needed', db: name, reason });
      return;
    }
    const cur: DbCursor = { mode: 'catch-up', generation: pos!.generation, txid: pos!.txid };
    this.#dbs.set(name, cur);
    this.#setMode(name, cur, 'catch-up');
  }

  /** #setMode moves one database's cursor to `mode`, keeping #catchingUp in step. */
  #setMode(name: string, cur: DbCursor, mode: DbCursor['mode']): void {
    cur.mode = mode;
    if (mode === 'catch-up') this.#catchingUp.add(name);
    else this.#catchingUp.delete(name);
  }

  /** #pump sends one batch of catch-up for every database still catching up. */
  #pump(): void {
    for (const name of this.#catchingUp) {
      const cur = this.#dbs.get(name);
      if (!cur || cur.mode !== 'catch-up') {
        this.#catchingUp.delete(name);
        continue;
      }
      if (this.#closed) return;
      if ((this.#controller.desiredSize ?? 0) <= 0) return;
      const info = this.#source.info(name);
      if (!info) continue;
      if (cur.generation === info.position.generation && cur.txid === info.position.txid) {
        // Nothing to read from the log (it may hold nothing of this generation yet): go live.
        this.#setMode(name, cur, 'live');
        this.#send({ type: 'ready', db: name });
        continue;
      }
      const db = this.#source.get(name); // behind: its log is read (a closed database opens)
      if (!db) continue;
      const recs = db.log.iterateSince(cur.generation, cur.txid, CATCH_UP_BATCH_BYTES);
      if (recs === null) {
        this.#setMode(name, cur, 'snapshot');
        this.#send({ type: 'snapshot-needed', db: name, reason: `txid ${cur.txid} left the retained log while catching up` });
        continue;
      }
      for (const r of recs) {
        this.#send({ type: 'changeset', db: name, data: r.payload });
        cur.txid = r.maxTxid;
      }
      if (recs.length === 0 || cur.txid === db.position.txid) {
        // Caught up: from here on the hub feeds this database, in the same tick as the last log read.
        this.#setMode(name, cur, 'live');
        this.#send({ type: 'ready', db: name });
      }
    }
  }

  /** offer is called by the hub for every captured change set. */
  offer(c: Captured, frameFor: (delta: boolean) => Uint8Array): void {
    const cur = this.#dbs.get(c.db);
    if (!cur || cur.mode !== 'live' || this.#closed) return;
    if (c.generation !== cur.generation || c.minTxid !== cur.txid + 1 ||
        (this.#controller.desiredSize ?? 0) < -MAX_BUFFERED_BYTES) {
      // Out of step or too far behind its socket: read the rest from the log, paced by the client.
      this.#setMode(c.db, cur, 'catch-up');
      queueMicrotask(() => this.#pump());
      return;
    }
    this.#enqueue(frameFor(this.deltas));
    cur.txid = c.maxTxid;
  }

  event(name: string, event: 'created' | 'dropped' | 'generation'): void {
    if (this.#closed) return;
    if (event === 'created') {
      if (!this.#wanted(name) || this.#dbs.has(name)) return;
      this.#send({ type: 'db-created', db: name });
      this.#open(name, null);
    } else if (event === 'dropped') {
      this.#catchingUp.delete(name);
      if (!this.#dbs.delete(name)) return;
      this.#send({ type: 'db-dropped', db: name });
    } else {
      const cur = this.#dbs.get(name);
      const db = this.#source.info(name);
      if (!cur || !db) return;
      this.#setMode(name, cur, 'snapshot');
      this.#send({ type: 'new-generation', db: name, generation: db.position.generation, txid: db.position.txid });
    }
  }

  /** #sendHeartbeat sends the heartbeat frame (its shape: StreamRequest in shared/protocol.ts, Frame in frames.ts). */
  #sendHeartbeat(): void {
    const positions: Record<string, { generation: number; txid: number; timestamp: number }> = {};
    for (const name of this.#dbs.keys()) {
      const db = this.#source.info(name);
      if (db) positions[name] = { generation: db.position.generation, txid: db.position.txid, timestamp: db.lastCommitTime };
    }
    this.#send({ type: 'heartbeat', time: Date.now(), positions });
    this.#pump();
  }

  #send(frame: Frame): void {
    this.#enqueue(encodeFrame(frame));
  }

  #enqueue(bytes: Uint8Array): void {
    if (this.#closed) return;
    try {
      this.#controller.enqueue(bytes);
    } catch (err) {
      // The stream was closed or errored by the client side: stop feeding it.
      this.close();
      if (!(err instanceof TypeError)) throw new EdgeliteError('INTERNAL', 'stream enqueue failed', { cause: err });
    }
  }
}
