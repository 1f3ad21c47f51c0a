/**
 * Where a Docker Engine API answers (Docker itself, or Podman's compatible service), worked out from
 * the environment the way the docker CLI does. One function for both engines and every endpoint kind:
 * unix sockets, tcp (TLS with DOCKER_TLS_VERIFY or the TLS port), ssh.
 */
import { existsSync, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { KilnError } from '../errors.js';

export type EngineName = 'docker' | 'podman';

export const ENGINE_LABEL = { docker: 'Docker', podman: 'Podman' } as const;

export interface EngineEndpoint {
  engine: EngineName;
  /** For messages: `unix:///var/run/docker.sock`, `tcp://host:2376`, `ssh://user@host`. */
  display: string;
  /** The variable that names it (and that a hint tells the user to set): DOCKER_HOST or CONTAINER_HOST. */
  variable: 'DOCKER_HOST' | 'CONTAINER_HOST';
  /** tcp:// and ssh:// engines are taken to be on another machine (the runner then copies files). */
  remote: boolean;
  /** How to connect: a unix socket, tcp (TLS with ca/cert/key), or ssh to `host` running `docker system dial-stdio`. */
  options: EndpointOptions;
}

export interface EndpointOptions {
  socketPath?: string | undefined;
  host?: string | undefined;
  port?: number;
  protocol: 'http' | 'https' | 'ssh';
  /** ssh: the login name shown (the URL's, or the local user's). */
  username?: string;
  /** ssh: where to log in, as `ssh` takes it: `-l USER` and `-p PORT` only when the URL names them (else ssh's config decides), then `-- HOST`. */
  sshArgs?: string[];
  ca?: Buffer | undefined;
  cert?: Buffer | undefined;
  key?: Buffer | undefined;
}

/**
 * The engine's endpoint: DOCKER_HOST (podman: CONTAINER_HOST first) as `unix://PATH`, `tcp://HOST[:PORT]`
 * (TLS with DOCKER_TLS_VERIFY, certificates from DOCKER_CERT_PATH or ~/.docker) or `ssh://[USER@]HOST[:PORT]`;
 * unset, the engine's default socket. Throws E_UNSUPPORTED for other schemes, E_TLS for unreadable certificates.
 */
export function engineEndpoint(engine: EngineName, env: NodeJS.ProcessEnv = process.env): EngineEndpoint {
  const variable = engine === 'podman' && env['CONTAINER_HOST'] ? 'CONTAINER_HOST' : 'DOCKER_HOST';
  const value = env[variable];
  if (!value) return unixEndpoint(engine, variable, defaultSocket(engine, env));
  if (value.startsWith('unix://'))
    return unixEndpoint(engine, variable, value.slice('unix://'.length) || defaultSocket(engine, env));
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw unsupportedHost(variable, value);
  }
  const none = { socketPath: undefined, ca: undefined, cert: undefined, key: undefined };
  if (url.protocol === 'tcp:') {
    const verify = Boolean(env['DOCKER_TLS_VERIFY']);
    // The docker CLI's rule: DOCKER_TLS_VERIFY, or the TLS port.
    const tls = verify || url.port === '2376';
    const port = Number(url.port || (tls ? 2376 : 2375));
    const options: EngineEndpoint['options'] = {
      ...none,
      host: url.hostname,
      port,
      protocol: tls ? 'https' : 'http',
    };
    if (tls) Object.assign(options, tlsFiles(env, verify));
    return { engine, variable, display: `tcp://${url.host || url.hostname}`, remote: true, options };
  }
  if (url.protocol === 'ssh:') {
    // ssh runs `docker system dial-stdio` on the far side: there is no such thing for podman.
    if (engine === 'podman')
      throw new KilnError('E_UNSUPPORTED', `${variable}=${value}: kiln cannot reach Podman over ssh://`, {
        hint: 'forward the socket (ssh -L /tmp/podman.sock:/run/user/UID/podman/podman.sock HOST) and set CONTAINER_HOST=unix:///tmp/podman.sock',
      });
    const username = decodeURIComponent(url.username) || os.userInfo().username;
    return {
      engine,
      variable,
      display: `ssh://${username}@${url.host}`,
      remote: true,
      options: {
        ...none,
        host: url.hostname,
        port: Number(url.port || 22),
        protocol: 'ssh',
        username,
        sshArgs: [
          ...(url.username ? ['-l', decodeURIComponent(url.username)] : []),
          ...(url.port ? ['-p', url.port] : []),
          '--',
          url.hostname.replace(/^\[(.*)\]$/, '$1'),
        ],
      },
    };
  }
  throw unsupportedHost(variable, value);
}

function unixEndpoint(
  engine: EngineName,
  variable: EngineEndpoint['variable'],
  socketPath: string,
): EngineEndpoint {
  return {
    engine,
    variable,
    display: `unix://${socketPath}`,
    remote: false,
    options: {
      socketPath,
      host: undefined,
      protocol: 'http',
      ca: undefined,
      cert: undefined,
      key: undefined,
    },
  };
}

function unsupportedHost(variable: string, value: string): KilnError {
  return new KilnError(
    'E_UNSUPPORTED',
    `${variable}=${value} is not supported (unix://, tcp:// and ssh:// are)`,
    {
      hint: `set ${variable} to unix:///PATH/TO/SOCKET, tcp://HOST:PORT or ssh://HOST`,
    },
  );
}

function defaultSocket(engine: EngineName, env: NodeJS.ProcessEnv): string {
  if (engine === 'docker') {
    // Docker Desktop's per-user socket, as the docker CLI looks for it.
    const user = path.join(os.homedir(), '.docker', 'run', 'docker.sock');
    return existsSync(user) ? user : '/var/run/docker.sock';
  }
  const runtime = env['XDG_RUNTIME_DIR'];
  const rootless = runtime ? path.join(runtime, 'podman', 'podman.sock') : undefined;
  if (rootless && existsSync(rootless)) return rootless;
  const rootful = '/run/podman/podman.sock';
  return existsSync(rootful) ? rootful : (rootless ?? rootful);
}

function tlsFiles(env: NodeJS.ProcessEnv, required: boolean): { ca?: Buffer; cert?: Buffer; key?: Buffer } {
  const dir = env['DOCKER_CERT_PATH'] || path.join(os.homedir(), '.docker');
  const read = (name: string): Buffer | undefined => {
    try {
      return readFileSync(path.join(dir, name));
    } catch (err) {
      if (!required) return undefined;
      throw new KilnError('E_TLS', `DOCKER_TLS_VERIFY is set but ${path.join(dir, name)} cannot be read`, {
        hint: 'set DOCKER_CERT_PATH to the directory holding ca.pem, cert.pem and key.pem',
        cause: err,
      });
    }
  };
  const files = { ca: read('ca.pem'), cert: read('cert.pem'), key: read('key.pem') };
  return Object.fromEntries(Object.entries(files).filter(([, v]) => v !== undefined));
}
