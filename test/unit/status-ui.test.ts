/**
 * The status page's Worker-safe parts (README.md#status-page): the lag sampler's ring and its bound for
 * many databases (shared/ui/samples.ts), the HTML escaping and shell (shared/ui/page.ts), and the
 * `since` parameter and the sample conversion (shared/ui/routes.ts).
 */
import { describe, expect, it } from 'vitest';
import { escapeHtml, renderShell } from '../../shared/ui/page.ts';
import { lagSampleOf, parseSince, publicUrl } from '../../shared/ui/routes.ts';
import { LagSampler, type LagSample } from '../../shared/ui/samples.ts';
import { STATUS_JS } from '../../shared/ui/script.ts';
import { thrownEdgelite } from '../helpers.ts';

const sample = (name: string, lagMs: number | null, txid = 1, lagTxids = 0): LagSample => ({ name, txid, lagMs, lagTxids, backupLagMs: null });

describe('LagSampler', () => {
  it('keeps the last `capacity` ticks, oldest first, and answers only those after `since`', () => {
    let now = 1_000;
    const s = new LagSampler({ capacity: 3, now: () => now });
    for (let i = 1; i <= 5; i++) {
      now = i * 1000;
      s.record([sample('a', i * 10, i)]);
    }
    const all = s.body(() => true, true);
    expect(all.t).toEqual([3000, 4000, 5000]);
    expect(all.series.a!.lagMs).toEqual([30, 40, 50]);
    expect(all.series.a!.txid).toEqual([3, 4, 5]);
    expect(s.body(() => true, true, 4000).t).toEqual([5000]);
    expect(s.body(() => true, true, 5000).t).toEqual([]);
  });

  it('keeps its own row for the `top` worst databases only, an unknown lag first, with an aggregate over all', () => {
    const s = new LagSampler({ top: 2 });
    const many = Array.from({ length: 1000 }, (_, i) => sample(`db-${String(i).padStart(4, '0')}`, i === 500 ? null : i % 7, i, i % 3));
    s.record(many);
    const b = s.body(() => true, true);
    // db-0500 (unknown lag), then the first of the lag-6 ones with the most txids behind (6: i % 7 = 6, i % 3 = 2, i = 20).
    expect(Object.keys(b.series)).toEqual(['db-0020', 'db-0500']);
    expect(b.series['db-0500']!.lagMs).toEqual([null]);
    expect(b.all).toEqual({ databases: [1000], lagging: [1000 - 143] /* 143 have i % 7 = 0: no lag */, maxLagMs: [null], maxBackupLagMs: [null] });
  });

  it('fills ticks where a database was not kept with null, and drops nothing silently from the aggregate', () => {
    const s = new LagSampler({ top: 1 });
    s.record([sample('a', 5), sample('b', 1)]);
    s.record([sample('a', 0), sample('b', 9)]);
    const b = s.body(() => true, true);
    expect(b.series.a!.lagMs).toEqual([5, null]);
    expect(b.series.b!.lagMs).toEqual([null, 9]);
    expect(b.all!.maxLagMs).toEqual([5, 9]);
    expect(b.all!.lagging).toEqual([2, 1]);
  });

  it('shows a tenant-scoped token its own series only and no aggregate', () => {
    const s = new LagSampler();
    s.record([sample('acme-1', 3), sample('other', 4)]);
    const b = s.body((n) => n.startsWith('acme-'), false);
    expect(Object.keys(b.series)).toEqual(['acme-1']);
    expect(b.all).toBeNull();
  });

  it('samples its source on start and on each tick, and nothing after stop', () => {
    const s = new LagSampler({ intervalMs: 60_000 });
    let n = 0;
    s.start(() => [sample('a', n++)]);
    expect(s.running).toBe(true);
    s.tick();
    s.stop();
    s.tick();
    expect(s.running).toBe(false);
    expect(s.body(() => true, true).series.a!.lagMs).toEqual([0, 1]);
  });

  it('skips and counts a tick whose source throws, telling onError, and goes on', () => {
    const s = new LagSampler({ intervalMs: 60_000 });
    const heard: unknown[] = [];
    let fail = true;
    s.start(() => {
      if (fail) throw new Error('store closed');
      return [sample('a', 0)];
    }, (err) => heard.push(err));
    fail = false;
    s.tick();
    s.stop();
    expect(heard.map((e) => (e as Error).message)).toEqual(['store closed']);
    const b = s.body(() => true, true);
    expect([b.failures, b.t.length]).toEqual([1, 1]);
  });

  it('refuses options that are not positive integers', () => {
    expect(thrownEdgelite(() => new LagSampler({ capacity: 0 })).code).toBe('MISCONFIGURED');
    expect(thrownEdgelite(() => new LagSampler({ top: 1.5 })).message).toContain('top');
  });
});

describe('status page shell and script', () => {
  it('escapes every character that could end a text or attribute', () => {
    expect(escapeHtml(`<img src=x onerror="a('b')">&\``)).toBe('&#60;img src=x onerror=&#34;a(&#39;b&#39;)&#34;&#62;&#38;&#96;');
  });

  it('carries no data and no inline script or style (the CSP allows neither)', () => {
    const html = renderShell('replica');
    expect(html).toContain('<meta name="viewport" content="width=device-width, initial-scale=1">');
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)/);
    expect(html).not.toMatch(/<style|\sstyle=|\son[a-z]+=/);
    expect(html).toContain('src="/ui/assets/uPlot.iife.min.js"');
  });

  it('the script builds no HTML from strings and puts no token in a URL', () => {
    expect(STATUS_JS).not.toMatch(/innerHTML|outerHTML|insertAdjacentHTML|document\.write/);
    expect(STATUS_JS).toContain("headers.authorization = 'Bearer ' + t");
    expect(() => new Function(STATUS_JS)).not.toThrow(); // it parses
  });
});

describe('samples route helpers', () => {
  it('parseSince takes digits only', () => {
    expect(parseSince(undefined)).toBeNull();
    expect(parseSince('1700000000000')).toBe(1_700_000_000_000);
    for (const bad of ['-1', '1.5', 'abc', '', '99999999999999999']) expect(thrownEdgelite(() => parseSince(bad)).code).toBe('BAD_REQUEST');
  });

  it('lagSampleOf reads GET /v1/db/{name} answers, an unknown lag as null', () => {
    expect(lagSampleOf({ name: 'a', txid: 7, lagMs: null, lagTxids: 2, backup: { uploadedTxid: 5, lagMs: 1200 } })).toEqual({ name: 'a', txid: 7, lagMs: null, lagTxids: 2, backupLagMs: 1200 });
    expect(lagSampleOf({ name: 'b', txid: null, lagMs: 0, lagTxids: 0 })).toEqual({ name: 'b', txid: null, lagMs: 0, lagTxids: 0, backupLagMs: null });
  });

  it('publicUrl drops credentials', () => {
    expect(publicUrl('http://user:secret@10.0.0.1:7400/')).toBe('http://10.0.0.1:7400');
    expect(publicUrl('')).toBeNull();
    expect(publicUrl('not a url')).toBeNull();
  });
});
