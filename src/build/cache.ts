/**
 * The build cache: compiled artifacts by build key, so a build whose inputs did not change never
 * starts a runner. The key covers the toolchain image digest, the command, the environment, the
 * artifact path and the digest of the source files that count (sources.ts).
 *
 * Locally an entry is `<store>/builds/<key>.json` naming a blob in the store (content-addressed,
 * verified when written). In a registry (`--cache-to/--cache-from REPO`) an entry is an OCI artifact
 * tagged with the key: an empty config and the artifact as its first layer.
 *
 * A native build's entry also names its extras: every other file the build wrote under /out, as one
 * deterministic tar+gzip blob (packExtras), the artifact's second layer in a registry. Native
 * artifacts are `application/octet-stream` titled with their own name; wasm ones stay
 * `application/wasm` titled `app.wasm`, as before. A native entry whose artifact is `application/wasm`
 * predates extras (the build may have written some that were dropped) and counts as a miss.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { type KilnContext, withContext } from '../context.js';
import { ioError, isKilnError, KilnError } from '../errors.js';
import { writeJsonBlob, writeManifest } from '../image/write.js';
import { writeLayer } from '../layer/write-layer.js';
import { MediaType } from '../oci/media-types.js';
import type { Descriptor } from '../oci/types.js';
import { parseManifest } from '../oci/validate.js';
import { type OciLayout, type WrittenBlob, writeFileAtomic } from '../store/layout.js';
import { layerEntries, outFiles } from './layering.js';

export const CACHE_ARTIFACT_TYPE = 'application/vnd.dev.kiln.build-cache.v1';
const KEY_ANNOTATION = 'dev.kiln.build.key';
const TITLE_ANNOTATION = 'org.opencontainers.image.title';
/** The media type of a native artifact in a cache entry (any bytes: an ELF binary). */
export const NATIVE_ARTIFACT_MEDIA_TYPE = 'application/octet-stream';
const EXTRAS_TITLE = 'extras.tar.gz';

export interface KeyInputs {
  /** The toolchain image's pinned digest and the platform it runs on. */
  toolchain: string;
  platform: string;
  command: string;
  env: Record<string, string>;
  artifact: string;
  network: boolean;
  sources: string;
}

/** The build key: sha256 hex over a canonical encoding of the inputs (env sorted by name). */
export function buildKey(inputs: KeyInputs): string {
  const env = Object.entries(inputs.env).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const canonical = JSON.stringify([
    'kiln-build-v1',
    inputs.toolchain,
    inputs.platform,
    inputs.command,
    env,
    inputs.artifact,
    inputs.network,
    inputs.sources,
  ]);
  return createHash('sha256').update(canonical).digest('hex');
}

export interface CacheEntry {
  key: string;
  artifact: Descriptor;
  /** A native build's other files under /out: a tar+gzip layer (absent when it wrote none). */
  extras?: Descriptor;
  toolchain: string;
}

/** What a native artifact's entry records besides the artifact. */
export interface NativeEntry {
  /** The artifact's path relative to /out (`app`): its title in a registry. */
  title: string;
  extras?: Descriptor;
}

/** A native entry from before extras were kept: its build may have written files it dropped. */
function predatesExtras(artifact: Descriptor): boolean {
  return artifact.mediaType === MediaType.WasmLayer;
}

export class BuildCache {
  constructor(
    readonly store: OciLayout,
    /** How remote caches (registries) are reached; default: a context per call. */
    private readonly context?: KilnContext,
  ) {}

  private entryFile(key: string): string {
    return path.join(this.store.dir, 'builds', `${key}.json`);
  }

  /** The entry for `key` when its artifact (and extras) are still in the store. */
  async get(key: string, options: { native?: boolean } = {}): Promise<CacheEntry | undefined> {
    let entry: CacheEntry;
    try {
      entry = JSON.parse(await fs.readFile(this.entryFile(key), 'utf8')) as CacheEntry;
    } catch {
      return undefined;
    }
    if (entry.key !== key || !(await this.store.hasBlob(entry.artifact.digest, entry.artifact.size)))
      return undefined;
    if (entry.extras && !(await this.store.hasBlob(entry.extras.digest, entry.extras.size))) return undefined;
    if (options.native && predatesExtras(entry.artifact)) return undefined;
    return entry;
  }

  /**
   * Stores the artifact file under `key` (its bytes as a blob, hashed while copied); a native one
   * with its title and extras (see packExtras).
   */
  async put(key: string, file: string, toolchain: string, native?: NativeEntry): Promise<CacheEntry> {
    return this.record(key, await this.store.writeBlob(createReadStream(file)), toolchain, native);
  }

  /** Names a blob already in the store as the artifact of `key`. */
  private async record(
    key: string,
    written: WrittenBlob,
    toolchain: string,
    native?: NativeEntry,
  ): Promise<CacheEntry> {
    const entry: CacheEntry = native
      ? {
          key,
          artifact: {
            mediaType: NATIVE_ARTIFACT_MEDIA_TYPE,
            digest: written.digest,
            size: written.size,
            annotations: { [TITLE_ANNOTATION]: native.title },
          },
          ...(native.extras ? { extras: native.extras } : {}),
          toolchain,
        }
      : {
          key,
          artifact: { mediaType: MediaType.WasmLayer, digest: written.digest, size: written.size },
          toolchain,
        };
    await fs.mkdir(path.dirname(this.entryFile(key)), { recursive: true });
    await writeFileAtomic(this.entryFile(key), `${JSON.stringify(entry)}\n`);
    return entry;
  }

  /** Copies the entry's artifact to `dest` (atomically: a temp file renamed into place). */
  async extract(entry: CacheEntry, dest: string): Promise<void> {
    const tmp = `${dest}.kiln-tmp-${process.pid}`;
    try {
      await fs.mkdir(path.dirname(dest), { recursive: true });
      await fs.copyFile(this.store.blobPath(entry.artifact.digest), tmp);
      await fs.chmod(tmp, 0o644);
      await fs.rename(tmp, dest);
    } catch (err) {
      await fs.rm(tmp, { force: true });
      throw new KilnError('E_IO', `cannot write ${dest}: ${(err as NodeJS.ErrnoException).code ?? err}`);
    }
  }

  /**
   * Packs what a native build wrote under `outDir` besides `artifactRel` into the store, as one
   * deterministic tar+gzip (sorted, modes normalised keeping the x bit, symlinks kept, mtime
   * SOURCE_DATE_EPOCH or 0), streamed and hashed while written. Undefined when there is nothing
   * else. Special files and symlinks leaving /out are refused (E_UNSAFE_PATH, see outFiles).
   */
  async packExtras(outDir: string, artifactRel: string): Promise<Descriptor | undefined> {
    const files = await outFiles(outDir, artifactRel);
    if (files.length === 0) return undefined;
    const entries = layerEntries(files.map(({ rel, ...f }) => ({ ...f, path: rel })));
    return (await writeLayer(this.store, entries)).descriptor;
  }

  /**
   * Makes `dest` hold exactly the extras (none: `dest` is removed): unpacked with kiln's safe
   * extractor into a temp directory beside it, checked like a build's /out, then swapped in, so
   * `dest` is never half-written. Returns `dest`, or undefined without extras.
   */
  async extractExtras(extras: Descriptor | undefined, dest: string): Promise<string | undefined> {
    if (!extras) {
      await fs.rm(dest, { recursive: true, force: true }).catch((err) => {
        throw ioError(err, dest);
      });
      return undefined;
    }
    const tmp = `${dest}.kiln-tmp-${process.pid}`;
    const old = `${dest}.kiln-old-${process.pid}`;
    try {
      await fs.rm(tmp, { recursive: true, force: true });
      await fs.mkdir(tmp, { recursive: true });
      const [{ flattenLayers }, { extractFlat }, { OciDirSource }] = await Promise.all([
        import('../image/flatten.js'),
        import('../image/unpack.js'),
        import('../transport/oci-dir.js'),
      ]);
      const source = OciDirSource.forDescriptor(this.store, extras);
      let result: Awaited<ReturnType<typeof extractFlat>>;
      try {
        result = await extractFlat(flattenLayers(source, [extras]), tmp);
      } finally {
        await source.close();
      }
      // A blob from --cache-from is verified but not trusted: it must be what packExtras writes.
      const issue = result.refused[0] ?? result.skipped[0];
      if (issue)
        throw new KilnError(
          'E_UNSAFE_PATH',
          `the cached extras ${extras.digest} hold ${issue.path}: ${issue.reason}`,
        );
      await outFiles(tmp, '');
      // rename(2) cannot replace a non-empty directory: the old one steps aside first.
      await fs.rm(old, { recursive: true, force: true });
      const moved = await fs.rename(dest, old).then(
        () => true,
        (err: NodeJS.ErrnoException) => {
          if (err.code === 'ENOENT') return false;
          throw err;
        },
      );
      try {
        await fs.rename(tmp, dest);
      } catch (err) {
        if (moved) await fs.rename(old, dest).catch(() => {});
        throw err;
      }
      await fs.rm(old, { recursive: true, force: true });
      return dest;
    } catch (err) {
      await fs.rm(tmp, { recursive: true, force: true });
      if (err instanceof KilnError) throw err;
      throw ioError(err, `cannot write ${dest}`);
    }
  }

  /** Pushes the entry to `repo` (a registry repository) as an artifact tagged with the key. */
  async push(entry: CacheEntry, repo: string): Promise<void> {
    const config = await writeJsonBlob(this.store, MediaType.OciEmpty, {});
    // Entries written before native targets carry no title: they are all app.wasm.
    const layer: Descriptor = {
      ...entry.artifact,
      annotations: { [TITLE_ANNOTATION]: entry.artifact.annotations?.[TITLE_ANNOTATION] ?? 'app.wasm' },
    };
    const extras: Descriptor[] = entry.extras
      ? [{ ...entry.extras, annotations: { [TITLE_ANNOTATION]: EXTRAS_TITLE } }]
      : [];
    const { descriptor } = await writeManifest(this.store, {
      config,
      layers: [layer, ...extras],
      artifactType: CACHE_ARTIFACT_TYPE,
      annotations: { [KEY_ANNOTATION]: entry.key, 'dev.kiln.build.toolchain': entry.toolchain },
    });
    const { copyImage } = await import('../transport/copy.js');
    const { openDestination } = await import('../transport/open.js');
    const { OciDirSource } = await import('../transport/oci-dir.js');
    await copyImage(
      OciDirSource.forDescriptor(this.store, descriptor),
      await openDestination(`${repo}:${entry.key}`, { context: this.context }),
    );
  }

  /**
   * Whether `repo` has an entry tagged `key`: a HEAD of the manifest in a registry (no body
   * transferred), a tag lookup elsewhere (`oci:DIR`). Nothing is fetched or checked beyond that.
   */
  async has(key: string, repo: string): Promise<boolean> {
    const [{ openSource }, { parseLocation }] = await Promise.all([
      import('../transport/open.js'),
      import('../transport/parse.js'),
    ]);
    const location = `${repo}:${key}`;
    const loc = parseLocation(location);
    if (loc.transport === 'registry')
      return withContext(this.context, async (ctx) => {
        const repository = await ctx.repository(loc.ref);
        return (await repository.headManifest(key, ctx.signal)) !== undefined;
      });
    try {
      const source = await openSource(location, { context: this.context });
      try {
        await source.resolve();
        return true;
      } finally {
        await source.close();
      }
    } catch (err) {
      if (isKilnError(err, 'E_NOT_FOUND')) return false;
      throw err;
    }
  }

  /**
   * Fetches `key` from `repo` into the local cache; undefined when the registry has no such entry
   * (or, for a native target, only one from before extras were kept). The artifact and extras are
   * verified against their digests while they are written to the store.
   */
  async pull(
    key: string,
    repo: string,
    toolchain: string,
    options: { native?: boolean } = {},
  ): Promise<CacheEntry | undefined> {
    const { openSource } = await import('../transport/open.js');
    const source = await openSource(`${repo}:${key}`, { context: this.context });
    try {
      let root: Descriptor;
      try {
        root = await source.resolve();
      } catch (err) {
        if (isKilnError(err, 'E_NOT_FOUND')) return undefined;
        throw err;
      }
      const parsed = parseManifest(await source.fetchManifest(root), `${repo}:${key}`, root.mediaType);
      if (
        parsed.kind !== 'manifest' ||
        parsed.manifest.artifactType !== CACHE_ARTIFACT_TYPE ||
        parsed.manifest.annotations?.[KEY_ANNOTATION] !== key ||
        parsed.manifest.layers.length < 1 ||
        parsed.manifest.layers.length > 2 ||
        (parsed.manifest.layers[1] && parsed.manifest.layers[1].mediaType !== MediaType.OciLayerGzip)
      )
        throw new KilnError('E_BAD_MANIFEST', `${repo}:${key} is not a kiln build cache entry`);
      const [layer, extrasLayer] = parsed.manifest.layers as [Descriptor, Descriptor | undefined];
      if (options.native && predatesExtras(layer)) return undefined;
      const fetch = (d: Descriptor) =>
        source.fetchBlob(d).then((blob) => this.store.writeBlob(blob, { digest: d.digest, size: d.size }));
      const written = await fetch(layer);
      if (!options.native) return await this.record(key, written, toolchain);
      let extras: Descriptor | undefined;
      if (extrasLayer) {
        const w = await fetch(extrasLayer);
        extras = { mediaType: MediaType.OciLayerGzip, digest: w.digest, size: w.size };
      }
      const title = layer.annotations?.[TITLE_ANNOTATION] ?? 'app';
      return await this.record(key, written, toolchain, { title, ...(extras ? { extras } : {}) });
    } finally {
      await source.close();
    }
  }
}
