// build-sqlite rebuilds better-sqlite3 from the SQLite amalgamation it ships, with the package's own
// compile options (deps/defines.gypi) changed in two ways:
// - plus SQLITE_ENABLE_DBPAGE_VTAB, which the replica needs to write pages through sqlite_dbpage;
// - minus SQLITE_OMIT_PROGRESS_CALLBACK, plus our scripts/sqlite-deadline.c compiled into the same
//   static library (added to deps/sqlite3.gyp's sources) and registered by SQLITE_EXTRA_INIT: every
//   connection gets a progress handler and edgelite_deadline(), the in-process query time limit
//   (shared/node/query-limit.ts).
// It runs as the root postinstall, so `npm ci` on a clean clone produces the right binary with no manual
// step. It is idempotent: when the binary already has all of it (and the C file is the one built), it
// does nothing.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const EXTRA_DEFINES = ['SQLITE_ENABLE_DBPAGE_VTAB', 'SQLITE_EXTRA_INIT=edgelite_deadline_init'];
const DROPPED_DEFINES = ['SQLITE_OMIT_PROGRESS_CALLBACK'];
/** DEADLINE_C: our C file's name once copied next to the package's sqlite3.gyp (gyp sources are relative). */
const DEADLINE_C = 'edgelite-deadline.c';
const require = createRequire(import.meta.url);
const pkgDir = dirname(require.resolve('better-sqlite3/package.json'));
const definesPath = join(pkgDir, 'deps', 'defines.gypi');
const gypPath = join(pkgDir, 'deps', 'sqlite3.gyp');
const deadlineSource = readFileSync(fileURLToPath(new URL('./sqlite-deadline.c', import.meta.url)), 'utf8');
const deadlineCopy = join(pkgDir, 'deps', DEADLINE_C);

/** missing says what the loadable binary lacks (empty when nothing), checked in a child process. */
function missing() {
  const want = [];
  if (!existsSync(deadlineCopy) || readFileSync(deadlineCopy, 'utf8') !== deadlineSource) want.push(`the current ${DEADLINE_C}`);
  // A child process, so a stale binary is not left loaded in this one.
  try {
    const out = execFileSync(process.execPath, ['-e', `
      const Database = require(${JSON.stringify(pkgDir)});
      const db = new Database(':memory:');
      const opts = db.pragma('compile_options', { simple: false }).map((r) => r.compile_options);
      let key = 'no';
      try { key = String(db.prepare('SELECT edgelite_deadline_key()').pluck().get()); } catch {}
      process.stdout.write(JSON.stringify({ opts, key }));
    `], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const { opts, key } = JSON.parse(out);
    if (!opts.includes('ENABLE_DBPAGE_VTAB')) want.push('ENABLE_DBPAGE_VTAB');
    if (opts.includes('OMIT_PROGRESS_CALLBACK')) want.push('no OMIT_PROGRESS_CALLBACK');
    if (!opts.includes('EXTRA_INIT=edgelite_deadline_init')) want.push('EXTRA_INIT');
    if (key !== '0') want.push('edgelite_deadline_key()');
  } catch {
    want.push('a loadable binary'); // not built (yet) or not loadable: build it.
  }
  return want;
}

/** patchDefines adds EXTRA_DEFINES and drops DROPPED_DEFINES in deps/defines.gypi (each once). */
function patchDefines() {
  let text = readFileSync(definesPath, 'utf8');
  for (const d of DROPPED_DEFINES) text = text.replace(new RegExp(`^\\s*'${d}',\\n`, 'm'), '');
  for (const d of EXTRA_DEFINES) {
    if (text.includes(`'${d}'`)) continue;
    const patched = text.replace(/'defines': \[\n/, (m) => `${m}    '${d}',\n`);
    if (patched === text) throw new Error(`build-sqlite: unexpected layout of ${definesPath}`);
    text = patched;
  }
  for (const d of DROPPED_DEFINES) if (text.includes(`'${d}'`)) throw new Error(`build-sqlite: could not drop ${d} from ${definesPath}`);
  writeFileSync(definesPath, text);
}

/** patchGyp copies our C file next to sqlite3.gyp and adds it to the sqlite3 target's sources (once). */
function patchGyp() {
  writeFileSync(deadlineCopy, deadlineSource);
  const gyp = readFileSync(gypPath, 'utf8');
  if (gyp.includes(`'${DEADLINE_C}'`)) return;
  const target = "'sources': ['<(SHARED_INTERMEDIATE_DIR)/sqlite3/sqlite3.c'";
  if (gyp.split(target).length !== 2) throw new Error(`build-sqlite: unexpected layout of ${gypPath}`);
  writeFileSync(gypPath, gyp.replace(target, `${target}, '${DEADLINE_C}'`));
}

const before = missing();
if (before.length === 0) {
  console.log('[edgelite] better-sqlite3 already has sqlite_dbpage and the deadline hook');
  process.exit(0);
}

patchDefines();
patchGyp();

// npm exposes the node-gyp it bundles (the one better-sqlite3's own install uses) to lifecycle scripts;
// run by hand, the same file next to this node's npm, else a node-gyp on the PATH.
const bundledGyp = join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
const nodeGyp = process.env.npm_config_node_gyp ?? (existsSync(bundledGyp) ? bundledGyp : null);
console.log(`[edgelite] rebuilding better-sqlite3 (lacks: ${before.join(', ')}; takes a few minutes)`);
if (nodeGyp) {
  execFileSync(process.execPath, [nodeGyp, 'rebuild', '--release'], { cwd: pkgDir, stdio: 'inherit' });
} else {
  execFileSync('node-gyp', ['rebuild', '--release'], { cwd: pkgDir, stdio: 'inherit' });
}

if (!existsSync(join(pkgDir, 'build', 'Release', 'better_sqlite3.node'))) {
  throw new Error('build-sqlite: better_sqlite3.node missing after the build');
}
const after = missing();
if (after.length > 0) throw new Error(`build-sqlite: rebuilt better-sqlite3 still lacks ${after.join(', ')}`);
console.log('[edgelite] better-sqlite3 built with sqlite_dbpage and the deadline hook');
