/**
 * The build cache: compiled artifacts by build key, so a build whose inputs did not change never
 * starts a runner. The key covers the toolchain image digest, the command, the environment, the
 * artifact path and the digest of the source files that count (sources.ts).
 *
 * Locally an entry is `<store>/builds/<key>.json` naming a blob in the store (content-addressed,
 * verified when written). In a registry (`--cache-to/--cache-from REPO`) an entry is an OCI artifact
 * tagged with the key: an empty config and the artifact as its one layer.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { isKilnError, KilnError } from '../errors.js';
import { writeJsonBlob, writeManifest } from '../image/write.js';
import { MediaType } from '../oci/media-types.js';
import type { Descriptor } from '../oci/types.js';
import { parseManifest } from '../oci/validate.js';
import { type OciLayout, type WrittenBlob, writeFileAtomic } from '../store/layout.js';

export const CACHE_ARTIFACT_TYPE = 'application/vnd.dev.kiln.build-cache.v1';
const KEY_ANNOTATION = 'dev.kiln.build.key';
const TITLE_ANNOTATION = 'org.opencontainers.image.title';

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
  toolchain: string;
}

export class BuildCache {
  constructor(readonly store: OciLayout) {}

  private entryFile(key: string): string {
    return path.join(this.store.dir, 'builds', `${key}.json`);
  }

  /** The entry for `key` when its artifact is still in the store. */
  async get(key: string): Promise<CacheEntry | undefined> {
    let entry: CacheEntry;
    try {
      entry = JSON.parse(await fs.readFile(this.entryFile(key), 'utf8')) as CacheEntry;
    } catch {
      return undefined;
    }
    if (entry.key !== key || !(await this.store.hasBlob(entry.artifact.digest, entry.artifact.size)))
      return undefined;
    return entry;
  }

  /** Stores the artifact file under `key` (its bytes as a blob, hashed while copied). */
  async put(key: string, file: string, toolchain: string): Promise<CacheEntry> {
    return this.record(key, await this.store.writeBlob(createReadStream(file)), toolchain);
  }

  /** Names a blob already in the store as the artifact of `key`. */
  private async record(key: string, written: WrittenBlob, toolchain: string): Promise<CacheEntry> {
    const entry: CacheEntry = {
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

  /** Pushes the entry to `repo` (a registry repository) as an artifact tagged with the key. */
  async push(entry: CacheEntry, repo: string): Promise<void> {
    const config = await writeJsonBlob(this.store, MediaType.OciEmpty, {});
    const layer: Descriptor = { ...entry.artifact, annotations: { [TITLE_ANNOTATION]: 'app.wasm' } };
    const { descriptor } = await writeManifest(this.store, {
      config,
      layers: [layer],
      artifactType: CACHE_ARTIFACT_TYPE,
      annotations: { [KEY_ANNOTATION]: entry.key, 'dev.kiln.build.toolchain': entry.toolchain },
    });
    const { copy } = await import('../operations.js');
    const { OciDirSource } = await import('../transport/oci-dir.js');
    await copy(OciDirSource.forDescriptor(this.store, descriptor), `${repo}:${entry.key}`);
  }

  /**
   * Fetches `key` from `repo` into the local cache; undefined when the registry has no such entry.
   * The artifact is verified against its digest while it is written to the store.
   */
  async pull(key: string, repo: string, toolchain: string): Promise<CacheEntry | undefined> {
    const { openSource, currentRegistryOptions } = await import('../transport/open.js');
    const source = await openSource(`${repo}:${key}`, { registry: currentRegistryOptions() });
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
        parsed.manifest.layers.length !== 1
      )
        throw new KilnError('E_BAD_MANIFEST', `${repo}:${key} is not a kiln build cache entry`);
      const layer = parsed.manifest.layers[0]!;
      const written = await this.store.writeBlob(await source.fetchBlob(layer), {
        digest: layer.digest,
        size: layer.size,
      });
      return await this.record(key, written, toolchain);
    } finally {
      await source.close();
    }
  }
}
