/**
 * `edgelite doctor`'s rules (README.md#integrity): facts about one database in, findings out, each with a
 * severity, a stable code and the fix: a migration (SQL the migrate tool can apply) or, where no
 * migration can help, the manual steps. Pure and deterministic: the same facts give the same findings in
 * the same order, so `--fix` writes the same files twice.
 */
import type { DatabaseFacts, TableFact } from './doctor-facts.ts';
import { indexName, indexSql, primaryKeyColumnName, rebuildMigration, referencedBy, rowidAlias } from './doctor-fix.ts';
import { quoteName } from './doctor-sql.ts';

export type Severity = 'error' | 'warning' | 'info';

/** FINDING_CODES: every code doctor reports; part of the public surface (README.md#integrity). */
export const FINDING_CODES = [
  'INTEGRITY_CHECK_FAILED',
  'FOREIGN_KEY_VIOLATION',
  'FOREIGN_KEYS_OFF_ELSEWHERE',
  'JOURNAL_MODE_NOT_WAL',
  'WAL_AUTOCHECKPOINT_ON',
  'PAGE_SIZE',
  'NOT_STRICT',
  'NO_PRIMARY_KEY',
  'FOREIGN_KEY_NOT_INDEXED',
] as const;
export type FindingCode = (typeof FINDING_CODES)[number];

export type Fix =
  /** A migration: `name` is the file's name without number or extension, `sql` its text. */
  | { kind: 'migration'; name: string; sql: string }
  /** No migration can do it: what to do by hand. */
  | { kind: 'manual'; steps: string };

export interface Finding {
  code: FindingCode;
  severity: Severity;
  /** The table (or index) it is about, when it is about one. */
  object?: string;
  message: string;
  fix: Fix;
}

/** RECOMMENDED_PAGE_SIZE: SQLite's default, and the size change sets are cheapest with (README.md#integrity). */
export const RECOMMENDED_PAGE_SIZE = 4096;

/** isEdgeliteTable: edgelite's own bookkeeping tables (`_edgelite_*`), which doctor leaves alone. */
export function isEdgeliteTable(name: string): boolean {
  return name.toLowerCase().startsWith('_edgelite_');
}

/** NOTES: what doctor cannot see through any connection, printed with every report (README.md#integrity). */
export const NOTES: readonly string[] = [
  "foreign_keys is a setting of each connection, not of the file: edgelite's writers set it ON; every other process that writes the file (sqlite3 CLI, an app) decides its own, and SQLite's default is OFF. Doctor sees only the rows such writes left (foreign_key_check).",
  "wal_autocheckpoint is per connection too: edgelite's connections use 0 (only the primary checkpoints); another writer's default of 1000 is harmless while the primary runs, but a checkpoint by it while the primary is down starts a new generation (every replica re-snapshots). Set wal_autocheckpoint=0 in foreign writers.",
];

/** diagnose runs every rule over one database's facts. */
export function diagnose(facts: DatabaseFacts): Finding[] {
  return [...integrityFindings(facts), ...settingFindings(facts), ...facts.tables.filter((t) => !isEdgeliteTable(t.name)).flatMap((t) => tableFindings(t, facts))];
}

function integrityFindings(facts: DatabaseFacts): Finding[] {
  const out: Finding[] = [];
  const problems = facts.integrity.filter((line) => line !== 'ok');
  if (problems.length) {
    // Index entries that disagree with their table are rebuilt from the table by REINDEX; anything else
    // (a damaged page, a bad freelist) is below what SQL can repair.
    const indexes = problems.map((p) => /\bindex (\S+)$/.exec(p)?.[1] ?? null);
    const onlyIndexes = indexes.every((i) => i !== null);
    const names = [...new Set(indexes.filter((i): i is string => i !== null))];
    out.push({
      code: 'INTEGRITY_CHECK_FAILED',
      severity: 'error',
      message: `integrity_check found ${problems.length} problem(s): ${problems.slice(0, 5).join('; ')}${problems.length > 5 ? '; ...' : ''}`,
      fix: onlyIndexes
        ? { kind: 'migration', name: `reindex_${names.join('_')}`, sql: `-- Rebuild the index(es) integrity_check found out of step with their table.\n${names.map((n) => `REINDEX ${quoteName(n)};`).join('\n')}\n` }
        : { kind: 'manual', steps: 'the file itself is damaged: restore it from a backup (edgelite restore) or a replica, or rebuild it with the sqlite3 CLI `.recover` and compare' },
    });
  }
  const groups = new Map<string, { table: string; parent: string; rowids: Array<number | string | null> }>();
  for (const v of facts.foreignKeyViolations) {
    const key = `${v.table}\u0000${v.parent}\u0000${v.fkid}`;
    const g = groups.get(key) ?? { table: v.table, parent: v.parent, rowids: [] };
    g.rowids.push(v.rowid);
    groups.set(key, g);
  }
  for (const g of groups.values()) {
    const sample = g.rowids.slice(0, 10).map(String).join(', ');
    out.push({
      code: 'FOREIGN_KEY_VIOLATION',
      severity: 'error',
      object: g.table,
      message: `${g.rowids.length} row(s) of ${quoteName(g.table)} reference missing rows of ${quoteName(g.parent)} (rowid ${sample}${g.rowids.length > 10 ? ', ...' : ''})`,
      fix: {
        kind: 'manual',
        steps: `decide per row: insert the missing ${quoteName(g.parent)} rows, or update or delete the orphans (SELECT * FROM ${quoteName(g.table)} WHERE rowid IN (${sample})); doctor never changes data`,
      },
    });
  }
  if (groups.size) {
    out.push({
      code: 'FOREIGN_KEYS_OFF_ELSEWHERE',
      severity: 'warning',
      message: "rows that violate foreign keys exist, so some connection wrote with foreign_keys OFF: edgelite's writers enforce them, so it was another process (SQLite's default is OFF) or a write before the constraint existed",
      fix: { kind: 'manual', steps: 'run PRAGMA foreign_keys = ON right after opening the file in every other process that writes it' },
    });
  }
  return out;
}

function settingFindings(facts: DatabaseFacts): Finding[] {
  const out: Finding[] = [];
  const s = facts.settings;
  const offline = (change: string) =>
    `stop every writer, then with the sqlite3 CLI: PRAGMA journal_mode = DELETE; ${change}VACUUM; PRAGMA journal_mode = WAL; (page size and journal mode cannot change through the API, and page size not at all in WAL mode)`;
  if (s.journalMode !== 'wal') {
    out.push({
      code: 'JOURNAL_MODE_NOT_WAL',
      severity: 'error',
      message: `journal_mode is ${s.journalMode || 'unknown'}: capture reads committed pages from the WAL, so a database outside WAL mode cannot be replicated`,
      fix: { kind: 'manual', steps: 'stop every writer and run PRAGMA journal_mode = WAL with the sqlite3 CLI (the primary also switches a database it opens)' },
    });
  }
  if (s.writerAutoCheckpoint !== null && s.writerAutoCheckpoint > 0) {
    out.push({
      code: 'WAL_AUTOCHECKPOINT_ON',
      severity: 'warning',
      message: `a writing connection has wal_autocheckpoint = ${s.writerAutoCheckpoint}: a checkpoint while the primary is down starts a new generation (replicas re-snapshot)`,
      fix: { kind: 'manual', steps: 'PRAGMA wal_autocheckpoint = 0 in every process that writes the file; the primary checkpoints' },
    });
  }
  if (s.pageSize !== RECOMMENDED_PAGE_SIZE) {
    const why = s.pageSize > RECOMMENDED_PAGE_SIZE
      ? `a change set carries every page a transaction touched, so a one-row write ships ${s.pageSize} bytes or more to the log and the backup`
      : 'rows spread over more pages, so each write touches more pages, each with its own per-page checksum and header in the change set';
    out.push({
      code: 'PAGE_SIZE',
      severity: 'warning',
      message: `page_size is ${s.pageSize}, not ${RECOMMENDED_PAGE_SIZE}: ${why}`,
      fix: { kind: 'manual', steps: offline(`PRAGMA page_size = ${RECOMMENDED_PAGE_SIZE}; `) },
    });
  }
  return out;
}

function tableFindings(table: TableFact, facts: DatabaseFacts): Finding[] {
  const out: Finding[] = [];
  const noKey = !table.withoutRowid && !table.columns.some((c) => c.pk > 0);
  if (!table.strict || noKey) {
    const plan = { strict: !table.strict, addPrimaryKey: noKey ? primaryKeyColumnName(table) : null };
    const parents = referencedBy(table, facts.tables);
    const fix: Fix = parents.length
      ? {
          kind: 'manual',
          steps: `${quoteName(table.name)} is referenced by ${parents.map(quoteName).join(', ')}: on edgelite's writer (foreign_keys ON) dropping it during a rebuild would run their ON DELETE actions, and the migrate tool refuses it; rebuild it with the writers stopped and foreign keys off (sqlite3 CLI: PRAGMA foreign_keys = OFF, then SQLite's table rebuild)`,
        }
      : { kind: 'migration', name: `rebuild_${table.name}`, sql: rebuildMigration(table, plan) };
    if (!table.strict) {
      out.push({
        code: 'NOT_STRICT',
        severity: 'warning',
        object: table.name,
        message: `${quoteName(table.name)} is not STRICT: any column accepts a value of any type (a text in an INTEGER column is stored as text)`,
        fix,
      });
    }
    if (noKey) {
      out.push({
        code: 'NO_PRIMARY_KEY',
        severity: 'warning',
        object: table.name,
        message: `${quoteName(table.name)} has no primary key: rows are known only by a rowid that VACUUM may renumber, and exports and sync tools cannot tell rows apart`,
        fix,
      });
    }
  }
  for (const fk of table.foreignKeys) {
    if (isIndexed(table, fk.from)) continue;
    out.push({
      code: 'FOREIGN_KEY_NOT_INDEXED',
      severity: 'warning',
      object: table.name,
      message: `foreign key ${quoteName(table.name)} (${fk.from.map(quoteName).join(', ')}) → ${quoteName(fk.parent)} has no index: every delete or key update in ${quoteName(fk.parent)} scans ${quoteName(table.name)}`,
      fix: { kind: 'migration', name: `index_${indexName(table.name, fk.from)}`, sql: indexSql(table.name, fk.from) },
    });
  }
  return out;
}

/** isIndexed: some index (or the rowid) has the foreign key's columns as its leading columns, in any order. */
function isIndexed(table: TableFact, columns: readonly string[]): boolean {
  const want = new Set(columns.map((c) => c.toLowerCase()));
  const alias = rowidAlias(table);
  if (alias !== null && want.size === 1 && want.has(alias.toLowerCase())) return true;
  return table.indexes.some((i) => {
    if (i.partial) return false;
    const lead = i.columns.slice(0, want.size);
    return lead.length === want.size && lead.every((c) => c !== null && want.has(c.toLowerCase()));
  });
}
