/**
 * Parameters as SQLite defines them (README.md#http-api), for an engine that binds them its own way.
 * SQLite numbers every parameter of a statement: `?` takes the next index, `?NNN` index NNN, and a
 * named one (`:a`, `@a`, `$a`) the next index on its first use and the same index after; a request's
 * array binds index i to element i-1, an object binds names. better-sqlite3 takes positional values
 * only for parameters without a name and an object for the rest (keyed by the name after its first
 * character, so `?2` is key "2"), and refuses an array for `select ?1, ?1`: parameterPlan reads the
 * statement's parameters from its text once, and bindArgs turns a request's array into that shape.
 * The Worker's binding (deploy/worker/src/sqlite.ts) asks SQLite for the names, to the same effect.
 */

/** ParamPlan says, per parameter index (0-based), its better-sqlite3 key, or null for a positional one. */
export interface ParamPlan {
  keys: Array<string | null>;
}

/**
 * parameterPlan scans `sql` (one statement) for parameters, skipping string literals, quoted
 * identifiers and comments as SQLite's tokenizer does, and returns null when every parameter is a bare
 * `?` (an array binds as it is: the fast path), else the key of each index.
 */
export function parameterPlan(sql: string): ParamPlan | null {
  const names = new Map<number, string>();
  const byName = new Map<string, number>();
  let count = 0;
  let special = false;
  const n = sql.length;
  let i = 0;
  while (i < n) {
    const c = sql[i]!;
    if (c === "'" || c === '"' || c === '`') {
      i = skipQuoted(sql, i, c);
    } else if (c === '[') {
      const end = sql.indexOf(']', i + 1);
      i = end < 0 ? n : end + 1;
    } else if (c === '-' && sql[i + 1] === '-') {
      const end = sql.indexOf('\n', i + 2);
      i = end < 0 ? n : end + 1;
    } else if (c === '/' && sql[i + 1] === '*') {
      const end = sql.indexOf('*/', i + 2);
      i = end < 0 ? n : end + 2;
    } else if (isIdChar(sql.charCodeAt(i)) && c !== '$') {
      // An identifier, keyword or number: `$` inside one (`price$usd`) starts no parameter.
      i++;
      while (i < n && isIdChar(sql.charCodeAt(i))) i++;
    } else if (c === '?') {
      let j = i + 1;
      while (j < n && isDigit(sql.charCodeAt(j))) j++;
      if (j === i + 1) {
        count++;
      } else {
        special = true;
        const index = Number(sql.slice(i + 1, j));
        if (!names.has(index)) names.set(index, sql.slice(i, j));
        count = Math.max(count, index);
      }
      i = j;
    } else if (c === ':' || c === '@' || c === '$' || c === '#') {
      const j = variableEnd(sql, i);
      if (j === i + 1) {
        i++;
        continue;
      }
      special = true;
      const name = sql.slice(i, j);
      if (!byName.has(name)) {
        count++;
        byName.set(name, count);
        names.set(count, name);
      }
      i = j;
    } else {
      i++;
    }
  }
  if (!special) return null;
  const keys: Array<string | null> = [];
  for (let k = 1; k <= count; k++) {
    const name = names.get(k);
    keys.push(name === undefined ? null : name.slice(1));
  }
  return { keys };
}

/**
 * bindArgs turns a request's positional values into better-sqlite3's arguments for `plan`: the values
 * of unnamed indices in order, then one object for the named and numbered ones. RangeError (reported
 * as SQL_ERROR) when the count differs from the statement's, or when two parameters that better-sqlite3
 * binds by one key (`:a` and `@a`) are given different values.
 */
export function bindArgs(plan: ParamPlan, values: readonly unknown[]): unknown[] {
  const { keys } = plan;
  if (values.length !== keys.length) {
    throw new RangeError(`Too ${values.length > keys.length ? 'many' : 'few'} parameter values were provided (the statement has ${keys.length})`);
  }
  const positional: unknown[] = [];
  const named: Record<string, unknown> = {};
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i];
    if (key === null || key === undefined) {
      positional.push(values[i]);
    } else if (Object.prototype.hasOwnProperty.call(named, key) && named[key] !== values[i]) {
      throw new RangeError(`parameters ${i + 1} and another both bind as "${key}" here; give them one value, or use named parameters`);
    } else {
      named[key] = values[i];
    }
  }
  positional.push(named);
  return positional;
}

function isDigit(code: number): boolean {
  return code >= 48 && code <= 57;
}

/** isIdChar is SQLite's IdChar: letters, digits, `_`, `$`, and every non-ASCII character. */
function isIdChar(code: number): boolean {
  return (code >= 48 && code <= 57) || (code >= 65 && code <= 90) || (code >= 97 && code <= 122) || code === 95 || code === 36 || code >= 0x80;
}

/** variableEnd is where a `:name` token that starts at `i` ends (SQLite's tokenizer, Tcl forms included). */
function variableEnd(sql: string, i: number): number {
  let j = i + 1;
  let chars = 0;
  while (j < sql.length) {
    const code = sql.charCodeAt(j);
    if (isIdChar(code)) {
      chars++;
      j++;
    } else if (sql[j] === '(' && chars > 0) {
      const close = sql.indexOf(')', j);
      return close < 0 ? sql.length : close + 1;
    } else if (sql[j] === ':' && sql[j + 1] === ':') {
      j += 2;
    } else {
      break;
    }
  }
  return chars === 0 ? i + 1 : j;
}

/** skipQuoted skips a quoted literal or identifier starting at `i` (a doubled quote is an escaped one). */
function skipQuoted(sql: string, i: number, quote: string): number {
  let j = i + 1;
  for (;;) {
    const end = sql.indexOf(quote, j);
    if (end < 0) return sql.length;
    if (sql[end + 1] === quote) {
      j = end + 2;
      continue;
    }
    return end + 1;
  }
}
