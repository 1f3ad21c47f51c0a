import type { Platform } from '../oci/platform.js';
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
  /**
   * True once `resolve` has made the manifest up from another format (a Docker-only archive's
   * manifest.json): its digest is kiln's, not one the archive's author wrote.
   */
  readonly synthesized?: boolean;
  close(): Promise<void>;
}

/** What a copy is about to write, told to the destination before anything is sent. */
export interface CopyPlan {
  root: Descriptor;
  /** The platforms of the images under `root`, as far as known (an image's from its config). */
  platforms: Platform[];
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
  /**
   * Refuses, before any blob is sent, what the destination can't take (an engine that can't load
   * the image's os). Called once per copy, with the root to be written.
   */
  prepare?(plan: CopyPlan): Promise<void>;
  /**
   * Whether the destination holds one image only (docker-daemon): an index must be narrowed with
   * a platform, else the copy is refused.
   */
  readonly singleImage?: boolean;
  /**
   * Blobs are staged and only delivered by `commit` (docker-daemon: a load); a copy reports them
   * (done, skipped) once the commit succeeded, not while they are staged.
   */
  readonly staged?: boolean;
  /** Blobs must arrive one at a time, in order (archives: members are appended to one stream). */
  readonly sequential?: boolean;
}
