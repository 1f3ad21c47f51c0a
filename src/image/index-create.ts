import { KilnError } from '../errors.js';
import { type PlatformAliases, withPlatformAliases } from '../oci/aliases.js';
import { createdFamily, indexInFamily, indexType } from '../oci/media-type-policy.js';
import { isManifestType, MediaType } from '../oci/media-types.js';
import { formatPlatform, normalizePlatform } from '../oci/platform.js';
import { isUnknownPlatform } from '../oci/select.js';
import type { Descriptor, ImageIndex } from '../oci/types.js';
import { MAX_CONFIG_BYTES, parseConfig } from '../oci/validate.js';
import { inFormat } from '../transport/format.js';
import { openSource } from '../transport/open.js';
import { readSmallBlob } from '../transport/read.js';
import type { ImageSource } from '../transport/types.js';
import {
  type ComposeResult,
  configPlatform,
  type DeriveOptions,
  derive,
  loadRoot,
  platformKey,
} from './compose.js';
import { sortKeys } from './write.js';

/** Options of `createIndex`: the images (manifests) to list and the destination. */
export interface IndexCreateOptions extends DeriveOptions {
  /** Images or indexes (any source transport); an index contributes its entries. */
  sources: string[];
  to: string;
  annotations?: Record<string, string>;
  /** The wasm image listed again under wasi/wasm (Docker) or node platforms (Kubernetes). */
  aliases?: PlatformAliases;
}

/** What `createIndex` wrote: the index and its manifests. */
export interface IndexCreateResult extends ComposeResult {
  /** The entries of the new index, in order. */
  manifests: Descriptor[];
}

/**
 * Makes one OCI image index of several images (a Docker manifest list with `format: 'docker'`);
 * Docker v2 images are listed converted to OCI, so an OCI index holds OCI images only. Each image's
 * platform comes from its config; an index's entries are taken with the platform they have. The
 * same platform twice is an error unless it is the same manifest, which is listed once.
 */
export async function createIndex(options: IndexCreateOptions): Promise<IndexCreateResult> {
  if (options.sources.length === 0) throw new KilnError('E_USAGE', 'index create needs at least one image');
  const family = createdFamily(options.format);
  return derive('kiln index create', options, async (composed, ctx) => {
    const manifests: Descriptor[] = [];
    const byDigest = new Set<string>();
    const byPlatform = new Map<string, { digest: string; from: string }>();
    for (const name of options.sources) {
      const source = composed.addSource(inFormat(await openSource(name, { context: ctx }), family));
      for (const entry of await entriesOf(source)) {
        if (byDigest.has(entry.digest)) continue;
        // Attestations (unknown/unknown) and platform-less artifacts never compete for a platform.
        if (entry.platform && !isUnknownPlatform(entry.platform)) {
          const key = platformKey(entry.platform);
          const seen = byPlatform.get(key);
          if (seen)
            throw new KilnError(
              'E_AMBIGUOUS',
              `two different images for ${formatPlatform(normalizePlatform(entry.platform))}: ${seen.digest} (${seen.from}) and ${entry.digest} (${name})`,
              { hint: 'an index holds one image per platform; leave one of them out' },
            );
          byPlatform.set(key, { digest: entry.digest, from: name });
        }
        byDigest.add(entry.digest);
        composed.addBase(entry, source);
        manifests.push(entry);
      }
    }
    const created: ImageIndex = {
      schemaVersion: 2,
      mediaType: indexType(family),
      manifests: withPlatformAliases(manifests, options.aliases ?? {}, 'the index'),
    };
    if (options.annotations && Object.keys(options.annotations).length > 0)
      created.annotations = sortKeys(options.annotations);
    const index = indexInFamily(created, family, created.manifests);
    const descriptor = await composed.putJson(indexType(family), index);
    // A single-image destination (docker-archive) gets the host's image: report what was written.
    const written = await composed.writeTo(descriptor, options.to);
    return { destination: options.to, descriptor: written.descriptor, manifests: index.manifests };
  });
}

/** The index entries a source contributes: its manifest with the platform of its config, or its index's entries. */
async function entriesOf(source: ImageSource): Promise<Descriptor[]> {
  const { root, parsed } = await loadRoot(source);
  if (parsed.kind === 'index') return parsed.index.manifests.map((m) => ({ ...m }));
  const manifest = parsed.manifest;
  const entry: Descriptor = { ...root };
  if (!isManifestType(entry.mediaType)) entry.mediaType = manifest.mediaType ?? MediaType.OciManifest;
  if (manifest.artifactType) entry.artifactType = manifest.artifactType;
  // Image configs and the wasm artifact config carry os/architecture; other configs are not JSON of that shape.
  const config = manifest.config;
  if (config.mediaType.endsWith('json') && config.mediaType !== MediaType.OciEmpty && config.size > 2) {
    const platform = configPlatform(
      parseConfig(await readSmallBlob(source, config, MAX_CONFIG_BYTES), `${source.name} config`),
    );
    if (platform) entry.platform = platform;
  }
  return [entry];
}
