/**
 * The result table: one line per figure (scenario, edgelite, baseline, ratio, goal, met), printed as
 * aligned text for the terminal and as Markdown for docs/BENCHMARKS.md, followed by each row's notes.
 * `ratio` is oriented so that higher is better for edgelite (throughput: edgelite ÷ baseline; latency
 * and bytes: baseline ÷ edgelite).
 */
import { fmt, type Row } from './scenarios/common.ts';

export interface MachineInfo {
  cpus: string;
  memory: string;
  node: string;
  sqlite: string;
  postgres: string;
  kernel: string;
  /** 1-minute load average before and after the run: anything else running skews every figure. */
  load: string;
}

const HEADERS = ['', 'scenario', 'edgelite', 'baseline', 'ratio', 'goal', 'met'];

function cells(r: Row): string[] {
  const unit = r.unit ? ` ${r.unit}` : '';
  return [
    r.id,
    r.scenario,
    r.edgelite === null ? 'n/a' : `${fmt(r.edgelite)}${unit}`,
    r.baseline === null ? '—' : `${fmt(r.baseline)}${unit} (${r.baselineLabel})`,
    r.ratio === null || !Number.isFinite(r.ratio) ? '—' : `${fmt(r.ratio)}×`,
    r.goal,
    r.met === null ? '—' : r.met ? 'yes' : 'NO',
  ];
}

/** renderText is the terminal table with notes under it. */
export function renderText(rows: Row[]): string {
  const table = [HEADERS, ...rows.map(cells)];
  const widths = HEADERS.map((_, i) => Math.max(...table.map((line) => line[i]!.length)));
  const line = (c: string[]) => c.map((v, i) => v.padEnd(widths[i]!)).join('  ').trimEnd();
  const out = [line(table[0]!), widths.map((w) => '-'.repeat(w)).join('  '), ...table.slice(1).map(line)];
  return `${out.join('\n')}\n\n${renderNotes(rows, '  ')}`;
}

/** renderMarkdown is the same table as Markdown, for docs/BENCHMARKS.md. */
export function renderMarkdown(rows: Row[]): string {
  const esc = (s: string) => s.replace(/\|/g, '\\|');
  const out = [`| ${HEADERS.map(esc).join(' | ')} |`, `|${HEADERS.map(() => '---').join('|')}|`];
  for (const r of rows) out.push(`| ${cells(r).map(esc).join(' | ')} |`);
  return `${out.join('\n')}\n\n${renderNotes(rows, '- ')}`;
}

function renderNotes(rows: Row[], bullet: string): string {
  const out: string[] = [];
  for (const r of rows) for (const n of r.notes) out.push(`${bullet}${r.id}: ${n}`);
  return out.length ? `${out.join('\n')}\n` : '';
}

export function renderMachine(m: MachineInfo): string {
  return [`CPU: ${m.cpus}`, `memory: ${m.memory}`, `kernel: ${m.kernel}`, `Node ${m.node}, SQLite ${m.sqlite} (better-sqlite3), ${m.postgres}`, `load average (1 min) before/after: ${m.load}`].join('\n');
}
