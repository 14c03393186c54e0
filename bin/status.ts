/** `edgelite status URL`: positions and lag of every database on a primary or replica. */
export async function statusMain(argv: string[]): Promise<void> {
  const url = argv[0];
  if (!url) throw new Error('usage: edgelite status URL   (auth: EDGELITE_TOKEN)');
  const headers: Record<string, string> = {};
  if (process.env.EDGELITE_TOKEN) headers.authorization = `Bearer ${process.env.EDGELITE_TOKEN}`;
  const base = url.replace(/\/+$/, '');
  const health = await fetch(`${base}/v1/health`, { headers });
  const h = (await health.json()) as Record<string, unknown>;
  const list = await fetch(`${base}/v1/db`, { headers });
  const body = (await list.json()) as { databases?: Array<Record<string, unknown>>; error?: { code: string; message: string } };
  if (!list.ok) throw new Error(`${list.status} ${body.error?.code}: ${body.error?.message}`);
  process.stdout.write(`${base}  role=${String(h.role)}  health=${String(h.status)} (HTTP ${health.status})\n`);
  const rows = (body.databases ?? []).map((d) => [d.name, d.generation, d.txid, d.checksum, d.lagMs, d.lagTxids].map((v) => String(v ?? '-')));
  process.stdout.write(formatTable(['database', 'generation', 'txid', 'checksum', 'lag ms', 'lag txids'], rows));
}

export function formatTable(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  return `${[line(head), ...rows.map(line)].join('\n')}\n`;
}
