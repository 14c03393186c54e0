/**
 * TextSink is a writable stream that keeps what is written to it as text, standing in for a terminal
 * (`isTTY`) or a pipe in tests of what the CLI prints (logs, progress, status frames).
 */
import { Writable } from 'node:stream';

export class TextSink extends Writable {
  text = '';
  constructor(readonly isTTY = false) {
    super();
  }
  override _write(chunk: Buffer | string, _enc: BufferEncoding, done: () => void): void {
    this.text += chunk.toString();
    done();
  }
  /** lines parses every line written as a JSON object (log lines). */
  lines(): Array<Record<string, unknown>> {
    return this.text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
  }
}
