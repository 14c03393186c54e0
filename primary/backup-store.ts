/** openObjectStore turns a parsed backup target (and an optional keyring) into its ObjectStore; the code is shared with replicas (shared/node/open-object-store.ts). */
export { openObjectStore } from '../shared/node/open-object-store.ts';
