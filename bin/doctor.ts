/**
 * `edgelite doctor --db NAME | --all --primary URL [--json] [--fix DIR] [--token T]` (README.md#integrity):
 * reads each database's schema, settings, integrity_check and foreign_key_check through the query API of
 * a primary or a replica, and reports findings with their fixes; `--fix DIR` writes the fixes that are
 * migrations as files. Exit status 1 when a finding is an error or a database could not be examined.
 */
import { join } from 'node:path';
import { DOCTOR } from '../shared/cli-flags.ts';
import { EdgeliteError, toEdgeliteError } from '../shared/errors.ts';
import { FACT_STATEMENTS, readFacts } from '../shared/doctor-facts.ts';
import { diagnose, NOTES, type Finding } from '../shared/doctor-rules.ts';
import { CliApi } from '../shared/node/cli-api.ts';
import { toolLogger } from '../shared/node/log.ts';
import { parseFlags } from './commands/flags.ts';
import { writeFixes } from './doctor-files.ts';
import { forEachDatabase } from './export-progress.ts';

export const DOCTOR_USAGE = 'usage: edgelite doctor --db NAME | --all --primary URL [--json] [--fix DIR] [--token T]   (token also EDGELITE_TOKEN)';

export interface DoctorOptions {
  primary: string;
  databases: string[] | 'all';
  json: boolean;
  fix: string | null;
  token: string | undefined;
}

/** DatabaseReport is one database's part of `--json`. */
export interface DatabaseReport {
  name: string;
  findings: Finding[];
  /** Migration files `--fix` wrote for it. */
  fixes: string[];
  /** Why it could not be examined (then findings is empty). */
  error?: { code: string; message: string };
}

/** parseDoctorArgs reads argv once, at the edge, against DOCTOR's flag table; a bad flag is MISCONFIGURED with the usage. */
export function parseDoctorArgs(argv: string[], env: NodeJS.ProcessEnv): DoctorOptions {
  const f = parseFlags(DOCTOR, argv, DOCTOR_USAGE);
  const o = { db: f.list('db'), all: f.on('all'), primary: f.str('primary'), json: f.on('json'), fix: f.str('fix'), token: f.str('token') };
  if (!o.primary) throw new EdgeliteError('MISCONFIGURED', `--primary URL is required\n${DOCTOR_USAGE}`);
  if ((o.db === undefined) === (o.all !== true)) throw new EdgeliteError('MISCONFIGURED', `give either --db NAME or --all\n${DOCTOR_USAGE}`);
  return { primary: o.primary, databases: o.all ? 'all' : o.db!, json: o.json === true, fix: o.fix ?? null, token: o.token ?? env.EDGELITE_TOKEN };
}

/** examine diagnoses one database through the API. */
export async function examine(api: CliApi, db: string): Promise<Finding[]> {
  return diagnose(readFacts(await api.query(db, FACT_STATEMENTS)));
}

export async function doctorMain(argv: string[]): Promise<void> {
  const o = parseDoctorArgs(argv, process.env);
  const logger = toolLogger('doctor', argv);
  const api = new CliApi(o.primary, o.token);
  const names = o.databases === 'all' ? await api.databases() : o.databases;
  const reports = await forEachDatabase(names, async (name): Promise<DatabaseReport> => {
    try {
      const findings = await examine(api, name);
      const fixes = o.fix === null ? [] : writeFixes(o.databases === 'all' ? join(o.fix, name) : o.fix, name, findings);
      return { name, findings, fixes };
    } catch (err) {
      const e = toEdgeliteError(err);
      return { name, findings: [], fixes: [], error: { code: e.code, message: e.message } };
    }
  }, { label: 'doctor', quiet: o.databases !== 'all', logger });
  process.stdout.write(o.json ? `${JSON.stringify({ url: api.url, databases: reports, notes: NOTES }, null, 2)}\n` : formatReport(reports));
  if (reports.some((r) => r.error || r.findings.some((f) => f.severity === 'error'))) process.exitCode = 1;
}

/** formatReport is the human form: one block per database, then what doctor cannot see. */
export function formatReport(reports: readonly DatabaseReport[]): string {
  let out = '';
  for (const r of reports) {
    if (r.error) {
      out += `${r.name}: not examined: ${r.error.code}: ${r.error.message}\n`;
      continue;
    }
    const count = (s: string) => r.findings.filter((f) => f.severity === s).length;
    out += `${r.name}: ${r.findings.length ? `${count('error')} error(s), ${count('warning')} warning(s), ${count('info')} info` : 'no findings'}\n`;
    for (const f of r.findings) {
      out += `  ${f.severity.padEnd(7)} ${f.code}  ${f.message}\n`;
      out += f.fix.kind === 'migration' ? `          fix: migration ${f.fix.name}\n` : `          fix (by hand): ${f.fix.steps}\n`;
    }
    for (const file of r.fixes) out += `  wrote ${file}\n`;
  }
  out += `notes (what no connection of ours can see):\n${NOTES.map((n) => `  - ${n}\n`).join('')}`;
  return out;
}
