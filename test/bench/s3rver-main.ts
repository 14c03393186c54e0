/**
 * s3rver (test/integration/backup-kit.ts startS3) in a process of its own: P11's writes-with-backup row
 * runs its load generator in the bench process, and a bucket on the same event loop would slow the
 * load down, not the primary. Its objects go under EDGELITE_S3_ROOT (default the temp directory): P11
 * puts them in /dev/shm, as a bucket's storage is not the primary's disk. Prints one JSON line
 * `{"msg": "s3rver listening", "url"}`; SIGTERM stops it.
 */
import { tmpdir } from 'node:os';
import { startS3 } from '../integration/backup-kit.ts';

const s3 = await startS3(0, process.env.EDGELITE_S3_ROOT ?? tmpdir());
process.stdout.write(`${JSON.stringify({ msg: 's3rver listening', url: s3.endpoint })}\n`);
const stop = (): void => void s3.close().finally(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
