/**
 * `edgelite promote URL` (README.md#high-availability): make the failover node at URL the primary by
 * hand. If another node holds the lease, it hands over once URL has caught up (no acknowledged write is
 * left behind); if none does, URL takes it at once. EDGELITE_TOKEN must carry the admin right.
 */
import { PROMOTE } from '../shared/cli-flags.ts';
import { EdgeliteError } from '../shared/errors.ts';
import { parseDurationMs } from '../shared/config.ts';
import { parseFlags } from './commands/flags.ts';

const USAGE = 'usage: edgelite promote URL [--timeout 10s] [--json]   (URL: the failover node to promote)';

export async function promoteMain(argv: string[]): Promise<void> {
  const f = parseFlags(PROMOTE, argv, USAGE);
  const values = { timeout: f.str('timeout'), json: f.on('json') };
  const url = f.args[0];
  if (!url || f.args.length > 1 || !URL.canParse(url)) throw new EdgeliteError('MISCONFIGURED', USAGE);
  const timeoutMs = values.timeout === undefined ? 10_000 : parseDurationMs(values.timeout, '--timeout');
  const token = process.env.EDGELITE_TOKEN;
  let res: Response;
  try {
    res = await fetch(`${url.replace(/\/+$/, '')}/v1/ha/promote`, { method: 'POST', headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) }, body: JSON.stringify({ timeoutMs }), signal: AbortSignal.timeout(timeoutMs + 15_000) });
  } catch (err) {
    throw new EdgeliteError('UNAVAILABLE', `${url} unreachable: ${(err as Error).message}`);
  }
  const body = (await res.json().catch(() => null)) as { node?: string; epoch?: number; handedOverBy?: string | null; error?: { code: string; message: string } } | null;
  if (!res.ok) throw new EdgeliteError(body?.error?.code === 'HANDOVER_FAILED' ? 'HANDOVER_FAILED' : 'UNAVAILABLE', body?.error?.message ?? `${url} answered ${res.status}`);
  if (values.json) process.stdout.write(`${JSON.stringify(body)}\n`);
  else process.stdout.write(`${body?.node} holds the lease, epoch ${body?.epoch}${body?.handedOverBy ? ` (handed over by ${body.handedOverBy})` : ''}\n`);
}
