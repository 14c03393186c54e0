/**
 * The status page in a real browser (README.md#status-page): headless Chromium (Debian's `chromium`,
 * installed by scripts/ensure-debian.mjs) driven by playwright-core opens `/ui` of a replica that needs
 * a read token, while writes go to its primary. Without a token the page shows the refusal and no data;
 * with the token typed in, the chart draws the server's samples (a lag spike appears while the stream
 * is held back), and once the load stops the table shows exactly what GET /v1/db/{name} answers. The
 * screenshot goes to docs/status-page.png (README.md#status-page shows it). Then the primary's `/ui`
 * shows the replica's stream and its own position, a primary with a continuous backup shows its
 * backup position and lag as GET /v1/db/{name} answers them, and a failover node (a real etcd) shows
 * the lease as GET /v1/ha answers it.
 */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAuthConfig } from '../../shared/auth.ts';
import { silentLogger } from '../../shared/log.ts';
import { parsePrimaryConfig } from '../../primary/config.ts';
import { startPrimary } from '../../primary/server.ts';
import { tempDir } from '../helpers.ts';
import { startEtcd } from '../kit/etcd.ts';
import { spawnEdgelite } from '../kit/spawn.ts';
import { UI_CSP } from '../../shared/ui/page.ts';
import { Cluster, DB } from '../kit/cluster.ts';
import { freePort, http, Load } from '../kit/api.ts';
import { sleep, waitFor } from '../kit/wait.ts';

const TOKEN = 'status-page-read-token-0123';
const SCREENSHOT = join(import.meta.dirname, '..', '..', 'docs', 'status-page.png');
const auth = { authorization: `Bearer ${TOKEN}` };

let cluster: Cluster;
let browser: Browser;
let load: Load | null = null;

beforeAll(async () => {
  cluster = await Cluster.start({ seed: 18, replica: { auth: parseAuthConfig(undefined, `read=${TOKEN}`) } });
  await cluster.startReplica();
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
});

afterAll(async () => {
  await load?.stop().catch(() => {});
  await browser?.close();
  await cluster?.stop();
});

/** pageErrors collects what would mean a broken page: script errors, console errors (a CSP refusal is one). */
function pageErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    // Expected refusals Chromium logs as failed resources: the tokenless poll's 401, and the one probe
    // of GET /v1/ha (404 where no failover lease runs).
    const expected = /status of 401/.test(m.text()) || (/status of 404/.test(m.text()) && m.location().url.endsWith('/v1/ha'));
    if (m.type() === 'error' && !expected) errors.push(`console: ${m.text()} (${m.location().url})`);
  });
  return errors;
}

/** shownRow is the databases table's row for `db` as the page shows it: field → text. */
function shownRow(page: Page, db: string): Promise<Record<string, string>> {
  return page.$$eval(`#databases tr[data-db="${db}"] td[data-field]`, (tds) => Object.fromEntries(tds.map((td) => [td.getAttribute('data-field')!, td.textContent ?? ''])));
}

describe('status page (headless Chromium)', () => {
  it('a replica under write load: token in the page, live chart, positions equal GET /v1/db/{name}', async () => {
    let n = 0;
    load = new Load(2, async () => {
      const r = await http(cluster.primary.url, 'POST', `/v1/db/${DB}/exec`, { statements: [{ sql: 'INSERT INTO items (tag, body) VALUES (?, randomblob(200))', params: [`r${n++}`] }] });
      if (r.status !== 200) throw new Error(`write answered ${r.status}`);
      await sleep(20); // paced: a steady load, not a saturating one
    });

    const page = await browser.newPage({ viewport: { width: 1100, height: 680 } });
    page.setDefaultTimeout(15_000);
    const errors = pageErrors(page);
    const shell = await page.goto(`${cluster.replica.url}/ui`);
    expect(shell!.status()).toBe(200);
    expect(shell!.headers()['content-security-policy']).toBe(UI_CSP);

    // No token yet: the page says why and shows nothing.
    await page.waitForFunction(() => /401 UNAUTHORIZED/.test(document.getElementById('status')!.textContent ?? ''));
    expect(await page.$$('#databases tr[data-db]')).toHaveLength(0);

    await page.fill('#token', TOKEN);
    await page.click('#token-form button[type=submit]');
    expect(await page.inputValue('#token')).toBe(''); // kept in localStorage, not left in the page
    expect(await page.evaluate(() => localStorage.getItem('edgelite-ui-token'))).toBe(TOKEN);

    // The chart draws the server's samples: wait for several real points of this database.
    await page.waitForFunction(() => Number(document.getElementById('chart')!.getAttribute('data-points')) >= 3 && Number(document.getElementById('chart')!.getAttribute('data-series')) >= 1);
    await page.waitForSelector(`#databases tr[data-db="${DB}"]`);

    // Hold the stream back past the grace period: the samples, and so the chart, show the lag rising.
    cluster.proxy.pause('down');
    const spike = await waitFor(async () => {
      const s = await http(cluster.replica.url, 'GET', '/v1/ui/samples', undefined, auth);
      const lags = (s.json.series[DB]?.lagMs ?? []) as Array<number | null>;
      return lags.some((v) => v !== null && v > 0) ? lags : null;
    }, 'a sampled lag above 0 while the stream is paused', 15_000, 100);
    cluster.proxy.resume('down');
    expect(spike.length).toBeGreaterThanOrEqual(3);
    await page.waitForFunction(() => document.querySelector('#chart .u-legend') !== null);

    // Freeze the load; once the replica holds the primary's position, the page must show GET /v1/db/{name}.
    await load.stop();
    load = null;
    await waitFor(() => cluster.caughtUp(), 'the replica to catch up with the primary', 15_000);
    // ... and a heartbeat told it the primary's newest txid (primaryTxid, lagTxids come from heartbeats).
    const api = await waitFor(async () => {
      const a = (await http(cluster.replica.url, 'GET', `/v1/db/${DB}`, undefined, auth)).json as Record<string, unknown>;
      return a.primaryTxid === a.txid ? a : null;
    }, 'a heartbeat with the primary\'s newest txid', 10_000, 100);
    expect(api.txid).toBe(cluster.primarySample().txid);
    const want = { generation: String(api.generation), txid: String(api.txid), checksum: String(api.checksum), lagTxids: String(api.lagTxids), primaryTxid: String(api.primaryTxid) };
    const shown = await waitFor(async () => {
      const row = await shownRow(page, DB);
      return Object.entries(want).every(([k, v]) => row[k] === v) ? row : null;
    }, `the page to show ${JSON.stringify(want)}`, 10_000, 100);
    expect(shown.lagMs).toBe(String(api.lagMs));
    expect(await page.textContent('#topology')).toContain(cluster.proxy.url);
    expect(page.url()).not.toContain(TOKEN);

    // Two more ticks drawn, so the screenshot shows the lag back at 0 as the table does.
    const drawn = Number(await page.getAttribute('#chart', 'data-points'));
    await page.waitForFunction((n) => Number(document.getElementById('chart')!.getAttribute('data-points')) >= n + 2, drawn);
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    expect(existsSync(SCREENSHOT) && statSync(SCREENSHOT).size > 10_000).toBe(true);

    // On a phone: one column.
    await page.setViewportSize({ width: 390, height: 800 });
    const columns = await page.evaluate(() => getComputedStyle(document.querySelector('main')!).gridTemplateColumns.split(' ').length);
    expect(columns).toBe(1);
    expect(errors).toEqual([]);
    await page.close();
  });

  it("the primary's page shows its replica's stream and its own position", async () => {
    const page = await browser.newPage({ viewport: { width: 900, height: 700 } });
    page.setDefaultTimeout(15_000);
    const errors = pageErrors(page);
    await page.goto(`${cluster.primary.url}/ui`);
    await page.waitForSelector(`#databases tr[data-db="${DB}"]`);
    const api = (await http(cluster.primary.url, 'GET', `/v1/db/${DB}`)).json as Record<string, unknown>;
    const row = await waitFor(async () => {
      const r = await shownRow(page, DB);
      return r.txid === String(api.txid) ? r : null;
    }, 'the primary page to show its txid', 10_000, 100);
    expect(row.checksum).toBe(api.checksum);
    await page.waitForFunction(() => /streams open\s*1/.test(document.getElementById('topology')!.textContent ?? ''));
    expect(await page.textContent('#topology')).toContain('No failover lease on this node.');
    expect(errors).toEqual([]);
    await page.close();
  });

  it("a primary with --backup: the page shows each database's backup txid and lag as GET /v1/db/{name} does", async () => {
    const t = tempDir('status-page-backup');
    const backup = pathToFileURL(join(t.dir, 'bucket')).href;
    const primary = await startPrimary(parsePrimaryConfig(['--data', join(t.dir, 'p'), '--listen', '127.0.0.1:0', '--backup', backup, '--backup-interval', '250ms'], {}), silentLogger);
    try {
      expect((await http(primary.url, 'PUT', '/v1/db/app')).status).toBe(201);
      for (let i = 0; i < 3; i++) expect((await http(primary.url, 'POST', '/v1/db/app/exec', { sql: i === 0 ? 'CREATE TABLE t (x)' : `INSERT INTO t VALUES (${i})` })).status).toBe(200);
      const api = await waitFor(async () => {
        const a = (await http(primary.url, 'GET', '/v1/db/app')).json as { txid: number; backup?: { uploadedTxid: number; lagMs: number } };
        return a.backup && a.backup.uploadedTxid === a.txid && a.backup.lagMs === 0 ? a : null;
      }, 'the backup to hold every write', 15_000, 100);
      const page = await browser.newPage({ viewport: { width: 900, height: 700 } });
      page.setDefaultTimeout(15_000);
      const errors = pageErrors(page);
      await page.goto(`${primary.url}/ui`);
      await page.waitForSelector('#databases tr[data-db="app"]');
      const row = await waitFor(async () => {
        const r = await shownRow(page, 'app');
        return r.txid === String(api.txid) ? r : null;
      }, 'the page to show the txid', 10_000, 100);
      expect({ backupTxid: row.backupTxid, backupLagMs: row.backupLagMs }).toEqual({ backupTxid: String(api.backup!.uploadedTxid), backupLagMs: '0' });
      expect(await page.textContent('#topology')).toContain('continuous (--backup)');
      expect(errors).toEqual([]);
      await page.close();
    } finally {
      await primary.close();
      t.cleanup();
    }
  });

  it('a failover node under a real etcd: the page shows the lease holder and epoch as GET /v1/ha does', async () => {
    const t = tempDir('status-page-lease');
    const etcd = await startEtcd();
    const port = await freePort();
    const lease = `etcd://${etcd.url.replace('http://', '')}/ui`;
    const node = await spawnEdgelite(['primary', '--data', join(t.dir, 'n0'), '--listen', `127.0.0.1:${port}`, '--lease', lease, '--lease-ttl', '2s', '--node-id', 'n0']);
    try {
      const url = `http://127.0.0.1:${port}`;
      const ha = await waitFor(async () => {
        const h = (await http(url, 'GET', '/v1/ha')).json as { holding?: boolean; holder?: { node: string; url: string; epoch: number } | null };
        return h.holding && h.holder ? h.holder : null;
      }, 'n0 to hold the lease', 15_000, 100);
      const page = await browser.newPage({ viewport: { width: 900, height: 700 } });
      page.setDefaultTimeout(15_000);
      const errors = pageErrors(page);
      await page.goto(`${url}/ui`);
      await page.waitForFunction(() => /Failover lease/.test(document.getElementById('topology')!.textContent ?? ''));
      const topology = (await page.textContent('#topology'))!;
      expect(topology).toContain(`holder${ha.node} at ${ha.url}, epoch ${ha.epoch}`);
      expect(topology).toContain('holding it hereyes');
      expect(topology).toContain('this noden0 (primary)');
      expect(errors).toEqual([]);
      await page.close();
    } finally {
      await node.kill('SIGKILL');
      await etcd.stop();
      t.cleanup();
    }
  }, 60_000);
});
