/**
 * Toolchain images in kiln's store: resolved to a digest (kiln.lock pins it), pulled once for the
 * platform builds run on, found again with no network. Each pulled image is listed in the store's
 * index.json under `toolchain/<name>`, annotated with the name and the digest it was pinned as, so
 * `kiln toolchain list` and `--offline` builds can find it.
 */
import { type KilnContext, useContext } from '../context.js';
import { KilnError } from '../errors.js';
import { hostPlatform, type Platform } from '../oci/platform.js';
import { formatReference, parseReference } from '../oci/reference.js';
import { selectManifest } from '../oci/select.js';
import type { Descriptor, ImageConfig } from '../oci/types.js';
import { parseConfig, parseManifest } from '../oci/validate.js';
import type { OciLayout } from '../store/layout.js';
import type { ToolchainImage } from './runner.js';

export const TOOLCHAIN_NAME_ANNOTATION = 'dev.kiln.toolchain.name';
export const TOOLCHAIN_PINNED_ANNOTATION = 'dev.kiln.toolchain.pinned';
const TAG_PREFIX = 'toolchain/';

/** Pins of image names to digests (kiln.lock); optional. */
export interface Pins {
  get(name: string): string | undefined;
  set(name: string, digest: string): void;
}

export interface ResolveToolchainOptions {
  pins?: Pins;
  offline?: boolean;
  /** The platform builds run on: linux on the host's architecture. */
  platform?: Platform;
  store?: OciLayout;
  /** Called before a pull from the network, with the pinned reference. */
  onPull?: (ref: string) => void;
  signal?: AbortSignal;
  /** Registry settings and connections, the store, the abort signal; default: a context for this call. */
  context?: KilnContext;
}

/** A toolchain image resolved to a digest and in the store. */
export interface ResolvedToolchain {
  image: ToolchainImage;
  /** The digest the name is pinned to (an index's, when the image is multi-platform). */
  pinned: string;
  pulled: boolean;
}

/** A toolchain image kept in the store. */
export interface StoredToolchain {
  name: string;
  pinned: string;
  descriptor: Descriptor;
  platform?: Platform;
}

export function buildPlatform(): Platform {
  return { ...hostPlatform(), os: 'linux' };
}

/**
 * The canonical name of a toolchain image: registry references fully qualified
 * (`rust:1.83` → `docker.io/library/rust:1.83`); other transports (`oci:DIR:TAG`) as given.
 */
export function toolchainName(input: string): string {
  if (/^(oci|oci-archive|docker-archive|docker-daemon):/.test(input)) return input;
  const ref = parseReference(input.startsWith('docker://') ? input.slice('docker://'.length) : input);
  return formatReference(ref);
}

/** What to open to get exactly `digest` of `name`. */
function pinnedLocation(name: string, digest: string): string {
  if (/^(oci|oci-archive|docker-archive|docker-daemon):/.test(name)) return name; // checked after opening
  const ref = parseReference(name);
  return formatReference({ registry: ref.registry, repository: ref.repository, digest });
}

/** The toolchain images kept in a store. */
export async function storedToolchains(store: OciLayout): Promise<StoredToolchain[]> {
  const index = await store.readIndex();
  const out: StoredToolchain[] = [];
  for (const m of index.manifests) {
    const name = m.annotations?.[TOOLCHAIN_NAME_ANNOTATION];
    const pinned = m.annotations?.[TOOLCHAIN_PINNED_ANNOTATION];
    if (name === undefined || pinned === undefined) continue;
    const entry: StoredToolchain = { name, pinned, descriptor: m };
    if (m.platform) entry.platform = m.platform;
    out.push(entry);
  }
  return out;
}

/** Reads an image manifest and its config out of the store. */
export async function loadToolchain(
  store: OciLayout,
  name: string,
  descriptor: Descriptor,
): Promise<ToolchainImage> {
  const parsed = parseManifest(
    await store.readBlob(descriptor.digest),
    `${name} manifest`,
    descriptor.mediaType,
  );
  if (parsed.kind !== 'manifest')
    throw new KilnError('E_BAD_MANIFEST', `toolchain ${name}: expected an image manifest in kiln's store`);
  for (const layer of parsed.manifest.layers) {
    if (!(await store.hasBlob(layer.digest, layer.size)))
      throw new KilnError(
        'E_NOT_FOUND',
        `toolchain ${name}: layer ${layer.digest} is missing from kiln's store`,
        {
          hint: `kiln toolchain pull ${name}`,
        },
      );
  }
  const config: ImageConfig = parseConfig(
    await store.readBlob(parsed.manifest.config.digest),
    `${name} config`,
  );
  const clean: Descriptor = {
    mediaType: descriptor.mediaType,
    digest: descriptor.digest,
    size: descriptor.size,
  };
  return { name, descriptor: clean, config, store };
}

function samePlatform(a: Platform | undefined, b: Platform): boolean {
  return (
    a !== undefined &&
    a.os === b.os &&
    a.architecture === b.architecture &&
    (a.variant ?? '') === (b.variant ?? '')
  );
}

/**
 * The toolchain image `input` for builds on this machine: from kiln's store when it holds the pinned
 * digest (no network at all), else pulled (by digest when pinned) and pinned in `pins`.
 */
export async function resolveToolchain(
  input: string,
  options: ResolveToolchainOptions = {},
): Promise<ResolvedToolchain> {
  const { ctx, release } = useContext(options.context);
  try {
    return await resolveWith(ctx, input, options);
  } finally {
    release();
  }
}

async function resolveWith(
  ctx: KilnContext,
  input: string,
  options: ResolveToolchainOptions,
): Promise<ResolvedToolchain> {
  const name = toolchainName(input);
  const platform = options.platform ?? buildPlatform();
  const store = options.store ?? (await ctx.store());
  const signal = ctx.signalWith(options.signal);
  const explicit = /@sha256:/.test(name) && !name.startsWith('oci') ? parseReference(name).digest : undefined;
  let pinned = explicit ?? options.pins?.get(name);

  const stored = (await storedToolchains(store)).filter(
    (t) => t.name === name && samePlatform(t.platform, platform),
  );
  const hit = pinned ? stored.find((t) => t.pinned === pinned) : stored.at(-1);
  if (hit) {
    options.pins?.set(name, hit.pinned);
    return { image: await loadToolchain(store, name, hit.descriptor), pinned: hit.pinned, pulled: false };
  }
  if (options.offline)
    throw new KilnError(
      'E_OFFLINE',
      `toolchain image ${name}${pinned ? `@${pinned}` : ''} is not in kiln's store, and --offline forbids pulling it`,
      { hint: `kiln toolchain pull ${input}` },
    );

  const location = pinned ? pinnedLocation(name, pinned) : name;
  options.onPull?.(location);
  const { copyImage } = await import('../transport/copy.js');
  const { openSource } = await import('../transport/open.js');
  const { OciDirDestination } = await import('../transport/oci-dir.js');
  const source = await openSource(location, { context: ctx, signal });
  try {
    const root = await source.resolve();
    if (pinned && root.digest !== pinned)
      throw new KilnError(
        'E_DIGEST_MISMATCH',
        `toolchain ${name} is now ${root.digest}, but kiln.lock pins ${pinned}`,
        {
          hint: 'delete its line from kiln.lock to pin the new image',
        },
      );
    pinned = root.digest;
    // The platform's manifest: the root itself, or the one an index lists for the platform.
    let descriptor = root;
    const parsed = parseManifest(await source.fetchManifest(root), `${name} manifest`, root.mediaType);
    if (parsed.kind === 'index') descriptor = selectManifest(parsed.index, platform, name);
    // Committed under the toolchain's tag, then re-tagged with the annotations that find it again.
    const destination = await OciDirDestination.open('kiln store', store.dir, `${TAG_PREFIX}${name}`);
    await copyImage(source, destination, { platform, signal });
    // Checked before it is listed as a toolchain, so a wrong image is refused on every run.
    const image = await loadToolchain(store, name, descriptor);
    if (image.config.os !== platform.os || image.config.architecture !== platform.architecture)
      throw new KilnError(
        'E_NO_MATCHING_PLATFORM',
        `toolchain ${name} is for ${image.config.os}/${image.config.architecture}, builds here run on ${platform.os}/${platform.architecture}`,
      );
    await store.tag(
      {
        ...descriptor,
        platform,
        annotations: { [TOOLCHAIN_NAME_ANNOTATION]: name, [TOOLCHAIN_PINNED_ANNOTATION]: pinned },
      },
      `${TAG_PREFIX}${name}`,
    );
    options.pins?.set(name, pinned);
    return { image, pinned, pulled: true };
  } finally {
    await source.close();
  }
}

/** Drops toolchain entries from the store's index (all, or those named); returns what was dropped. */
export async function forgetToolchains(store: OciLayout, names?: Set<string>): Promise<StoredToolchain[]> {
  const dropped: StoredToolchain[] = [];
  const all = await storedToolchains(store);
  await store.updateIndex((index) => ({
    ...index,
    manifests: index.manifests.filter((m) => {
      const name = m.annotations?.[TOOLCHAIN_NAME_ANNOTATION];
      if (name === undefined || (names && !names.has(name))) return true;
      const found = all.find((t) => t.descriptor.digest === m.digest && t.name === name);
      if (found) dropped.push(found);
      return false;
    }),
  }));
  return dropped;
}
