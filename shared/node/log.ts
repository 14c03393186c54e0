/**
 * nodeLogger: the Node servers' Logger on pino (README.md#logs). `json` writes one JSON line per event
 * with the fields jsonLogger always had (`time` ISO, `role`, `msg`, the event's own) plus `level` as a
 * word; `pretty` writes pino-pretty's human lines, level colours on a terminal. Token, authorization and
 * key fields are redacted wherever they appear.
 */
import { parseArgs } from 'node:util';
import pino from 'pino';
import pretty from 'pino-pretty';
import { LOG_FLAGS, parseArgsOptions } from '../cli-flags.ts';
import { EdgeliteError } from '../errors.ts';
import { LOG_LEVELS, levelOf, type Logger, type LogLevel } from '../log.ts';

export interface LogOptions {
  format: 'json' | 'pretty';
  level: LogLevel;
}

export const DEFAULT_LOG_OPTIONS: LogOptions = { format: 'json', level: 'info' };

/** REDACT: pino paths never written in clear (secrets in events, request headers). */
export const REDACT = ['token', 'authorization', 'key', 'secret', 'password', '*.token', '*.authorization', '*.key', '*.secret', '*.password', 'headers.authorization', 'headers.cookie'];

/** logOptions reads `--log-format`/`--log-level` (or EDGELITE_LOG_FORMAT/LEVEL) from a role's argv; others are left to its config parser. */
export function logOptions(argv: string[], env: Record<string, string | undefined>): LogOptions {
  const { values } = parseArgs({ args: argv, options: parseArgsOptions(LOG_FLAGS), strict: false, allowPositionals: true });
  const str = (v: unknown) => (typeof v === 'string' ? v : undefined);
  const format = str(values['log-format']) ?? env.EDGELITE_LOG_FORMAT ?? DEFAULT_LOG_OPTIONS.format;
  if (format !== 'json' && format !== 'pretty') throw new EdgeliteError('MISCONFIGURED', `--log-format (EDGELITE_LOG_FORMAT) must be json or pretty, got "${format}"`);
  const level = str(values['log-level']) ?? env.EDGELITE_LOG_LEVEL ?? DEFAULT_LOG_OPTIONS.level;
  if (!(LOG_LEVELS as readonly string[]).includes(level)) throw new EdgeliteError('MISCONFIGURED', `--log-level (EDGELITE_LOG_LEVEL) must be one of ${LOG_LEVELS.join(', ')}, got "${level}"`);
  return { format, level: level as LogLevel };
}

/** nodeLogger writes a role's events to `out` (stdout by default), synchronously, so nothing is lost on exit. */
export function nodeLogger(role: string, options: LogOptions = DEFAULT_LOG_OPTIONS, out: NodeJS.WritableStream & { isTTY?: boolean } = process.stdout): Logger {
  const stream = options.format === 'pretty' ? pretty({ destination: out, colorize: out.isTTY === true, sync: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname', singleLine: true }) : out === process.stdout ? pino.destination({ dest: 1, sync: true }) : out;
  const log = pino(
    {
      level: options.level,
      base: { role },
      messageKey: 'msg',
      timestamp: () => `,"time":"${new Date().toISOString()}"`,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: REDACT, censor: '[redacted]' },
    },
    stream,
  );
  return (event) => {
    const { level: _level, msg, ...fields } = event;
    log[levelOf(event)](fields, typeof msg === 'string' ? msg : msg === undefined ? undefined : String(msg));
  };
}
