/** The `edgelite` package entry: the embedded replica, and the vocabulary a program needs with it. */
export { openReplica, EmbeddedReplica, type OpenReplicaOptions, type ReadOptions } from './embedded.ts';
export { startReplica, type ReplicaHandle } from './server.ts';
export { EdgeliteError, type ErrorCode } from '../shared/errors.ts';
export type { Position, Txid, Generation } from '../shared/types.ts';
