/**
 * startPostgres runs the baseline the sceptics would pick: a PostgreSQL primary and a hot standby fed
 * by streaming replication (pg_basebackup -R, WAL streamed), both on loopback ports in a temporary
 * directory, with the distribution's defaults (synchronous_commit=on, fsync=on, no synchronous standby:
 * a commit waits for its local WAL flush, not for the standby). Both servers are stopped by PID (immediate
 * shutdown, then SIGKILL) through the caller's cleanup stack, so an error or Ctrl-C leaves nothing running.
 *
 * Debian installs the binaries under /usr/lib/postgresql/<major>/bin. PostgreSQL refuses to run as
 * root, so as root every command runs as the `postgres` user (runuser) on a directory chowned to it.
 */
import { execFile } from 'node:child_process';
import { appendFileSync, chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { freePort, sleep, waitUntil, type BenchContext } from './scenarios/common.ts';

const run = promisify(execFile);

export interface PgEndpoint {
  host: string;
  port: number;
  user: string;
  database: string;
}

export interface PgCluster {
  primary: PgEndpoint;
  standby: PgEndpoint;
  version: string;
  /** stop shuts both servers down by PID and removes their directory. Idempotent. */
  stop(): Promise<void>;
}

const PG_ROOT = '/usr/lib/postgresql';

/** findPostgresBin returns the newest installed server's bin directory, or null. */
function findPostgresBin(): string | null {
  if (!existsSync(PG_ROOT)) return null;
  const majors = readdirSync(PG_ROOT)
    .filter((v) => /^\d+$/.test(v) && existsSync(join(PG_ROOT, v, 'bin', 'initdb')) && existsSync(join(PG_ROOT, v, 'bin', 'pg_basebackup')))
    .sort((a, b) => Number(b) - Number(a));
  return majors[0] ? join(PG_ROOT, majors[0], 'bin') : null;
}

/** startPostgres returns the running pair, or a reason string when PostgreSQL is not installed. */
export async function startPostgres(ctx: BenchContext): Promise<PgCluster | string> {
  const bin = findPostgresBin();
  if (!bin) return `PostgreSQL is not installed (no ${PG_ROOT}/<major>/bin/initdb); PostgreSQL baselines skipped`;
  const isRoot = process.getuid?.() === 0;
  const dir = mkdtempSync(join(tmpdir(), 'edgelite-bench-pg-'));
  const pids: number[] = [];
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    for (const pid of pids.reverse()) await stopByPid(pid);
    rmSync(dir, { recursive: true, force: true });
  };
  ctx.cleanup.add(`PostgreSQL in ${dir}`, stop);

  if (isRoot) {
    const uid = Number((await run('id', ['-u', 'postgres'])).stdout.trim());
    const gid = Number((await run('id', ['-g', 'postgres'])).stdout.trim());
    chownSync(dir, uid, gid);
  }
  const pgRun = async (cmd: string, args: string[]) => {
    const [file, argv] = isRoot ? ['runuser', ['-u', 'postgres', '--', join(bin, cmd), ...args]] : [join(bin, cmd), args];
    try {
      return await run(file, argv, { cwd: dir, timeout: 120_000 });
    } catch (err) {
      const e = err as { stderr?: string; stdout?: string; message: string };
      throw new Error(`${cmd} failed: ${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}`);
    }
  };

  const version = (await pgRun('postgres', ['--version'])).stdout.trim();
  const primaryDir = join(dir, 'primary');
  const standbyDir = join(dir, 'standby');
  const [primaryPort, standbyPort] = [await freePort(), await freePort()];
  await pgRun('initdb', ['-D', primaryDir, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--no-sync', '--no-instructions']);
  appendFileSync(
    join(primaryDir, 'postgresql.conf'),
    [
      "listen_addresses = '127.0.0.1'",
      `unix_socket_directories = '${dir}'`,
      'wal_level = replica',
      'max_wal_senders = 4',
      'hot_standby = on',
      "log_min_messages = 'warning'",
      '',
    ].join('\n'),
  );
  await pgRun('pg_ctl', ['-D', primaryDir, '-l', join(dir, 'primary.log'), '-o', `-p ${primaryPort}`, '-w', 'start']);
  pids.push(postmasterPid(primaryDir));
  await pgRun('pg_basebackup', ['-h', '127.0.0.1', '-p', String(primaryPort), '-U', 'postgres', '-D', standbyDir, '-R', '-X', 'stream', '-c', 'fast']);
  await pgRun('pg_ctl', ['-D', standbyDir, '-l', join(dir, 'standby.log'), '-o', `-p ${standbyPort}`, '-w', 'start']);
  pids.push(postmasterPid(standbyDir));

  const endpoint = (port: number): PgEndpoint => ({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
  const client = new pg.Client(endpoint(primaryPort));
  await client.connect();
  try {
    await waitUntil(async () => {
      const r = await client.query("SELECT count(*)::int AS n FROM pg_stat_replication WHERE state = 'streaming'");
      return (r.rows[0] as { n: number }).n >= 1;
    }, 'the PostgreSQL standby to stream', 30_000, 50);
  } finally {
    await client.end();
  }
  return { primary: endpoint(primaryPort), standby: endpoint(standbyPort), version, stop };
}

function postmasterPid(dataDir: string): number {
  const pid = Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  if (!Number.isInteger(pid) || pid <= 0) throw new Error(`no postmaster PID in ${dataDir}`);
  return pid;
}

/**
 * stopByPid asks a postmaster for an immediate shutdown (SIGQUIT: the cluster is thrown away, so no
 * shutdown checkpoint is worth waiting for) and kills it if it has not exited in 15 s.
 */
async function stopByPid(pid: number): Promise<void> {
  if (!alive(pid)) return;
  process.kill(pid, 'SIGQUIT');
  const deadline = Date.now() + 15_000;
  while (alive(pid)) {
    if (Date.now() > deadline) {
      process.kill(pid, 'SIGKILL');
      return;
    }
    await sleep(20);
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw err;
  }
}
