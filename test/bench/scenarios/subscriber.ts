/**
 * StreamSubscriber is a bare replication-stream reader for the fan-out and wire-size scenarios: it
 * posts a position to /v1/stream (node:http, one connection each), decodes frames with the project's
 * FrameDecoder (length, hash and msgpack all checked), and for every change-set frame records its
 * arrival lag (arrival time − the primary's commit timestamp in the change-set header), its size on
 * the stream (frame header + body, as scanned from the bytes received) and its last txid. It applies
 * nothing: it stands in for a replica's network side, not its SQLite side.
 */
import { request, type ClientRequest, type IncomingMessage } from 'node:http';
import { performance } from 'node:perf_hooks';
import { FLAG_DELTA, readHeaderWithFlags } from '../../../shared/changeset-format.ts';
import { FRAME_HEADER_BYTES, FrameDecoder } from '../../../shared/frames.ts';
import type { PositionJSON } from '../../../shared/types.ts';

export interface ChangeSetArrival {
  maxTxid: number;
  /** Frame bytes on the stream (8-byte frame header + msgpack body). */
  frameBytes: number;
  /** The encoded change set inside the frame. */
  data: Uint8Array;
  lagMs: number;
}

export class StreamSubscriber {
  lastTxid = 0;
  readonly #decoder = new FrameDecoder();
  readonly #sizes: number[] = [];
  #lengthBytes = 0;
  #lengthValue = 0;
  #skip = 0;
  #req: ClientRequest | null = null;
  #res: IncomingMessage | null = null;
  #onChangeSet: (a: ChangeSetArrival) => void;
  #failure: Error | null = null;

  private constructor(onChangeSet: (a: ChangeSetArrival) => void) {
    this.#onChangeSet = onChangeSet;
  }

  get failure(): Error | null {
    return this.#failure;
  }

  /** open subscribes to `db` from `position` and resolves once the primary says it is live ('ready'). */
  static open(baseUrl: string, db: string, position: PositionJSON, onChangeSet: (a: ChangeSetArrival) => void, deltas = false): Promise<StreamSubscriber> {
    const sub = new StreamSubscriber(onChangeSet);
    const u = new URL('/v1/stream', baseUrl);
    // `deltas`: ask for delta change sets on the live tail, as the Node replica does.
    const body = JSON.stringify({ databases: [db], positions: { [db]: position }, deltas });
    return new Promise<StreamSubscriber>((resolve, reject) => {
      const req = request(
        { host: u.hostname, port: u.port, path: u.pathname, method: 'POST', agent: false, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } },
        (res) => {
          sub.#res = res;
          if (res.statusCode !== 200) {
            reject(new Error(`stream answered ${res.statusCode}`));
            res.resume();
            return;
          }
          let ready = false;
          res.on('data', (chunk: Buffer) => {
            const arrived = performance.timeOrigin + performance.now();
            try {
              sub.#scanSizes(chunk);
              for (const f of sub.#decoder.push(chunk)) {
                const size = sub.#sizes.shift()!;
                if (f.type === 'changeset') {
                  const h = readHeaderWithFlags(f.data, FLAG_DELTA);
                  sub.lastTxid = h.maxTxid;
                  sub.#onChangeSet({ maxTxid: h.maxTxid, frameBytes: size, data: f.data, lagMs: arrived - h.timestamp });
                } else if (f.type === 'ready' && !ready) {
                  ready = true;
                  resolve(sub);
                } else if (f.type === 'snapshot-needed' || f.type === 'error' || f.type === 'new-generation') {
                  throw new Error(`stream sent ${f.type}: ${JSON.stringify(f)}`);
                }
              }
            } catch (err) {
              sub.#failure = err as Error;
              reject(err);
              sub.close();
            }
          });
          res.on('error', (err) => {
            sub.#failure ??= err;
            reject(err);
          });
        },
      );
      sub.#req = req;
      req.on('error', (err) => {
        sub.#failure ??= err;
        reject(err);
      });
      req.end(body);
    });
  }

  /** #scanSizes walks the length prefixes so each decoded frame can be matched with its byte count. */
  #scanSizes(chunk: Uint8Array): void {
    let i = 0;
    while (i < chunk.length) {
      if (this.#skip > 0) {
        const k = Math.min(this.#skip, chunk.length - i);
        i += k;
        this.#skip -= k;
        continue;
      }
      this.#lengthValue = this.#lengthValue * 256 + chunk[i]!;
      this.#lengthBytes++;
      i++;
      if (this.#lengthBytes === 4) {
        const size = FRAME_HEADER_BYTES + this.#lengthValue;
        this.#sizes.push(size);
        this.#skip = size - 4;
        this.#lengthBytes = 0;
        this.#lengthValue = 0;
      }
    }
  }

  close(): void {
    this.#res?.destroy();
    this.#req?.destroy();
  }
}
