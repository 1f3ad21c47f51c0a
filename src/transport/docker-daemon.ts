import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { KilnError } from '../errors.js';
import type { Reference } from '../oci/reference.js';
import type { Descriptor } from '../oci/types.js';
import { ArchiveDestination } from './archive.js';
import type { CopyPlan, ImageDestination } from './types.js';

/** Where the Docker Engine API answers: DOCKER_HOST (unix:// or tcp://), else the default socket. */
export function dockerEndpoint(env: NodeJS.ProcessEnv = process.env): {
  socketPath?: string;
  host?: string;
  port?: number;
} {
  const value = env.DOCKER_HOST;
  if (!value) return { socketPath: '/var/run/docker.sock' };
  if (value.startsWith('unix://')) return { socketPath: value.slice('unix://'.length) };
  if (value.startsWith('tcp://')) {
    if (env.DOCKER_TLS_VERIFY)
      throw new KilnError(
        'E_UNSUPPORTED',
        'docker-daemon: over TLS (DOCKER_TLS_VERIFY) is not supported yet',
      );
    const url = new URL(`http://${value.slice('tcp://'.length)}`);
    return { host: url.hostname, port: Number(url.port || 2375) };
  }
  throw new KilnError('E_UNSUPPORTED', `DOCKER_HOST ${value} is not supported (unix:// and tcp:// are)`);
}

/** Sends a `docker save` archive (a file) to an engine's /images/load; rejects with a KilnError. */
export type DockerLoader = (file: string, name: string) => Promise<void>;

/** What an engine can load, from its /info. */
export interface EngineInfo {
  /** Where it answers, for messages. */
  where: string;
  /** The engine's os (`linux`): without the containerd image store it loads images of this os only. */
  os?: string;
  /** Whether images are kept in the containerd image store, which takes any os (wasip1 too). */
  containerdStore: boolean;
  version?: string;
}

/** Asks an engine what it can load; rejects with a KilnError. */
export type EngineProbe = () => Promise<EngineInfo>;

/**
 * `docker-daemon:NAME:TAG` as a destination: the image is written as a `docker save` archive to a
 * temp file, then streamed to the engine's /images/load. Nothing is left behind either way.
 * `load` replaces the plain HTTP upload (the docker runner passes one that speaks TLS and ssh), and
 * `probe` the check of the engine before anything is staged (none when `load` is replaced alone).
 */
export class DockerDaemonDestination implements ImageDestination {
  readonly singleImage = true;
  readonly sequential = true;
  readonly staged = true;
  private readonly archive: ArchiveDestination;
  private readonly file: string;
  private readonly probe: EngineProbe | undefined;

  constructor(
    readonly name: string,
    ref: Reference,
    private readonly load: DockerLoader = loadIntoDocker,
    probe?: EngineProbe,
  ) {
    // Random too: two loads in one process (parallel builds) can start within the same millisecond.
    this.file = path.join(
      os.tmpdir(),
      `kiln-docker-load-${process.pid}-${Date.now()}-${randomBytes(4).toString('hex')}.tar`,
    );
    this.archive = new ArchiveDestination(name, this.file, 'docker', undefined, ref);
    this.probe = probe ?? (load === loadIntoDocker ? probeDocker : undefined);
  }

  /** An engine without the containerd image store loads images of its own os only: refused here, before staging. */
  async prepare(plan: CopyPlan): Promise<void> {
    if (!this.probe) return;
    const engine = await this.probe();
    if (engine.containerdStore || !engine.os) return;
    const foreign = plan.platforms.find((p) => p.os && p.os !== engine.os);
    if (!foreign) return;
    throw new KilnError(
      'E_DOCKER',
      `the Docker engine at ${engine.where}${engine.version ? ` (${engine.version})` : ''} can't load ${this.name}: its os is ${foreign.os}, and without the containerd image store the engine loads ${engine.os} images only`,
      { hint: NO_CONTAINERD_HINT },
    );
  }

  hasBlob(desc: Descriptor): Promise<boolean> {
    return this.archive.hasBlob(desc);
  }
  putBlob(desc: Descriptor, content: AsyncIterable<Uint8Array>): Promise<void> {
    return this.archive.putBlob(desc, content);
  }
  putManifest(desc: Descriptor, bytes: Buffer): Promise<void> {
    return this.archive.putManifest(desc, bytes);
  }

  async commit(root: Descriptor): Promise<void> {
    await this.archive.commit(root);
    try {
      await this.load(this.file, this.name);
    } finally {
      await fs.rm(this.file, { force: true });
    }
  }

  async abort(): Promise<void> {
    await this.archive.abort();
    await fs.rm(this.file, { force: true });
  }
}

const NO_CONTAINERD_HINT =
  'this engine stores images without containerd, which rejects os wasip1/wasi; enable the containerd image store ' +
  '(Docker Desktop, or "features": {"containerd-snapshotter": true} in daemon.json), or use --platform linux/amd64 for a loadable image';

/** One request to the engine at DOCKER_HOST: the status and the body, read whole (small answers only). */
function engineRequest(
  method: string,
  urlPath: string,
  body?: NodeJS.ReadableStream,
  headers: Record<string, string> = {},
): Promise<{ status: number; text: string }> {
  const endpoint = dockerEndpoint();
  return new Promise((resolve, reject) => {
    const req = http.request({ ...endpoint, method, path: urlPath, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        text += c;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      res.on('error', reject);
    });
    req.on('error', (err) =>
      reject(
        new KilnError('E_DOCKER', `cannot reach the Docker engine at ${engineWhere()}: ${err.message}`, {
          hint: 'start Docker, or set DOCKER_HOST',
          cause: err,
        }),
      ),
    );
    if (body) body.on('error', reject).pipe(req);
    else req.end();
  });
}

function engineWhere(): string {
  const endpoint = dockerEndpoint();
  return endpoint.socketPath ?? `${endpoint.host}:${endpoint.port}`;
}

/** The engine's /info: its os, version, and whether it keeps images in containerd (driver-type io.containerd.snapshotter.v1). */
async function probeDocker(): Promise<EngineInfo> {
  const { status, text } = await engineRequest('GET', '/info');
  const where = engineWhere();
  if (status !== 200)
    throw new KilnError(
      'E_DOCKER',
      `the Docker engine at ${where} answered /info with HTTP ${status}: ${text.trim().slice(0, 200)}`,
    );
  let info: { OSType?: unknown; ServerVersion?: unknown; DriverStatus?: unknown };
  try {
    info = JSON.parse(text);
  } catch {
    throw new KilnError(
      'E_DOCKER',
      `the Docker engine at ${where} answered /info with something other than JSON`,
    );
  }
  const driverStatus = Array.isArray(info.DriverStatus) ? (info.DriverStatus as unknown[]) : [];
  const containerdStore = driverStatus.some(
    (pair) =>
      Array.isArray(pair) &&
      pair[0] === 'driver-type' &&
      String(pair[1]).startsWith('io.containerd.snapshotter'),
  );
  const result: EngineInfo = { where, containerdStore };
  if (typeof info.OSType === 'string' && info.OSType) result.os = info.OSType;
  if (typeof info.ServerVersion === 'string' && info.ServerVersion)
    result.version = `Docker ${info.ServerVersion}`;
  return result;
}

async function loadIntoDocker(file: string, name: string): Promise<void> {
  const { status, text } = await engineRequest('POST', '/images/load?quiet=1', createReadStream(file), {
    'Content-Type': 'application/x-tar',
  });
  checkLoadAnswer(text, name);
  if (status >= 300)
    throw new KilnError(
      'E_DOCKER',
      `the Docker engine refused ${name}: HTTP ${status} ${text.trim().slice(0, 200)}`,
    );
}

/** Throws the failure in an /images/load answer: JSON lines, with {"error": ...} even under status 200. */
export function checkLoadAnswer(body: string, name: string): void {
  for (const line of body.split('\n')) {
    if (!line.trim()) continue;
    let msg: { error?: string; message?: string };
    try {
      msg = JSON.parse(line);
    } catch {
      continue;
    }
    const error = msg.error ?? (msg.message && !line.includes('"stream"') ? msg.message : undefined);
    if (error) throw dockerLoadError(error, name);
  }
}

function dockerLoadError(message: string, name: string): KilnError {
  if (/unknown operating system|operating system is not supported|unsupported os/i.test(message))
    return new KilnError('E_DOCKER', `the Docker engine refused ${name}: ${message.trim()}`, {
      hint: NO_CONTAINERD_HINT,
    });
  return new KilnError('E_DOCKER', `the Docker engine refused ${name}: ${message.trim()}`);
}
