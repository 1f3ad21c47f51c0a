/**
 * kiln's one media-type policy: which family (OCI, or Docker image manifest v2 schema 2) a manifest
 * kiln writes is in. Every command decides through this module.
 *
 * - `copy` keeps a manifest's bytes and digest, whatever its family (as crane does), unless asked to
 *   convert (`format`, as `skopeo copy --format`): then every manifest and index of the other family
 *   is re-serialised in the one asked for (manifest, config and layer media types renamed; the blobs
 *   are the same bytes, so only manifests change digest).
 * - A manifest kiln creates (append, mutate, merge, rebase, flatten, diff, build, index create) is
 *   OCI unless asked for Docker v2 (`format: 'docker'`), whatever its inputs are: the layers and
 *   config it takes from a Docker base are renamed into OCI types. An OCI manifest is what an `oci:`
 *   layout must hold (umoci, oci-image-tool), and registries take it too. Docker engines read OCI
 *   images as well: `docker-daemon:` and `docker-archive:` load a manifest.json that names blobs by
 *   path, whatever the types.
 * - An image nothing changed (mutate with no effect) keeps its bytes, like a copy.
 *
 * The conversion of a whole source (copy's `--format`, index create) is transport/format.ts.
 */
import { KilnError } from '../errors.js';
import { MediaType } from './media-types.js';
import type { Descriptor, ImageIndex, ImageManifest } from './types.js';

/** The two families of manifest media types; one manifest never mixes them. */
export type Family = 'oci' | 'docker';
/** A family as asked for by a user (`--format oci|docker`). */
export type ManifestFormat = Family;
/** The manifest families kiln writes (`--format`): OCI, Docker v2. */
export const MANIFEST_FORMATS: readonly ManifestFormat[] = ['oci', 'docker'];

/** The same bytes under each family's name (both ways). */
const DOCKER_TO_OCI: Record<string, string> = {
  [MediaType.DockerManifest]: MediaType.OciManifest,
  [MediaType.DockerManifestList]: MediaType.OciIndex,
  [MediaType.DockerConfig]: MediaType.OciConfig,
  [MediaType.DockerLayerGzip]: MediaType.OciLayerGzip,
  [MediaType.DockerForeignLayerGzip]: MediaType.OciLayerNondistributableGzip,
};
const OCI_TO_DOCKER: Record<string, string> = Object.fromEntries(
  Object.entries(DOCKER_TO_OCI).map(([docker, oci]) => [oci, docker]),
);

/** The family of the manifests kiln creates: OCI unless Docker v2 is asked for. */
export function createdFamily(format?: ManifestFormat): Family {
  return format ?? 'oci';
}

/** A `--format` value, checked. */
export function parseFormat(value: string | undefined): ManifestFormat | undefined {
  if (value === undefined) return undefined;
  if (!(MANIFEST_FORMATS as readonly string[]).includes(value))
    throw new KilnError('E_USAGE', `--format takes ${MANIFEST_FORMATS.join(' or ')}, got '${value}'`, {
      hint: 'oci for OCI image manifests, docker for Docker image manifest v2 schema 2',
    });
  return value as ManifestFormat;
}

/** A media type in `family`: the same bytes under that family's name, or unchanged when it has none. */
export function inFamily(mediaType: string, family: Family): string {
  return (family === 'oci' ? DOCKER_TO_OCI[mediaType] : OCI_TO_DOCKER[mediaType]) ?? mediaType;
}

/** The family of a manifest or index media type. */
export function familyOf(mediaType: string | undefined): Family {
  return mediaType === MediaType.DockerManifest || mediaType === MediaType.DockerManifestList
    ? 'docker'
    : 'oci';
}

/** True when Docker v2 has a name for this type (OCI's gzip layers, image config, manifest, index). */
export function hasDockerType(mediaType: string): boolean {
  return inFamily(mediaType, 'docker') in DOCKER_TO_OCI;
}

export function manifestType(family: Family): string {
  return family === 'docker' ? MediaType.DockerManifest : MediaType.OciManifest;
}

export function indexType(family: Family): string {
  return family === 'docker' ? MediaType.DockerManifestList : MediaType.OciIndex;
}

/** A config or layer descriptor in `family`; Docker v2 descriptors have no annotations. */
export function descriptorInFamily(desc: Descriptor, family: Family, name: string): Descriptor {
  const mediaType = inFamily(desc.mediaType, family);
  if (family === 'docker' && !hasDockerType(mediaType))
    throw new KilnError(
      'E_UNSUPPORTED',
      `${name} has a blob of type ${desc.mediaType}, which Docker v2 manifests have no type for`,
      { hint: 'Docker v2 takes gzip layers and an image config only: keep the image OCI (--format oci)' },
    );
  if (mediaType === desc.mediaType) return desc;
  const out: Descriptor = { ...desc, mediaType };
  if (family === 'docker') {
    delete out.annotations;
    delete out.artifactType;
    delete out.data;
  }
  return out;
}

/**
 * `manifest` in `family`: its media type, its config's and its layers' renamed (the same blobs).
 * Docker v2 has no annotations (dropped) and no artifacts (refused). Returns `manifest` itself when it
 * is in `family` already, so its bytes can be kept.
 */
export function manifestInFamily(manifest: ImageManifest, family: Family, name: string): ImageManifest {
  if (family === 'oci') {
    if (familyOf(manifest.mediaType) === 'oci' && manifest.config.mediaType !== MediaType.DockerConfig) {
      const layers = manifest.layers.map((l) => descriptorInFamily(l, 'oci', name));
      if (layers.every((l, i) => l === manifest.layers[i])) return manifest;
      return { ...manifest, layers };
    }
    return {
      ...manifest,
      mediaType: MediaType.OciManifest,
      config: descriptorInFamily(manifest.config, 'oci', name),
      layers: manifest.layers.map((l) => descriptorInFamily(l, 'oci', name)),
    };
  }
  if (manifest.mediaType === MediaType.DockerManifest && manifest.annotations === undefined) return manifest;
  if (manifest.artifactType !== undefined || manifest.subject !== undefined)
    throw new KilnError('E_UNSUPPORTED', `${name} is an OCI artifact, which Docker v2 manifests can't hold`, {
      hint: 'keep it OCI: leave out --format docker',
    });
  if (
    manifest.config.mediaType !== MediaType.OciConfig &&
    manifest.config.mediaType !== MediaType.DockerConfig
  )
    throw new KilnError(
      'E_UNSUPPORTED',
      `${name} is not a container image (its config is ${manifest.config.mediaType}): Docker v2 manifests hold images only`,
      { hint: 'keep it OCI: leave out --format docker' },
    );
  return {
    schemaVersion: 2,
    mediaType: MediaType.DockerManifest,
    config: descriptorInFamily(manifest.config, 'docker', name),
    layers: manifest.layers.map((l) => descriptorInFamily(l, 'docker', name)),
  };
}

/**
 * An index in `family` over `manifests` (its entries, already in that family). A Docker manifest
 * list has no annotations, on itself or its entries.
 */
export function indexInFamily(index: ImageIndex, family: Family, manifests: Descriptor[]): ImageIndex {
  if (family === 'oci')
    return {
      ...index,
      ...(index.mediaType !== undefined ? { mediaType: MediaType.OciIndex } : {}),
      manifests,
    };
  return {
    schemaVersion: 2,
    mediaType: MediaType.DockerManifestList,
    manifests: manifests.map((m) => {
      const { annotations: _a, artifactType: _t, data: _d, ...entry } = m;
      return entry;
    }),
  };
}
