/**
 * kiln's one Docker Engine API client, for Docker and for Podman's compatible service, at any endpoint
 * `engineEndpoint` resolves (unix, tcp, tcp+TLS, ssh). The `docker-daemon:` transport uses it to ask
 * the engine what it can load (/info) and to load images; the docker/podman runner also looks images
 * up and runs its containers through it.
 *
 * Every request goes over node's own http (https for TLS endpoints; for ssh, through
 * `ssh HOST docker system dial-stdio`, see ssh.ts), one connection each: no client library to load
 * (dockerode cost ~230 ms of start-up), nothing left open to keep the process alive.
 *
 * Every failure is a KilnError: E_ENGINE when the engine cannot be reached or fails a request, E_TLS
 * when the TLS handshake with it fails, E_ABORTED when the caller's signal stopped the request.
 */
import { createReadStream, existsSync } from 'node:fs';
import type * as http from 'node:http';
import type { Readable, Writable } from 'node:stream';
import { KilnError } from '../errors.js';
import { ENGINE_LABEL, type EngineEndpoint, type EngineName, engineEndpoint } from './endpoint.js';

/** What kiln needs to know about an engine, from its /info. */
export interface EngineInfo {
  /** Where it answers, for messages. */
  where: string;
  /** The engine's os (`linux`): without the containerd image store it loads images of this os only. */
  os?: string;
  /** Whether images are kept in the containerd image store, which takes any os (wasip1 too). */
  containerdStore: boolean;
  /** `Docker 20.10.24`, for messages. */
  version?: string;
  /** A rootless engine: the container's root is the user who runs the engine. */
  rootless: boolean;
}

/** The parts of the Engine API's container create body that kiln sets. */
export interface ContainerSpec {
  Image: string;
  Entrypoint?: string[];
  Cmd?: string[];
  WorkingDir?: string;
  Env?: string[];
  User?: string;
  Labels?: Record<string, string>;
  AttachStdout?: boolean;
  AttachStderr?: boolean;
  Tty?: boolean;
  OpenStdin?: boolean;
  HostConfig?: {
    NetworkMode?: string;
    CapDrop?: string[];
    SecurityOpt?: string[];
    Tmpfs?: Record<string, string>;
    Mounts?: { Type: 'bind'; Source: string; Target: string; ReadOnly: boolean }[];
    ReadonlyRootfs?: boolean;
  };
}

const PING_TIMEOUT_MS = 1_500;
/** ssh needs a key exchange before the engine can answer. */
const SSH_PING_TIMEOUT_MS = 5_000;
/** Largest answer read whole (errors, /info, image inspect, the load's progress lines). */
const ANSWER_LIMIT = 4 * 1024 * 1024;

export const NO_CONTAINERD_HINT =
  'this engine stores images without containerd, which rejects os wasip1/wasi; enable the containerd image store ' +
  '(Docker Desktop, or "features": {"containerd-snapshotter": true} in daemon.json), or use --platform linux/amd64 for a loadable image';

/** A request's options: a body streamed up, and a signal that stops it. */
interface RequestOptions {
  body?: Readable;
  /** A JSON body. */
  json?: unknown;
  headers?: Record<string, string>;
  signal?: AbortSignal | undefined;
}

/** An answer the engine gave with an error status. */
class EngineAnswerError extends Error {
  constructor(
    readonly statusCode: number,
    readonly json: { message?: unknown } | undefined,
    text: string,
  ) {
    super(
      typeof json?.message === 'string' ? json.message : `HTTP ${statusCode} ${text.trim().slice(0, 200)}`,
    );
  }
}

export class EngineClient {
  readonly label: 'Docker' | 'Podman';

  constructor(readonly endpoint: EngineEndpoint) {
    this.label = ENGINE_LABEL[endpoint.engine];
  }

  /** The engine the environment names (DOCKER_HOST, CONTAINER_HOST); throws E_UNSUPPORTED or E_TLS for ones kiln can't use. */
  static fromEnv(engine: EngineName = 'docker', env: NodeJS.ProcessEnv = process.env): EngineClient {
    return new EngineClient(engineEndpoint(engine, env));
  }

  get name(): EngineName {
    return this.endpoint.engine;
  }

  /** Why no engine answers here, one line (`no Docker engine answers at ... (no such socket)`); undefined when one does. */
  async unavailable(): Promise<string | undefined> {
    const socket = this.endpoint.options.socketPath;
    // `auto` asks this on every build: a socket that is not there needs no request to say so.
    if (socket !== undefined && !existsSync(socket))
      return `no ${this.label} engine answers at ${this.endpoint.display} (no such socket)`;
    const timeout = this.ssh ? SSH_PING_TIMEOUT_MS : PING_TIMEOUT_MS;
    const signal = AbortSignal.timeout(timeout);
    try {
      await this.call('GET', '/_ping', { signal });
      return undefined;
    } catch (err) {
      if (err instanceof KilnError) return err.message;
      return `no ${this.label} engine answers at ${this.endpoint.display} (${pingFailure(err, timeout)})`;
    }
  }

  /** The engine's /info: its os, version, whether it keeps images in containerd, whether it is rootless. */
  async info(signal?: AbortSignal): Promise<EngineInfo> {
    let info: {
      OSType?: unknown;
      ServerVersion?: unknown;
      DriverStatus?: unknown;
      SecurityOptions?: unknown;
    };
    try {
      const json = parseJson(await this.call('GET', '/info', { signal }));
      if (json === undefined) throw new Error('the answer to /info is not a JSON object');
      info = json;
    } catch (err) {
      throw this.error(err, 'read the engine information');
    }
    const driverStatus = Array.isArray(info.DriverStatus) ? (info.DriverStatus as unknown[]) : [];
    const containerdStore = driverStatus.some(
      (pair) =>
        Array.isArray(pair) &&
        pair[0] === 'driver-type' &&
        String(pair[1]).startsWith('io.containerd.snapshotter'),
    );
    const securityOptions = Array.isArray(info.SecurityOptions) ? info.SecurityOptions : [];
    const result: EngineInfo = {
      where: this.endpoint.display,
      containerdStore,
      rootless: securityOptions.some((o) => String(o).includes('name=rootless')),
    };
    if (typeof info.OSType === 'string' && info.OSType) result.os = info.OSType;
    if (typeof info.ServerVersion === 'string' && info.ServerVersion)
      result.version = `${this.label} ${info.ServerVersion}`;
    return result;
  }

  /** The engine's ID of an image (by ID or NAME:TAG); undefined when it has none by that name. */
  async imageId(name: string, signal?: AbortSignal): Promise<string | undefined> {
    let id: unknown;
    try {
      id = parseJson(await this.call('GET', `/images/${name}/json`, { signal }))?.['Id'];
    } catch (err) {
      if ((err as { statusCode?: number }).statusCode === 404) return undefined;
      throw this.error(err, `look up the image ${name}`);
    }
    if (typeof id !== 'string')
      throw this.error(new Error('the answer has no Id'), `look up the image ${name}`);
    return id;
  }

  /**
   * Streams a `docker save` archive (a file) to the engine's /images/load. Rejects with a KilnError:
   * the engine's refusal (E_ENGINE, hinting at the containerd image store when the os was the problem).
   */
  async loadImage(file: string, name: string, signal?: AbortSignal): Promise<void> {
    let text: string;
    try {
      text = await this.call('POST', '/images/load?quiet=1', {
        body: createReadStream(file),
        headers: { 'Content-Type': 'application/x-tar' },
        signal,
      });
    } catch (err) {
      const refusal = (err as { json?: { message?: unknown } }).json?.message;
      if (typeof refusal === 'string') throw this.refused(name, refusal);
      throw this.error(err, `load ${name}`);
    }
    checkLoadAnswer(text, (why) => this.refused(name, why));
  }

  /** Creates a container; its ID. Errors are the engine's: pass them to `error`. */
  async createContainer(spec: ContainerSpec, signal?: AbortSignal): Promise<string> {
    const id = parseJson(await this.call('POST', '/containers/create', { json: spec, signal }))?.['Id'];
    if (typeof id !== 'string') throw new Error('the answer to /containers/create has no Id');
    return id;
  }

  /**
   * Attaches to a container's stdout and stderr (made without a TTY), writing each to its stream as it
   * comes; resolves once attached, with the promise that the output ends (on the container's exit, or
   * an error or abort; it never rejects).
   */
  async attach(
    id: string,
    stdout: Writable | NodeJS.WritableStream,
    stderr: Writable | NodeJS.WritableStream,
    signal?: AbortSignal,
  ): Promise<{ ended: Promise<void> }> {
    const res = await this.send('POST', `/containers/${id}/attach?stream=1&stdout=1&stderr=1`, { signal });
    return { ended: demuxStream(res, stdout, stderr).catch(() => {}) };
  }

  async startContainer(id: string, signal?: AbortSignal): Promise<void> {
    await this.call('POST', `/containers/${id}/start`, { signal });
  }

  /** Waits for the container to stop; its exit status. */
  async waitContainer(id: string, signal?: AbortSignal): Promise<number> {
    const answer = parseJson(await this.call('POST', `/containers/${id}/wait`, { signal }));
    const code = answer?.['StatusCode'];
    return typeof code === 'number' ? code : 1;
  }

  /** Removes the container, running or not, with its anonymous volumes. */
  async removeContainer(id: string, signal?: AbortSignal): Promise<void> {
    await this.call('DELETE', `/containers/${id}?force=1&v=1`, { signal });
  }

  /** Extracts a tar into the container at `dir`. */
  async putArchive(id: string, dir: string, tar: Readable, signal?: AbortSignal): Promise<void> {
    await this.call('PUT', `/containers/${id}/archive?path=${encodeURIComponent(dir)}`, {
      body: tar,
      headers: { 'Content-Type': 'application/x-tar' },
      signal,
    });
  }

  /** `path` in the container, as a tar stream. */
  async getArchive(id: string, path: string, signal?: AbortSignal): Promise<Readable> {
    return this.send('GET', `/containers/${id}/archive?path=${encodeURIComponent(path)}`, { signal });
  }

  /** An engine that refused or could not be reached, as one line saying what kiln was doing. */
  error(err: unknown, doing: string, hint?: string): KilnError {
    if (err instanceof KilnError) return err;
    const where = `${this.label} engine at ${this.endpoint.display}`;
    const e = err as { code?: string; name?: string } | undefined;
    const code = typeof e?.code === 'string' ? e.code : undefined;
    if (e?.name === 'AbortError' || code === 'ABORT_ERR')
      return new KilnError('E_ABORTED', `stopped while the ${where} was asked to ${doing}`, { cause: err });
    if (code !== undefined && (TLS_CODE.test(code) || code === 'EPROTO'))
      return new KilnError('E_TLS', `TLS with the ${where} failed: ${message(err)}`, {
        hint: 'DOCKER_CERT_PATH must hold ca.pem (the CA that signed the engine) and the client cert.pem and key.pem it accepts',
        cause: err,
      });
    if (code === 'ESSH')
      return new KilnError(
        'E_ENGINE',
        `cannot reach the ${this.label} engine at ${this.endpoint.display}: ssh: ${message(err)}`,
        {
          hint: `\`ssh ${(this.endpoint.options.sshArgs ?? []).join(' ')} docker system dial-stdio\` must work (keys, known hosts, docker on the far side)`,
          cause: err,
        },
      );
    if (code !== undefined && UNREACHABLE_CODE.test(code))
      return new KilnError(
        'E_ENGINE',
        `cannot reach the ${this.label} engine at ${this.endpoint.display}: ${message(err)}`,
        {
          hint: `start ${this.label}, or point ${this.endpoint.variable} at a running engine`,
          cause: err,
        },
      );
    return new KilnError('E_ENGINE', `${where}: cannot ${doing}: ${message(err)}`, {
      hint: hint ?? `\`${this.name} info\` shows the engine's state`,
      cause: err,
    });
  }

  private refused(name: string, why: string): KilnError {
    const unknownOs = /unknown operating system|operating system is not supported|unsupported os/i.test(why);
    return new KilnError('E_ENGINE', `the ${this.label} engine refused ${name}: ${why.trim()}`, {
      hint: unknownOs ? NO_CONTAINERD_HINT : `\`${this.name} info\` shows the engine's state`,
    });
  }

  private get ssh(): boolean {
    return this.endpoint.options.protocol === 'ssh';
  }

  /** One request whose answer is read whole; its body as text. Rejects with EngineAnswerError on an error status. */
  private async call(method: string, urlPath: string, opts: RequestOptions = {}): Promise<string> {
    return readText(await this.send(method, urlPath, opts));
  }

  /**
   * One request over node's http/https (or an ssh dial-stdio connection): resolves with the answer
   * once its head is in, its body left to stream. An error status rejects (EngineAnswerError).
   */
  private async send(
    method: string,
    urlPath: string,
    opts: RequestOptions = {},
  ): Promise<http.IncomingMessage> {
    const o = this.endpoint.options;
    // node:https (and with it node:tls) loads only for a TLS endpoint.
    const transport: { request: typeof http.request } =
      o.protocol === 'https' ? await import('node:https') : await import('node:http');
    let target: http.RequestOptions & { ca?: unknown; cert?: unknown; key?: unknown };
    if (o.protocol === 'ssh') {
      const { DialStdio } = await import('./ssh.js');
      const sshArgs = o.sshArgs ?? [];
      const display = this.endpoint.display;
      // No agent: the connection (and its ssh) is this request's alone.
      target = { host: 'docker', createConnection: () => new DialStdio(sshArgs, display) as never };
    } else
      target = {
        // One connection per request: nothing stays open to keep the process alive.
        agent: false,
        ...(o.socketPath !== undefined
          ? { socketPath: o.socketPath }
          : { host: o.host, port: o.port, ca: o.ca, cert: o.cert, key: o.key }),
      };
    const headers = { ...opts.headers };
    const payload = opts.json === undefined ? undefined : Buffer.from(JSON.stringify(opts.json));
    if (payload) {
      headers['Content-Type'] = 'application/json';
      headers['Content-Length'] = String(payload.length);
    }
    const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
      const req = transport.request(
        { ...target, method, path: urlPath, headers, ...(opts.signal ? { signal: opts.signal } : {}) },
        resolve,
      );
      req.on('error', reject);
      const body = opts.body;
      if (body) {
        body.on('error', (err) => {
          req.destroy(err);
          reject(err);
        });
        body.pipe(req);
      } else req.end(payload);
    });
    const status = res.statusCode ?? 0;
    if (status >= 200 && status < 300) return res;
    const text = await readText(res).catch(() => '');
    throw new EngineAnswerError(status, parseJson(text), text);
  }
}

/**
 * Splits the Engine API's multiplexed stream (a container's output without a TTY) into stdout and
 * stderr: frames of an 8-byte head (stream: 1 stdout, 2 stderr; 3 zero bytes; the size, big-endian)
 * and that many bytes. Waits for a full output stream to drain.
 */
export async function demuxStream(
  raw: Readable,
  stdout: Writable | NodeJS.WritableStream,
  stderr: Writable | NodeJS.WritableStream,
): Promise<void> {
  const head = Buffer.alloc(8);
  let have = 0;
  let remaining = 0;
  let target = stdout;
  for await (const chunk of raw as AsyncIterable<Buffer>) {
    let off = 0;
    while (off < chunk.length) {
      if (remaining > 0) {
        const n = Math.min(remaining, chunk.length - off);
        const full = !target.write(chunk.subarray(off, off + n));
        off += n;
        remaining -= n;
        if (full) await new Promise((resolve) => target.once('drain', resolve));
        continue;
      }
      const n = Math.min(8 - have, chunk.length - off);
      chunk.copy(head, have, off, off + n);
      have += n;
      off += n;
      if (have === 8) {
        have = 0;
        remaining = head.readUInt32BE(4);
        target = head[0] === 2 ? stderr : stdout;
      }
    }
  }
}

/** Node's codes for a certificate or handshake failure. */
const TLS_CODE = /^(UNABLE_TO_|SELF_SIGNED_|DEPTH_ZERO_|CERT_|ERR_TLS_|ERR_SSL_)/;
/** Node's codes for an engine that is not there (or not for us). */
const UNREACHABLE_CODE = /^(ENOENT|ECONNREFUSED|ECONNRESET|EACCES|EPERM|ETIMEDOUT|EHOSTUNREACH|ENOTFOUND)$/;

/**
 * Throws the failure in an /images/load answer: JSON lines, with {"error": ...} even under status 200.
 * `refused` makes the error of a refusal.
 */
export function checkLoadAnswer(body: string, refused: (why: string) => KilnError): void {
  for (const line of body.split('\n')) {
    if (!line.trim()) continue;
    let msg: { error?: string; message?: string };
    try {
      msg = JSON.parse(line);
    } catch {
      continue;
    }
    const error = msg.error ?? (msg.message && !line.includes('"stream"') ? msg.message : undefined);
    if (error) throw refused(error);
  }
}

function parseJson(text: string): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(text);
    return typeof v === 'object' && v !== null ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** An answer's body as text (one kiln reads whole: at most ANSWER_LIMIT bytes). */
async function readText(res: http.IncomingMessage): Promise<string> {
  const parts: Buffer[] = [];
  let size = 0;
  for await (const chunk of res as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > ANSWER_LIMIT) {
      res.destroy();
      throw new Error(`the answer is over ${ANSWER_LIMIT} bytes`);
    }
    parts.push(chunk);
  }
  return Buffer.concat(parts).toString('utf8');
}

/** The first line of an error's message (an engine's answer carries its own in `json.message`). */
export function message(err: unknown): string {
  if (err instanceof KilnError) return err.message;
  const e = err as { json?: { message?: unknown }; message?: unknown } | undefined;
  const text = typeof e?.json?.message === 'string' ? e.json.message : String(e?.message ?? err);
  return text.trim().split('\n')[0] ?? '';
}

function pingFailure(err: unknown, timeout: number): string {
  const e = err as { code?: string; name?: string } | undefined;
  if (e?.name === 'AbortError' || e?.name === 'TimeoutError' || e?.code === 'ABORT_ERR')
    return `no answer within ${timeout / 1000} s`;
  if (e?.code === 'ENOENT') return 'no such socket';
  if (e?.code === 'EACCES' || e?.code === 'EPERM') return 'permission denied on the socket';
  if (e?.code === 'ECONNREFUSED') return 'connection refused';
  return message(err);
}
