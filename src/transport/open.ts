import { existsSync } from 'node:fs';
import { type KilnContext, withContext } from '../context.js';
import { KilnError } from '../errors.js';
import { type ImageLocation, parseLocation } from './parse.js';
import {
  type Capabilities,
  cannot,
  type OpenOptions,
  type ReferrerStore,
  type Transport,
  transportOf,
} from './transports.js';
import type { ImageDestination, ImageSource } from './types.js';

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

type Op = 'openSource' | 'openDestination' | 'listTags' | 'openReferrers';
type Opened<O extends Op> = Awaited<ReturnType<NonNullable<Transport[O]>>>;

/** What the transport `input` names does for `op`; refused, naming the transports that can, when it has none. */
async function open<O extends Op>(
  input: string,
  options: OpenOptions,
  op: O,
  what: string,
  can: (c: Capabilities) => boolean,
): Promise<Opened<O>> {
  const loc = parseLocation(input);
  if (op === 'openSource' || op === 'openDestination') refuseLocalPath(loc, input);
  const transport: Transport = transportOf(loc);
  const fn = transport[op] as
    | ((loc: ImageLocation, input: string, options: OpenOptions) => Promise<Opened<O>>)
    | undefined;
  if (!fn) throw cannot(loc, input, what, can);
  return fn.call(transport, loc, input, options);
}

/** The source an image reference names (`oci:`, archives, a registry). */
export function openSource(input: string, options: OpenOptions = {}): Promise<ImageSource> {
  return open(input, options, 'openSource', 'be read', (c) => c.read);
}

/** Runs `fn` on the source `ref` names, in the caller's context (else one made for the call); the source is closed after. */
export function withSource<T>(
  ref: string,
  context: KilnContext | undefined,
  fn: (source: ImageSource) => Promise<T>,
): Promise<T> {
  return withContext(context, async (ctx) => {
    const source = await openSource(ref, { context: ctx });
    try {
      return await fn(source);
    } finally {
      await source.close();
    }
  });
}

/** The destination an image reference names (`oci:`, archives, `docker-daemon:`, a registry). */
export function openDestination(input: string, options: OpenOptions = {}): Promise<ImageDestination> {
  return open(input, options, 'openDestination', 'be written', (c) => c.write);
}

/** The tags of a registry repository or a layout (`kiln tags`). */
export function openTags(input: string, options: OpenOptions = {}): Promise<string[]> {
  return open(input, options, 'listTags', 'list tags', (c) => c.tags);
}

/** Where the referrers of the images `input` names are kept (a registry repository or a layout). */
export function openReferrers(input: string, options: OpenOptions = {}): Promise<ReferrerStore> {
  return open(input, options, 'openReferrers', 'keep referrers', (c) => c.referrers);
}
