/**
 * Pass one of `edgelite export` (README.md#analytics-export): open each downloaded snapshot, list its
 * tables and columns, and count the storage classes every column holds (one scan per table), then merge
 * tables of the same name across databases into one exported table whose column types hold every value
 * (bin/export-types.ts). Exported: ordinary tables; not views, virtual tables or their shadow tables,
 * `sqlite_*`, or edgelite's own `_edgelite_*` bookkeeping.
 */
import Database from 'better-sqlite3';
import { quoteName } from '../shared/doctor-sql.ts';
import { isEdgeliteTable } from '../shared/doctor-rules.ts';
import { decideColumn, mergeStats, type ColumnStats, type ExportColumn, type StorageClass } from './export-types.ts';

/** Source: one downloaded snapshot. */
export interface Source {
  db: string;
  path: string;
}

/** PlannedTable is one exported table: its columns and, per source database, the columns it has. */
export interface PlannedTable {
  name: string;
  columns: ExportColumn[];
  rows: number;
  /** Per database holding the table: the source's name for each exported column, or null when it lacks it. */
  sources: Array<{ db: string; path: string; table: string; columns: Array<string | null>; rows: number }>;
}

/** STATS_CHUNK: columns per stats query (6 aggregates each, under SQLite's 2,000 result columns). */
const STATS_CHUNK = 200;

interface TableScan {
  name: string;
  rows: number;
  columns: ColumnStats[];
}

/** openSnapshot opens a downloaded snapshot for reading, integers as BigInt throughout. */
export function openSnapshot(path: string): Database.Database {
  const db = new Database(path, { fileMustExist: true });
  db.defaultSafeIntegers(true);
  db.pragma('query_only = ON');
  return db;
}

/** scanDatabase lists the exported tables of one snapshot with their column stats. */
export function scanDatabase(path: string): TableScan[] {
  const db = openSnapshot(path);
  try {
    const tables = db
      .prepare(`SELECT name FROM pragma_table_list WHERE schema = 'main' AND type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name`)
      .pluck()
      .all() as string[];
    return tables.filter((t) => !isEdgeliteTable(t)).map((t) => scanTable(db, t));
  } finally {
    db.close();
  }
}

function scanTable(db: Database.Database, table: string): TableScan {
  const cols = db.prepare('SELECT name, type FROM pragma_table_xinfo(?) WHERE hidden <> 1 ORDER BY cid').raw().all(table) as Array<[string, string]>;
  const stats: ColumnStats[] = cols.map(([name, declared]) => ({ name, declared, classes: new Set<StorageClass>(), minInt: null, maxInt: null }));
  let rows = Number(db.prepare(`SELECT count(*) FROM ${quoteName(table)}`).pluck().get() as bigint);
  for (let from = 0; from < stats.length; from += STATS_CHUNK) {
    const chunk = stats.slice(from, from + STATS_CHUNK);
    const parts = chunk.flatMap((s) => {
      const c = quoteName(s.name);
      return [
        ...(['integer', 'real', 'text', 'blob'] as const).map((k) => `total(typeof(${c}) = '${k}')`),
        `min(CASE WHEN typeof(${c}) = 'integer' THEN ${c} END)`,
        `max(CASE WHEN typeof(${c}) = 'integer' THEN ${c} END)`,
      ];
    });
    const row = db.prepare(`SELECT ${parts.join(', ')} FROM ${quoteName(table)}`).raw().get() as unknown[];
    chunk.forEach((s, i) => {
      const at = i * 6;
      (['integer', 'real', 'text', 'blob'] as const).forEach((k, j) => {
        if (Number(row[at + j]) > 0) s.classes.add(k);
      });
      s.minInt = (row[at + 4] as bigint | null) ?? null;
      s.maxInt = (row[at + 5] as bigint | null) ?? null;
    });
  }
  if (!Number.isSafeInteger(rows)) rows = Number.MAX_SAFE_INTEGER;
  return { name: table, rows, columns: stats };
}

/**
 * plan scans every source and merges same-named tables (names compared as SQLite does, ignoring
 * case): the union of their columns, in first-seen order, each typed for every value of every source.
 */
export function plan(sources: readonly Source[]): PlannedTable[] {
  const merged = new Map<string, { name: string; columns: ColumnStats[]; sources: Array<{ source: Source; scan: TableScan }> }>();
  for (const source of sources) {
    for (const scan of scanDatabase(source.path)) {
      const key = scan.name.toLowerCase();
      let m = merged.get(key);
      if (!m) merged.set(key, (m = { name: scan.name, columns: [], sources: [] }));
      for (const c of scan.columns) {
        const into = m.columns.find((x) => x.name.toLowerCase() === c.name.toLowerCase());
        if (into) mergeStats(into, c);
        else m.columns.push({ ...c, classes: new Set(c.classes) });
      }
      m.sources.push({ source, scan });
    }
  }
  return [...merged.values()]
    .sort((a, b) => a.name.localeCompare(b.name))
    .map((m) => ({
      name: m.name,
      columns: m.columns.map(decideColumn),
      rows: m.sources.reduce((n, s) => n + s.scan.rows, 0),
      sources: m.sources.map(({ source, scan }) => ({
        db: source.db,
        path: source.path,
        table: scan.name,
        rows: scan.rows,
        columns: m.columns.map((c) => scan.columns.find((x) => x.name.toLowerCase() === c.name.toLowerCase())?.name ?? null),
      })),
    }));
}
