/**
 * The follower core's snapshot queue (shared/follower-snapshots.ts): real promises released by the test,
 * so what runs when is exact: never more than `concurrency` at once, first asked first served, one job
 * per database, a failure reported and its slot reused, cancel() dropping queued jobs and aborting
 * running ones and resolving only once they settled.
 */
import { describe, expect, it } from 'vitest';
import { SnapshotQueue } from '../../shared/follower-snapshots.ts';

/** Jobs records every run() and lets the test end each one (resolve, reject) or watch its signal. */
class Jobs {
  readonly started: string[] = [];
  readonly done: Array<{ db: string; err: unknown }> = [];
  readonly #pending = new Map<string, { resolve: () => void; reject: (err: unknown) => void; signal: AbortSignal }>();

  run = (db: string, _reason: string, signal: AbortSignal): Promise<void> => {
    this.started.push(db);
    return new Promise<void>((resolve, reject) => {
      this.#pending.set(db, { resolve, reject, signal });
      // An aborted download ends with the abort's reason, as the ports' downloads do.
      signal.addEventListener('abort', () => reject(signal.reason), { once: true });
    });
  };

  finish(db: string, err?: Error): void {
    const p = this.#pending.get(db);
    if (!p) throw new Error(`${db} is not running`);
    this.#pending.delete(db);
    if (err) p.reject(err);
    else p.resolve();
  }

  signal(db: string): AbortSignal {
    return this.#pending.get(db)!.signal;
  }
}

const tick = () => new Promise((r) => setTimeout(r, 0));

function queue(concurrency: number) {
  const jobs = new Jobs();
  const q = new SnapshotQueue({ concurrency, run: jobs.run, done: (db, err) => jobs.done.push({ db, err }) });
  return { q, jobs };
}

describe('SnapshotQueue', () => {
  it('runs at most `concurrency` at once, first asked first served, each freed slot taken by the next', async () => {
    const { q, jobs } = queue(3);
    for (const db of ['a', 'b', 'c', 'd', 'e', 'f', 'g']) expect(q.add(db, 'bootstrap')).toBe(true);
    await tick();
    expect(jobs.started).toEqual(['a', 'b', 'c']);
    expect([q.running, q.queued, q.idle]).toEqual([3, 4, false]);
    jobs.finish('b');
    await tick();
    expect(jobs.started).toEqual(['a', 'b', 'c', 'd']);
    for (const db of ['a', 'c', 'd', 'e', 'f', 'g']) {
      await tick();
      jobs.finish(db);
    }
    await tick();
    expect(jobs.done.map((d) => d.db).sort()).toEqual(['a', 'b', 'c', 'd', 'e', 'f', 'g']);
    expect(jobs.done.every((d) => d.err === null)).toBe(true);
    expect([q.running, q.queued, q.idle, q.maxRunning]).toEqual([0, 0, true, 3]);
  });

  it('one job per database: asking again while queued or running is a no-op; after it ended, a new job', async () => {
    const { q, jobs } = queue(1);
    expect(q.add('a', 'first')).toBe(true);
    expect(q.add('b', 'first')).toBe(true);
    expect(q.add('a', 'again')).toBe(false); // running
    expect(q.add('b', 'again')).toBe(false); // queued
    await tick();
    jobs.finish('a');
    await tick();
    expect(q.has('a')).toBe(false);
    expect(q.add('a', 'third')).toBe(true);
    jobs.finish('b');
    await tick();
    jobs.finish('a');
    await tick();
    expect(jobs.started).toEqual(['a', 'b', 'a']);
  });

  it('reports a failure with its error and goes on with the next job', async () => {
    const { q, jobs } = queue(1);
    q.add('a', 'x');
    q.add('b', 'x');
    await tick();
    const boom = new Error('disk full');
    jobs.finish('a', boom);
    await tick();
    expect(jobs.done).toEqual([{ db: 'a', err: boom }]);
    expect(jobs.started).toEqual(['a', 'b']);
  });

  it('a run() that throws synchronously is a failure, not an exception out of add()', async () => {
    const done: Array<{ db: string; err: unknown }> = [];
    const q = new SnapshotQueue({ concurrency: 2, run: () => { throw new Error('sync'); }, done: (db, err) => done.push({ db, err }) });
    expect(q.add('a', 'x')).toBe(true);
    await tick();
    expect(done.map((d) => [d.db, (d.err as Error).message])).toEqual([['a', 'sync']]);
    expect(q.idle).toBe(true);
  });

  it('cancel drops queued jobs, aborts running ones, resolves once they settled, and never reports them as done', async () => {
    const { q, jobs } = queue(2);
    for (const db of ['a', 'b', 'c', 'd']) q.add(db, 'x');
    await tick();
    let cancelled = false;
    const cut = q.cancel((db) => db === 'a' || db === 'c', 'no longer followed').then(() => (cancelled = true));
    expect(jobs.signal('a').aborted).toBe(true);
    expect(String((jobs.signal('a').reason as Error).message)).toMatch(/snapshot of a cancelled: no longer followed/);
    expect(jobs.signal('b').aborted).toBe(false);
    expect(q.has('a') || q.has('c')).toBe(false);
    // A new request for a cancelled database while its old download still settles is a new job.
    expect(q.add('a', 'again')).toBe(true);
    await cut;
    expect(cancelled).toBe(true);
    await tick();
    expect(jobs.done).toEqual([]);
    jobs.finish('b');
    await tick();
    await tick();
    expect(jobs.started).toEqual(['a', 'b', 'd', 'a']); // c never ran
    expect(q.maxRunning).toBeLessThanOrEqual(2);
  });

  it('refuses a concurrency that is not a whole number ≥ 1', () => {
    for (const concurrency of [0, -1, 1.5, Number.NaN]) {
      expect(() => new SnapshotQueue({ concurrency, run: async () => {}, done: () => {} })).toThrow(/whole number ≥ 1/);
    }
  });
});
