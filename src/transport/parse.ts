import { KilnError } from '../errors.js';
import { formatReference, parseReference, type Reference } from '../oci/reference.js';

/** A parsed image reference with its transport. */
export type ImageLocation =
  | { transport: 'oci'; path: string; tag?: string }
  | { transport: 'oci-archive'; path: string; tag?: string }
  | { transport: 'docker-archive'; path: string; ref?: Reference }
  | { transport: 'docker-daemon'; ref: Reference }
  | { transport: 'registry'; ref: Reference };

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
 * Parses an image location. Local transports use the prefixes skopeo and podman users know;
 * anything else is a registry reference in docker's grammar (`docker://` accepted as well).
 */
export function parseLocation(input: string): ImageLocation {
  if (input === '') throw new KilnError('E_BAD_REFERENCE', 'empty image reference');
  const colon = input.indexOf(':');
  const prefix = colon > 0 ? input.slice(0, colon) : '';
  const rest = input.slice(colon + 1);
  switch (prefix) {
    case 'oci':
    case 'oci-archive': {
      const { path, extra } = splitPath(rest, input);
      if (extra !== undefined && !/^[\w][\w.:@+-]*$/.test(extra))
        throw new KilnError('E_BAD_REFERENCE', `invalid tag '${extra}' in ${input}`);
      return extra === undefined ? { transport: prefix, path } : { transport: prefix, path, tag: extra };
    }
    case 'docker-archive': {
      const { path, extra } = splitPath(rest, input);
      return extra === undefined
        ? { transport: prefix, path }
        : { transport: prefix, path, ref: parseReference(extra) };
    }
    case 'docker-daemon':
      return { transport: 'docker-daemon', ref: parseReference(rest) };
    case 'docker':
      if (rest.startsWith('//')) return { transport: 'registry', ref: parseReference(rest.slice(2)) };
      break;
  }
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
  return { transport: 'registry', ref: parseReference(input) };
}

function splitPath(rest: string, input: string): { path: string; extra?: string } {
  const i = rest.indexOf(':');
  const path = i === -1 ? rest : rest.slice(0, i);
  if (path === '') throw new KilnError('E_BAD_REFERENCE', `no path in ${input}`);
  if (i === -1) return { path };
  const extra = rest.slice(i + 1);
  if (extra === '') throw new KilnError('E_BAD_REFERENCE', `empty tag after ':' in ${input}`);
  return { path, extra };
}

/**
 * Another tag beside the image `input` names, in its registry repository or layout (cosign's
 * `sha256-<hex>.sig`, the referrers fallback tag): `REGISTRY/REPO:TAG` or `oci:DIR:TAG`. Undefined
 * for a transport that keeps no tags beside an image.
 */
export function siblingLocation(input: string, tag: string): string | undefined {
  const loc = parseLocation(input);
  if (loc.transport === 'registry') return `${loc.ref.registry}/${loc.ref.repository}:${tag}`;
  if (loc.transport === 'oci') return `oci:${loc.path}:${tag}`;
  return undefined;
}

/**
 * The image `input` names, pinned to `digest`, so what is read later is what was checked:
 * `REGISTRY/REPO[:TAG]@DIGEST`, or `oci:DIR:DIGEST` (index.json's entry of that digest).
 */
export function pinnedLocation(input: string, digest: string): string {
  const loc = parseLocation(input);
  if (loc.transport === 'registry') return formatReference({ ...loc.ref, digest });
  if (loc.transport === 'oci') return `oci:${loc.path}:${digest}`;
  throw new KilnError('E_UNSUPPORTED', `can't pin ${input} to a digest`, {
    hint: 'a registry reference (REGISTRY/REPO[:TAG]) or an OCI layout (oci:DIR[:TAG]) can be',
  });
}
