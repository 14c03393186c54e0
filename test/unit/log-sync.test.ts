/**
 * GroupCommit's directory fsyncs (primary/log-sync.ts): an asynchronous flush fsyncs a new segment's
 * directory off the event loop; a synchronous flush that runs meanwhile (a checkpoint, a close) must not
 * count the segment's records durable before its directory entry is, so it fsyncs the directory itself.
 */
import { describe, expect, it } from 'vitest';
import { GroupCommit, type LogFsync } from '../../primary/log-sync.ts';

function fakeFsync(events: string[]): LogFsync {
  return {
    fdatasync: async (fd) => {
      events.push(`fdatasync ${fd}`);
    },
    fdatasyncSync: (fd) => events.push(`fdatasyncSync ${fd}`),
    dirSync: (dir) => events.push(`dirSync ${dir}`),
  };
}

describe('GroupCommit directory fsyncs', () => {
  it('a synchronous flush during an asynchronous one fsyncs the directory first', () => {
    const events: string[] = [];
    const commit = new GroupCommit(fakeFsync(events), () => ({ file: { fd: 7, path: '/log/seg' }, txid: 5 }));
    commit.pendingDir = '/log';
    commit.start(); // claims the directory; its fsync runs after this turn
    commit.flushSync({ fd: 7, path: '/log/seg' }, 5);
    expect(events).toEqual(['dirSync /log', 'fdatasyncSync 7']);
    expect(commit.durableTxid).toBe(5);
  });

  it('an asynchronous flush fsyncs the directory, then the file, then counts the records durable', async () => {
    const events: string[] = [];
    const commit = new GroupCommit(fakeFsync(events), () => ({ file: { fd: 3, path: '/log/seg' }, txid: 9 }));
    commit.pendingDir = '/log';
    const durable = commit.wait();
    await durable;
    expect(events).toEqual(['dirSync /log', 'fdatasync 3']);
    expect(commit.durableTxid).toBe(9);
    expect(commit.pendingDir).toBeNull();
  });
});
