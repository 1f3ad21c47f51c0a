/**
 * kiln's transports as a table: each with its prefix and parser, what it can do (read, write, hold
 * an index, list tags, keep referrers) and how it opens a source, a destination, its tags and its
 * referrers.
 * Code above asks the table, never the transport's kind: a new transport is one entry here.
 */
import { type KilnContext, useContext } from '../context.js';
import { KilnError } from '../errors.js';
import { formatReference, parseReference, type Reference } from '../oci/reference.js';
import type { AmendResult, AttachResult, BlobContent, ReferrerArtifact, TagList } from '../oci/referrers.js';
import type { Descriptor } from '../oci/types.js';
import type { RegistryOptions } from '../registry/registry.js';
import { OciDirDestination, OciDirSource } from './oci-dir.js';
import type { ImageDestination, ImageSource } from './types.js';

/** A parsed image reference with its transport. */
export type ImageLocation =
  | { transport: 'oci'; path: string; tag?: string }
  | { transport: 'oci-archive'; path: string; tag?: string }
  | { transport: 'docker-archive'; path: string; ref?: Reference }
  | { transport: 'docker-daemon'; ref: Reference }
  | { transport: 'registry'; ref: Reference };

/** Options of opening a source or destination: the context, registry overrides. */
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

/** Where referrers of images are kept: a registry repository, or a layout. */
export interface ReferrerStore {
  /** Stores an artifact whose manifest names `subject`, and records it under the subject. Idempotent. */
  attach(artifact: ReferrerArtifact, subject: Descriptor): Promise<AttachResult>;
  /** The referrers of `digest`, of one artifactType when given. */
  list(digest: string, artifactType?: string): Promise<Descriptor[]>;
  /**
   * Adds `entries` to the list kept under `tag` beside the images (cosign's `sha256-<hex>.sig`),
   * keeping what is there; `blobs` are stored first. Concurrent amends all land.
   */
  amend<E>(
    tag: string,
    list: TagList<E>,
    entries: readonly E[],
    blobs?: readonly BlobContent[],
  ): Promise<AmendResult>;
  close(): Promise<void>;
}

export interface Capabilities {
  read: boolean;
  write: boolean;
  /** Holds an index (every platform), not only one image. */
  index: boolean;
  tags: boolean;
  referrers: boolean;
}

type Kind = ImageLocation['transport'];
type Loc<K extends Kind> = Extract<ImageLocation, { transport: K }>;

export interface Transport<K extends Kind = Kind> {
  kind: K;
  /** How users write it: `oci:DIR[:TAG]`. */
  syntax: string;
  /** Written without a prefix (the registry): what no other transport's `kind:` prefix claims. */
  unprefixed?: true;
  /** Parses a reference: what follows `kind:` (all of it when unprefixed) and, for messages, the whole of it. */
  parse(rest: string, input: string): Loc<K>;
  capabilities: Capabilities;
  openSource?(loc: Loc<K>, input: string, options: OpenOptions): Promise<ImageSource>;
  openDestination?(loc: Loc<K>, input: string, options: OpenOptions): Promise<ImageDestination>;
  listTags?(loc: Loc<K>, input: string, options: OpenOptions): Promise<string[]>;
  openReferrers?(loc: Loc<K>, input: string, options: OpenOptions): Promise<ReferrerStore>;
  /** Another tag beside the image, for a transport that keeps tags (cosign's `.sig`, the referrers fallback tag). */
  tagged?(loc: Loc<K>, tag: string): string;
  /** The image pinned to `digest`, for a transport that can name one by digest. */
  pinned?(loc: Loc<K>, digest: string): string;
}

/** The context to open a registry with, and how to let go of it: one made here goes with the opened thing. */
function registryContext(options: OpenOptions): {
  ctx: KilnContext;
  release: () => void;
  signal: AbortSignal;
} {
  const { ctx, release } = useContext(options.context);
  return { ctx, release, signal: ctx.signalWith(options.signal) };
}

/**
 * The repository a source or destination works on, its handshake (scheme, auth) started: it overlaps
 * opening the other side of a copy, or what the caller prepares to push. A failure there is forgotten
 * and met again, with its message, on first use.
 */
async function openRepository(ref: Reference, options: OpenOptions) {
  const { ctx, release, signal } = registryContext(options);
  const repo = await ctx.repository(ref, options.registry);
  repo.registry.ping(signal).catch(() => {});
  return { repo, release, signal };
}

// Archives (and tar-stream with them), the registry client and the engine load only when named: start-up time.
const registry: Transport<'registry'> = {
  kind: 'registry',
  syntax: 'REGISTRY/REPO[:TAG][@DIGEST]',
  unprefixed: true,
  // Docker's grammar; skopeo's docker:// prefix accepted as well.
  parse: (rest) => ({
    transport: 'registry',
    ref: parseReference(rest.startsWith('docker://') ? rest.slice('docker://'.length) : rest),
  }),
  capabilities: { read: true, write: true, index: true, tags: true, referrers: true },
  tagged: (loc, tag) => `${loc.ref.registry}/${loc.ref.repository}:${tag}`,
  pinned: (loc, digest) => formatReference({ ...loc.ref, digest }),
  async openSource(loc, input, options) {
    const { RegistrySource } = await import('./registry.js');
    const { repo, release, signal } = await openRepository(loc.ref, options);
    return new RegistrySource(input, loc.ref, repo, signal, release);
  },
  async openDestination(loc, input, options) {
    const { RegistryDestination } = await import('./registry.js');
    const { repo, release, signal } = await openRepository(loc.ref, options);
    return new RegistryDestination(input, loc.ref, repo, signal, release);
  },
  async listTags(loc, input, options) {
    const last = input.slice(input.lastIndexOf('/') + 1);
    if (last.includes(':') || last.includes('@'))
      throw new KilnError('E_USAGE', `kiln tags takes a repository without tag or digest, got ${input}`, {
        hint: `kiln tags ${loc.ref.registry}/${loc.ref.repository}`,
      });
    const { ctx, release, signal } = registryContext(options);
    try {
      return await (await ctx.repository(loc.ref, options.registry)).listTags(signal);
    } finally {
      release();
    }
  },
  async openReferrers(loc, _input, options) {
    const { amendInRegistry, attachInRegistry } = await import('../registry/referrers.js');
    const { ctx, release, signal } = registryContext(options);
    const repo = await ctx.repository(loc.ref, options.registry);
    return {
      attach: (artifact, subject) => attachInRegistry(repo, artifact, subject, signal),
      list: (digest, artifactType) => repo.referrers(digest, artifactType, signal),
      amend: (tag, list, entries, blobs = []) => amendInRegistry(repo, tag, list, entries, blobs, signal),
      close: async () => release(),
    };
  },
};

const oci: Transport<'oci'> = {
  kind: 'oci',
  syntax: 'oci:DIR[:TAG]',
  parse: (rest, input) => ({ transport: 'oci', ...pathAndTag(rest, input) }),
  capabilities: { read: true, write: true, index: true, tags: true, referrers: true },
  tagged: (loc, tag) => `oci:${loc.path}:${tag}`,
  // index.json's entry of that digest
  pinned: (loc, digest) => `oci:${loc.path}:${digest}`,
  openSource: (loc, input) => OciDirSource.open(input, loc.path, loc.tag),
  openDestination: (loc, input) => OciDirDestination.open(input, loc.path, loc.tag),
  async listTags(loc) {
    const { OciLayout } = await import('../store/layout.js');
    return (await OciLayout.open(loc.path)).tags();
  },
  async openReferrers(loc) {
    const { OciLayout } = await import('../store/layout.js');
    const { amendInLayout, attachInLayout, layoutReferrers } = await import('../store/referrers.js');
    const layout = await OciLayout.open(loc.path);
    return {
      attach: (artifact, subject) => attachInLayout(layout, artifact, subject),
      list: (digest, artifactType) => layoutReferrers(layout, digest, artifactType),
      amend: (tag, list, entries, blobs = []) => amendInLayout(layout, tag, list, entries, blobs),
      close: async () => {},
    };
  },
};

const ociArchive: Transport<'oci-archive'> = {
  kind: 'oci-archive',
  syntax: 'oci-archive:FILE[:TAG]',
  parse: (rest, input) => ({ transport: 'oci-archive', ...pathAndTag(rest, input) }),
  capabilities: { read: true, write: true, index: true, tags: false, referrers: false },
  openSource: async (loc, input) =>
    (await import('./archive.js')).OciArchiveSource.open(input, loc.path, loc.tag),
  openDestination: async (loc, input) =>
    new (await import('./archive.js')).ArchiveDestination(input, loc.path, 'oci', loc.tag),
};

const dockerArchive: Transport<'docker-archive'> = {
  kind: 'docker-archive',
  syntax: 'docker-archive:FILE[:NAME:TAG]',
  parse(rest, input) {
    const { path, extra } = splitPath(rest, input);
    return extra === undefined
      ? { transport: 'docker-archive', path }
      : { transport: 'docker-archive', path, ref: parseReference(extra) };
  },
  capabilities: { read: true, write: true, index: true, tags: false, referrers: false },
  openSource: async (loc, input) =>
    (await import('./archive.js')).DockerArchiveSource.open(input, loc.path, loc.ref),
  openDestination: async (loc, input) =>
    new (await import('./archive.js')).ArchiveDestination(input, loc.path, 'docker', undefined, loc.ref),
};

const dockerDaemon: Transport<'docker-daemon'> = {
  kind: 'docker-daemon',
  syntax: 'docker-daemon:NAME:TAG',
  parse: (rest) => ({ transport: 'docker-daemon', ref: parseReference(rest) }),
  capabilities: { read: false, write: true, index: false, tags: false, referrers: false },
  async openDestination(loc, input, options) {
    const { DockerDaemonDestination } = await import('./docker-daemon.js');
    const signal = options.context ? options.context.signalWith(options.signal) : options.signal;
    return new DockerDaemonDestination(input, loc.ref, signal ? { signal } : {});
  },
};

/** `PATH[:EXTRA]` after a file transport's prefix: the path, and what follows its first colon. */
function splitPath(rest: string, input: string): { path: string; extra?: string } {
  const i = rest.indexOf(':');
  const path = i === -1 ? rest : rest.slice(0, i);
  if (path === '') throw new KilnError('E_BAD_REFERENCE', `no path in ${input}`);
  if (i === -1) return { path };
  const extra = rest.slice(i + 1);
  if (extra === '') throw new KilnError('E_BAD_REFERENCE', `empty tag after ':' in ${input}`);
  return { path, extra };
}

/** `PATH[:TAG]` of a layout or an OCI archive. */
function pathAndTag(rest: string, input: string): { path: string; tag?: string } {
  const { path, extra } = splitPath(rest, input);
  if (extra !== undefined && !/^[\w][\w.:@+-]*$/.test(extra))
    throw new KilnError('E_BAD_REFERENCE', `invalid tag '${extra}' in ${input}`);
  return extra === undefined ? { path } : { path, tag: extra };
}

/** Every transport kiln has, by kind. */
export const TRANSPORT_TABLE: { readonly [K in Kind]: Transport<K> } = {
  registry,
  oci,
  'oci-archive': ociArchive,
  'docker-archive': dockerArchive,
  'docker-daemon': dockerDaemon,
};

/** The table's entry for a parsed location. */
export function transportOf<K extends Kind>(loc: Loc<K>): Transport<K> {
  return TRANSPORT_TABLE[loc.transport] as unknown as Transport<K>;
}

/** The error for an operation a transport can't do, naming the transports that can. */
export function cannot(
  loc: ImageLocation,
  input: string,
  what: string,
  can: (c: Capabilities) => boolean,
): KilnError {
  const where =
    loc.transport === 'registry'
      ? `registry reference ${formatReference(loc.ref)}`
      : `${loc.transport}: transport`;
  const able = Object.values(TRANSPORT_TABLE)
    .filter((t) => can(t.capabilities))
    .map((t) => t.syntax)
    .join(', ');
  return new KilnError('E_UNSUPPORTED', `${where} can't ${what} (${input})`, {
    hint: `these can: ${able}`,
  });
}
