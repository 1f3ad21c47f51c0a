/**
 * Registry references (`host/repo[:tag][@digest]`) as image sources and destinations.
 */
import { KilnError } from '../errors.js';
import type { Reference } from '../oci/reference.js';
import type { Descriptor } from '../oci/types.js';
import { expectSize } from '../oci/verify.js';
import { Registry, type RegistryOptions } from '../registry/registry.js';
import { type OpenContent, Repository } from '../registry/repository.js';
import type { BlobOrigin, ImageDestination, ImageSource } from './types.js';

/**
 * A repository on a Registry of its own, outside any context's pool (tests, one-off checks).
 * Operations use their context's: `context.repository(ref)`.
 */
export function openRepository(ref: Reference, options: RegistryOptions = {}): Repository {
  return new Repository(new Registry(ref.registry, options), ref.repository);
}

/** A source or destination in a registry repository: what both are opened with. */
abstract class RegistryImages {
  constructor(
    readonly name: string,
    readonly ref: Reference,
    readonly repo: Repository,
    protected readonly signal?: AbortSignal,
    /** Called once done (a source closed, a destination committed or aborted): closes a context made for it alone. */
    protected readonly release?: () => void,
  ) {}
}

export class RegistrySource extends RegistryImages implements ImageSource {
  private readonly manifests = new Map<string, Buffer>();
  private root: Descriptor | undefined;

  /** GETs the named manifest at once (one request instead of HEAD + GET) and keeps its bytes. */
  async resolve(): Promise<Descriptor> {
    if (this.root) return this.root;
    const reference = this.ref.digest ?? this.ref.tag ?? 'latest';
    const { descriptor, bytes } = await this.repo.getManifest(reference, this.signal);
    this.manifests.set(descriptor.digest, bytes);
    this.root = descriptor;
    return descriptor;
  }

  async fetchManifest(desc: Descriptor): Promise<Buffer> {
    const cached = this.manifests.get(desc.digest);
    if (cached) return expectSize(cached, desc, this.name);
    const { bytes } = await this.repo.getManifest(desc.digest, this.signal);
    return expectSize(bytes, desc, this.name);
  }

  /** The blob's content; a broken download resumes where it stopped (see Repository.openBlob). */
  async fetchBlob(desc: Descriptor): Promise<AsyncIterable<Uint8Array>> {
    return this.repo.openBlob(desc.digest, this.signal, { size: desc.size });
  }

  blobOrigin(): BlobOrigin {
    return { registry: this.ref.registry, repository: this.ref.repository };
  }

  async close(): Promise<void> {
    this.release?.();
  }
}

/**
 * A registry as a destination. Manifests are pushed as they come (by digest) except the last one,
 * held back so `commit` pushes the root once, under its tag.
 */
export class RegistryDestination extends RegistryImages implements ImageDestination {
  private pending: { desc: Descriptor; bytes: Buffer } | undefined;
  /** Blobs known present (pushed or found), so an index's images share HEADs. */
  private readonly present = new Set<string>();
  /** The digest the tag was found to name already (a warm copy writes nothing). */
  private tagCurrent: string | undefined;
  /** HEADs in flight or done, so an index's images ask once per blob. */
  private readonly heads = new Map<string, Promise<boolean>>();

  hasBlob(desc: Descriptor): Promise<boolean> {
    if (this.present.has(desc.digest)) return Promise.resolve(true);
    let head = this.heads.get(desc.digest);
    if (!head) {
      head = this.repo.hasBlob(desc.digest, this.signal).then((size) => {
        const has = size !== undefined && (size === -1 || size === desc.size);
        if (has) this.present.add(desc.digest);
        return has;
      });
      this.heads.set(desc.digest, head);
      head.catch(() => this.heads.delete(desc.digest));
    }
    return head;
  }

  async mountBlob(desc: Descriptor, from: BlobOrigin): Promise<boolean> {
    if (from.registry !== this.ref.registry || from.repository === this.ref.repository) return false;
    const mounted = await this.repo.mountBlob(desc.digest, from.repository, this.signal);
    if (mounted) this.present.add(desc.digest);
    return mounted;
  }

  async putBlob(
    desc: Descriptor,
    content: AsyncIterable<Uint8Array>,
    reopen?: () => Promise<AsyncIterable<Uint8Array>>,
  ): Promise<void> {
    let first: AsyncIterable<Uint8Array> | undefined = content;
    const open: OpenContent = async () => {
      if (first) {
        const c = first;
        first = undefined;
        return c;
      }
      if (!reopen)
        throw new KilnError('E_NETWORK', `upload of ${desc.digest} broke and its source can't be read again`);
      return reopen();
    };
    await this.repo.uploadBlob(desc, open, { signal: this.signal });
    this.present.add(desc.digest);
  }

  /**
   * The tag first: when it names this digest already there is nothing to write at all (one HEAD
   * for a warm copy); else whether the manifest is there under another name.
   */
  async hasManifest(desc: Descriptor): Promise<boolean> {
    if (this.ref.tag) {
      const tagged = await this.repo.headManifest(this.ref.tag, this.signal);
      if (tagged?.digest === desc.digest) {
        this.tagCurrent = desc.digest;
        return true;
      }
    }
    const found = await this.repo.headManifest(desc.digest, this.signal);
    return found !== undefined && found.digest === desc.digest;
  }

  async putManifest(desc: Descriptor, bytes: Buffer): Promise<void> {
    await this.flush();
    this.pending = { desc, bytes };
  }

  private async flush(): Promise<void> {
    const p = this.pending;
    this.pending = undefined;
    if (p) await this.repo.putManifest(p.desc.digest, p.bytes, p.desc.mediaType, this.signal);
  }

  async commit(root: Descriptor): Promise<void> {
    if (this.ref.digest && this.ref.digest !== root.digest)
      throw new KilnError(
        'E_DIGEST_MISMATCH',
        `${this.name} names digest ${this.ref.digest} but the image is ${root.digest}`,
      );
    const p = this.pending;
    try {
      if (p && p.desc.digest === root.digest) {
        this.pending = undefined;
        if (this.tagCurrent === root.digest) return;
        await this.repo.putManifest(this.ref.tag ?? root.digest, p.bytes, p.desc.mediaType, this.signal);
        return;
      }
      await this.flush();
      throw new KilnError('E_REGISTRY', `internal: root ${root.digest} was not the last manifest written`);
    } finally {
      this.release?.();
    }
  }

  /** Registries keep no half-written state visible: an upload not finished is never a blob. */
  async abort(): Promise<void> {
    this.pending = undefined;
    this.release?.();
  }
}
