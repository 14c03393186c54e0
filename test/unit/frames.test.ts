import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { EdgeliteError } from '../../shared/errors.ts';
import {
  FRAME_HEADER_BYTES,
  MAX_FRAME_BYTES,
  FrameDecoder,
  decodeFrameBody,
  encodeFrame,
} from '../../shared/frames.ts';
import type { Frame } from '../../shared/frames.ts';
import { murmur3 } from '../../shared/hash32.ts';
import { validateDatabaseName } from '../../shared/types.ts';

const packr = new Packr({ useRecords: false });

function isValidName(name: string): boolean {
  try {
    validateDatabaseName(name);
    return true;
  } catch {
    return false;
  }
}

const dbName = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,30}$/).filter(isValidName);
const uint = fc.maxSafeNat();
const frameArb: fc.Arbitrary<Frame> = fc.oneof(
  fc.record({ type: fc.constant('changeset' as const), db: dbName, data: fc.uint8Array({ maxLength: 2000 }) }),
  fc.record({ type: fc.constant('snapshot-needed' as const), db: dbName, reason: fc.string() }),
  fc.record({ type: fc.constant('new-generation' as const), db: dbName, generation: uint, txid: uint }),
  fc.record({ type: fc.constantFrom('db-created' as const, 'db-dropped' as const, 'ready' as const), db: dbName }),
  fc.record({
    type: fc.constant('heartbeat' as const),
    time: uint,
    positions: fc.dictionary(dbName, fc.record({ generation: uint, txid: uint, timestamp: uint }), { maxKeys: 5 }),
  }),
  fc.record({ type: fc.constant('error' as const), code: fc.string(), message: fc.string({ unit: "binary" }) }),
);

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** withHeader frames an arbitrary body with a correct length and hash, to reach body validation. */
function withHeader(body: Uint8Array): Uint8Array {
  const out = new Uint8Array(FRAME_HEADER_BYTES + body.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, body.length);
  view.setUint32(4, murmur3(body));
  out.set(body, FRAME_HEADER_BYTES);
  return out;
}

/** decodeAll feeds `bytes` split at `cuts` and then ends the stream. */
function decodeAll(bytes: Uint8Array, cuts: number[] = []): Frame[] {
  const decoder = new FrameDecoder();
  const frames: Frame[] = [];
  let from = 0;
  for (const cut of [...cuts].sort((a, b) => a - b)) {
    frames.push(...decoder.push(bytes.subarray(from, cut)));
    from = cut;
  }
  frames.push(...decoder.push(bytes.subarray(from)));
  decoder.end();
  expect(decoder.buffered).toBe(0);
  return frames;
}

function expectCorrupt(fn: () => unknown): EdgeliteError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(EdgeliteError);
  expect((caught as EdgeliteError).code).toBe('CORRUPT_FRAME');
  return caught as EdgeliteError;
}

const sample: Frame[] = [
  { type: 'changeset', db: 'app', data: new Uint8Array([1, 2, 3, 250]) },
  { type: 'snapshot-needed', db: 'app', reason: 'log aged out' },
  { type: 'new-generation', db: 'app.v2', generation: 3, txid: 2 ** 40 + 7 },
  { type: 'db-created', db: 'new-db' },
  { type: 'db-dropped', db: 'old_db' },
  { type: 'heartbeat', time: 1_700_000_000_000, positions: { app: { generation: 1, txid: 42, timestamp: 1_700_000_000_000 } } },
  { type: 'ready', db: 'app' },
  { type: 'error', code: 'UNAVAILABLE', message: 'primary shutting down' },
];

describe('encodeFrame / FrameDecoder round trip', () => {
  it('round-trips every frame type, the stream split at random chunk boundaries', () => {
    fc.assert(
      fc.property(
        fc.array(frameArb, { minLength: 1, maxLength: 8 }),
        fc.array(fc.nat(), { maxLength: 20 }),
        (frames, rawCuts) => {
          const bytes = concat(frames.map(encodeFrame));
          const cuts = rawCuts.map((c) => c % (bytes.length + 1));
          expect(decodeAll(bytes, cuts)).toEqual(frames);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('decodes a stream fed one byte at a time', () => {
    const bytes = concat(sample.map(encodeFrame));
    const cuts = Array.from({ length: bytes.length }, (_, i) => i);
    expect(decodeAll(bytes, cuts)).toEqual(sample);
  });

  it('lays a frame out as length, murmur3 hash, msgpack body', () => {
    const bytes = encodeFrame({ type: 'ready', db: 'app' });
    const view = new DataView(bytes.buffer, bytes.byteOffset);
    const body = bytes.subarray(FRAME_HEADER_BYTES);
    expect(view.getUint32(0)).toBe(body.length);
    expect(view.getUint32(4)).toBe(murmur3(body));
    expect(packr.unpack(body)).toEqual({ type: 'ready', db: 'app' });
    expect(decodeFrameBody(body)).toEqual({ type: 'ready', db: 'app' });
  });

  it('reassembles a multi-megabyte change set from 64 KiB chunks, as plain Uint8Array', () => {
    const data = new Uint8Array(5 * 1024 * 1024);
    for (let i = 0; i < data.length; i++) data[i] = (i * 131) & 0xff;
    const bytes = encodeFrame({ type: 'changeset', db: 'big', data });
    const decoder = new FrameDecoder();
    const frames: Frame[] = [];
    for (let at = 0; at < bytes.length; at += 65536) {
      frames.push(...decoder.push(bytes.subarray(at, at + 65536)));
      if (frames.length === 0) expect(decoder.buffered).toBe(Math.min(at + 65536, bytes.length));
    }
    decoder.end();
    expect(frames).toHaveLength(1);
    const frame = frames[0]!;
    expect(frame.type).toBe('changeset');
    if (frame.type !== 'changeset') return;
    expect(Object.getPrototypeOf(frame.data)).toBe(Uint8Array.prototype);
    expect(frame.data.length).toBe(data.length);
    expect(Buffer.compare(frame.data, data)).toBe(0);
  });

  it('returns frames that do not share memory with the pushed chunk', () => {
    const bytes = encodeFrame({ type: 'changeset', db: 'app', data: new Uint8Array([9, 9, 9]) });
    const [frame] = new FrameDecoder().push(bytes);
    bytes.fill(0);
    expect(frame).toEqual({ type: 'changeset', db: 'app', data: new Uint8Array([9, 9, 9]) });
  });

  it('drops fields that are not part of the frame type', () => {
    const extra = { type: 'ready', db: 'app', secret: 'x' } as unknown as Frame;
    expect(decodeAll(encodeFrame(extra))).toEqual([{ type: 'ready', db: 'app' }]);
    expect(decodeFrameBody(packr.pack({ type: 'ready', db: 'app', later: 1 }))).toEqual({ type: 'ready', db: 'app' });
  });

  it('accepts a txid a foreign encoder wrote as uint64', () => {
    const body = packr.pack({ type: 'new-generation', db: 'app', generation: 1, txid: 0 });
    // Re-encode txid as 0xcf uint64 by hand: map keys are short strings, so patch the last value.
    expect(body[body.length - 1]).toBe(0);
    const patched = concat([body.subarray(0, body.length - 1), new Uint8Array([0xcf, 0, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])]);
    expect(decodeFrameBody(patched)).toEqual({ type: 'new-generation', db: 'app', generation: 1, txid: Number.MAX_SAFE_INTEGER });
    const unsafe = concat([body.subarray(0, body.length - 1), new Uint8Array([0xcf, 0, 0x20, 0, 0, 0, 0, 0, 0])]);
    expectCorrupt(() => decodeFrameBody(unsafe));
  });
});

describe('FrameDecoder corruption', () => {
  it('rejects every single-bit flip and every byte inversion of a small frame', () => {
    const good = encodeFrame({ type: 'new-generation', db: 'app', generation: 2, txid: 99 });
    for (let i = 0; i < good.length; i++) {
      for (const mask of [1, 2, 4, 8, 16, 32, 64, 128, 0xff]) {
        const bad = good.slice();
        bad[i]! ^= mask;
        expectCorrupt(() => {
          const decoder = new FrameDecoder();
          decoder.push(bad);
          decoder.end();
        });
      }
    }
  });

  it('detects a byte flipped anywhere in a random stream', () => {
    fc.assert(
      fc.property(
        fc.array(frameArb, { minLength: 1, maxLength: 5 }),
        fc.nat(),
        fc.integer({ min: 1, max: 255 }),
        (frames, rawAt, mask) => {
          const bytes = concat(frames.map(encodeFrame));
          bytes[rawAt % bytes.length]! ^= mask;
          expectCorrupt(() => decodeAll(bytes));
        },
      ),
      { numRuns: 300 },
    );
  });

  it('rejects a frame truncated at every length once the stream ends', () => {
    const good = encodeFrame(sample[5]!);
    for (let cut = 1; cut < good.length; cut++) {
      const decoder = new FrameDecoder();
      expect(decoder.push(good.subarray(0, cut))).toEqual([]);
      expect(decoder.buffered).toBe(cut);
      expectCorrupt(() => decoder.end());
    }
  });

  it('delivers the whole frames before a cut and rejects only the partial one', () => {
    const encoded = sample.map(encodeFrame);
    const bytes = concat(encoded);
    const boundaries = new Set<number>([0]);
    encoded.reduce((at, e) => (boundaries.add(at + e.length), at + e.length), 0);
    for (let cut = 1; cut < bytes.length; cut++) {
      const decoder = new FrameDecoder();
      const frames = decoder.push(bytes.subarray(0, cut));
      const complete = [...boundaries].filter((b) => b <= cut).length - 1;
      expect(frames).toEqual(sample.slice(0, complete));
      if (boundaries.has(cut)) decoder.end();
      else expectCorrupt(() => decoder.end());
    }
  });

  it('rejects an oversized length prefix from the header alone, before any body arrives', () => {
    const header = new Uint8Array(FRAME_HEADER_BYTES);
    new DataView(header.buffer).setUint32(0, 0xffffffff);
    expectCorrupt(() => new FrameDecoder().push(header));
    new DataView(header.buffer).setUint32(0, MAX_FRAME_BYTES + 1);
    expectCorrupt(() => new FrameDecoder().push(header));
    const small = new FrameDecoder({ maxFrameBytes: 16 });
    const frame = encodeFrame({ type: 'snapshot-needed', db: 'app', reason: 'a reason longer than sixteen bytes' });
    expectCorrupt(() => small.push(frame.subarray(0, FRAME_HEADER_BYTES)));
  });

  it('rejects a zero-length frame', () => {
    expectCorrupt(() => new FrameDecoder().push(new Uint8Array(FRAME_HEADER_BYTES)));
  });

  it('stays poisoned after an error', () => {
    const decoder = new FrameDecoder();
    const bad = encodeFrame(sample[0]!);
    bad[bad.length - 1]! ^= 1;
    const first = expectCorrupt(() => decoder.push(bad));
    expect(expectCorrupt(() => decoder.push(encodeFrame(sample[6]!)))).toBe(first);
    expect(expectCorrupt(() => decoder.end())).toBe(first);
    expect(decoder.buffered).toBe(0);
  });

  it('validates maxFrameBytes', () => {
    for (const maxFrameBytes of [0, -1, 1.5, Number.NaN, 2 ** 32]) {
      expect(() => new FrameDecoder({ maxFrameBytes })).toThrow(/maxFrameBytes/);
    }
  });
});

describe('frame body validation', () => {
  const ill: [string, unknown][] = [
    ['unknown type', { type: 'nope', db: 'app' }],
    ['missing type', { db: 'app' }],
    ['type not a string', { type: 1, db: 'app' }],
    ['body is an array', ['ready', 'app']],
    ['body is a string', 'ready'],
    ['body is nil', null],
    ['body is a number', 7],
    ['changeset without data', { type: 'changeset', db: 'app' }],
    ['changeset data as string', { type: 'changeset', db: 'app', data: 'abc' }],
    ['changeset data as array', { type: 'changeset', db: 'app', data: [1, 2] }],
    ['changeset without db', { type: 'changeset', data: new Uint8Array(1) }],
    ['db not a string', { type: 'ready', db: 5 }],
    ['db empty', { type: 'ready', db: '' }],
    ['db path traversal', { type: 'ready', db: '../etc' }],
    ['db with slash', { type: 'db-created', db: 'a/b' }],
    ['db a WAL side file', { type: 'db-dropped', db: 'app-wal' }],
    ['snapshot-needed without reason', { type: 'snapshot-needed', db: 'app' }],
    ['reason not a string', { type: 'snapshot-needed', db: 'app', reason: 3 }],
    ['negative generation', { type: 'new-generation', db: 'app', generation: -1, txid: 1 }],
    ['fractional txid', { type: 'new-generation', db: 'app', generation: 1, txid: 1.5 }],
    ['unsafe txid', { type: 'new-generation', db: 'app', generation: 1, txid: 2 ** 53 }],
    ['txid as string', { type: 'new-generation', db: 'app', generation: 1, txid: '1' }],
    ['txid missing', { type: 'new-generation', db: 'app', generation: 1 }],
    ['txid as bigint', { type: 'new-generation', db: 'app', generation: 1, txid: 2n ** 60n }],
    ['heartbeat without positions', { type: 'heartbeat', time: 1 }],
    ['heartbeat positions as array', { type: 'heartbeat', time: 1, positions: [] }],
    ['heartbeat time missing', { type: 'heartbeat', positions: {} }],
    ['heartbeat bad db key', { type: 'heartbeat', time: 1, positions: { '.x': { generation: 1, txid: 1, timestamp: 1 } } }],
    ['heartbeat __proto__ key', { type: 'heartbeat', time: 1, positions: JSON.parse('{"__proto__": {"generation": 1, "txid": 1, "timestamp": 1}}') }],
    ['heartbeat entry missing timestamp', { type: 'heartbeat', time: 1, positions: { app: { generation: 1, txid: 1 } } }],
    ['heartbeat entry not a map', { type: 'heartbeat', time: 1, positions: { app: 5 } }],
    ['error without message', { type: 'error', code: 'X' }],
    ['error code not a string', { type: 'error', code: 1, message: 'm' }],
    ['frame is a Set (msgpackr extension)', new Set(['ready'])],
    ['frame is a Date', new Date(0)],
  ];

  for (const [name, value] of ill) {
    it(`rejects ${name}`, () => {
      const body = packr.pack(value);
      expectCorrupt(() => decodeFrameBody(body));
      expectCorrupt(() => new FrameDecoder().push(withHeader(body)));
      expectCorrupt(() => encodeFrame(value as Frame));
    });
  }

  it('rejects bodies that are not one msgpack value', () => {
    const ready = packr.pack({ type: 'ready', db: 'app' });
    const cases = [
      new Uint8Array([]),
      new Uint8Array([0xc1]),
      new Uint8Array([0xde, 0xff, 0xff]),
      ready.subarray(0, ready.length - 1),
      concat([ready, new Uint8Array([0])]),
      new Uint8Array([0xc7, 0x01, 0x99, 0x00]),
    ];
    for (const body of cases) {
      expectCorrupt(() => decodeFrameBody(body));
      if (body.length > 0) expectCorrupt(() => new FrameDecoder().push(withHeader(body)));
    }
  });

  it('never throws anything but CORRUPT_FRAME for random bodies', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (body) => {
        try {
          decodeFrameBody(body);
        } catch (err) {
          expect(err).toBeInstanceOf(EdgeliteError);
          expect((err as EdgeliteError).code).toBe('CORRUPT_FRAME');
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe('encodeFrame limits', () => {
  it('refuses a body over MAX_FRAME_BYTES with PAYLOAD_TOO_LARGE', () => {
    let caught: unknown;
    try {
      encodeFrame({ type: 'changeset', db: 'app', data: new Uint8Array(MAX_FRAME_BYTES) });
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(EdgeliteError);
    expect((caught as EdgeliteError).code).toBe('PAYLOAD_TOO_LARGE');
  });
});

describe('murmur3 (hash32.ts)', () => {
  const text = (s: string) => new TextEncoder().encode(s);

  it('matches the reference MurmurHash3_x86_32 vectors', () => {
    const vectors: [Uint8Array, number, number][] = [
      [text(''), 0, 0],
      [text(''), 1, 0x514e28b7],
      [text(''), 0xffffffff, 0x81f16f39],
      [new Uint8Array(4), 0, 0x2362f9de],
      [text('a'), 0x9747b28c, 0x7fa09ea6],
      [text('ab'), 0x9747b28c, 0x74875592],
      [text('abc'), 0x9747b28c, 0xc84a62dd],
      [text('abc'), 0, 0xb3dd93fa],
      [text('aaaa'), 0x9747b28c, 0x5a97808a],
      [text('Hello, world!'), 0x9747b28c, 0x24884cba],
      [text('The quick brown fox jumps over the lazy dog'), 0x9747b28c, 0x2fa826cd],
    ];
    for (const [data, seed, want] of vectors) expect(murmur3(data, seed)).toBe(want);
  });

  it('changes whenever a single byte changes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 300 }), fc.nat(), fc.integer({ min: 1, max: 255 }), (data, at, mask) => {
        const flipped = data.slice();
        flipped[at % data.length]! ^= mask;
        expect(murmur3(flipped)).not.toBe(murmur3(data));
      }),
      { numRuns: 1000 },
    );
  });

  it('hashes a subarray by its own bytes only', () => {
    const whole = text('xxhello world');
    expect(murmur3(whole.subarray(2))).toBe(murmur3(text('hello world')));
  });
});

describe('without code generation (as in workerd)', () => {
  it('encodes and decodes with new Function disabled, even bodies that use msgpackr records', () => {
    // Node's --disallow-code-generation-from-strings makes `new Function` throw EvalError, as workerd does.
    const script = `
      import { Packr } from 'msgpackr';
      import { encodeFrame, FrameDecoder } from './shared/frames.ts';
      import { murmur3 } from './shared/hash32.ts';
      let codegen = true;
      try { new Function(''); } catch { codegen = false; }
      const positions = {};
      for (const name of ['a', 'b', 'c', 'd', 'e', 'f']) positions[name] = { generation: 1, txid: 2, timestamp: 3 };
      const frame = { type: 'heartbeat', time: 1, positions };
      const body = new Packr({ useRecords: true }).pack(frame);
      const framed = new Uint8Array(8 + body.length);
      new DataView(framed.buffer).setUint32(0, body.length);
      new DataView(framed.buffer).setUint32(4, murmur3(body));
      framed.set(body, 8);
      const decoder = new FrameDecoder();
      const out = [...decoder.push(encodeFrame(frame)), ...decoder.push(framed)];
      console.log(JSON.stringify({ codegen, out }));
    `;
    const root = fileURLToPath(new URL('../../', import.meta.url));
    const child = spawnSync(
      process.execPath,
      ['--disallow-code-generation-from-strings', '--import', 'tsx', '--input-type=module', '-e', script],
      { cwd: root, encoding: 'utf8' },
    );
    expect(child.stderr).not.toMatch(/Error/);
    expect(child.status).toBe(0);
    const result = JSON.parse(child.stdout.trim().split('\n').pop()!) as { codegen: boolean; out: Frame[] };
    expect(result.codegen).toBe(false);
    const positions = Object.fromEntries(['a', 'b', 'c', 'd', 'e', 'f'].map((n) => [n, { generation: 1, txid: 2, timestamp: 3 }]));
    expect(result.out).toEqual([
      { type: 'heartbeat', time: 1, positions },
      { type: 'heartbeat', time: 1, positions },
    ]);
  });
});
