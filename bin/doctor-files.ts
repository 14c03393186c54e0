/**
 * `edgelite doctor --fix DIR` (README.md#integrity): writes the migrations doctor's findings propose as
 * files named the way `edgelite migrate` reads them (`NNNN_name.sql`, numbered on from the highest
 * number already in DIR). It only writes files: nothing runs them. A fix already in DIR with the same
 * text (an earlier `--fix`) is not written again.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { EdgeliteError } from '../shared/errors.ts';
import type { Finding } from '../shared/doctor-rules.ts';

/** MIGRATION_FILE: how migrate names its files: a number of at least four digits, `_`, a name, `.sql`. */
export const MIGRATION_FILE = /^(\d{4,})_(.+)\.sql$/;

/** fileName makes a migration name safe for any file system: lower case letters, digits and `_`. */
export function fileName(name: string): string {
  const safe = name.toLowerCase().replace(/[^a-z0-9_]+/g, '_').replace(/^_+|_+$/g, '');
  return safe.slice(0, 80) || 'fix';
}

/** migrationText is a fix's file: which findings it answers, then the SQL. */
function migrationText(db: string, findings: Finding[], sql: string): string {
  const codes = findings.map((f) => `--   ${f.code}${f.object ? ` ${f.object}` : ''}: ${f.message}`).join('\n');
  return `-- Written by \`edgelite doctor --fix\` for database ${db}; review it before \`edgelite migrate\` applies it.\n-- Answers:\n${codes}\n${sql}`;
}

/**
 * writeFixes writes one file per distinct migration of `findings` into `dir` (created if missing) and
 * returns the paths written (new files only).
 */
export function writeFixes(dir: string, db: string, findings: readonly Finding[]): string[] {
  const byName = new Map<string, { findings: Finding[]; sql: string }>();
  for (const f of findings) {
    if (f.fix.kind !== 'migration') continue;
    const entry = byName.get(f.fix.name) ?? { findings: [], sql: f.fix.sql };
    entry.findings.push(f);
    byName.set(f.fix.name, entry);
  }
  if (byName.size === 0) return [];
  try {
    mkdirSync(dir, { recursive: true });
  } catch (err) {
    throw new EdgeliteError('IO_ERROR', `--fix ${dir}: cannot create the directory: ${(err as Error).message}`, { cause: err });
  }
  const existing = readdirSync(dir).filter((f) => MIGRATION_FILE.test(f));
  let next = Math.max(0, ...existing.map((f) => Number(MIGRATION_FILE.exec(f)![1]))) + 1;
  const texts = new Set(existing.map((f) => readFileSync(join(dir, f), 'utf8')));
  const written: string[] = [];
  for (const [name, entry] of byName) {
    const text = migrationText(db, entry.findings, entry.sql);
    if (texts.has(text)) continue;
    const path = join(dir, `${String(next++).padStart(4, '0')}_${fileName(name)}.sql`);
    if (existsSync(path)) throw new EdgeliteError('IO_ERROR', `--fix: ${path} exists`);
    writeFileSync(path, text, { flag: 'wx' });
    written.push(path);
  }
  return written;
}
