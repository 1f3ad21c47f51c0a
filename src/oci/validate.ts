import { KilnError } from '../errors.js';
import { parseDigest } from './digest.js';
import { isIndexType, isManifestType, MediaType } from './media-types.js';
import type { Descriptor, ImageConfig, ImageIndex, ImageManifest } from './types.js';

/** Registries and containerd refuse manifests over 4 MiB; so does kiln, before parsing. */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
/** Configs can legitimately be larger (long histories); still bounded so a hostile one cannot exhaust memory. */
export const MAX_CONFIG_BYTES = 16 * 1024 * 1024;

/** A manifest or an index, parsed and checked. */
export type ParsedManifest =
  | { kind: 'manifest'; manifest: ImageManifest }
  | { kind: 'index'; index: ImageIndex };

function parseJsonObject(
  bytes: Uint8Array,
  what: string,
  limit: number,
  code: 'E_BAD_MANIFEST' | 'E_BAD_CONFIG',
) {
  if (bytes.byteLength > limit)
    throw new KilnError(
      'E_TOO_LARGE',
      `${what} is ${bytes.byteLength} bytes, over the ${limit / 1048576} MiB limit`,
    );
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'));
  } catch (err) {
    throw new KilnError(code, `${what} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new KilnError(code, `${what} is not a JSON object`);
  return value as Record<string, unknown>;
}

function fail(what: string, detail: string): never {
  throw new KilnError('E_BAD_MANIFEST', `${what}: ${detail}`);
}

function checkAnnotations(value: unknown, what: string): void {
  if (value === undefined) return;
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    fail(what, 'annotations must be an object');
  for (const [k, v] of Object.entries(value))
    if (typeof v !== 'string') fail(what, `annotation '${k}' is not a string`);
}

export function validateDescriptor(value: unknown, what: string): Descriptor {
  if (typeof value !== 'object' || value === null) fail(what, 'descriptor is not an object');
  const d = value as Record<string, unknown>;
  if (typeof d.mediaType !== 'string' || d.mediaType === '') fail(what, 'descriptor has no mediaType');
  if (typeof d.digest !== 'string') fail(what, 'descriptor has no digest');
  try {
    parseDigest(d.digest);
  } catch (err) {
    throw new KilnError('E_BAD_MANIFEST', `${what}: ${(err as KilnError).message}`, { cause: err });
  }
  if (typeof d.size !== 'number' || !Number.isSafeInteger(d.size) || d.size < 0)
    fail(what, `descriptor ${d.digest} has an invalid size`);
  checkAnnotations(d.annotations, what);
  if (d.platform !== undefined) {
    const p = d.platform as Record<string, unknown>;
    if (typeof p !== 'object' || p === null || typeof p.os !== 'string' || typeof p.architecture !== 'string')
      fail(what, `descriptor ${d.digest} has an invalid platform`);
  }
  return d as unknown as Descriptor;
}

/**
 * Parses and checks a manifest or index. `expectedType` (from a descriptor or Content-Type) wins
 * over the document's own mediaType when they disagree in kind.
 */
export function parseManifest(bytes: Uint8Array, what = 'manifest', expectedType?: string): ParsedManifest {
  const doc = parseJsonObject(bytes, what, MAX_MANIFEST_BYTES, 'E_BAD_MANIFEST');
  if (doc.schemaVersion !== 2)
    fail(what, `unsupported schemaVersion ${JSON.stringify(doc.schemaVersion)} (expected 2)`);
  const own = typeof doc.mediaType === 'string' ? doc.mediaType : undefined;
  if (own !== undefined && expectedType !== undefined && own !== expectedType && !sameKind(own, expectedType))
    fail(what, `media type ${own} does not match the descriptor's ${expectedType}`);
  const type = own ?? expectedType;
  const looksIndex = Array.isArray(doc.manifests);
  const looksManifest = typeof doc.config === 'object' && Array.isArray(doc.layers);
  if (type !== undefined && !isIndexType(type) && !isManifestType(type))
    fail(what, `unsupported media type ${type}`);
  checkAnnotations(doc.annotations, what);
  if (doc.subject !== undefined) validateDescriptor(doc.subject, `${what} subject`);
  if (isIndexType(type) || (type === undefined && looksIndex)) {
    if (!looksIndex) fail(what, 'index has no manifests array');
    for (const [i, m] of (doc.manifests as unknown[]).entries())
      validateDescriptor(m, `${what} manifests[${i}]`);
    return { kind: 'index', index: doc as unknown as ImageIndex };
  }
  if (!looksManifest) fail(what, 'not an image manifest or index (no config/layers or manifests)');
  validateDescriptor(doc.config, `${what} config`);
  for (const [i, l] of (doc.layers as unknown[]).entries()) validateDescriptor(l, `${what} layers[${i}]`);
  return { kind: 'manifest', manifest: doc as unknown as ImageManifest };
}

function sameKind(a: string, b: string): boolean {
  return (isIndexType(a) && isIndexType(b)) || (isManifestType(a) && isManifestType(b));
}

export function manifestMediaType(parsed: ParsedManifest): string {
  if (parsed.kind === 'index') return parsed.index.mediaType ?? MediaType.OciIndex;
  return parsed.manifest.mediaType ?? MediaType.OciManifest;
}

/** Parses an image config. Non-image configs (wasm artifact configs) are returned loosely typed. */
export function parseConfig(bytes: Uint8Array, what = 'config'): ImageConfig {
  const doc = parseJsonObject(bytes, what, MAX_CONFIG_BYTES, 'E_BAD_CONFIG');
  if (doc.architecture !== undefined && typeof doc.architecture !== 'string')
    throw new KilnError('E_BAD_CONFIG', `${what}: architecture is not a string`);
  if (doc.os !== undefined && typeof doc.os !== 'string')
    throw new KilnError('E_BAD_CONFIG', `${what}: os is not a string`);
  const rootfs = doc.rootfs as { diff_ids?: unknown } | undefined;
  if (
    rootfs !== undefined &&
    (typeof rootfs !== 'object' || rootfs === null || !Array.isArray(rootfs.diff_ids))
  )
    throw new KilnError('E_BAD_CONFIG', `${what}: rootfs.diff_ids is not an array`);
  return doc as unknown as ImageConfig;
}

/** The canonical JSON kiln writes: no insignificant whitespace, keys in insertion order. */
export function encodeJson(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value), 'utf8');
}
