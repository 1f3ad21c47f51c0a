import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { EngineClient, NO_CONTAINERD_HINT } from '../engine/client.js';
import { KilnError } from '../errors.js';
import type { Reference } from '../oci/reference.js';
import type { Descriptor } from '../oci/types.js';
import { ArchiveDestination } from './archive.js';
import type { CopyPlan, ImageDestination } from './types.js';

export interface DockerDaemonOptions {
  /** The engine to load into; by default the Docker engine DOCKER_HOST names (unix, tcp, tcp+TLS, ssh). */
  engine?: EngineClient;
  /** Stops the engine's requests (the probe and the load). */
  signal?: AbortSignal;
}

/**
 * `docker-daemon:NAME:TAG` as a destination: the engine is asked (/info) whether it can load the
 * image's os before anything is staged, then the image is written as a `docker save` archive to a
 * temp file and streamed to the engine's /images/load. Nothing is left behind either way.
 */
export class DockerDaemonDestination implements ImageDestination {
  readonly singleImage = true;
  readonly sequential = true;
  readonly staged = true;
  private readonly archive: ArchiveDestination;
  private readonly file: string;
  private client: EngineClient | undefined;

  constructor(
    readonly name: string,
    ref: Reference,
    private readonly options: DockerDaemonOptions = {},
  ) {
    // Random too: two loads in one process (parallel builds) can start within the same millisecond.
    this.file = path.join(
      os.tmpdir(),
      `kiln-docker-load-${process.pid}-${Date.now()}-${randomBytes(4).toString('hex')}.tar`,
    );
    this.archive = new ArchiveDestination(name, this.file, 'docker', undefined, ref);
    this.client = options.engine;
  }

  private get engine(): EngineClient {
    this.client ??= EngineClient.fromEnv('docker');
    return this.client;
  }

  /** An engine without the containerd image store loads images of its own os only: refused here, before staging. */
  async prepare(plan: CopyPlan): Promise<void> {
    const engine = await this.engine.info(this.options.signal);
    if (engine.containerdStore || !engine.os) return;
    const foreign = plan.platforms.find((p) => p.os && p.os !== engine.os);
    if (!foreign) return;
    throw new KilnError(
      'E_ENGINE',
      `the ${this.engine.label} engine at ${engine.where}${engine.version ? ` (${engine.version})` : ''} can't load ${this.name}: its os is ${foreign.os}, and without the containerd image store the engine loads ${engine.os} images only`,
      { hint: NO_CONTAINERD_HINT },
    );
  }

  hasBlob(desc: Descriptor): Promise<boolean> {
    return this.archive.hasBlob(desc);
  }
  putBlob(desc: Descriptor, content: AsyncIterable<Uint8Array>): Promise<void> {
    return this.archive.putBlob(desc, content);
  }
  async putManifest(desc: Descriptor, bytes: Buffer): Promise<void> {
    await this.refuseZstd(bytes);
    return this.archive.putManifest(desc, bytes);
  }

  /** Docker Engine before 23 (classic store) can't decompress zstd layers: refused, not loaded half-way. */
  private async refuseZstd(manifest: Buffer): Promise<void> {
    let layers: unknown;
    try {
      layers = (JSON.parse(manifest.toString('utf8')) as { layers?: unknown }).layers;
    } catch {
      return; // not this check's business: the archive writer parses it again
    }
    if (!Array.isArray(layers)) return;
    const zstd = layers.findIndex((l) => String((l as { mediaType?: unknown })?.mediaType).endsWith('+zstd'));
    if (zstd < 0 || this.engine.label !== 'Docker') return;
    const engine = await this.engine.info(this.options.signal);
    const major = Number(/(\d+)\.\d+/.exec(engine.version ?? '')?.[1] ?? Number.NaN);
    if (engine.containerdStore || !(major < 23)) return;
    throw new KilnError(
      'E_UNSUPPORTED',
      `the ${this.engine.label} engine at ${engine.where} (${engine.version}) can't load ${this.name}: layer ${zstd} is zstd-compressed, which Docker reads from Engine 23 on`,
      {
        hint: 'write the image with --compression gzip (the default), or load it into Engine 23+ or one with the containerd image store',
      },
    );
  }

  async commit(root: Descriptor): Promise<void> {
    await this.archive.commit(root);
    try {
      await this.engine.loadImage(this.file, this.name, this.options.signal);
    } finally {
      await fs.rm(this.file, { force: true });
    }
  }

  async abort(): Promise<void> {
    await this.archive.abort();
    await fs.rm(this.file, { force: true });
  }
}
