/**
 * `edgelite status --watch` (bin/status.ts, README.md#edgelite-status): frames follow each other off a
 * terminal, replace each other on one, a failing frame shows its error and the next one tries again,
 * `--json` makes one JSON line per frame, and an abort (Ctrl-C) ends the loop.
 */
import { describe, expect, it } from 'vitest';
import { TextSink as Sink } from '../kit/text-sink.ts';
import { watchFrames } from '../../bin/status.ts';
import { EdgeliteError } from '../../shared/errors.ts';


/** renderer answers frame n with `body n`, throws on the frames in `failing`, and aborts after `stopAfter` frames. */
function renderer(stop: AbortController, stopAfter: number, failing: number[] = []) {
  let n = 0;
  return async () => {
    n++;
    if (n >= stopAfter) queueMicrotask(() => stop.abort());
    if (failing.includes(n)) throw new EdgeliteError('UNAVAILABLE', `down at ${n}`);
    return `body ${n}\n`;
  };
}

describe('watchFrames', () => {
  it('off a terminal: titled frames one after the other; a failed frame says why and the next one comes', async () => {
    const out = new Sink(false);
    const stop = new AbortController();
    const frames = await watchFrames(renderer(stop, 3, [2]), { intervalMs: 5, out, signal: stop.signal, title: 'edgelite status http://x' });
    expect(frames).toBe(3);
    const parts = out.text.split(/^(?=edgelite status )/m);
    expect(parts).toHaveLength(3);
    expect(parts[0]).toMatch(/^edgelite status http:\/\/x {2}\d{4}-\d\d-\d\dT\S+Z {2}\(every 5 ms; Ctrl-C stops\)\nbody 1\n\n$/);
    expect(parts[1]).toContain('UNAVAILABLE: down at 2\n');
    expect(parts[2]).toMatch(/\nbody 3\n$/);
    expect(out.text).not.toContain('\x1b[');
  });

  it('on a terminal each frame clears the screen; --json writes bare JSON lines, errors included', async () => {
    const tty = new Sink(true);
    const stop = new AbortController();
    await watchFrames(renderer(stop, 2), { intervalMs: 5, out: tty, signal: stop.signal, title: 't' });
    expect(tty.text.split('\x1b[H\x1b[2J')).toEqual(['', expect.stringMatching(/^t .*\nbody 1\n$/), expect.stringMatching(/^t .*\nbody 2\n$/)]);

    const json = new Sink(false);
    const stop2 = new AbortController();
    let n = 0;
    await watchFrames(async () => {
      if (++n === 2) stop2.abort();
      if (n === 1) throw new EdgeliteError('UNAUTHORIZED', 'no token');
      return '{"ok":true}\n';
    }, { intervalMs: 5, out: json, signal: stop2.signal, title: 't', json: true });
    const lines = json.text.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toEqual([{ time: expect.any(Number), error: { code: 'UNAUTHORIZED', message: 'no token' } }, { ok: true }]);
  });

  it('an abort while a frame is read ends the loop without writing it', async () => {
    const out = new Sink(false);
    const stop = new AbortController();
    const frames = await watchFrames(async (signal) => {
      stop.abort();
      throw signal.reason;
    }, { intervalMs: 5, out, signal: stop.signal, title: 't' });
    expect(frames).toBe(0);
    expect(out.text).toBe('');
  });
});
