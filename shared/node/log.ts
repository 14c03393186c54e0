/**
 * nodeLogger: the Node commands' Logger on pino (README.md#logs). `json` writes one JSON line per event:
 * `level` as a word, `time` as ISO 8601, `role`, the event's own fields and `msg` (the shape the
 * servers' log lines always had, plus the level); `pretty` writes pino-pretty's human lines, level
 * colours on a terminal. Tokens, authorization headers, secrets and passwords are redacted (top
 * level or one deep: `redact`).
 */
import { parseArgs } from 'node:util';
import pino from 'pino';
import pretty from 'pino-pretty';
import { LOG_FLAGS, parseArgsOptions } from '../cli-flags.ts';
import { EdgeliteError } from '../errors.ts';
import { LOG_LEVELS, levelOf, type Logger, type LogLevel } from '../log.ts';
import { aboveBars } from './progress.ts';

export type LogFormat = 'json' | 'pretty';

export interface LogOptions {
  format: LogFormat;
  level: LogLevel;
}

/** DEFAULT_LOG_LEVEL: what is written when neither `--log-level` nor EDGELITE_LOG_LEVEL says. */
export const DEFAULT_LOG_LEVEL: LogLevel = 'info';

/** SECRET_FIELDS: field names whose values are never written in clear (README.md#logs). */
export const SECRET_FIELDS: ReadonlySet<string> = new Set(['token', 'authorization', 'secret', 'password', 'primaryToken', 'cookie']);
export const REDACTED = '[redacted]';

/**
 * redact replaces secret fields at the top level and one object deep (and in a `headers` object at
 * either level), copying only what changes. A plain loop: pino's wildcard redaction paths cost about
 * 8 µs an event, this about nothing.
 */
export function redact(fields: Record<string, unknown>, depth = 0): Record<string, unknown> {
  let out: Record<string, unknown> | null = null;
  for (const key in fields) {
    const v = fields[key];
    let next = v;
    if (SECRET_FIELDS.has(key)) next = REDACTED;
    else if (v !== null && typeof v === 'object' && !Array.isArray(v) && (depth === 0 || key === 'headers')) next = redact(v as Record<string, unknown>, key === 'headers' ? depth : depth + 1);
    if (next !== v) (out ??= { ...fields })[key] = next;
  }
  return out ?? fields;
}

/** LogDestination: a file descriptor (1 stdout, 2 stderr) or a stream (tests). */
export type LogDestination = 1 | 2 | (NodeJS.WritableStream & { isTTY?: boolean });

function isTTY(dest: LogDestination): boolean {
  if (dest === 1) return process.stdout.isTTY === true;
  if (dest === 2) return process.stderr.isTTY === true;
  return dest.isTTY === true;
}

/**
 * logOptions reads `--log-format`/`--log-level` (or EDGELITE_LOG_FORMAT/LEVEL) from a command's argv
 * (other flags are left to its own parser). The format defaults to `pretty` when the log goes to a
 * terminal and `json` otherwise, so a pipe or a file gets lines a program can parse.
 */
export function logOptions(argv: readonly string[], env: Record<string, string | undefined>, dest: LogDestination = 1): LogOptions {
  const { values } = parseArgs({ args: [...argv], options: parseArgsOptions(LOG_FLAGS), strict: false, allowPositionals: true });
  const str = (v: unknown) => (typeof v === 'string' ? v : undefined);
  const format = str(values['log-format']) ?? env.EDGELITE_LOG_FORMAT ?? (isTTY(dest) ? 'pretty' : 'json');
  if (format !== 'json' && format !== 'pretty') throw new EdgeliteError('MISCONFIGURED', `--log-format (EDGELITE_LOG_FORMAT) must be json or pretty, got "${format}"`);
  const level = str(values['log-level']) ?? env.EDGELITE_LOG_LEVEL ?? DEFAULT_LOG_LEVEL;
  if (!(LOG_LEVELS as readonly string[]).includes(level)) throw new EdgeliteError('MISCONFIGURED', `--log-level (EDGELITE_LOG_LEVEL) must be one of ${LOG_LEVELS.join(', ')}, got "${level}"`);
  return { format, level: level as LogLevel };
}

/** LevelledLogger is a Logger that also tells whether a level would be written (to skip building events nobody reads). */
export interface LevelledLogger extends Logger {
  enabled(level: LogLevel): boolean;
}

/** nodeLogger writes a command's events to `dest` (stdout by default), synchronously, so nothing is lost on exit. */
export function nodeLogger(role: string, options: LogOptions, dest: LogDestination = 1): LevelledLogger {
  const stream = options.format === 'pretty'
    ? pretty({ destination: dest, colorize: isTTY(dest), sync: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,role', messageFormat: '[{role}] {msg}', singleLine: true })
    : typeof dest === 'number' ? pino.destination({ dest, sync: true }) : dest;
  const log = pino(
    {
      level: options.level,
      base: { role },
      messageKey: 'msg',
      timestamp: () => `,"time":"${new Date().toISOString()}"`,
      formatters: { level: (label) => ({ level: label }) },
    },
    stream,
  );
  const logger = (event: Record<string, unknown>) => {
    const level = levelOf(event);
    if (!log.isLevelEnabled(level)) return;
    const { level: _level, msg, ...fields } = event;
    log[level](redact(fields), typeof msg === 'string' ? msg : msg === undefined ? undefined : String(msg));
  };
  return Object.assign(logger, { enabled: (level: LogLevel) => log.isLevelEnabled(level) });
}

/**
 * toolLogger is the logger of a one-shot command (restore, migrate, export, doctor): its log and
 * progress lines go to stderr, stdout keeping the command's result.
 */
export function toolLogger(command: string, argv: readonly string[], env: Record<string, string | undefined> = process.env): LevelledLogger {
  const options = logOptions(argv, env, 2);
  // On a terminal, a line goes above the progress bar being drawn there (shared/node/progress.ts).
  return nodeLogger(command, options, process.stderr.isTTY ? Object.assign(aboveBars(process.stderr), { isTTY: true }) : 2);
}
