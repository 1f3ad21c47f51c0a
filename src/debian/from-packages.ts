/**
 * `kiln image from-packages`: an image made of Debian packages, with no daemon, no root and no
 * maintainer scripts. The packages are resolved from the suite's signed index (or read from
 * `kiln.packages.lock`, with no index at all), downloaded in parallel and verified against their
 * SHA-256 into kiln's store, and read straight into deterministic layers: one per package in install
 * order up to the layer budget (the rest share one), and a top layer with every directory, the
 * merged-/usr links and dpkg's status. An SPDX SBOM listing every package is attached as a referrer
 * where the destination keeps referrers. The same lock gives the same image digest on any machine.
 */
import * as path from 'node:path';
import { type KilnContext, useContext } from '../context.js';
import { KilnError } from '../errors.js';
import { ComposedSource, type ComposeResult, checkCreated, writeComposed } from '../image/compose.js';
import { type ConfigChanges, Image, type KeyChanges } from '../image/image.js';
import { defaultMtime } from '../layer/tar-writer.js';
import type { Digest } from '../oci/digest.js';
import type { ManifestFormat } from '../oci/media-type-policy.js';
import { normalizePlatform, type Platform } from '../oci/platform.js';
import type { Descriptor, HistoryEntry } from '../oci/types.js';
import { HttpClient } from '../registry/http.js';
import type { OciLayout } from '../store/layout.js';
import { parseLocation } from '../transport/parse.js';
import { DEBIAN_KEYRING, loadIndex } from './archive.js';
import { cachedLayer, layerKey, recordLayer } from './layer-cache.js';
import {
  type DebInput,
  mergedUsrDirs,
  type ScriptEffect,
  type UnpackedPackage,
  writePackageLayer,
  writeTopLayer,
} from './layers.js';
import {
  type LockedPackage,
  PACKAGES_LOCK_FILE,
  type PackagesLock,
  readPackagesLock,
  writePackagesLock,
} from './lock.js';
import { Mirror } from './mirror.js';
import { parseRequest, resolvePackages } from './resolve.js';
import { DEFAULT_MIRROR, systemMirror } from './sources.js';

/** The layer budget when none is given: package layers and the top layer together. */
export const DEFAULT_PACKAGE_LAYERS = 16;

/** The PATH of Debian's own images. */
const DEBIAN_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Debian architectures and the OCI platforms they are. */
const PLATFORMS: Record<string, Platform> = {
  amd64: { os: 'linux', architecture: 'amd64' },
  arm64: { os: 'linux', architecture: 'arm64' },
  armhf: { os: 'linux', architecture: 'arm', variant: 'v7' },
  armel: { os: 'linux', architecture: 'arm', variant: 'v5' },
  i386: { os: 'linux', architecture: '386' },
  ppc64el: { os: 'linux', architecture: 'ppc64le' },
  s390x: { os: 'linux', architecture: 's390x' },
  mips64el: { os: 'linux', architecture: 'mips64le' },
  riscv64: { os: 'linux', architecture: 'riscv64' },
};

/** The OCI platform of a Debian architecture (`armhf` → linux/arm/v7); E_BAD_PLATFORM for one kiln does not know. */
export function debianPlatform(architecture: string): Platform {
  const p = PLATFORMS[architecture];
  if (!p)
    throw new KilnError('E_BAD_PLATFORM', `'${architecture}' is not a Debian architecture kiln knows`, {
      hint: `one of ${Object.keys(PLATFORMS).join(', ')}`,
    });
  return normalizePlatform(p);
}

/** This machine's Debian architecture. */
export function hostDebianArchitecture(): string {
  const byNode: Record<string, string> = {
    x64: 'amd64',
    arm64: 'arm64',
    arm: 'armhf',
    ia32: 'i386',
    ppc64: 'ppc64el',
    s390x: 's390x',
    riscv64: 'riscv64',
  };
  return byNode[process.arch] ?? process.arch;
}

/** What `imageFromPackages` reports as it goes. */
export type FromPackagesEvent =
  | { type: 'index'; suite: string; file: string; size: number }
  | { type: 'resolved'; packages: number }
  | { type: 'download'; packages: number; bytes: number }
  | { type: 'layer'; packages: string[]; cached: boolean };

/**
 * Options of `imageFromPackages`: the packages, the suite and mirror, the lock, the destination, and
 * the config changes (entrypoint, cmd, env on top of Debian's PATH, labels, workdir, user) as
 * `kiln mutate` takes them.
 */
export interface FromPackagesOptions extends Omit<ConfigChanges, 'created'> {
  /** Packages to install: `NAME` or `NAME=VERSION`; none: the lock's. */
  packages: string[];
  /** Where the image goes (any destination transport). */
  to: string;
  /** The suite (`bookworm`); default the lock's. */
  suite?: string;
  /** The Debian architecture (`amd64`, `arm64`, `armhf`...); default the lock's, else this machine's. */
  architecture?: string;
  /** The archive; default: --mirror, else the lock's, else the system's apt sources for the suite, else deb.debian.org. */
  mirror?: string;
  /** Archive components to resolve from; default `main` (or the lock's). */
  components?: string[];
  /** The OpenPGP keyring InRelease is verified with; default Debian's. */
  keyring?: string;
  /** The lock file: read when it exists (no resolution), written when not; `false`: neither. Default `kiln.packages.lock`. */
  lock?: string | false;
  /** Resolve again and rewrite the lock even when it exists. */
  updateLock?: boolean;
  /** Most layers in the image, the top one included (at least 2); default 16. */
  layers?: number;
  /** Attach an SPDX SBOM (registry and oci: destinations); default true. */
  sbom?: boolean;
  /** The name the SBOM gives the image; default the packages asked for. */
  name?: string;
  /** RFC 3339 time of the config and history; default SOURCE_DATE_EPOCH, else the epoch. */
  created?: string;
  /** Downloads and layers made at once; default 4. */
  jobs?: number;
  /** The manifest family: OCI unless `docker`. */
  format?: ManifestFormat;
  store?: OciLayout;
  context?: KilnContext;
  onEvent?: (event: FromPackagesEvent) => void;
}

/** One package of the image. */
export interface ImagePackage {
  name: string;
  version: string;
  architecture: string;
  sha256: string;
  size: number;
  /** `pkg:deb/debian/NAME@VERSION?arch=ARCH`. */
  purl: string;
}

/** What `imageFromPackages` made: the image, its packages and layers, the lock, what was not run. */
export interface FromPackagesResult extends ComposeResult {
  platform: Platform;
  suite: string;
  architecture: string;
  mirror: string;
  /** The lock file read or written (absent with `lock: false`), and whether it was read. */
  lock?: { file: string; used: boolean; written: boolean };
  /** In install order. */
  packages: ImagePackage[];
  /** Bottom to top; the last is the top layer (directories, merged /usr, dpkg status). */
  layers: { descriptor: Descriptor; diffId: Digest; packages: string[]; cached: boolean }[];
  /** Packages whose maintainer scripts (and triggers) kiln did not run, and which. */
  skippedScripts: { package: string; scripts: string[] }[];
  /** What kiln did in place of a script. */
  effects: ScriptEffect[];
  /** .debs downloaded (others came from the store). */
  downloaded: { packages: number; bytes: number };
  /** The SBOM attached, when the destination keeps referrers. */
  sbom?: Descriptor;
}

/** Makes an image of Debian packages (see the module comment) and writes it to `options.to`. */
export async function imageFromPackages(options: FromPackagesOptions): Promise<FromPackagesResult> {
  const location = parseLocation(options.to); // a bad destination fails before any work
  const requests = options.packages.map(parseRequest);
  const budget = options.layers ?? DEFAULT_PACKAGE_LAYERS;
  if (!Number.isInteger(budget) || budget < 2 || budget > 127)
    throw new KilnError('E_USAGE', `--layers takes a number from 2 to 127, got ${budget}`, {
      hint: 'one layer is the top one (directories, dpkg status); the others hold packages',
    });
  const jobs = options.jobs ?? 4;
  const created = checkCreated(options.created);
  const mtime = defaultMtime();
  const emit = (e: FromPackagesEvent) => options.onEvent?.(e);

  const { ctx, release } = useContext(options.context);
  const http = new HttpClient();
  try {
    const store = options.store ?? (await ctx.store());
    const signal = ctx.signal;
    const lockFile = options.lock === false ? undefined : path.resolve(options.lock ?? PACKAGES_LOCK_FILE);
    const existing = lockFile && !options.updateLock ? await readPackagesLock(lockFile) : undefined;
    // With a lock, the packages may be left out: the lock's are meant.
    const requested =
      options.packages.length === 0 && existing
        ? existing.requested
        : [...new Set(options.packages.map((p) => p.trim()))].sort();
    if (requested.length === 0)
      throw new KilnError('E_USAGE', 'name at least one package (--package NAME)', {
        hint: 'for example: kiln image from-packages --suite bookworm --package busybox-static --to oci:./out:busybox',
      });
    if (existing) checkLock(existing, lockFile!, { ...options, requested });

    const suite = options.suite ?? existing?.suite;
    if (!suite)
      throw new KilnError('E_USAGE', 'name the suite: --suite bookworm (or trixie, ...)', {
        hint: "with a lock file the suite is the lock's",
      });
    const architecture = options.architecture ?? existing?.architecture ?? hostDebianArchitecture();
    const platform = debianPlatform(architecture);
    const components = options.components ?? existing?.components ?? ['main'];
    const mirrorUrl =
      options.mirror ??
      existing?.mirror ??
      (await systemMirror(suite, components[0] ?? 'main')) ??
      DEFAULT_MIRROR;
    const mirror = new Mirror(mirrorUrl, http, signal);

    // The packages: the lock's, or resolved from the verified index.
    let locked: LockedPackage[];
    if (existing) locked = existing.packages;
    else {
      const index = await loadIndex(mirror, {
        suite,
        architecture,
        components,
        keyring: options.keyring ?? DEBIAN_KEYRING,
        store,
        onFetch: (f) => emit({ type: 'index', suite, file: f.name, size: f.size }),
      });
      locked = resolvePackages(index, requests).map((p) => ({
        name: p.name,
        version: p.version,
        architecture: p.architecture,
        filename: p.filename,
        size: p.size,
        sha256: p.sha256,
      }));
      emit({ type: 'resolved', packages: locked.length });
    }

    // Layers: one per package up to the budget, the rest together.
    const merged = mergedUsrDirs(architecture);
    const groups = planGroups(locked, budget - 1);
    const keys = groups.map((g) =>
      layerKey(
        g.map((p) => p.sha256),
        mtime,
        merged,
      ),
    );
    const cached = await Promise.all(keys.map((k) => cachedLayer(store, k)));

    // Downloads: every .deb of a layer not made before, verified as it is written into the store.
    const wanted = groups.flatMap((g, i) => (cached[i] ? [] : g));
    const downloaded = { packages: 0, bytes: 0 };
    await mapLimit(wanted, jobs, async (p) => {
      const got = await mirror.download(p.filename, p, store, `${p.name} ${p.version}`);
      if (got.fetched) {
        downloaded.packages++;
        downloaded.bytes += p.size;
      }
    });
    if (downloaded.packages > 0) emit({ type: 'download', ...downloaded });

    const built = await mapLimit(groups, jobs, async (group, i) => {
      const hit = cached[i];
      if (hit) {
        checkPackages(group, hit.packages);
        emit({ type: 'layer', packages: group.map((p) => p.name), cached: true });
        return { ...hit, cached: true };
      }
      const debs: DebInput[] = group.map((p) => ({
        what: `${p.name} ${p.version}`,
        open: () => store.openBlob(`sha256:${p.sha256}`),
      }));
      const { layer, packages } = await writePackageLayer(store, debs, { mtime, merged });
      checkPackages(group, packages);
      const made = { descriptor: layer.descriptor, diffId: layer.diffId, packages };
      await recordLayer(store, keys[i]!, made);
      emit({ type: 'layer', packages: group.map((p) => p.name), cached: false });
      return { ...made, cached: false };
    });
    const unpacked = built.flatMap((b) => b.packages);
    const top = await writeTopLayer(store, unpacked, { mtime, merged });

    // The image: Debian's PATH, the config asked for, the layers with a history entry each.
    const composed = new ComposedSource('kiln image from-packages', store, ctx);
    let result: FromPackagesResult;
    try {
      const layers = [
        ...built.map((b, i) => ({
          descriptor: b.descriptor,
          diffId: b.diffId,
          packages: groups[i]!.map((p) => p.name),
          cached: b.cached,
        })),
        {
          descriptor: top.layer.descriptor,
          diffId: top.layer.diffId,
          packages: [] as string[],
          cached: false,
        },
      ];
      for (const l of layers) composed.addOwn(l.descriptor);
      const history: HistoryEntry[] = layers.map((_l, i) => ({
        created,
        created_by:
          i < built.length
            ? `kiln image from-packages: ${groups[i]!.map((p) => `${p.name} ${p.version}`).join(', ')}`
            : 'kiln image from-packages: directories, merged /usr, dpkg status',
      }));
      const env: KeyChanges = { PATH: DEBIAN_PATH, ...(options.env ?? {}) };
      const image = Image.scratch(platform, created, options.to)
        .withConfig({ ...options, created: undefined, env })
        .appendLayers(
          layers.map((l) => ({ descriptor: l.descriptor, diffId: l.diffId })),
          history,
        )
        .created(options.format);
      const descriptor = await image.write(composed);
      composed.setRoot(descriptor);
      await writeComposed(composed, options.to);
      const packages = locked.map((p) => ({
        name: p.name,
        version: p.version,
        architecture: p.architecture,
        sha256: p.sha256,
        size: p.size,
        purl: debianPurl(p.name, p.version, p.architecture),
      }));
      result = {
        destination: options.to,
        descriptor,
        platform,
        suite,
        architecture,
        mirror: mirror.name,
        packages,
        layers: layers.map((l, i) => ({ ...l, descriptor: image.layers[i]!.descriptor })),
        skippedScripts: unpacked
          .filter((p) => p.scripts.length > 0)
          .map((p) => ({ package: p.name, scripts: p.scripts })),
        effects: top.effects,
        downloaded,
      };
    } finally {
      await composed.close();
    }

    if ((options.sbom ?? true) && (location.transport === 'oci' || location.transport === 'registry')) {
      const { attachSbom } = await import('../sbom/referrers.js');
      const attached = await attachSbom({
        to: options.to,
        name: options.name ?? requested.join('+'),
        subject: result.descriptor,
        platform,
        files: [],
        packages: result.packages.map((p) => ({
          name: p.name,
          version: p.version,
          purl: p.purl,
          source: lockFile ? path.basename(lockFile) : `Debian ${suite}`,
        })),
        created,
        context: ctx,
      });
      result.sbom = attached.descriptor;
    }

    // The lock last: a build that failed leaves the old one (or none).
    if (lockFile) {
      const written = !existing;
      if (written)
        await writePackagesLock(lockFile, {
          lockVersion: 1,
          suite,
          mirror: mirror.name,
          architecture,
          components,
          requested,
          packages: locked,
        });
      result.lock = { file: lockFile, used: existing !== undefined, written };
    }
    return result;
  } finally {
    http.close();
    release();
  }
}

/** A lock made for other packages, another suite or architecture is not used silently. */
function checkLock(
  lock: PackagesLock,
  file: string,
  asked: { requested: string[]; suite?: string; architecture?: string; components?: string[] },
): void {
  const hint = 'pass --update-lock to resolve again and rewrite it, or --lock FILE to use another';
  if (JSON.stringify(lock.requested) !== JSON.stringify(asked.requested))
    throw new KilnError(
      'E_USAGE',
      `${file} locks ${lock.requested.join(', ')}, not ${asked.requested.join(', ')}`,
      { hint },
    );
  if (asked.suite !== undefined && asked.suite !== lock.suite)
    throw new KilnError('E_USAGE', `${file} locks suite ${lock.suite}, not ${asked.suite}`, { hint });
  if (asked.architecture !== undefined && asked.architecture !== lock.architecture)
    throw new KilnError(
      'E_USAGE',
      `${file} locks architecture ${lock.architecture}, not ${asked.architecture}`,
      {
        hint,
      },
    );
  if (asked.components !== undefined && asked.components.join(' ') !== lock.components.join(' '))
    throw new KilnError(
      'E_USAGE',
      `${file} locks components ${lock.components.join(' ')}, not ${asked.components.join(' ')}`,
      {
        hint,
      },
    );
}

/** A .deb must be the package the index or lock says it is. */
function checkPackages(group: LockedPackage[], unpacked: UnpackedPackage[]): void {
  group.forEach((p, i) => {
    const u = unpacked[i];
    if (!u || u.name !== p.name || u.version !== p.version)
      throw new KilnError(
        'E_BAD_ARCHIVE',
        `${p.filename} holds ${u ? `${u.name} ${u.version}` : 'no package'}, not ${p.name} ${p.version}`,
        {
          hint: 'the lock names a package its file is not: restore the lock, or --update-lock to resolve again',
        },
      );
  });
}

/**
 * Packages into groups for at most `slots` layers: one each while they fit, else the first
 * `slots - 1` alone (the bottom of the install order: what most images share) and the rest together.
 */
export function planGroups<T>(packages: T[], slots: number): T[][] {
  if (packages.length <= slots) return packages.map((p) => [p]);
  const alone = Math.max(0, slots - 1);
  return [...packages.slice(0, alone).map((p) => [p]), packages.slice(alone)];
}

/** `pkg:deb/debian/NAME@VERSION?arch=ARCH` (purl-spec's deb type; the version percent-encoded but its `:`). */
export function debianPurl(name: string, version: string, architecture: string): string {
  const v = encodeURIComponent(version).replace(/%3A/gi, ':');
  return `pkg:deb/debian/${encodeURIComponent(name)}@${v}?arch=${encodeURIComponent(architecture)}`;
}

/** Runs `fn` over `items`, at most `limit` at once; results in input order. The first failure stops new starts. */
async function mapLimit<T, R>(
  items: T[],
  limit: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  let failed = false;
  const worker = async () => {
    while (!failed && next < items.length) {
      const i = next++;
      try {
        results[i] = await fn(items[i]!, i);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  const workers = Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker);
  const settled = await Promise.allSettled(workers);
  const failure = settled.find((s) => s.status === 'rejected');
  if (failure) throw (failure as PromiseRejectedResult).reason;
  return results;
}
