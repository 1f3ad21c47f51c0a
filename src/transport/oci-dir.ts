import * as fs from 'node:fs/promises';
import { KilnError } from '../errors.js';
import type { Descriptor } from '../oci/types.js';
import { MAX_MANIFEST_BYTES } from '../oci/validate.js';
import { expectSize } from '../oci/verify.js';
import { OciLayout } from '../store/layout.js';
import type { ImageDestination, ImageSource } from './types.js';

/** `oci:DIR[:TAG]` as a source. */
export class OciDirSource implements ImageSource {
  private pinned: Descriptor | undefined;

  constructor(
    readonly name: string,
    private readonly layout: OciLayout,
    private readonly tag: string | undefined,
  ) {}

  /** A source that resolves to one descriptor in `layout` (kiln's cache), tagged or not. */
  static forDescriptor(layout: OciLayout, desc: Descriptor): OciDirSource {
    const source = new OciDirSource(`kiln cache ${desc.digest}`, layout, undefined);
    source.pinned = desc;
    return source;
  }

  static async open(name: string, dir: string, tag: string | undefined): Promise<OciDirSource> {
    return new OciDirSource(name, await OciLayout.open(dir), tag);
  }

  async resolve(): Promise<Descriptor> {
    return this.pinned ?? this.layout.resolve(this.tag);
  }

  async fetchManifest(desc: Descriptor): Promise<Buffer> {
    if (desc.size > MAX_MANIFEST_BYTES)
      throw new KilnError(
        'E_TOO_LARGE',
        `manifest ${desc.digest} is ${desc.size} bytes, over the 4 MiB limit`,
      );
    return expectSize(await this.layout.readBlob(desc.digest, MAX_MANIFEST_BYTES), desc, this.name);
  }

  async fetchBlob(desc: Descriptor): Promise<AsyncIterable<Uint8Array>> {
    const size = await this.layout.blobSize(desc.digest);
    if (size !== desc.size)
      throw new KilnError(
        'E_SIZE_MISMATCH',
        `blob ${desc.digest} in ${this.name} is ${size} bytes, its descriptor says ${desc.size}`,
      );
    return this.layout.openBlob(desc.digest);
  }

  async close(): Promise<void> {}
}

/** `oci:DIR[:TAG]` as a destination. A directory kiln creates is removed again if the copy fails. */
export class OciDirDestination implements ImageDestination {
  private constructor(
    readonly name: string,
    private readonly layout: OciLayout,
    private readonly tag: string | undefined,
    private readonly created: boolean,
  ) {}

  static async open(name: string, dir: string, tag: string | undefined): Promise<OciDirDestination> {
    const existed = await fs.stat(dir).then(
      () => true,
      () => false,
    );
    return new OciDirDestination(name, await OciLayout.open(dir, { create: true }), tag, !existed);
  }

  hasBlob(desc: Descriptor): Promise<boolean> {
    return this.layout.hasBlob(desc.digest, desc.size);
  }

  async putBlob(desc: Descriptor, content: AsyncIterable<Uint8Array>): Promise<void> {
    await this.layout.writeBlob(content, { digest: desc.digest, size: desc.size });
  }

  async putManifest(desc: Descriptor, bytes: Buffer): Promise<void> {
    if (await this.layout.hasBlob(desc.digest, desc.size)) return;
    await this.layout.writeBytes(bytes, { digest: desc.digest, size: desc.size });
  }

  async commit(root: Descriptor): Promise<void> {
    await this.layout.tag(root, this.tag);
  }

  async abort(): Promise<void> {
    if (this.created) await fs.rm(this.layout.dir, { recursive: true, force: true });
  }
}
