/**
 * FollowerClient adapts the shared PrimaryClient (shared/primary-client.ts) to the calls this Worker's
 * follower makes today (one database, pull-style bodies). It lives only until the follower becomes a
 * port of the shared follower core, which calls PrimaryClient directly; then this file goes.
 */
import type { PrimaryClient, SnapshotHead } from '../../../shared/primary-client.ts';
import type { Position } from '../../../shared/types.ts';

export interface FollowerClient {
  openStream(db: string, position: Position | null, signal: AbortSignal): Promise<ReadableStream<Uint8Array>>;
  snapshot(db: string, signal?: AbortSignal): Promise<SnapshotHead & { body: ReadableStream<Uint8Array> }>;
}

export function followerClient(client: PrimaryClient): FollowerClient {
  return {
    async openStream(db, position, signal) {
      const it = (await client.openStream([db], { [db]: position }, signal))[Symbol.asyncIterator]();
      return new ReadableStream<Uint8Array>({
        async pull(c) {
          const r = await it.next();
          if (r.done) c.close();
          else c.enqueue(r.value);
        },
        async cancel() {
          await it.return?.();
        },
      });
    },
    snapshot(db, signal) {
      // The shared client pushes into a sink (awaiting each write); the follower pulls: a pipe between.
      const pipe = new TransformStream<Uint8Array, Uint8Array>();
      const writer = pipe.writable.getWriter();
      return new Promise((resolve, reject) => {
        client
          .snapshot(db, { open: async (head) => resolve({ ...head, body: pipe.readable }), write: (chunk) => writer.write(chunk.slice()) }, signal)
          .then(
            () => writer.close(),
            (err: unknown) => {
              reject(err); // before open: the caller gets the error; after: its body read does
              return writer.abort(err);
            },
          )
          .catch(() => undefined); // the reader side already saw the error
      });
    },
  };
}
