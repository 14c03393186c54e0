/**
 * AppliedReporter is a candidate's half of `--sync-replicas` (README.md#synchronous-replicas): it tells
 * the primary which positions this replica applied (`POST /v1/replicas/applied`), so a primary that
 * waits for N candidates can answer its writes. Coalesced: one report in flight at a time; when it ends,
 * the newest state goes next if it changed (after an apply or a snapshot install: the store wakes it,
 * no polling). While nothing changes, the same report goes every REPORT_HEARTBEAT_MS, so the primary
 * knows the candidate is alive (it counts a node silent for 3 s as gone).
 */
import { errorFromBody } from '../shared/errors.ts';
import type { CandidatePosition } from '../shared/lease.ts';
import type { Logger } from '../shared/log.ts';
import type { PrimaryClient } from '../shared/primary-client.ts';
import { formatChecksum } from '../shared/types.ts';
import type { ReplicaStore } from './store.ts';

/** REPORT_HEARTBEAT_MS: an unchanged report is sent again this often. */
export const REPORT_HEARTBEAT_MS = 1_000;
export const APPLIED_PATH = '/v1/replicas/applied';

export interface AppliedReporterOptions {
  client: PrimaryClient;
  store: ReplicaStore;
  /** This node's name and advertised URL (`--node-id`, `--advertise`). */
  node: string;
  url: string;
  logger: Logger;
}

export class AppliedReporter {
  readonly #o: AppliedReporterOptions;
  #stopped = false;
  #wakeStop: () => void = () => {};
  readonly #stopping: Promise<void>;
  #loop: Promise<void> | null = null;
  /** Reports the primary took (for tests and logs). */
  sent = 0;
  #failing: string | null = null;

  constructor(o: AppliedReporterOptions) {
    this.#o = o;
    this.#stopping = new Promise((resolve) => (this.#wakeStop = resolve));
  }

  /** positions is this replica's applied state, as the report carries it. */
  positions(): Record<string, CandidatePosition> {
    const out: Record<string, CandidatePosition> = {};
    for (const [name, p] of Object.entries(this.#o.store.positions('*'))) {
      if (p) out[name] = { generation: p.generation, txid: p.txid, checksum: formatChecksum(p.checksum) };
    }
    return out;
  }

  start(): void {
    this.#loop ??= this.#run();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#wakeStop();
    await this.#loop;
  }

  async #run(): Promise<void> {
    let last = '';
    let lastAt = Number.NEGATIVE_INFINITY;
    const state = (): string => JSON.stringify(this.positions());
    while (!this.#stopped) {
      const now = performance.now();
      const cur = state();
      if (cur !== last || now - lastAt >= REPORT_HEARTBEAT_MS) {
        last = cur;
        lastAt = now;
        await this.#send(cur);
        continue;
      }
      const changed = this.#o.store.until(() => state() !== last, REPORT_HEARTBEAT_MS - (now - lastAt));
      await Promise.race([changed, this.#stopping]);
    }
  }

  async #send(positions: string): Promise<void> {
    const { client, node, url, logger } = this.#o;
    const body = `{"node":${JSON.stringify(node)},"url":${JSON.stringify(url)},"positions":${positions}}`;
    try {
      // Beside the stream, not in the forwarding pool: with every forwarding connection busy with writes
      // that wait at the primary for this very report, it would otherwise wait for their timeout.
      const r = await client.forward('POST', APPLIED_PATH, body, {}, { long: true });
      if (r.status !== 200) throw errorFromBody(r.body, r.status);
      this.sent++;
      if (this.#failing !== null) logger({ msg: 'applied reports reach the primary again', primary: client.url });
      this.#failing = null;
    } catch (err) {
      const message = (err as Error).message;
      // Logged once per run of failures (the heartbeat retries every second); the primary counts us gone meanwhile.
      if (this.#failing === null) logger({ msg: 'applied report failed', level: 'warn', primary: client.url, error: message });
      this.#failing = message;
      if (!this.#stopped) await Promise.race([new Promise((r) => setTimeout(r, REPORT_HEARTBEAT_MS).unref?.()), this.#stopping]);
    }
  }
}
