/**
 * kiln's one Docker Engine API client, for Docker and for Podman's compatible service, at any endpoint
 * `engineEndpoint` resolves (unix, tcp, tcp+TLS, ssh). The `docker-daemon:` transport uses it to ask
 * the engine what it can load (/info) and to load images; the docker/podman runner also looks images
 * up and runs its containers through it.
 *
 * Start-up cost decides the split: the small requests (ping, /info, image inspect, /images/load) go
 * over node's own http/https on unix and tcp endpoints, so `kiln copy ... docker-daemon:` never loads
 * dockerode (~230 ms). dockerode loads on first use of `docker()`: for containers (attach and its
 * stream framing), and for every request to an ssh endpoint (its ssh2 transport runs
 * `docker system dial-stdio` on the far side).
 *
 * Every failure is a KilnError: E_ENGINE when the engine cannot be reached or fails a request, E_TLS
 * when the TLS handshake with it fails, E_ABORTED when the caller's signal stopped the request.
 */
import { createReadStream, existsSync } from 'node:fs';
import type * as http from 'node:http';
import type { Readable } from 'node:stream';
import type Dockerode from 'dockerode';
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

const PING_TIMEOUT_MS = 1_500;
/** ssh needs a key exchange before the engine can answer. */
const SSH_PING_TIMEOUT_MS = 5_000;
/** Largest answer read whole (errors, /info, image inspect, the load's progress lines). */
const ANSWER_LIMIT = 4 * 1024 * 1024;

export const NO_CONTAINERD_HINT =
  'this engine stores images without containerd, which rejects os wasip1/wasi; enable the containerd image store ' +
  '(Docker Desktop, or "features": {"containerd-snapshotter": true} in daemon.json), or use --platform linux/amd64 for a loadable image';

/** What dockerode's typings leave out: ping and info take an abort signal. */
interface Abortable {
  ping(options: { abortSignal: AbortSignal }): Promise<unknown>;
  info(options: { abortSignal: AbortSignal | undefined }): Promise<Record<string, unknown>>;
}

/** A request's options: a body streamed up, and a signal that stops it. */
interface RequestOptions {
  body?: Readable;
  headers?: Record<string, string>;
  signal?: AbortSignal | undefined;
}

/** An answer the engine gave with an error status, shaped like dockerode's errors. */
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
  private dockerode: Promise<Dockerode> | undefined;

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

  /** dockerode for this endpoint, loaded and set up on first use. */
  docker(): Promise<Dockerode> {
    this.dockerode ??= (async () => {
      const { default: Docker } = await import('dockerode');
      try {
        const docker = new Docker(this.endpoint.options);
        if (this.ssh) quietSshUrls(docker.modem as unknown as Dialer);
        return docker;
      } catch (err) {
        // docker-modem still reads DOCKER_HOST and DOCKER_CERT_PATH on its own, and throws on bad ones.
        throw new KilnError(
          'E_ENGINE',
          `cannot set up a connection to the ${this.label} engine at ${this.endpoint.display}: ${message(err)}`,
          { cause: err },
        );
      }
    })();
    return this.dockerode;
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
      if (this.ssh) await ((await this.docker()) as unknown as Abortable).ping({ abortSignal: signal });
      else {
        const { status, text } = await this.request('GET', '/_ping', { signal });
        if (status !== 200) throw new EngineAnswerError(status, parseJson(text), text);
      }
      return undefined;
    } catch (err) {
      if (err instanceof KilnError) return err.message;
      return `no ${this.label} engine answers at ${this.endpoint.display} (${pingFailure(err, timeout)})`;
    }
  }

  /** The engine's /info: its os, version, whether it keeps images in containerd, whether it is rootless. */
  async info(signal?: AbortSignal): Promise<EngineInfo> {
    const doing = 'read the engine information';
    let info: {
      OSType?: unknown;
      ServerVersion?: unknown;
      DriverStatus?: unknown;
      SecurityOptions?: unknown;
    };
    try {
      if (this.ssh)
        info = await ((await this.docker()) as unknown as Abortable).info({ abortSignal: signal });
      else {
        const { status, text } = await this.request('GET', '/info', { signal });
        const json = parseJson(text);
        if (status !== 200) throw new EngineAnswerError(status, json, text);
        if (typeof json !== 'object' || json === null)
          throw new Error('the answer to /info is not a JSON object');
        info = json;
      }
    } catch (err) {
      throw this.error(err, doing);
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
      // dockerode's image inspect takes no signal (its options become the query).
      if (this.ssh) id = (await (await this.docker()).getImage(name).inspect()).Id;
      else {
        const { status, text } = await this.request('GET', `/images/${name}/json`, { signal });
        const json = parseJson(text);
        if (status !== 200) throw new EngineAnswerError(status, json, text);
        id = json?.['Id'];
      }
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
    const doing = `load ${name}`;
    let status = 200;
    let text: string;
    try {
      if (this.ssh) {
        const docker = await this.docker();
        const answer = await docker.loadImage(createReadStream(file), { quiet: true, abortSignal: signal });
        text = await readText(answer);
      } else {
        ({ status, text } = await this.request('POST', '/images/load?quiet=1', {
          body: createReadStream(file),
          headers: { 'Content-Type': 'application/x-tar' },
          signal,
        }));
      }
    } catch (err) {
      const refusal = (err as { json?: { message?: unknown } }).json?.message;
      if (typeof refusal === 'string') throw this.refused(name, refusal);
      throw this.error(err, doing);
    }
    checkLoadAnswer(text, (why) => this.refused(name, why));
    if (status >= 300) throw this.refused(name, `HTTP ${status} ${text.trim().slice(0, 200)}`);
  }

  /** Creates a container (dockerode's, for attach, start, wait, archives, remove). Errors are dockerode's: pass them to `error`. */
  async createContainer(spec: Dockerode.ContainerCreateOptions): Promise<Dockerode.Container> {
    return (await this.docker()).createContainer(spec);
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

  /** One request over node's http/https (unix and tcp endpoints): the status and the body, read whole. */
  private async request(
    method: string,
    urlPath: string,
    opts: RequestOptions = {},
  ): Promise<{ status: number; text: string }> {
    const o = this.endpoint.options;
    // node:https (and with it node:tls) loads only for a TLS endpoint.
    const transport: { request: typeof http.request } =
      o.protocol === 'https' ? await import('node:https') : await import('node:http');
    const target: http.RequestOptions & { ca?: unknown; cert?: unknown; key?: unknown } =
      o.socketPath !== undefined
        ? { socketPath: o.socketPath }
        : { host: o.host, port: o.port, ca: o.ca, cert: o.cert, key: o.key };
    return new Promise((resolve, reject) => {
      const req = transport.request(
        {
          ...target,
          method,
          path: urlPath,
          headers: { ...opts.headers },
          // One connection per request: nothing stays open to keep the process alive.
          agent: false,
          ...(opts.signal ? { signal: opts.signal } : {}),
        },
        (res) => {
          const parts: Buffer[] = [];
          let size = 0;
          res.on('data', (chunk: Buffer) => {
            size += chunk.length;
            if (size > ANSWER_LIMIT) {
              res.destroy(new Error(`the answer to ${method} ${urlPath} is over ${ANSWER_LIMIT} bytes`));
              return;
            }
            parts.push(chunk);
          });
          res.on('end', () =>
            resolve({ status: res.statusCode ?? 0, text: Buffer.concat(parts).toString('utf8') }),
          );
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      const body = opts.body;
      if (body) {
        body.on('error', (err) => {
          req.destroy(err);
          reject(err);
        });
        body.pipe(req);
      } else req.end();
    });
  }
}

interface Dialer {
  dial(...args: unknown[]): unknown;
}

/**
 * docker-modem builds an invalid URL for every ssh request (`ssh:HOST:PORTHOST`: only the ssh agent
 * is used, the URL's host and port never are), and node's url.parse warns about it (DEP0170) on the
 * user's terminal. That warning alone is dropped, while a request is dialled: dial parses
 * synchronously, so nothing else runs meanwhile. This modem only (no global change).
 */
function quietSshUrls(modem: Dialer): void {
  const dial = modem.dial.bind(modem);
  modem.dial = (...args: unknown[]) => {
    const emitWarning = process.emitWarning;
    process.emitWarning = function (this: NodeJS.Process, warning: string | Error, ...rest: unknown[]) {
      const opt = rest[0];
      const code = typeof opt === 'string' ? rest[1] : (opt as { code?: unknown } | undefined)?.code;
      if (code === 'DEP0170') return;
      return (emitWarning as (...a: unknown[]) => void).call(this, warning, ...rest);
    } as typeof process.emitWarning;
    try {
      return dial(...args);
    } finally {
      process.emitWarning = emitWarning;
    }
  };
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

async function readText(stream: NodeJS.ReadableStream): Promise<string> {
  let text = '';
  for await (const chunk of stream) text += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString();
  return text;
}

/** The first line of an error's message (dockerode's errors carry the engine's in `json.message`). */
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
