import { KilnError } from '../errors.js';
import { type ImageLocation, TRANSPORT_TABLE, transportOf } from './transports.js';

export type { ImageLocation };

export const TRANSPORTS = [
  'oci:',
  'oci-archive:',
  'docker-archive:',
  'docker-daemon:',
  'REGISTRY/REPO[:TAG]',
] as const;
// Other tools' transport names: recognised so the error says "not supported" instead of "bad reference".
const FOREIGN = [
  'dir',
  'containers-storage',
  'ostree',
  'sif',
  'tarball',
  'oci-dir',
  'file',
  'http',
  'https',
  'ftp',
];

/**
 * Parses an image location: the transport of its prefix parses the rest (the table in
 * transports.ts). Local transports use the prefixes skopeo and podman users know; anything else is
 * a registry reference in docker's grammar (`docker://` accepted as well).
 */
export function parseLocation(input: string): ImageLocation {
  if (input === '') throw new KilnError('E_BAD_REFERENCE', 'empty image reference');
  const colon = input.indexOf(':');
  const prefix = colon > 0 ? input.slice(0, colon) : '';
  const rest = input.slice(colon + 1);
  const transport = Object.values(TRANSPORT_TABLE).find((t) => t.kind === prefix && !t.unprefixed);
  if (transport) return transport.parse(rest, input);
  if (
    FOREIGN.includes(prefix) &&
    (rest.startsWith('/') || rest.startsWith('.') || rest.startsWith('//') || FOREIGN.includes(prefix))
  )
    throw new KilnError('E_UNKNOWN_TRANSPORT', `unknown transport '${prefix}:' in ${input}`, {
      hint: `kiln reads and writes ${TRANSPORTS.join(', ')}`,
    });
  if (input.startsWith('/') || input.startsWith('./') || input.startsWith('../') || input === '.')
    throw new KilnError('E_BAD_REFERENCE', `'${input}' is a path, not an image reference`, {
      hint: `for an OCI layout directory write oci:${input}, for an archive oci-archive:${input}`,
    });
  return TRANSPORT_TABLE.registry.parse(input, input);
}

/**
 * Another tag beside the image `input` names, in its registry repository or layout (cosign's
 * `sha256-<hex>.sig`, the referrers fallback tag): `REGISTRY/REPO:TAG` or `oci:DIR:TAG`. Undefined
 * for a transport that keeps no tags beside an image.
 */
export function siblingLocation(input: string, tag: string): string | undefined {
  const loc = parseLocation(input);
  return transportOf(loc).tagged?.(loc, tag);
}

/**
 * The image `input` names, pinned to `digest`, so what is read later is what was checked:
 * `REGISTRY/REPO[:TAG]@DIGEST`, or `oci:DIR:DIGEST` (index.json's entry of that digest).
 */
export function pinnedLocation(input: string, digest: string): string {
  const loc = parseLocation(input);
  const pinned = transportOf(loc).pinned;
  if (!pinned)
    throw new KilnError('E_UNSUPPORTED', `can't pin ${input} to a digest`, {
      hint: 'a registry reference (REGISTRY/REPO[:TAG]) or an OCI layout (oci:DIR[:TAG]) can be',
    });
  return pinned(loc, digest);
}
