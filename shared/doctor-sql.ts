/**
 * The bit of SQLite's grammar `edgelite doctor` needs to write its fixes (README.md#integrity): quoting a
 * name, splitting a CREATE TABLE into its column definitions and table constraints, and putting a
 * STRICT type in place of a column's declared one, so a rebuild keeps every CHECK, COLLATE, DEFAULT and
 * REFERENCES clause exactly as the original text has it. Pure: the Worker may import it.
 */
import { EdgeliteError } from './errors.ts';

/** quoteName is a name as an SQL identifier ("a""b" for a"b), always quoted so keywords are safe. */
export function quoteName(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** quoteString is an SQL string literal. */
export function quoteString(text: string): string {
  return `'${text.replaceAll("'", "''")}'`;
}

/** unquoteName is the name a quoted identifier token ("x", [x], `x`, 'x') stands for. */
export function unquoteName(text: string): string {
  const q = text[0];
  if (q === '[') return text.slice(1, -1);
  if (q === '"' || q === '`' || q === "'") return text.slice(1, -1).replaceAll(q + q, q);
  return text;
}

/** Token: one lexical unit of SQL text, with its place in the text. */
export interface Token {
  kind: 'word' | 'name' | 'string' | 'blob' | 'number' | 'punct' | 'space';
  text: string;
  start: number;
}

/** tokenize splits SQL into tokens; comments and white space are `space` tokens, so text rebuilds exactly. */
export function tokenize(sql: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < sql.length) {
    const start = i;
    const c = sql[i]!;
    let kind: Token['kind'];
    if (/\s/.test(c)) {
      while (i < sql.length && /\s/.test(sql[i]!)) i++;
      kind = 'space';
    } else if (c === '-' && sql[i + 1] === '-') {
      while (i < sql.length && sql[i] !== '\n') i++;
      kind = 'space';
    } else if (c === '/' && sql[i + 1] === '*') {
      const end = sql.indexOf('*/', i + 2);
      i = end < 0 ? sql.length : end + 2;
      kind = 'space';
    } else if (c === "'" || c === '"' || c === '`' || c === '[') {
      const close = c === '[' ? ']' : c;
      i++;
      for (;;) {
        if (i >= sql.length) throw new EdgeliteError('BAD_REQUEST', `unterminated ${c} in SQL: ${sql.slice(start, start + 40)}`);
        if (sql[i] === close) {
          if (close !== ']' && sql[i + 1] === close) {
            i += 2;
            continue;
          }
          i++;
          break;
        }
        i++;
      }
      kind = c === "'" ? 'string' : 'name';
    } else if ((c === 'x' || c === 'X') && sql[i + 1] === "'") {
      const end = sql.indexOf("'", i + 2);
      i = end < 0 ? sql.length : end + 1;
      kind = 'blob';
    } else if (/[\w$]/.test(c)) {
      while (i < sql.length && /[\w$]/.test(sql[i]!)) i++;
      kind = /^\d/.test(sql.slice(start, i)) ? 'number' : 'word';
    } else {
      i++;
      kind = 'punct';
    }
    out.push({ kind, text: sql.slice(start, i), start });
  }
  return out;
}

/** TableDefinition is a CREATE TABLE taken apart: its parts between the outer parentheses, and what follows. */
export interface TableDefinition {
  /** Each top-level comma-separated part, trimmed: column definitions first, then table constraints. */
  parts: string[];
  /** Table options after the closing parenthesis (`WITHOUT ROWID`, `STRICT`), trimmed. */
  options: string;
}

/** parseCreateTable splits `CREATE TABLE x (...) options`; CREATE TABLE ... AS SELECT is refused. */
export function parseCreateTable(sql: string): TableDefinition {
  const tokens = tokenize(sql);
  const open = tokens.findIndex((t) => t.text === '(');
  if (open < 0) throw new EdgeliteError('BAD_REQUEST', `not a CREATE TABLE with a column list: ${sql.slice(0, 80)}`);
  const parts: string[] = [];
  let depth = 0;
  let from = tokens[open]!.start + 1;
  for (let i = open + 1; i < tokens.length; i++) {
    const t = tokens[i]!;
    if (t.text === '(') depth++;
    else if (t.text === ')' && depth > 0) depth--;
    else if (t.text === ',' && depth === 0) {
      parts.push(sql.slice(from, t.start).trim());
      from = t.start + 1;
    } else if (t.text === ')') {
      parts.push(sql.slice(from, t.start).trim());
      return { parts, options: sql.slice(t.start + 1).trim().replace(/;$/, '').trim() };
    }
  }
  throw new EdgeliteError('BAD_REQUEST', `unbalanced parentheses in CREATE TABLE: ${sql.slice(0, 80)}`);
}

/** CONSTRAINT_START: the words that start a table constraint rather than a column definition. */
const TABLE_CONSTRAINT = new Set(['CONSTRAINT', 'PRIMARY', 'UNIQUE', 'CHECK', 'FOREIGN']);
/** COLUMN_CONSTRAINT: the words that end a column's type name (SQLite's column-constraint keywords). */
const COLUMN_CONSTRAINT = new Set(['CONSTRAINT', 'PRIMARY', 'NOT', 'NULL', 'UNIQUE', 'CHECK', 'DEFAULT', 'COLLATE', 'REFERENCES', 'GENERATED', 'AS']);

/** isColumnDefinition tells a column definition from a table constraint. */
export function isColumnDefinition(part: string): boolean {
  const first = tokenize(part).find((t) => t.kind !== 'space');
  return first !== undefined && !(first.kind === 'word' && TABLE_CONSTRAINT.has(first.text.toUpperCase()));
}

/**
 * withColumnType replaces the declared type of one column definition (`name TYPE(...) constraints`)
 * by `type`, or inserts it where the column had none; the name and every constraint stay as written.
 */
export function withColumnType(part: string, type: string): string {
  const tokens = tokenize(part);
  const nameAt = tokens.findIndex((t) => t.kind !== 'space');
  if (nameAt < 0) throw new EdgeliteError('BAD_REQUEST', 'empty column definition');
  let end = nameAt + 1;
  let depth = 0;
  for (; end < tokens.length; end++) {
    const t = tokens[end]!;
    if (depth === 0 && t.kind === 'word' && COLUMN_CONSTRAINT.has(t.text.toUpperCase())) break;
    if (t.text === '(') depth++;
    if (t.text === ')') depth--;
  }
  const name = tokens[nameAt]!.text;
  const rest = tokens.slice(end).map((t) => t.text).join('').trim();
  return `${name} ${type}${rest ? ` ${rest}` : ''}`;
}

/** strictType is the STRICT type that holds every value a column of declared type `declared` can hold (affinity rules). */
export function strictType(declared: string): 'INTEGER' | 'REAL' | 'TEXT' | 'BLOB' | 'ANY' {
  // SQLite's column affinity rules, in their order (README.md#integrity).
  const t = declared.toUpperCase();
  if (t.includes('INT')) return 'INTEGER';
  if (t.includes('CHAR') || t.includes('CLOB') || t.includes('TEXT')) return 'TEXT';
  if (t.trim() === '') return 'ANY';
  if (t.includes('BLOB')) return 'BLOB';
  if (t.includes('REAL') || t.includes('FLOA') || t.includes('DOUB')) return 'REAL';
  // NUMERIC affinity keeps integers, reals and text that does not look like a number: only ANY holds them all.
  return 'ANY';
}

/** splitStatements splits a script at top-level semicolons; CREATE TRIGGER ... BEGIN ... END stays whole. */
export function splitStatements(script: string): string[] {
  const tokens = tokenize(script);
  const out: string[] = [];
  let from = 0;
  let blockDepth = 0;
  let first = '';
  let sawWord = false;
  for (const t of tokens) {
    const word = t.kind === 'word' ? t.text.toUpperCase() : '';
    if (!sawWord && t.kind !== 'space') {
      first = word;
      sawWord = true;
    }
    if (word === 'BEGIN' && first === 'CREATE') blockDepth++;
    else if (word === 'CASE' && blockDepth > 0) blockDepth++;
    else if (word === 'END' && blockDepth > 0) blockDepth--;
    else if (t.text === ';' && blockDepth === 0) {
      const stmt = script.slice(from, t.start).trim();
      if (tokenize(stmt).some((x) => x.kind !== 'space')) out.push(stmt);
      from = t.start + 1;
      sawWord = false;
      first = '';
    }
  }
  const tail = script.slice(from).trim();
  if (tokenize(tail).some((x) => x.kind !== 'space')) out.push(tail);
  return out;
}
