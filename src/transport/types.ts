import type { Descriptor } from '../oci/types.js';

/** Where images are read from: a registry, an OCI layout, an archive. */
export interface ImageSource {
  /** How the user named it, for messages. */
  readonly name: string;
  /** The descriptor of the named manifest or index. */
  resolve(): Promise<Descriptor>;
  /** A manifest or index by descriptor, verified against its digest and size. */
  fetchManifest(desc: Descriptor): Promise<Buffer>;
  /**
   * A blob's content as stored, not yet verified: a destination verifies as it writes, any other
   * reader wraps the stream in `verified()`. So a copy hashes each blob once.
   */
  fetchBlob(desc: Descriptor): Promise<AsyncIterable<Uint8Array>>;
  close(): Promise<void>;
}

/** Where images are written. Nothing is visible under the destination name until `commit`. */
export interface ImageDestination {
  readonly name: string;
  /** True when the destination has this blob already, so it is not sent again. */
  hasBlob(desc: Descriptor): Promise<boolean>;
  /** Writes a blob, verifying digest and size while it streams; a mismatch writes nothing. */
  putBlob(desc: Descriptor, content: AsyncIterable<Uint8Array>): Promise<void>;
  putManifest(desc: Descriptor, bytes: Buffer): Promise<void>;
  /** Names `root` (the tag) and makes everything visible. */
  commit(root: Descriptor): Promise<void>;
  /** Removes whatever this destination wrote that is not committed. */
  abort(): Promise<void>;
  /** Whether the destination can hold an index, or only one image (docker-archive). */
  readonly singleImage?: boolean;
  /** Blobs must arrive one at a time, in order (archives: members are appended to one stream). */
  readonly sequential?: boolean;
}
