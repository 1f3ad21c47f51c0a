import type { Platform } from '../oci/platform.js';
import type { Annotations, Descriptor, ImageConfig } from '../oci/types.js';
import { parseManifest } from '../oci/validate.js';
import type { ImageSource } from '../transport/types.js';
import { resolveImage, selectManifest } from './resolve.js';

/** One image as inspected: platform, config, layers, sizes. */
export interface InspectedImage {
  digest: string;
  mediaType: string;
  size: number;
  platform: Platform;
  created?: string;
  config: {
    mediaType: string;
    digest: string;
    size: number;
    entrypoint?: string[];
    cmd?: string[];
    env?: string[];
    workingDir?: string;
    user?: string;
    labels?: Record<string, string>;
  };
  layers: Descriptor[];
  totalSize: number;
  annotations?: Annotations;
}

/** What `inspect` returns: the descriptor, and the image (or each image of an index). */
export interface InspectResult {
  name: string;
  /** The root the name resolves to. */
  digest: string;
  mediaType: string;
  size: number;
  /** When the root is an index: its entries. */
  manifests?: {
    digest: string;
    mediaType: string;
    size: number;
    platform?: Platform;
    annotations?: Annotations;
  }[];
  /**
   * True when the manifest was made up by kiln: a Docker archive without an OCI index has none of
   * its own, so its digest is kiln's.
   */
  synthesized?: true;
  /** The image: the root itself, or the entry chosen with `platform`. */
  image?: InspectedImage;
  raw: Buffer;
  rawConfig?: Buffer;
}

/** What `kiln inspect` shows; for an index without a platform, the index and no image. */
export async function inspectSource(
  source: ImageSource,
  options: { platform?: Platform } = {},
): Promise<InspectResult> {
  const root = await source.resolve();
  const rootBytes = await source.fetchManifest(root);
  const parsed = parseManifest(rootBytes, `${source.name} manifest`, root.mediaType);
  const result: InspectResult = {
    name: source.name,
    digest: root.digest,
    mediaType:
      parsed.kind === 'index'
        ? (parsed.index.mediaType ?? root.mediaType)
        : (parsed.manifest.mediaType ?? root.mediaType),
    size: root.size,
    raw: rootBytes,
  };
  if (source.synthesized) result.synthesized = true;
  if (parsed.kind === 'index') {
    result.manifests = parsed.index.manifests.map((m) => ({
      digest: m.digest,
      mediaType: m.mediaType,
      size: m.size,
      ...(m.platform ? { platform: m.platform } : {}),
      ...(m.annotations ? { annotations: m.annotations } : {}),
    }));
    if (!options.platform) return result;
  }
  const image = await resolveImage(source, (index) => selectManifest(index, options.platform, source.name));
  if (parsed.kind === 'index') result.raw = image.manifestBytes;
  result.rawConfig = image.configBytes;
  result.image = describeImage(image.descriptor, image.manifest, image.config);
  return result;
}

function describeImage(
  desc: Descriptor,
  manifest: import('../oci/types.js').ImageManifest,
  config: ImageConfig,
): InspectedImage {
  const c = config.config ?? {};
  const platform: Platform = { os: config.os ?? 'unknown', architecture: config.architecture ?? 'unknown' };
  if (config.variant) platform.variant = config.variant;
  const image: InspectedImage = {
    digest: desc.digest,
    mediaType: manifest.mediaType ?? desc.mediaType,
    size: desc.size,
    platform,
    config: {
      mediaType: manifest.config.mediaType,
      digest: manifest.config.digest,
      size: manifest.config.size,
      ...(c.Entrypoint ? { entrypoint: c.Entrypoint } : {}),
      ...(c.Cmd ? { cmd: c.Cmd } : {}),
      ...(c.Env ? { env: c.Env } : {}),
      ...(c.WorkingDir ? { workingDir: c.WorkingDir } : {}),
      ...(c.User ? { user: c.User } : {}),
      ...(c.Labels ? { labels: c.Labels } : {}),
    },
    layers: manifest.layers,
    totalSize: desc.size + manifest.config.size + manifest.layers.reduce((n, l) => n + l.size, 0),
  };
  if (config.created) image.created = config.created;
  if (manifest.annotations) image.annotations = manifest.annotations;
  return image;
}
