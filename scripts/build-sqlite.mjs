// build-sqlite rebuilds better-sqlite3 from the SQLite amalgamation it ships, with the package's own
// compile options (deps/defines.gypi) plus SQLITE_ENABLE_DBPAGE_VTAB, which the replica needs to write
// pages through the sqlite_dbpage virtual table. It runs as the root postinstall, so `npm ci` on a clean
// clone produces the right binary with no manual step. It is idempotent: when the binary already has
// the option, it does nothing.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const EXTRA_DEFINE = 'SQLITE_ENABLE_DBPAGE_VTAB';
const require = createRequire(import.meta.url);
const pkgDir = dirname(require.resolve('better-sqlite3/package.json'));
const definesPath = join(pkgDir, 'deps', 'defines.gypi');

function hasDbpage() {
  // A child process, so a stale binary is not left loaded in this one.
  try {
    const out = execFileSync(process.execPath, ['-e', `
      const Database = require(${JSON.stringify(pkgDir)});
      const db = new Database(':memory:');
      const opts = db.pragma('compile_options', { simple: false }).map((r) => r.compile_options);
      process.stdout.write(opts.includes('ENABLE_DBPAGE_VTAB') ? 'yes' : 'no');
    `], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    return out === 'yes';
  } catch {
    return false; // not built (yet) or not loadable: build it.
  }
}

if (hasDbpage()) {
  console.log(`[edgelite] better-sqlite3 already has ${EXTRA_DEFINE}`);
  process.exit(0);
}

const defines = readFileSync(definesPath, 'utf8');
if (!defines.includes(`'${EXTRA_DEFINE}'`)) {
  const patched = defines.replace(/'defines': \[\n/, (m) => `${m}    '${EXTRA_DEFINE}',\n`);
  if (patched === defines) throw new Error(`build-sqlite: unexpected layout of ${definesPath}`);
  writeFileSync(definesPath, patched);
}

// npm exposes the node-gyp it bundles (the one better-sqlite3's own install uses) to lifecycle scripts.
const nodeGyp = process.env.npm_config_node_gyp;
console.log(`[edgelite] rebuilding better-sqlite3 with ${EXTRA_DEFINE} (takes a few minutes)`);
if (nodeGyp) {
  execFileSync(process.execPath, [nodeGyp, 'rebuild', '--release'], { cwd: pkgDir, stdio: 'inherit' });
} else {
  execFileSync('node-gyp', ['rebuild', '--release'], { cwd: pkgDir, stdio: 'inherit' });
}

if (!hasDbpage()) {
  throw new Error(`build-sqlite: rebuilt better-sqlite3 still lacks ${EXTRA_DEFINE}`);
}
console.log(`[edgelite] better-sqlite3 built with ${EXTRA_DEFINE}`);
if (!existsSync(join(pkgDir, 'build', 'Release', 'better_sqlite3.node'))) {
  throw new Error('build-sqlite: better_sqlite3.node missing after the build');
}
