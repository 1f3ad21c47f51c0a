import { existsSync } from 'node:fs';
import { KilnError } from '../errors.js';
import { formatReference } from '../oci/reference.js';
import { type ImageLocation, parseLocation } from './parse.js';
import { cannot, type OpenOptions, type ReferrerStore, transportOf } from './transports.js';
import type { ImageDestination, ImageSource } from './types.js';

function unsupported(loc: ImageLocation, input: string): never {
  const what =
    loc.transport === 'registry'
      ? `registry reference ${formatReference(loc.ref)}`
      : `${loc.transport}: transport`;
  throw new KilnError('E_UNSUPPORTED', `${what} can't be read (${input})`, {
    hint: 'kiln reads registries, oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:NAME:TAG]; docker-daemon: is a destination only',
  });
}

/**
 * A short name like `out` or `app.tar` reads as a Docker Hub repository, but when a file or directory
 * of that name is right here the user almost surely meant it: refuse and name the transport, rather
 * than go to docker.io and fail there with an auth error.
 */
function refuseLocalPath(loc: ImageLocation, input: string): void {
  if (loc.transport !== 'registry') return;
  const first = input.split('/')[0] ?? '';
  if (input.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost')) return;
  const colon = input.indexOf(':');
  const candidates = colon > 0 ? [input, input.slice(0, colon)] : [input];
  const local = candidates.find((c) => existsSync(c));
  if (local)
    throw new KilnError('E_BAD_REFERENCE', `'${input}' names a local path, not an image reference`, {
      hint: `for an OCI layout directory write oci:${input}, for an archive oci-archive:${input} or docker-archive:${input}; for Docker Hub write docker.io/${input.includes('/') ? '' : 'library/'}${input}`,
    });
}

export type { OpenOptions, ReferrerStore } from './transports.js';

/** The source an image reference names (`oci:`, archives, `docker-daemon:`, a registry). */
export async function openSource(input: string, options: OpenOptions = {}): Promise<ImageSource> {
  const loc = parseLocation(input);
  refuseLocalPath(loc, input);
  const transport = transportOf(loc);
  if (!transport.openSource) return unsupported(loc, input);
  return transport.openSource(loc, input, options);
}

/** The destination an image reference names (`oci:`, archives, `docker-daemon:`, a registry). */
export async function openDestination(input: string, options: OpenOptions = {}): Promise<ImageDestination> {
  const loc = parseLocation(input);
  refuseLocalPath(loc, input);
  const transport = transportOf(loc);
  if (!transport.openDestination) return unsupported(loc, input);
  return transport.openDestination(loc, input, options);
}

/** The tags of a registry repository or a layout (`kiln tags`). */
export async function openTags(input: string, options: OpenOptions = {}): Promise<string[]> {
  const loc = parseLocation(input);
  const transport = transportOf(loc);
  if (!transport.listTags) throw cannot(loc, input, 'list tags', (c) => c.tags);
  return transport.listTags(loc, input, options);
}

/** Where the referrers of the images `input` names are kept (a registry repository or a layout). */
export async function openReferrers(input: string, options: OpenOptions = {}): Promise<ReferrerStore> {
  const loc = parseLocation(input);
  const transport = transportOf(loc);
  if (!transport.openReferrers) throw cannot(loc, input, 'keep referrers', (c) => c.referrers);
  return transport.openReferrers(loc, input, options);
}
