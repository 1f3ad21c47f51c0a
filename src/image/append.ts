import { once } from 'node:events';
import { createReadStream } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { ioError, KilnError } from '../errors.js';
import {
  type CollectOptions,
  collectEntries,
  type LayerDevicePolicy,
  layerPath,
  type SkippedEntry,
} from '../layer/entries.js';
import { parallelGzip } from '../layer/gzip.js';
import { BLOCK } from '../layer/tar-header.js';
import { isGzip } from '../layer/tar-reader.js';
import { writeLayer } from '../layer/write-layer.js';
import { parallelZstd } from '../layer/zstd.js';
import { type Digest, newHash } from '../oci/digest.js';
import { createdFamily, inFamily } from '../oci/media-type-policy.js';
import { MediaType } from '../oci/media-types.js';
import { hostPlatform, type Platform } from '../oci/platform.js';
import type { Descriptor } from '../oci/types.js';
import type { OciLayout } from '../store/layout.js';
import { type ComposeResult, checkCreated, type DeriveOptions, derive, openImage } from './compose.js';
import { Image } from './image.js';

/** One `--layer SRC[:DEST]`. */
export interface AppendLayer {
  /** A directory, a regular file, or a `.tar` / `.tar.gz` / `.tgz` taken as the layer itself. */
  source: string;
  /** Absolute path in the image: where a directory's contents or a file go (default `/`). Not for tars. */
  dest?: string;
}

/** Options of `appendLayers`: the base image, the layers to add, the destination. */
export interface AppendOptions extends DeriveOptions {
  /** Any source transport, or `scratch` for an empty image. */
  base: string;
  layers: AppendLayer[];
  to: string;
  /** Chooses the image out of an index base; for `scratch`, the platform of the new image (default: the host's). */
  platform?: Platform;
  /** RFC 3339 time of the history entries (and of a scratch config); default SOURCE_DATE_EPOCH, else the epoch. */
  created?: string;
  /**
   * Device nodes and fifos in a directory: written as GNU tar writes them (`keep`, the default),
   * left out (`skip`, listed in each layer's `skipped`), or an error (`refuse`). Sockets are always
   * left out.
   */
  devices?: LayerDevicePolicy;
  /** How new layers are compressed (default gzip; a .tar.gz input keeps its bytes either way). */
  compression?: 'gzip' | 'zstd';
}

/** One layer `appendLayers` added: its descriptor and diff_id. */
export interface AppendedLayer {
  source: string;
  descriptor: Descriptor;
  diffId: Digest;
  /** Entries of the directory left out of the layer (sockets; devices and fifos with `devices: 'skip'`). */
  skipped: SkippedEntry[];
}

/** What `appendLayers` wrote: the new image and its layers. */
export interface AppendResult extends ComposeResult {
  platform: Platform;
  layers: AppendedLayer[];
}

const TAR_SUFFIXES = ['.tar', '.tar.gz', '.tgz'];

/** Appends one layer per input to a base image (or to scratch) and writes the image to `to`. */
export async function appendLayers(options: AppendOptions): Promise<AppendResult> {
  if (options.layers.length === 0) throw new KilnError('E_USAGE', 'append needs at least one --layer');
  const created = checkCreated(options.created);
  return derive('kiln append', options, async (composed) => {
    const store = composed.store;
    let base: Image | undefined;
    if (options.base !== 'scratch') {
      const { source, image } = await openImage(composed, options.base, options.platform);
      base = Image.of(source, image);
    }
    // A new manifest: OCI unless Docker v2 is asked for (a Docker base's types renamed, same blobs).
    const family = createdFamily(options.format);
    const compression = options.compression ?? 'gzip';
    if (compression === 'zstd' && family === 'docker')
      throw new KilnError('E_USAGE', 'Docker v2 manifests have no zstd layer type', {
        hint: 'write an OCI image (the default --format) for zstd layers, or use --compression gzip',
      });

    const layers: AppendedLayer[] = [];
    for (const input of options.layers) {
      const skipped: SkippedEntry[] = [];
      const written = await buildLayer(
        store,
        input,
        { devices: options.devices, onSkip: (s) => void skipped.push(s) },
        compression,
      );
      const descriptor = { ...written.descriptor, mediaType: inFamily(written.descriptor.mediaType, family) };
      composed.addOwn(descriptor);
      layers.push({ source: input.source, descriptor, diffId: written.diffId, skipped });
    }

    const platform = base ? base.platform : (options.platform ?? hostPlatform());
    const image = (base ?? Image.scratch(platform, created)).withFamily(family).appendLayers(
      layers.map((l) => ({ descriptor: l.descriptor, diffId: l.diffId })),
      layers.map(() => ({ created, created_by: 'kiln append' })),
    );
    const descriptor = await image.write(composed);
    await composed.writeTo(descriptor, options.to);
    return { destination: options.to, descriptor, platform, layers };
  });
}

interface BuiltLayer {
  descriptor: Descriptor;
  diffId: Digest;
}

/** Writes one input as a layer blob into the store. */
export async function buildLayer(
  store: OciLayout,
  input: AppendLayer,
  collect: CollectOptions = {},
  compression: 'gzip' | 'zstd' = 'gzip',
): Promise<BuiltLayer> {
  let real: string;
  let st: import('node:fs').Stats;
  try {
    // Follow a symlink given on the command line, as cp and tar do.
    real = await fs.realpath(input.source);
    st = await fs.stat(real);
  } catch (err) {
    throw ioError(err, input.source);
  }
  const dest = input.dest === undefined ? '' : layerPath(input.dest);
  if (st.isDirectory()) {
    const entries = await collectEntries([{ source: real, dest }], collect);
    return writeLayer(store, entries, { compression });
  }
  if (!st.isFile())
    throw new KilnError('E_UNSUPPORTED', `${input.source} is not a regular file or a directory`, {
      hint: 'to put a device node or fifo into a layer, give the directory that holds it',
    });
  if (TAR_SUFFIXES.some((s) => input.source.toLowerCase().endsWith(s))) {
    if (input.dest !== undefined && dest !== '')
      throw new KilnError('E_USAGE', `${input.source} is a tar, taken as a layer as it is; it has no :DEST`, {
        hint: 'to put the tar file itself into the image, give the directory that holds it',
      });
    return tarLayer(store, real, input.source, compression);
  }
  const name = path.basename(input.source); // the name given, even through a symlink
  const entries = await collectEntries(
    [{ source: real, dest: dest === '' ? name : `${dest}/${name}` }],
    collect,
  );
  return writeLayer(store, entries, { compression });
}

/**
 * A tar file as a layer: a gzipped one keeps its bytes (diff_id from gunzipping while it is
 * stored), a plain one is compressed with kiln's deterministic gzip or zstd. Both are read once.
 */
async function tarLayer(
  store: OciLayout,
  file: string,
  what: string,
  compression: 'gzip' | 'zstd',
): Promise<BuiltLayer> {
  const head = await readHead(file, 2);
  const diff = new TarHasher(what);
  const content = createReadStream(file);
  content.on('error', () => {}); // surfaces through the iteration below
  let blob: { digest: Digest; size: number };
  const zstd = !isGzip(head) && compression === 'zstd';
  try {
    blob = isGzip(head)
      ? await store.writeBlob(gunzipHashing(content, diff, what))
      : await store.writeBlob((zstd ? parallelZstd : parallelGzip)(diff.through(content)));
  } catch (err) {
    if (err instanceof KilnError) throw err;
    throw ioError(err, what);
  } finally {
    content.destroy();
  }
  return {
    descriptor: {
      mediaType: zstd ? MediaType.OciLayerZstd : MediaType.OciLayerGzip,
      digest: blob.digest,
      size: blob.size,
    },
    diffId: diff.digest(),
  };
}

async function readHead(file: string, n: number): Promise<Buffer> {
  const handle = await fs.open(file, 'r').catch((err) => {
    throw ioError(err, file);
  });
  try {
    const buf = Buffer.alloc(n);
    const { bytesRead } = await handle.read(buf, 0, n, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

/** Hashes an uncompressed tar stream (the diff_id) and checks that it starts like a tar. */
class TarHasher {
  private readonly hash = newHash();
  private head = Buffer.alloc(0);
  private checked = false;

  constructor(private readonly what: string) {}

  update(chunk: Uint8Array): void {
    this.hash.update(chunk);
    if (!this.checked) {
      this.head = Buffer.concat([this.head, chunk]);
      if (this.head.length >= BLOCK) this.check();
    }
  }

  async *through(source: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
    for await (const chunk of source) {
      this.update(chunk);
      yield chunk;
    }
  }

  digest(): Digest {
    if (!this.checked) this.check();
    return `sha256:${this.hash.digest('hex')}`;
  }

  private check(): void {
    this.checked = true;
    if (this.head.length < BLOCK || !validTarHeader(this.head.subarray(0, BLOCK)))
      throw new KilnError('E_BAD_TAR', `${this.what} is not a tar archive`, {
        hint: 'a .tar, .tar.gz or .tgz given to --layer is taken as the layer itself',
      });
    this.head = Buffer.alloc(0);
  }
}

/** A tar header block checks out: its checksum matches, or it is the zero block of an empty archive. */
function validTarHeader(block: Buffer): boolean {
  if (block.every((b) => b === 0)) return true;
  const field = block.subarray(148, 156).toString('latin1').replace(/\0.*$/s, '').trim();
  if (!/^[0-7]+$/.test(field)) return false;
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : block[i]!;
  return sum === Number.parseInt(field, 8);
}

/** Passes compressed bytes through unchanged while gunzipping them into `diff` on the side. */
async function* gunzipHashing(
  source: AsyncIterable<Uint8Array>,
  diff: TarHasher,
  what: string,
): AsyncGenerator<Uint8Array> {
  const gunzip = zlib.createGunzip();
  let failure: unknown;
  gunzip.on('data', (chunk: Buffer) => {
    try {
      diff.update(chunk);
    } catch (err) {
      failure ??= err;
    }
  });
  const ended = new Promise<void>((resolve, reject) => {
    gunzip.on('end', resolve);
    gunzip.on('error', (err) =>
      reject(new KilnError('E_BAD_TAR', `${what} is not valid gzip: ${err.message}`, { cause: err })),
    );
  });
  ended.catch(() => {}); // awaited below
  for await (const chunk of source) {
    if (failure) throw failure;
    if (!gunzip.write(chunk)) await Promise.race([once(gunzip, 'drain'), ended]);
    yield chunk;
  }
  gunzip.end();
  await ended;
  if (failure) throw failure;
}
