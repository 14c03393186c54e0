/**
 * The Node commands' logs (shared/node/log.ts, README.md#logs) and progress (shared/node/progress.ts):
 * JSON lines keep the shape the test kit and operators parse (`time` ISO, `role`, `level`, `msg`),
 * levels filter, secrets are redacted; progress off a terminal is a few `info` lines and a `debug`
 * line per step, on a terminal a redrawn bar.
 */
import { describe, expect, it } from 'vitest';
import { TextSink as Sink } from '../kit/text-sink.ts';
import { logOptions, nodeLogger, redact, type LogOptions } from '../../shared/node/log.ts';
import { aboveBars, progress } from '../../shared/node/progress.ts';
import { EdgeliteError } from '../../shared/errors.ts';


function logTo(options: LogOptions): { sink: Sink; log: ReturnType<typeof nodeLogger> } {
  const sink = new Sink();
  return { sink, log: nodeLogger('primary', options, sink) };
}

describe('nodeLogger', () => {
  it('writes one JSON object per event: level word, ISO time, role, fields, msg', () => {
    const { sink, log } = logTo({ format: 'json', level: 'info' });
    const before = Date.now();
    log({ msg: 'primary listening', url: 'http://127.0.0.1:1', databases: ['a'] });
    const [line] = sink.lines();
    expect(line).toMatchObject({ level: 'info', role: 'primary', msg: 'primary listening', url: 'http://127.0.0.1:1', databases: ['a'] });
    expect(typeof line!.time).toBe('string');
    expect(Date.parse(line!.time as string)).toBeGreaterThanOrEqual(before - 1);
    expect(new Date(Date.parse(line!.time as string)).toISOString()).toBe(line!.time);
    expect(Object.keys(line!)).not.toContain('pid');
  });

  it('takes the level from the event, error when it carries an error, and drops lines below the level', () => {
    const { sink, log } = logTo({ format: 'json', level: 'warn' });
    log({ msg: 'chatty' });
    log({ msg: 'step', level: 'debug' });
    log({ msg: 'odd', level: 'warn' });
    log({ msg: 'broke', error: 'ECONNRESET' });
    expect(sink.lines().map((l) => [l.msg, l.level])).toEqual([['odd', 'warn'], ['broke', 'error']]);
    expect(log.enabled('info')).toBe(false);
    expect(log.enabled('error')).toBe(true);
  });

  it('redacts tokens, authorization headers, secrets and passwords; keeps object keys', () => {
    const { sink, log } = logTo({ format: 'json', level: 'debug' });
    log({ msg: 'x', token: 'tok-123456789abcdef', req: { headers: { authorization: 'Bearer s3cr3t', cookie: 'c=1' }, password: 'pw' }, secret: 'shh', key: 'db/app/0001.ltx' });
    const text = sink.text;
    for (const s of ['tok-123456789abcdef', 's3cr3t', 'c=1', '"pw"', 'shh']) expect(text).not.toContain(s);
    const [line] = sink.lines();
    expect(line).toMatchObject({ token: '[redacted]', secret: '[redacted]', key: 'db/app/0001.ltx', req: { password: '[redacted]', headers: { authorization: '[redacted]' } } });
  });

  it('redact copies only what it changes: top level, one object deep, and headers objects', () => {
    const clean = { db: 'app', nested: { txid: 1 }, list: [{ token: 'in-an-array' }] };
    expect(redact(clean)).toBe(clean);
    const e = { primaryToken: 'p', a: { cookie: 'c', b: { token: 'two-deep' } }, headers: { authorization: 'h' } };
    expect(redact(e)).toEqual({ primaryToken: '[redacted]', a: { cookie: '[redacted]', b: { token: 'two-deep' } }, headers: { authorization: '[redacted]' } });
    expect(e.a.cookie).toBe('c'); // the event itself is left as it was
  });

  it('pretty writes a human line per event', () => {
    const sink = new Sink();
    const log = nodeLogger('replica', { format: 'pretty', level: 'info' }, sink);
    log({ msg: 'replica listening', url: 'http://h:1' });
    expect(sink.text).toMatch(/INFO.*\[replica\] replica listening.*"url":"http:\/\/h:1"/);
    expect(() => JSON.parse(sink.text)).toThrow();
  });
});

describe('logOptions', () => {
  it('reads --log-format and --log-level, then the environment; the format follows the terminal', () => {
    expect(logOptions(['--data', 'd', '--log-format', 'pretty', '--log-level=warn'], {})).toEqual({ format: 'pretty', level: 'warn' });
    expect(logOptions([], { EDGELITE_LOG_FORMAT: 'json', EDGELITE_LOG_LEVEL: 'debug' }, new Sink(true))).toEqual({ format: 'json', level: 'debug' });
    expect(logOptions([], {}, new Sink(true))).toEqual({ format: 'pretty', level: 'info' });
    expect(logOptions([], {}, new Sink(false))).toEqual({ format: 'json', level: 'info' });
  });

  it('refuses a format or level it does not know, naming the flag', () => {
    expect(() => logOptions(['--log-format', 'xml'], {})).toThrowError(EdgeliteError);
    expect(() => logOptions(['--log-format', 'xml'], {})).toThrow(/--log-format .* must be json or pretty, got "xml"/);
    expect(() => logOptions([], { EDGELITE_LOG_LEVEL: 'trace' })).toThrow(/--log-level .* must be one of debug, info, warn, error, got "trace"/);
  });
});

describe('progress', () => {
  it('off a terminal: a debug line per step, an info line at most every everyMs, and the last state at stop', () => {
    const events: Array<Record<string, unknown>> = [];
    let t = 0;
    const p = progress({ label: 'migrate', total: 5, logger: (e) => events.push(e), stream: new Sink(false), everyMs: 1000, now: () => t });
    for (let i = 1; i <= 5; i++) {
      t += 400;
      p.tick(1, `t${i} migrated`);
    }
    p.stop();
    p.stop();
    const info = events.filter((e) => e.level === 'info');
    expect(events.filter((e) => e.level === 'debug')).toHaveLength(5);
    // t = 1200 is the first past 1000 ms; then the end (t = 2000 is only 800 ms later).
    expect(info.map((e) => e.msg)).toEqual(['migrate: t3 migrated (3/5)', 'migrate: t5 migrated (5/5)']);
    expect(info.at(-1)).toMatchObject({ done: 5, total: 5, what: 't5 migrated' });
  });

  it('update sets the count and total, with a format for the numbers; quiet says nothing', () => {
    const events: Array<Record<string, unknown>> = [];
    const p = progress({ label: 'restore', total: 0, logger: (e) => events.push(e), stream: new Sink(false), format: (n) => `${n / 1024} KiB`, now: () => 0 });
    p.update(1024, '1/2 objects', 4096);
    p.stop();
    expect(events.at(-1)).toMatchObject({ level: 'info', msg: 'restore: 1/2 objects (1 KiB/4 KiB)', done: 1024, total: 4096 });
    const none: unknown[] = [];
    const q = progress({ label: 'x', total: 3, logger: (e) => none.push(e), quiet: true });
    q.tick(1, 'a');
    q.stop();
    expect(none).toEqual([]);
  });

  it('on a terminal: a bar redrawn on the stream, no log lines', () => {
    const tty = new Sink(true);
    const events: unknown[] = [];
    const p = progress({ label: 'export', total: 10, logger: (e) => events.push(e), stream: tty });
    p.tick(5, 'app.events');
    p.tick(5, 'app.events');
    p.stop();
    expect(events).toEqual([]);
    expect(tty.text).toContain('export [');
    expect(tty.text).toContain('100% 10/10 app.events');
  });

  it('a log line while a bar is drawn clears the bar line, and the bar comes back below it', () => {
    const tty = new Sink(true);
    const log = nodeLogger('migrate', { format: 'json', level: 'info' }, Object.assign(aboveBars(tty), { isTTY: true }));
    log({ msg: 'before' });
    expect(tty.text).toMatch(/^\{.*"msg":"before"\}\n$/);
    const p = progress({ label: 'migrate', total: 4, logger: () => {}, stream: tty });
    p.tick(1, 't1 migrated');
    const drawn = tty.text.length;
    log({ msg: 't2 failed', level: 'warn' });
    const after = tty.text.slice(drawn);
    expect(after).toMatch(/^\r\x1b\[K\{.*"msg":"t2 failed"\}\n/);
    expect(after).toContain('25% 1/4 t1 migrated');
    p.stop();
    const stopped = tty.text.length;
    log({ msg: 'after' });
    expect(tty.text.slice(stopped)).toMatch(/^\{.*"msg":"after"\}\n$/);
  });
});
