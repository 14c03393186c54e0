// lint checks the import rules of STYLE.md that the compiler cannot: shared/ imports nothing Node-only;
// primary/ and replica/ never import each other; only the network modules import undici. Exit 1 with
// one line per violation.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const UNDICI_ALLOWED = new Set(['replica/primary-client.ts']);

function files(dir) {
  const out = [];
  for (const name of readdirSync(join(ROOT, dir))) {
    const p = join(dir, name);
    if (statSync(join(ROOT, p)).isDirectory()) out.push(...files(p));
    else if (p.endsWith('.ts')) out.push(p);
  }
  return out;
}

function imports(file) {
  const text = readFileSync(join(ROOT, file), 'utf8');
  return [...text.matchAll(/(?:from\s+|import\s*\(\s*)['"]([^'"]+)['"]/g)].map((m) => m[1]);
}

export function lint() {
  const problems = [];
  for (const f of files('shared')) {
    for (const spec of imports(f)) {
      if (/^node:|^(better-sqlite3|undici|@hono\/node-server)$/.test(spec)) problems.push(`${f}: shared/ must not import ${spec}`);
    }
  }
  for (const [from, to] of [['primary', 'replica'], ['replica', 'primary']]) {
    for (const f of files(from)) {
      for (const spec of imports(f)) if (spec.includes(`../${to}/`)) problems.push(`${f}: ${from}/ must not import ${to}/ (${spec})`);
    }
  }
  for (const f of [...files('primary'), ...files('replica'), ...files('shared')]) {
    if (imports(f).includes('undici') && !UNDICI_ALLOWED.has(relative(ROOT, join(ROOT, f)))) problems.push(`${f}: only ${[...UNDICI_ALLOWED].join(', ')} may import undici`);
  }
  return problems;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const problems = lint();
  for (const p of problems) console.error(p);
  process.exit(problems.length ? 1 : 0);
}
