import { MediaType } from '../oci/media-types.js';
import type { Annotations, Descriptor, ImageManifest } from '../oci/types.js';
import { encodeJson } from '../oci/validate.js';
import type { OciLayout } from '../store/layout.js';

export interface WrittenManifest {
  descriptor: Descriptor;
  manifest: ImageManifest;
  bytes: Buffer;
}

/** Writes a JSON document as a blob and returns its descriptor. */
export async function writeJsonBlob(
  store: OciLayout,
  mediaType: string,
  value: unknown,
): Promise<Descriptor> {
  return { mediaType, ...(await store.putBytes(encodeJson(value))) };
}

/** Writes an image manifest whose config and layer blobs are already in the store. */
export async function writeManifest(
  store: OciLayout,
  parts: {
    config: Descriptor;
    layers: Descriptor[];
    annotations?: Annotations;
    artifactType?: string;
    subject?: Descriptor;
  },
): Promise<WrittenManifest> {
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: MediaType.OciManifest,
    ...(parts.artifactType ? { artifactType: parts.artifactType } : {}),
    config: parts.config,
    layers: parts.layers,
  };
  if (parts.subject) manifest.subject = parts.subject;
  if (parts.annotations && Object.keys(parts.annotations).length)
    manifest.annotations = sortKeys(parts.annotations);
  const bytes = encodeJson(manifest);
  const descriptor: Descriptor = { mediaType: MediaType.OciManifest, ...(await store.putBytes(bytes)) };
  return { descriptor, manifest, bytes };
}

/** Object keys in a fixed order, so the same annotations always serialise the same way. */
export function sortKeys<T>(obj: Record<string, T>): Record<string, T> {
  return Object.fromEntries(Object.entries(obj).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}
