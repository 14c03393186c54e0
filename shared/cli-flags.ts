/**
 * The flag tables of every `edgelite` command: the one place a flag is declared. bin/commands/ builds
 * commander's parsing and `--help` from them, the commands' own parsers read argv through the same
 * rows, and the roles' config parsers (primary/config.ts, replica/config.ts) derive their parseArgs
 * options from them, so help and parsing cannot drift (README.md#cli). Pure data, Worker-safe.
 */

/** FlagSpec is one flag: `value` names its argument (absent: a boolean switch); `fallback` is the default shown in help. */
export interface FlagSpec {
  name: string;
  value?: string;
  description: string;
  fallback?: string;
  /** May be given more than once (commander's variadic `<v...>`). */
  multiple?: boolean;
}

/** CommandSpec is one command: its positional arguments (`[url]`, `<url>`) and flags. */
export interface CommandSpec {
  name: string;
  summary: string;
  args?: string[];
  flags: readonly FlagSpec[];
  /**
   * The other role's flags, taken only by a failover node (`primary --lease`, `replica --candidate`):
   * it keeps them for the role it may switch to (README.md#high-availability).
   */
  failoverFlags?: readonly FlagSpec[];
  /** Environment variables the command reads besides its flags' own, as `NAME: meaning` lines of its help. */
  env?: readonly string[];
}

/** LOG_FLAGS: how a command writes its log lines (shared/node/log.ts). */
export const LOG_FLAGS: readonly FlagSpec[] = [
  { name: 'log-format', value: 'json|pretty', description: 'JSON lines, or human lines (coloured on a terminal); env EDGELITE_LOG_FORMAT', fallback: 'pretty on a terminal, else json' },
  { name: 'log-level', value: 'debug|info|warn|error', description: 'the lowest level written; env EDGELITE_LOG_LEVEL', fallback: 'info' },
];

const S3_ENDPOINT: FlagSpec = { name: 's3-endpoint', value: 'URL', description: 'S3-compatible endpoint (else AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL)' };
const KEY_FILE: FlagSpec = { name: 'encryption-key-file', value: 'PATH', description: 'keyring file: every bucket object encrypted' };
const TOKEN = (right: string): FlagSpec => ({ name: 'token', value: 'TOKEN', description: `bearer token, ${right} (else EDGELITE_TOKEN)` });
const LEASE: readonly FlagSpec[] = [
  { name: 'lease', value: 'etcd://HOST:PORT/PREFIX', description: 'failover lease in etcd (README.md#high-availability)' },
  { name: 'lease-ttl', value: 'DURATION', description: 'lease time to live, whole seconds', fallback: '5s' },
  { name: 'advertise', value: 'URL', description: 'the URL other nodes reach this one at', fallback: 'http://LISTEN' },
  { name: 'node-id', value: 'ID', description: 'this node in the lease records', fallback: 'advertised host-port' },
  { name: 'sync-replicas', value: 'N', description: 'a write waits until N candidates applied it (needs --lease)', fallback: '0' },
  { name: 'sync-timeout', value: 'DURATION', description: 'longest such wait, then 504 REPLICATION_PENDING', fallback: '10s' },
];
/** SERVER: the flags both roles take, as the same setting. */
const SERVER: readonly FlagSpec[] = [
  { name: 'data', value: 'DIR', description: 'data directory (env EDGELITE_DATA)' },
  { name: 'query-timeout-ms', value: 'N', description: 'time limit of a read (and of a write on the primary) in ms; 0 runs them in-process with none', fallback: '5000' },
  { name: 'max-body-bytes', value: 'N', description: 'largest request body', fallback: '8388608' },
  { name: 'idle-close-ms', value: 'N', description: 'close a database unused this long; 0 never (env EDGELITE_IDLE_CLOSE_MS)', fallback: '60000' },
  { name: 'max-open-databases', value: 'N', description: 'most databases open at once with idle closing (env EDGELITE_MAX_OPEN_DATABASES)', fallback: '512' },
];

/** PRIMARY_ROLE: what only the primary role takes. */
const PRIMARY_ROLE: readonly FlagSpec[] = [
  { name: 'synchronous', value: 'normal|full', description: 'SQLite synchronous mode (env EDGELITE_SYNCHRONOUS)', fallback: 'normal' },
  { name: 'checkpoint-frames', value: 'N', description: 'checkpoint after this many WAL frames', fallback: '4000' },
  { name: 'compress', description: 'compress the change stream' },
  { name: 'backup', value: 's3://BUCKET/PREFIX|file:///DIR', description: 'continuous backup into a bucket' },
  { name: 'backup-interval', value: 'DURATION', description: 'how often changed databases upload a segment', fallback: '1s' },
  { name: 'backup-retention', value: 'DURATION', description: 'every point this far back stays restorable', fallback: '7d' },
  { name: 'backup-ack', description: 'answer a write once it is in the bucket (needs --backup)' },
  { name: 'backup-ack-timeout', value: 'DURATION', description: 'longest such wait, then 504 BACKUP_PENDING', fallback: '10s' },
];

/** REPLICA_ROLE: what only the replica role takes. */
const REPLICA_ROLE: readonly FlagSpec[] = [
  { name: 'primary', value: 'URL', description: 'the primary to follow (env EDGELITE_PRIMARY; optional with --source or --lease)' },
  { name: 'databases', value: 'NAMES|*', description: 'names and patterns to follow, comma-separated (env EDGELITE_DATABASES)', fallback: '*' },
  { name: 'lazy', description: 'fetch a database on its first request, evict the least recently used (env EDGELITE_LAZY)' },
  { name: 'max-databases', value: 'N', description: 'with --lazy, most databases kept on disk (env EDGELITE_MAX_DATABASES)', fallback: '100' },
  { name: 'bootstrap-concurrency', value: 'N', description: 'snapshots downloaded at once (env EDGELITE_BOOTSTRAP_CONCURRENCY)', fallback: '8' },
  { name: 'read-wait-ms', value: 'N', description: 'longest wait of a read for its position', fallback: '5000' },
  { name: 'write-wait-ms', value: 'N', description: 'longest wait after a forwarded write', fallback: '5000' },
  { name: 'on-behind', value: 'error|primary', description: 'a read the replica cannot serve in time: answer an error or ask the primary', fallback: 'error' },
  { name: 'max-lag-ms', value: 'N', description: 'lag above which health reports degraded', fallback: '10000' },
  { name: 'heartbeat-timeout-ms', value: 'N', description: 'reconnect when the stream is silent this long', fallback: '5000' },
  { name: 'source', value: 's3://BUCKET/PREFIX|file:///DIR', description: 'bootstrap and catch up from a backup bucket' },
  { name: 'source-interval', value: 'DURATION', description: 'how often the bucket is listed', fallback: '1s' },
  { name: 'candidate', description: 'stand in elections and take over when the lease lapses (needs --lease)' },
];

export const PRIMARY_FLAGS: readonly FlagSpec[] = [
  ...SERVER.slice(0, 1),
  { name: 'listen', value: 'HOST:PORT', description: 'address to serve on (env EDGELITE_LISTEN)', fallback: '127.0.0.1:7400' },
  ...SERVER.slice(1),
  ...PRIMARY_ROLE,
  S3_ENDPOINT,
  KEY_FILE,
  ...LEASE,
  ...LOG_FLAGS,
];

export const REPLICA_FLAGS: readonly FlagSpec[] = [
  ...SERVER.slice(0, 1),
  { name: 'listen', value: 'HOST:PORT', description: 'address to serve on (env EDGELITE_LISTEN)', fallback: '127.0.0.1:7401' },
  ...SERVER.slice(1),
  ...REPLICA_ROLE,
  S3_ENDPOINT,
  KEY_FILE,
  ...LEASE,
  ...LOG_FLAGS,
];

/** PRIMARY_ONLY / REPLICA_ONLY: the flags of one role alone, which a failover node sorts to that role (bin/ha-roles.ts). */
export const PRIMARY_ONLY: readonly FlagSpec[] = PRIMARY_ROLE;
export const REPLICA_ONLY: readonly FlagSpec[] = REPLICA_ROLE;

export const RESTORE_FLAGS: readonly FlagSpec[] = [
  { name: 'db', value: 'NAME', description: 'the database to restore (with --out)' },
  { name: 'out', value: 'FILE', description: 'where the restored database goes' },
  { name: 'all', description: 'every database in the bucket (with --data)' },
  { name: 'data', value: 'DIR', description: 'with --all, the primary data directory to fill' },
  { name: 'txid', value: 'N', description: 'restore to this txid (one database)' },
  { name: 'time', value: 'ISO', description: 'restore to this point in time', fallback: 'the newest upload' },
  { name: 'force', description: 'overwrite an existing file (or the databases in --data)' },
  KEY_FILE,
  S3_ENDPOINT,
  ...LOG_FLAGS,
];

export const BACKUPS_FLAGS: readonly FlagSpec[] = [
  { name: 'db', value: 'NAME', description: 'only this database' },
  { name: 'json', description: 'print JSON' },
  S3_ENDPOINT,
];

export const PROMOTE_FLAGS: readonly FlagSpec[] = [
  { name: 'timeout', value: 'DURATION', description: 'how long to wait for the handover', fallback: '10s' },
  { name: 'json', description: 'print JSON' },
];

export const STATUS_FLAGS: readonly FlagSpec[] = [
  { name: 'lease', value: 'etcd://HOST:PORT/PREFIX', description: 'show the failover lease instead of a server' },
  { name: 'json', description: 'print JSON' },
  { name: 'watch', description: 'redraw every --interval-ms until Ctrl-C' },
  { name: 'interval-ms', value: 'N', description: 'with --watch, time between redraws in ms', fallback: '1000' },
];

export const DOCTOR_FLAGS: readonly FlagSpec[] = [
  { name: 'db', value: 'NAME', description: 'database(s) to examine', multiple: true },
  { name: 'all', description: 'every database the server lists' },
  { name: 'primary', value: 'URL', description: 'the primary or a replica' },
  { name: 'json', description: 'print the report as JSON' },
  { name: 'fix', value: 'DIR', description: 'write the fixes that are migrations into DIR' },
  TOKEN('read right'),
  ...LOG_FLAGS,
];

export const MIGRATE_FLAGS: readonly FlagSpec[] = [
  { name: 'db', value: 'NAME', description: 'database(s) to migrate', multiple: true },
  { name: 'all', description: 'every database the server lists' },
  { name: 'primary', value: 'URL', description: 'the primary or a replica (writes are forwarded)' },
  TOKEN('read and write rights (--dry-run: also admin)'),
  { name: 'dry-run', description: 'run on a fork of each database, then drop the fork' },
  { name: 'fail-fast', description: 'start no other database after one fails' },
  { name: 'concurrency', value: 'N', description: 'databases at once with --all (1 to 64)', fallback: '4' },
  { name: 'json', description: 'print the report as JSON' },
  ...LOG_FLAGS,
];

export const EXPORT_FLAGS: readonly FlagSpec[] = [
  { name: 'format', value: 'parquet|csv|duckdb', description: 'output format' },
  { name: 'out', value: 'PATH', description: 'output directory (parquet, csv) or new .duckdb file' },
  { name: 'primary', value: 'URL', description: 'the primary or a replica to snapshot' },
  { name: 'all', description: 'every database, one dataset with a tenant column' },
  TOKEN('replicate right on a primary, read on a replica'),
  ...LOG_FLAGS,
];

const SERVER_AUTH = 'EDGELITE_TOKEN / EDGELITE_TOKENS: this server\'s tokens (README.md#configuration)';
const S3_ENV = 'AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION: credentials and region of an s3:// bucket';
const TOKEN_ENV = 'EDGELITE_TOKEN: the bearer token sent';

export const PRIMARY: CommandSpec = { name: 'primary', summary: 'run the primary: the one writer, streaming changes to replicas', flags: PRIMARY_FLAGS, failoverFlags: REPLICA_ONLY, env: [SERVER_AUTH, S3_ENV] };
export const REPLICA: CommandSpec = {
  name: 'replica',
  summary: 'run a read replica following a primary, a bucket or the lease holder',
  flags: REPLICA_FLAGS,
  failoverFlags: PRIMARY_ONLY,
  env: [SERVER_AUTH, 'EDGELITE_PRIMARY_TOKEN: the token presented to the primary (default EDGELITE_TOKEN)', S3_ENV],
};
export const RESTORE: CommandSpec = { name: 'restore', summary: 'restore a database (or all) from a backup bucket', args: ['<url>'], flags: RESTORE_FLAGS, env: [S3_ENV] };
export const BACKUPS: CommandSpec = { name: 'backups', summary: 'list what a backup bucket can restore', args: ['<url>'], flags: BACKUPS_FLAGS, env: [S3_ENV] };
export const PROMOTE: CommandSpec = { name: 'promote', summary: 'make the failover node at URL the primary', args: ['<url>'], flags: PROMOTE_FLAGS, env: [`${TOKEN_ENV} (the admin right)`] };
export const STATUS: CommandSpec = { name: 'status', summary: 'positions and lag of a server, or the failover lease', args: ['[url]'], flags: STATUS_FLAGS, env: [`${TOKEN_ENV} (the read right)`] };
export const DOCTOR: CommandSpec = { name: 'doctor', summary: 'schema, integrity and settings findings with their fixes', flags: DOCTOR_FLAGS, env: [`${TOKEN_ENV} unless --token`] };
export const MIGRATE: CommandSpec = { name: 'migrate', summary: 'apply NNNN_name.sql migration files, each in one transaction', args: ['<dir>'], flags: MIGRATE_FLAGS, env: [`${TOKEN_ENV} unless --token`] };
export const EXPORT: CommandSpec = { name: 'export', summary: 'a snapshot into analytics files (parquet, csv, duckdb)', args: ['[name]'], flags: EXPORT_FLAGS, env: [`${TOKEN_ENV} unless --token`] };
export const DEMO: CommandSpec = {
  name: 'demo',
  summary: 'what `npm start` runs: a primary, two replicas and a small workload',
  flags: [],
  env: ['EDGELITE_DEMO_DIR: where its files go (default .edgelite-demo)', 'EDGELITE_DEMO_PORT: the first port (default 7400; 0: ephemeral ports)', 'EDGELITE_DEMO_SECONDS: stop by itself after that many seconds (default never)'],
};

/** COMMANDS: what `edgelite --help` lists, in order. A new command adds its row here and its runner in bin/commands/run.ts. */
export const COMMANDS: readonly CommandSpec[] = [PRIMARY, REPLICA, STATUS, RESTORE, BACKUPS, PROMOTE, MIGRATE, DOCTOR, EXPORT, DEMO];

/** parseArgsOptions turns a flag table into node:util parseArgs options, for the config parsers that take argv arrays. */
export function parseArgsOptions(flags: readonly FlagSpec[]): Record<string, { type: 'string' | 'boolean'; multiple?: boolean }> {
  const out: Record<string, { type: 'string' | 'boolean'; multiple?: boolean }> = {};
  for (const f of flags) out[f.name] = f.value === undefined ? { type: 'boolean' } : f.multiple ? { type: 'string', multiple: true } : { type: 'string' };
  return out;
}

/** ParsedFlags is what a config parser reads: string flags by name, switches as booleans. */
export interface ParsedFlags {
  values: Record<string, string | undefined>;
  on(name: string): boolean;
}

/** parsedFlags splits parseArgs' values (validated against a table) into strings and switches. */
export function parsedFlags(raw: Record<string, unknown>): ParsedFlags {
  const values: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(raw)) if (typeof v === 'string') values[k] = v;
  return { values, on: (name) => raw[name] === true };
}
