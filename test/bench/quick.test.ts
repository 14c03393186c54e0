/**
 * Runs `npm run bench -- --quick` as a child process so the benchmark harness cannot rot: every
 * scenario P1..P9 must run and print its row with a numeric figure. It never judges a figure against
 * its goal (timing belongs to docs/BENCHMARKS.md, not to CI).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers.ts';
import { runProcess, type ProcessResult } from '../kit/spawn.ts';
import { renderMarkdown, renderText } from './report.ts';
import type { Row } from './scenarios/common.ts';
import { median, percentile, REPO_ROOT, summarize } from './scenarios/common.ts';
import { deltaBytes } from './scenarios/p8-wire.ts';

const SCENARIOS = ['P1', 'P2', 'P3', 'P4', 'P5', 'P6', 'P7', 'P8', 'P9', 'P10', 'P11', 'P12'];

/** QUICK_TIMEOUT_MS: the whole quick run, under the test's own timeout so its output is shown. */
const QUICK_TIMEOUT_MS = 540_000;

function runQuick(jsonFile: string): Promise<ProcessResult> {
  return runProcess(process.execPath, [join(REPO_ROOT, 'bin', 'run-ts.mjs'), join(REPO_ROOT, 'test', 'bench', 'run.ts'), '--quick', '--json', jsonFile], '', QUICK_TIMEOUT_MS);
}

describe('benchmark helpers', () => {
  it('computes nearest-rank percentiles and medians', () => {
    const xs = Array.from({ length: 100 }, (_, i) => 100 - i); // 100..1, unsorted
    const s = summarize(xs);
    expect([s.n, s.p50, s.p99, s.max, s.mean]).toEqual([100, 50, 99, 100, 50.5]);
    expect(percentile([], 50)).toBeNaN();
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([Number.NaN, 5])).toBe(5);
  });

  it('sizes a byte-run delta: one run per change, close runs merged', () => {
    const before = new Uint8Array(4096);
    expect(deltaBytes(before, before)).toBe(0);
    const one = before.slice();
    one.fill(7, 100, 110);
    expect(deltaBytes(before, one)).toBe(4 + 10);
    const two = one.slice();
    two.fill(7, 2000, 2001);
    expect(deltaBytes(before, two)).toBe(4 + 10 + 4 + 1);
    const near = one.slice();
    near.fill(7, 113, 115); // 3 equal bytes after the first run: merged into it
    expect(deltaBytes(before, near)).toBe(4 + 15);
  });

  it('renders every row with its verdict, in text and Markdown', () => {
    const row = (id: string, met: boolean | null): Row => ({
      id, scenario: `scenario ${id}`, unit: 'ms', edgelite: 1.5, baseline: null, baselineLabel: '', ratio: null, goal: '≤ 1 ms', met, notes: [`note ${id}`],
    });
    const rows = [row('P1', false), row('P2', true), row('P3', null)];
    const text = renderText(rows);
    expect(text).toMatch(/^P1 .*NO$/m);
    expect(text).toMatch(/^P2 .*yes$/m);
    expect(text).toContain('P3: note P3');
    expect(renderMarkdown(rows)).toContain('| P1 | scenario P1 | 1.5 ms | — | — | ≤ 1 ms | NO |');
  });
});

describe('npm run bench -- --quick', () => {
  const cleanups: Array<() => void> = [];
  afterEach(() => cleanups.splice(0).forEach((c) => c()));

  it('runs every scenario and prints a numeric row for each', async () => {
    const t = tempDir('bench-quick');
    cleanups.push(t.cleanup);
    const json = join(t.dir, 'result.json');
    const { code, stdout, stderr } = await runQuick(json);
    expect(code, `${stdout}\n${stderr}`).toBe(0);

    const result = JSON.parse(readFileSync(json, 'utf8')) as { rows: Row[]; failed: string[] };
    expect(result.failed).toEqual([]);
    for (const id of SCENARIOS) {
      const rows = result.rows.filter((r) => r.id === id);
      expect(rows.length, `row ${id}`).toBeGreaterThan(0);
      for (const r of rows) {
        expect(Number.isFinite(r.edgelite), `${id} ${r.scenario}: edgelite figure ${r.edgelite}`).toBe(true);
        // A baseline is a number, or absent by design (P6) or because PostgreSQL is not installed.
        if (r.baseline !== null) expect(Number.isFinite(r.baseline), `${id} baseline`).toBe(true);
        expect(r.goal.length).toBeGreaterThan(0);
      }
      // The printed table has the row too.
      expect(stdout).toMatch(new RegExp(`^${id}\\s{2,}\\S`, 'm'));
    }
  }, 600_000);
});
