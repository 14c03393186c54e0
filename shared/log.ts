/**
 * Logger takes one event; every role logs the same way (README.md#logs). An event may carry a `level`
 * (debug, info, warn, error); without one it is `error` when it has an `error` field, else `info`.
 * jsonLogger writes one JSON object per line (Worker-safe); the Node servers use shared/node/log.ts (pino).
 */
export type Logger = (event: Record<string, unknown>) => void;

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** levelOf is an event's level: its own `level` if valid, `error` when it carries an `error`, else `info`. */
export function levelOf(event: Record<string, unknown>): LogLevel {
  const l = event.level;
  if (typeof l === 'string' && (LOG_LEVELS as readonly string[]).includes(l)) return l as LogLevel;
  return event.error !== undefined ? 'error' : 'info';
}

export function jsonLogger(role: string, write: (line: string) => void): Logger {
  return (event) => write(`${JSON.stringify({ time: new Date().toISOString(), role, ...event, level: levelOf(event) })}\n`);
}

export const silentLogger: Logger = () => {};
