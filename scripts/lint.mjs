// lint checks the import rules of docs/ARCHITECTURE.md#the-folder-map that the compiler cannot: shared/ imports nothing Node-only,
// except shared/node/ (Node-only code common to primary and replica), which nothing Worker-bound imports;
// primary/ and replica/ never import each other; only the network modules import undici. Exit 1 with
// one line per violation.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const NODE_ONLY_SHARED = join('shared', 'node') + '/';
const UNDICI_ALLOWED = new Set(['replica/primary-fetch.ts']);

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
    if (f.startsWith(NODE_ONLY_SHARED)) continue;
    for (const spec of imports(f)) {
      if (/^node:|^(better-sqlite3|undici|@hono\/node-server)$/.test(spec)) problems.push(`${f}: shared/ must not import ${spec}`);
      if (/(^|\/)node\//.test(spec) && spec.startsWith('.')) problems.push(`${f}: Worker-safe shared/ must not import shared/node/ (${spec})`);
    }
  }
  for (const f of files('deploy/worker/src')) {
    for (const spec of imports(f)) if (spec.includes('shared/node/')) problems.push(`${f}: the Worker must not import shared/node/ (${spec})`);
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
