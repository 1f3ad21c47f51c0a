/**
 * Test images built with kiln's own layer writer: N layers of seeded pseudo-random bytes (so
 * digests are stable and gzip can't shrink them away), in an OCI layout under a tag.
 */
import { createHash } from 'node:crypto';
import { writeJsonBlob, writeManifest } from '../../src/image/write.js';
import { writeLayer } from '../../src/layer/write-layer.js';
import { MediaType } from '../../src/oci/media-types.js';
import type { Descriptor } from '../../src/oci/types.js';
import { OciLayout } from '../../src/store/layout.js';

/** Deterministic bytes: SHA-256 in counter mode over a seed. */
export function seededBytes(seed: string, size: number): Buffer {
  const out = Buffer.alloc(size);
  let off = 0;
  for (let i = 0; off < size; i++) {
    const block = createHash('sha256').update(`${seed}:${i}`).digest();
    off += block.copy(out, off);
  }
  return out;
}

export interface TestImage {
  layout: string;
  tag: string;
  descriptor: Descriptor;
  layers: Descriptor[];
}

/** Writes an image of `layers` layers of `layerBytes` each (one file per layer) to `oci:dir:tag`. */
export async function makeImage(
  dir: string,
  tag: string,
  options: { layers: number; layerBytes: number; seed?: string },
): Promise<TestImage> {
  const store = await OciLayout.open(dir, { create: true });
  const layers: Descriptor[] = [];
  const diffIds: string[] = [];
  for (let i = 0; i < options.layers; i++) {
    const content = seededBytes(`${options.seed ?? tag}-${i}`, options.layerBytes);
    const written = await writeLayer(store, [
      { path: `data/layer-${i}.bin`, type: 'file', content, size: content.length },
    ]);
    layers.push(written.descriptor);
    diffIds.push(written.diffId);
  }
  const config = await writeJsonBlob(store, MediaType.OciConfig, {
    architecture: 'amd64',
    os: 'linux',
    config: { Cmd: ['/bin/sh'] },
    rootfs: { type: 'layers', diff_ids: diffIds },
  });
  const { descriptor } = await writeManifest(store, { config, layers });
  await store.tag(descriptor, tag);
  return { layout: dir, tag, descriptor, layers };
}
