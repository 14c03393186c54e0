/**
 * validateBody runs a request body through its zod schema (shared/openapi/requests.ts, the same schemas
 * GET /v1/openapi.json is built from, README.md#http-api) and turns the first issue into our
 * EdgeliteError, so request validation keeps its stable codes and messages:
 * - a custom issue carrying `params.code` (a name or pattern check that reuses shared/types.ts) keeps
 *   that code and its message as it is;
 * - `too_big` (too many statements, an SQL text too long) is PAYLOAD_TOO_LARGE;
 * - everything else is BAD_REQUEST.
 * A schema's messages are templates: `{at}` is the issue's path from `root` (`body.sql`,
 * `statements[0].params[2]`, `positions.a`), `{up}` the path of its parent (a blob's `{"base64"}`
 * reports the value, not its field). Worker-safe: zod only.
 */
import type { z } from 'zod';
import { EdgeliteError, isErrorCode, type ErrorCode } from '../errors.ts';

type Issue = z.core.$ZodIssue;
type PathKey = PropertyKey;

/** validateBody parses `value` with `schema`, or throws the EdgeliteError of its first issue. */
export function validateBody<S extends z.ZodType>(schema: S, value: unknown, root = 'body'): z.output<S> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  throw issueError(r.error.issues[0], root);
}

/** issueError maps one zod issue (the first of a failed parse) to an EdgeliteError. */
export function issueError(issue: Issue | undefined, root: string): EdgeliteError {
  if (!issue) return new EdgeliteError('BAD_REQUEST', `${root} is invalid`);
  const { leaf, path } = resolve(issue, []);
  const code: ErrorCode = customCode(leaf) ?? (leaf.code === 'too_big' ? 'PAYLOAD_TOO_LARGE' : 'BAD_REQUEST');
  return new EdgeliteError(code, fill(leaf.message, path, root));
}

/**
 * resolve finds the issue that says what is wrong. A union reports itself, unless one option took
 * the value's type and failed inside or on a check (an array of parameters with one bad value, a
 * list of names with one bad name, an int64 out of range): that option's first issue, recursively.
 * A record's key check reports under the key, with the key's own issue holding the message.
 */
function resolve(issue: Issue, prefix: PathKey[]): { leaf: Issue; path: PathKey[] } {
  const path = [...prefix, ...(issue.path as PathKey[])];
  if (issue.code === 'invalid_union') {
    const taken = issue.errors.find((errs) => errs[0] !== undefined && !typeMismatch(errs[0]));
    if (taken) return resolve(taken[0]!, path);
  }
  if (issue.code === 'invalid_key' && issue.issues[0]) return { leaf: issue.issues[0], path };
  return { leaf: issue, path };
}

/** typeMismatch: the option did not take the value's type at all (a `TYPE_CHECK` custom check counts). */
function typeMismatch(issue: Issue): boolean {
  if (issue.path.length > 0) return false;
  if (issue.code === 'invalid_type' || issue.code === 'invalid_value') return true;
  return issue.code === 'custom' && (issue.params as { typeCheck?: unknown } | undefined)?.typeCheck === true;
}

/** TYPE_CHECK marks a custom check that only tests the value's type (z.instanceof), for resolve. */
export const TYPE_CHECK = { params: { typeCheck: true } } as const;

function customCode(issue: Issue): ErrorCode | null {
  if (issue.code !== 'custom') return null;
  const code = (issue.params as { code?: unknown } | undefined)?.code;
  return isErrorCode(code) ? code : null;
}

/** fill replaces the first `{at}` or `{up}` of a message template (templates start with it). */
function fill(message: string, path: PathKey[], root: string): string {
  if (message.includes('{at}')) return message.replace('{at}', formatPath(path, root));
  if (message.includes('{up}')) return message.replace('{up}', formatPath(path.slice(0, -1), root));
  return message;
}

/** formatPath writes a path as the messages name fields: `body.params[0]`, `statements[3].sql`. */
export function formatPath(path: readonly PathKey[], root: string): string {
  let out = root;
  for (const k of path) {
    if (typeof k === 'number') out += `[${k}]`;
    else out += out === '' ? String(k) : `.${String(k)}`;
  }
  return out;
}

/**
 * customIssue is the issue a check adds when a shared validator (validateDatabaseName, parseChecksum)
 * refused a value: its code and message go to the client unchanged.
 */
export function customIssue(err: unknown, input: unknown): z.core.$ZodRawIssue {
  if (err instanceof EdgeliteError) return { code: 'custom', message: err.message, params: { code: err.code }, input };
  throw err;
}
