/**
 * Taps of the fault proxy (proxy.ts): recordings of the original bytes of matching messages, taken
 * before any fault, so a test can say afterwards which layer a flipped byte hit.
 */
import type { Direction } from './proxy-pipe.ts';

/** TapMessage is one recorded message, as it came from its sender (before any fault). */
export interface TapMessage {
  connection: number;
  request: string | null;
  /** Offset of the first body byte (after CRLFCRLF), or -1 while unknown. */
  bodyStart: number;
  chunks: Buffer[];
  size: number;
}

/** tapBytes joins a recorded message's chunks. */
export function tapBytes(m: TapMessage): Buffer {
  return Buffer.concat(m.chunks);
}

/** Tap records the original bytes of matching messages in one direction, to locate faults afterwards. */
export class Tap {
  readonly messages: TapMessage[] = [];
  stopped = false;
  constructor(
    readonly direction: Direction,
    readonly request: RegExp | undefined,
    readonly maxBytes: number,
  ) {}

  /** find returns the message a fault was injected into. */
  find(connection: number, request: string | null): TapMessage | undefined {
    for (let i = this.messages.length - 1; i >= 0; i--) {
      const m = this.messages[i]!;
      if (m.connection === connection && m.request === request) return m;
    }
    return undefined;
  }

  stop(): void {
    this.stopped = true;
  }
}
