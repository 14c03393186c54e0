/**
 * LagSampler keeps the status page's history (README.md#status-page): every `intervalMs` (1 s) it reads
 * each database's lag, the same figures GET /v1/db/{name} answers, and keeps the last `capacity` ticks
 * (600: ten minutes) in a ring, so the chart has history the moment the page opens.
 *
 * Bounded for thousands of databases: a tick keeps one row per database only for the `top` (8) worst
 * ones (highest lag in ms, an unknown lag counting as the worst, then highest lag in txids, then name),
 * plus one aggregate over every database (the largest lag, how many are lagging). Memory is
 * capacity × (top + 1) rows whatever the number of databases; the work per tick is one pass over them.
 * Worker-safe: no Node imports; the timer is unref'd where the runtime has unref.
 */
import { EdgeliteError } from '../errors.ts';

/** UI_SAMPLE_INTERVAL_MS: one tick a second. */
export const UI_SAMPLE_INTERVAL_MS = 1000;
/** UI_SAMPLE_CAPACITY: ten minutes of ticks. */
export const UI_SAMPLE_CAPACITY = 600;
/** UI_TOP_DATABASES: the databases a tick keeps its own row for (the worst ones). */
export const UI_TOP_DATABASES = 8;

/** LagSample is one database's figures at a tick, as GET /v1/db/{name} shows them (null: unknown). */
export interface LagSample {
  name: string;
  txid: number | null;
  /** null: not known (a replica that has heard nothing yet); counts as the worst lag. */
  lagMs: number | null;
  lagTxids: number | null;
  /** The continuous backup's lag (primary with --backup); null where no backup runs. */
  backupLagMs: number | null;
}

/** Row is a kept database's figures at one tick: [lagMs, lagTxids, txid, backupLagMs]. */
type Row = [number | null, number | null, number | null, number | null];

interface Tick {
  /** Wall time of the tick (ms since the epoch). */
  t: number;
  /** How many databases the tick saw. */
  databases: number;
  /** How many had a lag above 0 (or unknown). */
  lagging: number;
  /** The largest lag over every database (null: some lag is unknown, or no database). */
  maxLagMs: number | null;
  maxBackupLagMs: number | null;
  rows: Map<string, Row>;
}

/** SeriesBody is one database's history in GET /v1/ui/samples: one entry per tick, null where not kept. */
export interface SeriesBody {
  lagMs: Array<number | null>;
  lagTxids: Array<number | null>;
  txid: Array<number | null>;
  backupLagMs: Array<number | null>;
}

/** SamplesBody is GET /v1/ui/samples: columns, one entry per tick (uPlot's data layout). */
export interface SamplesBody {
  intervalMs: number;
  capacity: number;
  top: number;
  /** Ticks skipped because reading the databases failed (each logged). */
  failures: number;
  /** Tick times, ms since the epoch, oldest first. */
  t: number[];
  /** Over every database (only for a token that reaches every database): how many, how many lag, the largest lags. */
  all: { databases: number[]; lagging: number[]; maxLagMs: Array<number | null>; maxBackupLagMs: Array<number | null> } | null;
  series: Record<string, SeriesBody>;
}

export interface LagSamplerOptions {
  intervalMs?: number;
  capacity?: number;
  top?: number;
  now?: () => number;
}

export class LagSampler {
  readonly intervalMs: number;
  readonly capacity: number;
  readonly top: number;
  readonly #now: () => number;
  readonly #ring: Array<Tick | undefined>;
  /** Index of the next tick to write; the ring holds min(#count, capacity) ticks. */
  #next = 0;
  #count = 0;
  #timer: ReturnType<typeof setInterval> | null = null;
  #source: (() => Iterable<LagSample>) | null = null;
  #onError: ((err: unknown) => void) | null = null;
  /** failures counts ticks skipped because the source threw (shown in GET /v1/ui/samples). */
  failures = 0;

  constructor(o: LagSamplerOptions = {}) {
    this.intervalMs = positiveInteger(o.intervalMs ?? UI_SAMPLE_INTERVAL_MS, 'intervalMs');
    this.capacity = positiveInteger(o.capacity ?? UI_SAMPLE_CAPACITY, 'capacity');
    this.top = positiveInteger(o.top ?? UI_TOP_DATABASES, 'top');
    this.#now = o.now ?? (() => Date.now());
    this.#ring = new Array<Tick | undefined>(this.capacity);
  }

  /**
   * start samples `source` now and every intervalMs until stop(); a second start replaces the source.
   * A tick whose source throws is skipped and counted, and `onError` hears it (without one, it is
   * rethrown: a test's direct tick() sees it).
   */
  start(source: () => Iterable<LagSample>, onError: ((err: unknown) => void) | null = null): void {
    this.#source = source;
    this.#onError = onError;
    this.#guardedTick();
    if (this.#timer !== null) return;
    // A throw inside a timer would end the process: the timer's ticks report to onError instead.
    this.#timer = setInterval(() => this.#guardedTick(), this.intervalMs);
    (this.#timer as { unref?: () => void }).unref?.();
  }

  stop(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    this.#source = null;
  }

  get running(): boolean {
    return this.#timer !== null;
  }

  /** tick takes one sample of the source now (the timer calls it; a test may call it directly). */
  tick(): void {
    const source = this.#source;
    if (!source) return;
    this.record(source());
  }

  #guardedTick(): void {
    try {
      this.tick();
    } catch (err) {
      this.failures++;
      if (!this.#onError) throw err;
      this.#onError(err);
    }
  }

  /** record keeps one tick made of `samples` (the worst `top` rows and the aggregate). */
  record(samples: Iterable<LagSample>): void {
    const kept: LagSample[] = [];
    let databases = 0;
    let lagging = 0;
    let maxLagMs: number | null = 0;
    let maxBackupLagMs: number | null = null;
    for (const s of samples) {
      databases++;
      if (s.lagMs === null || s.lagMs > 0) lagging++;
      maxLagMs = maxLagMs === null || s.lagMs === null ? null : Math.max(maxLagMs, s.lagMs);
      if (s.backupLagMs !== null) maxBackupLagMs = Math.max(maxBackupLagMs ?? 0, s.backupLagMs);
      keepWorst(kept, s, this.top);
    }
    const rows = new Map<string, Row>();
    for (const s of kept.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) rows.set(s.name, [s.lagMs, s.lagTxids, s.txid, s.backupLagMs]);
    this.#ring[this.#next] = { t: this.#now(), databases, lagging, maxLagMs: databases === 0 ? null : maxLagMs, maxBackupLagMs, rows };
    this.#next = (this.#next + 1) % this.capacity;
    this.#count++;
  }

  /**
   * body is GET /v1/ui/samples: the ticks after `since` (ms; all kept ticks without it), the series of
   * the databases `allows` reaches, and the aggregate only when `everyDatabase` (a tenant-scoped token
   * must not learn about other tenants' databases).
   */
  body(allows: (name: string) => boolean, everyDatabase: boolean, since: number | null = null): SamplesBody {
    const ticks = this.#ticks().filter((k) => since === null || k.t > since);
    const names = new Set<string>();
    for (const k of ticks) for (const n of k.rows.keys()) if (allows(n)) names.add(n);
    const series: Record<string, SeriesBody> = {};
    for (const n of [...names].sort()) {
      const col = (i: number): Array<number | null> => ticks.map((k) => k.rows.get(n)?.[i] ?? null);
      series[n] = { lagMs: col(0), lagTxids: col(1), txid: col(2), backupLagMs: col(3) };
    }
    const all = everyDatabase
      ? { databases: ticks.map((k) => k.databases), lagging: ticks.map((k) => k.lagging), maxLagMs: ticks.map((k) => k.maxLagMs), maxBackupLagMs: ticks.map((k) => k.maxBackupLagMs) }
      : null;
    return { intervalMs: this.intervalMs, capacity: this.capacity, top: this.top, failures: this.failures, t: ticks.map((k) => k.t), all, series };
  }

  /** #ticks lists the kept ticks, oldest first. */
  #ticks(): Tick[] {
    const n = Math.min(this.#count, this.capacity);
    const out: Tick[] = [];
    for (let i = 0; i < n; i++) out.push(this.#ring[(this.#next - n + i + this.capacity) % this.capacity]!);
    return out;
  }
}

/** worse says whether `a` lags more than `b`: unknown lag first, then ms, then txids, then name (stable). */
function worse(a: LagSample, b: LagSample): boolean {
  const am = a.lagMs ?? Number.POSITIVE_INFINITY;
  const bm = b.lagMs ?? Number.POSITIVE_INFINITY;
  if (am !== bm) return am > bm;
  const at = a.lagTxids ?? Number.POSITIVE_INFINITY;
  const bt = b.lagTxids ?? Number.POSITIVE_INFINITY;
  if (at !== bt) return at > bt;
  return a.name < b.name;
}

/** keepWorst inserts `s` into `kept` (worst first, at most `top`), dropping the least bad past the bound. */
function keepWorst(kept: LagSample[], s: LagSample, top: number): void {
  if (kept.length === top && !worse(s, kept[top - 1]!)) return;
  let i = kept.length;
  while (i > 0 && worse(s, kept[i - 1]!)) i--;
  kept.splice(i, 0, s);
  if (kept.length > top) kept.pop();
}

function positiveInteger(n: number, what: string): number {
  if (!Number.isSafeInteger(n) || n <= 0) throw new EdgeliteError('MISCONFIGURED', `LagSampler ${what} must be a positive integer, got ${n}`);
  return n;
}
