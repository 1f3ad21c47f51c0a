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
  /**
   * The registry repository a blob can be mounted from, when this source is (or sits on) a registry:
   * a destination on the same registry then mounts it instead of copying bytes.
   */
  blobOrigin?(desc: Descriptor): BlobOrigin | undefined;
  close(): Promise<void>;
}

/** A registry repository holding a blob: `registry` is the host[:port] as in references. */
export interface BlobOrigin {
  registry: string;
  repository: string;
}

/** Where images are written. Nothing is visible under the destination name until `commit`. */
export interface ImageDestination {
  readonly name: string;
  /** True when the destination has this blob already, so it is not sent again. */
  hasBlob(desc: Descriptor): Promise<boolean>;
  /** Writes a blob, verifying digest and size while it streams; a mismatch writes nothing. */
  putBlob(
    desc: Descriptor,
    content: AsyncIterable<Uint8Array>,
    /** Reads the content again from the start, for a destination that resumes a broken upload. */
    reopen?: () => Promise<AsyncIterable<Uint8Array>>,
  ): Promise<void>;
  /** Makes a blob present without sending it (a registry's cross-repository mount); false if it can't. */
  mountBlob?(desc: Descriptor, from: BlobOrigin): Promise<boolean>;
  putManifest(desc: Descriptor, bytes: Buffer): Promise<void>;
  /** True when the destination holds this manifest and everything under it already. */
  hasManifest?(desc: Descriptor): Promise<boolean>;
  /** Names `root` (the tag) and makes everything visible. */
  commit(root: Descriptor): Promise<void>;
  /** Removes whatever this destination wrote that is not committed. */
  abort(): Promise<void>;
  /** Whether the destination can hold an index, or only one image (docker-archive). */
  readonly singleImage?: boolean;
  /** Blobs must arrive one at a time, in order (archives: members are appended to one stream). */
  readonly sequential?: boolean;
}
