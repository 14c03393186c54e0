/**
 * How `edgelite export` maps SQLite's dynamically typed columns to DuckDB's fixed ones
 * (README.md#analytics-export). SQLite decides a value's type per value (its storage class: integer,
 * real, text, blob), so the type of an exported column comes from the values it actually holds, over
 * every exported database, not from its declared type:
 *
 * | classes seen (NULLs aside)             | DuckDB column                                            |
 * |----------------------------------------|----------------------------------------------------------|
 * | integer                                | BIGINT (every SQLite integer fits, 2^63 − 1 included)    |
 * | real                                   | DOUBLE                                                   |
 * | integer + real, integers within ±2^53  | DOUBLE (each integer is exactly a double)                |
 * | text                                   | VARCHAR                                                  |
 * | blob                                   | BLOB                                                     |
 * | none (only NULLs, or no rows)          | from the declared type's affinity                        |
 * | any other mix                          | VARCHAR holding each value's text, plus `<col>__sqlite_type` VARCHAR with its class |
 *
 * In a mixed column an integer is its decimal digits, a real its shortest round-trip text, a blob its
 * lower-case hex, so value and class together give back exactly what SQLite held.
 */
import { quoteName } from '../shared/doctor-sql.ts';

export type StorageClass = 'integer' | 'real' | 'text' | 'blob';
export type ExportType = 'BIGINT' | 'DOUBLE' | 'VARCHAR' | 'BLOB';

/** ColumnStats: what pass one saw in one column (over one or more databases). */
export interface ColumnStats {
  name: string;
  /** Declared type of the first database that had the column. */
  declared: string;
  classes: Set<StorageClass>;
  /** Smallest and largest integer seen (exact), or null when none. */
  minInt: bigint | null;
  maxInt: bigint | null;
}

/** ExportColumn is a decided column: its DuckDB type, and whether it is mixed (a class column follows it). */
export interface ExportColumn {
  name: string;
  type: ExportType;
  mixed: boolean;
  /** The name of the class column of a mixed column. */
  classColumn: string | null;
  classes: StorageClass[];
  declared: string;
}

/** MAX_EXACT_DOUBLE_INT: integers within ±2^53 are exactly representable as a double. */
const MAX_EXACT = 2n ** 53n;

/** CLASS_SUFFIX names a mixed column's class column. */
export const CLASS_SUFFIX = '__sqlite_type';

/** affinityType: the DuckDB type for a column no value typed (SQLite's affinity of the declared type). */
export function affinityType(declared: string): ExportType {
  const t = declared.toUpperCase();
  if (t.includes('INT')) return 'BIGINT';
  if (t.includes('CHAR') || t.includes('CLOB') || t.includes('TEXT')) return 'VARCHAR';
  if (t.includes('BLOB')) return 'BLOB';
  if (t.includes('REAL') || t.includes('FLOA') || t.includes('DOUB')) return 'DOUBLE';
  return 'VARCHAR';
}

/** decideColumn applies the table above to one column's stats. */
export function decideColumn(s: ColumnStats): ExportColumn {
  const classes = (['integer', 'real', 'text', 'blob'] as const).filter((c) => s.classes.has(c));
  const base = { name: s.name, classes, declared: s.declared, mixed: false, classColumn: null };
  const only = (c: StorageClass) => classes.length === 1 && classes[0] === c;
  if (classes.length === 0) return { ...base, type: affinityType(s.declared) };
  if (only('integer')) return { ...base, type: 'BIGINT' };
  if (only('real')) return { ...base, type: 'DOUBLE' };
  if (only('text')) return { ...base, type: 'VARCHAR' };
  if (only('blob')) return { ...base, type: 'BLOB' };
  const exact = s.minInt !== null && s.maxInt !== null && s.minInt >= -MAX_EXACT && s.maxInt <= MAX_EXACT;
  if (classes.length === 2 && s.classes.has('integer') && s.classes.has('real') && exact) return { ...base, type: 'DOUBLE' };
  return { ...base, type: 'VARCHAR', mixed: true, classColumn: `${s.name}${CLASS_SUFFIX}` };
}

/** mergeStats folds another database's stats of the same column into `into`. */
export function mergeStats(into: ColumnStats, other: ColumnStats): void {
  for (const c of other.classes) into.classes.add(c);
  if (other.minInt !== null && (into.minInt === null || other.minInt < into.minInt)) into.minInt = other.minInt;
  if (other.maxInt !== null && (into.maxInt === null || other.maxInt > into.maxInt)) into.maxInt = other.maxInt;
}

/** classOf is a value's storage class as better-sqlite3 hands it over with safe integers on. */
export function classOf(v: unknown): StorageClass | null {
  if (v === null || v === undefined) return null;
  if (typeof v === 'bigint') return 'integer';
  if (typeof v === 'number') return 'real';
  if (typeof v === 'string') return 'text';
  return 'blob';
}

/** textOf is a value of a mixed column as its exact text. */
export function textOf(v: unknown): string {
  if (typeof v === 'bigint' || typeof v === 'string') return String(v);
  if (typeof v === 'number') return Object.is(v, -0) ? '-0' : String(v);
  return Buffer.from(v as Uint8Array).toString('hex');
}

/** columnDdl is one DuckDB column definition. */
export function columnDdl(name: string, type: ExportType): string {
  return `${quoteName(name)} ${type}`;
}
