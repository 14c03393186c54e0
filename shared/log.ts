/** Logger writes one JSON object per line: machine-readable, greppable, the same on every role. */
export type Logger = (event: Record<string, unknown>) => void;

export function jsonLogger(role: string, write: (line: string) => void): Logger {
  return (event) => write(`${JSON.stringify({ time: new Date().toISOString(), role, ...event })}\n`);
}

export const silentLogger: Logger = () => {};
