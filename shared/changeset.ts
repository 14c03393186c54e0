/**
 * The change set codec: one committed transaction, or a run of them, as a versioned binary blob of page
 * images (docs/FORMAT.md). Import from here. The offset table is in changeset-format.ts and docs/FORMAT.md;
 * the encoder and decoder state machines are in their own files.
 */
export {
  CHANGESET_MAGIC,
  CHANGESET_VERSION,
  type ChangeSetHeader,
  changeSetByteLength,
  FLAG_COMPRESSED,
  HEADER_SIZE,
  PAGE_ENTRY_OVERHEAD,
  readChangeSetHeader,
  TRAILER_SIZE,
} from './changeset-format.ts';
export { ChangeSetEncoder, encodeChangeSet, type EncodeOptions } from './changeset-encoder.ts';
export { ChangeSetDecoder, decodeChangeSet } from './changeset-decoder.ts';
