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
import type { ImageDestination } from './types.js';

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

/**
 * `docker-daemon:NAME:TAG` as a destination: the image is written as a `docker save` archive to a
 * temp file, then streamed to the engine's /images/load. Nothing is left behind either way.
 * `load` replaces the plain HTTP upload (the docker runner passes one that speaks TLS and ssh).
 */
export class DockerDaemonDestination implements ImageDestination {
  readonly singleImage = true;
  readonly sequential = true;
  private readonly archive: ArchiveDestination;
  private readonly file: string;

  constructor(
    readonly name: string,
    ref: Reference,
    private readonly load: DockerLoader = loadIntoDocker,
  ) {
    // Random too: two loads in one process (parallel builds) can start within the same millisecond.
    this.file = path.join(
      os.tmpdir(),
      `kiln-docker-load-${process.pid}-${Date.now()}-${randomBytes(4).toString('hex')}.tar`,
    );
    this.archive = new ArchiveDestination(name, this.file, 'docker', undefined, ref);
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

async function loadIntoDocker(file: string, name: string): Promise<void> {
  const endpoint = dockerEndpoint();
  const body = await new Promise<string>((resolve, reject) => {
    const req = http.request(
      {
        ...endpoint,
        method: 'POST',
        path: '/images/load?quiet=1',
        headers: { 'Content-Type': 'application/x-tar' },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          text += c;
        });
        res.on('end', () =>
          res.statusCode && res.statusCode < 300 ? resolve(text) : reject(new DockerAnswer(text)),
        );
        res.on('error', reject);
      },
    );
    req.on('error', (err) =>
      reject(
        new KilnError(
          'E_DOCKER',
          `cannot reach the Docker engine at ${endpoint.socketPath ?? `${endpoint.host}:${endpoint.port}`}: ${err.message}`,
          {
            hint: 'start Docker, or set DOCKER_HOST',
            cause: err,
          },
        ),
      ),
    );
    createReadStream(file).on('error', reject).pipe(req);
  }).catch((err) => {
    if (err instanceof DockerAnswer) return err.body;
    throw err;
  });
  checkLoadAnswer(body, name);
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

class DockerAnswer extends Error {
  constructor(readonly body: string) {
    super('docker answered with an error');
  }
}

function dockerLoadError(message: string, name: string): KilnError {
  if (/unknown operating system|operating system is not supported|unsupported os/i.test(message))
    return new KilnError('E_DOCKER', `the Docker engine refused ${name}: ${message.trim()}`, {
      hint:
        'this engine stores images without containerd, which rejects os wasip1/wasi; enable the containerd image store ' +
        '(Docker Desktop, or "features": {"containerd-snapshotter": true} in daemon.json), or use --platform linux/amd64 for a loadable image',
    });
  return new KilnError('E_DOCKER', `the Docker engine refused ${name}: ${message.trim()}`);
}
