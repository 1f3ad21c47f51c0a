import { existsSync } from 'node:fs';
import { type KilnContext, useContext } from '../context.js';
import { KilnError } from '../errors.js';
import { formatReference } from '../oci/reference.js';
import type { RegistryOptions } from '../registry/registry.js';
import { OciDirDestination, OciDirSource } from './oci-dir.js';
import { type ImageLocation, parseLocation } from './parse.js';
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

export interface OpenOptions {
  /**
   * What the source or destination works with: registry settings and connections, the abort signal.
   * Without one, a registry source or destination makes a context of its own, closed when it is
   * closed (a source) or committed or aborted (a destination).
   */
  context?: KilnContext;
  /** Registry settings on top of the context's (the credentials for this side of a copy, say). */
  registry?: RegistryOptions;
  /** Aborts this one's requests; the context's signal does too. */
  signal?: AbortSignal;
}

// Archives (and tar-stream with them) load only when an archive is named: start-up time.

/** The context to open a registry with, and how to let go of it: one made here goes with the source. */
function registryContext(options: OpenOptions): {
  ctx: KilnContext;
  release: () => void;
  signal: AbortSignal;
} {
  const { ctx, release } = useContext(options.context);
  return { ctx, release, signal: ctx.signalWith(options.signal) };
}

export async function openSource(input: string, options: OpenOptions = {}): Promise<ImageSource> {
  const loc = parseLocation(input);
  refuseLocalPath(loc, input);
  switch (loc.transport) {
    case 'registry': {
      const { RegistrySource } = await import('./registry.js');
      const { ctx, release, signal } = registryContext(options);
      const repo = await ctx.repository(loc.ref, options.registry);
      return new RegistrySource(input, loc.ref, repo, signal, release);
    }
    case 'oci':
      return OciDirSource.open(input, loc.path, loc.tag);
    case 'oci-archive':
      return (await import('./archive.js')).OciArchiveSource.open(input, loc.path, loc.tag);
    case 'docker-archive':
      return (await import('./archive.js')).DockerArchiveSource.open(input, loc.path, loc.ref);
    default:
      return unsupported(loc, input);
  }
}

export async function openDestination(input: string, options: OpenOptions = {}): Promise<ImageDestination> {
  const loc = parseLocation(input);
  refuseLocalPath(loc, input);
  switch (loc.transport) {
    case 'registry': {
      const { RegistryDestination } = await import('./registry.js');
      const { ctx, release, signal } = registryContext(options);
      const repo = await ctx.repository(loc.ref, options.registry);
      // Learn the scheme and auth while the caller prepares what it will push; a failure here is
      // forgotten and met again, with its message, on first use.
      repo.registry.ping(signal).catch(() => {});
      return new RegistryDestination(input, loc.ref, repo, signal, release);
    }
    case 'oci':
      return OciDirDestination.open(input, loc.path, loc.tag);
    case 'oci-archive':
      return new (await import('./archive.js')).ArchiveDestination(input, loc.path, 'oci', loc.tag);
    case 'docker-archive':
      return new (await import('./archive.js')).ArchiveDestination(
        input,
        loc.path,
        'docker',
        undefined,
        loc.ref,
      );
    case 'docker-daemon': {
      const { DockerDaemonDestination } = await import('./docker-daemon.js');
      return new DockerDaemonDestination(input, loc.ref);
    }
    default:
      return unsupported(loc, input);
  }
}
