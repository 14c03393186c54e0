/** The replica→primary protocol written once (shared/protocol.ts): each builder against its parser. */
import { describe, expect, it } from 'vitest';
import {
  parseStreamRequest,
  POSITION_HEADERS,
  positionHeaders,
  readSnapshotHead,
  SNAPSHOT_DIGEST_HEADER,
  snapshotHeaders,
  streamRequestBody,
  type SnapshotHead,
} from '../../shared/protocol.ts';
import type { Position } from '../../shared/types.ts';
import { thrownEdgelite } from '../helpers.ts';

const P: Position = { generation: 3, txid: 41, checksum: 0x0123456789abcdefn };


describe('stream request', () => {
  it('round-trips through the builder and the parser, with deltas on', () => {
    const body = streamRequestBody(['a', 'b'], { a: P, b: null });
    expect(JSON.parse(body)).toEqual({ databases: ['a', 'b'], deltas: true, positions: { a: { generation: 3, txid: 41, checksum: '0123456789abcdef' }, b: null } });
    expect(parseStreamRequest(JSON.parse(body))).toEqual({ databases: ['a', 'b'], deltas: true, ranges: false, positions: { a: P, b: null } });
    expect(parseStreamRequest(JSON.parse(streamRequestBody('*', {})))).toEqual({ databases: '*', deltas: true, ranges: false, positions: {} });
  });

  it('carries "ranges": true only when the replica asks for catch-up ranges', () => {
    const body = streamRequestBody(['a'], { a: P }, true);
    expect(JSON.parse(body)).toMatchObject({ ranges: true });
    expect(parseStreamRequest(JSON.parse(body))).toEqual({ databases: ['a'], deltas: true, ranges: true, positions: { a: P } });
  });

  it('defaults an old replica\'s request: all databases, no positions, no deltas', () => {
    expect(parseStreamRequest({})).toEqual({ databases: '*', deltas: false, ranges: false, positions: {} });
  });

  it('refuses every malformed field with BAD_REQUEST naming it', () => {
    const cases: Array<[unknown, string, RegExp]> = [
      [null, 'BAD_REQUEST', /stream body must be an object/],
      ['x', 'BAD_REQUEST', /stream body must be an object/],
      [{ databases: 'a' }, 'BAD_REQUEST', /"databases" must be "\*" or an array/],
      [{ databases: ['../x'] }, 'INVALID_DATABASE_NAME', /invalid database name/],
      [{ positions: 'x' }, 'BAD_REQUEST', /"positions" must be an object/],
      [{ positions: null }, 'BAD_REQUEST', /"positions" must be an object/],
      [{ positions: { '../x': null } }, 'INVALID_DATABASE_NAME', /invalid database name/],
      [{ positions: { a: { generation: 1, txid: 2 } } }, 'BAD_REQUEST', /positions\.a must be \{generation, txid, checksum\}/],
      [{ positions: { a: { generation: 1.5, txid: 2, checksum: '0123456789abcdef' } } }, 'BAD_REQUEST', /positions\.a must be/],
      [{ positions: { a: { generation: 1, txid: 2, checksum: 'xyz' } } }, 'BAD_REQUEST', /invalid checksum/],
      [{ deltas: 'yes' }, 'BAD_REQUEST', /"deltas" must be a boolean/],
      [{ ranges: 1 }, 'BAD_REQUEST', /"ranges" must be a boolean/],
    ];
    for (const [body, code, message] of cases) {
      const err = thrownEdgelite(() => parseStreamRequest(body));
      expect([err.code, err.message], JSON.stringify(body)).toEqual([code, expect.stringMatching(message)]);
    }
  });
});

describe('snapshot headers', () => {
  const head: SnapshotHead = { position: P, databaseId: 7, pageSize: 4096, length: 4096 * 12 };

  it('are read back as they were written, Content-Length included', () => {
    const h = new Headers(snapshotHeaders(head));
    expect(h.get('content-length')).toBe(String(4096 * 12));
    expect(h.get(POSITION_HEADERS.pageSize)).toBe('4096');
    expect(readSnapshotHead(h)).toEqual(head);
  });

  it('refuse a flipped digest, a header changed under its digest, and a missing or non-integer header', () => {
    const written = snapshotHeaders(head);
    const digest = written[SNAPSHOT_DIGEST_HEADER]!;
    const flipped = `${digest.slice(0, -1)}${digest.endsWith('0') ? '1' : '0'}`;
    const variants: Array<[Record<string, string | null>, RegExp]> = [
      [{ [SNAPSHOT_DIGEST_HEADER]: flipped }, /do not match their digest/],
      [{ [SNAPSHOT_DIGEST_HEADER]: null }, /do not match their digest/],
      [{ [POSITION_HEADERS.txid]: '42' }, /do not match their digest/],
      [{ [POSITION_HEADERS.checksum]: '0123456789abcdee' }, /do not match their digest/],
      [{ 'content-length': String(4096 * 11) }, /do not match their digest/],
      [{ [POSITION_HEADERS.pageSize]: '1024' }, /do not match their digest/],
      [{ [POSITION_HEADERS.generation]: null }, /Edgelite-Generation is missing/],
      [{ [POSITION_HEADERS.databaseId]: 'seven' }, /Edgelite-Database-Id is "seven", not an integer/],
      [{ 'content-length': '' }, /content-length is "", not an integer/],
    ];
    for (const [change, message] of variants) {
      const h = new Headers(written);
      for (const [k, v] of Object.entries(change)) {
        if (v === null) h.delete(k);
        else h.set(k, v);
      }
      const err = thrownEdgelite(() => readSnapshotHead(h));
      expect([err.code, err.message], JSON.stringify(change)).toEqual(['CORRUPT_CHANGESET', expect.stringMatching(message)]);
    }
  });
});

describe('position headers', () => {
  it('say the position, the database and who served it; an unknown database id is empty', () => {
    expect(positionHeaders(P, 7, 'primary')).toEqual({
      'Edgelite-Generation': '3',
      'Edgelite-Txid': '41',
      'Edgelite-Checksum': '0123456789abcdef',
      'Edgelite-Database-Id': '7',
      'Edgelite-Served-By': 'primary',
    });
    expect(positionHeaders(P, null, 'replica')).toMatchObject({ 'Edgelite-Database-Id': '', 'Edgelite-Served-By': 'replica' });
  });
});
