/** The import rules of docs/ARCHITECTURE.md#the-folder-map hold (scripts/lint.mjs, also `npm run lint`). */
import { describe, expect, it } from 'vitest';
// @ts-expect-error: a plain .mjs script without type declarations
import { lint } from '../../scripts/lint.mjs';

describe('import rules', () => {
  it('shared/ is Worker-safe, primary/ and replica/ stay apart, undici only in the network module', () => {
    expect(lint()).toEqual([]);
  });
});
