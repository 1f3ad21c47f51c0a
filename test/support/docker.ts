/**
 * A private, throw-away Docker engine for tests.
 *
 * `startDocker()` starts its own `dockerd` (we must be root) in a fresh temp dir: its own API socket,
 * data-root, exec-root, pidfile, trust key and daemon.json (so /etc/docker/daemon.json is ignored), and
 * its own containerd namespaces (dockerd reuses a system containerd at /run/containerd if one runs).
 * It never touches the host network: no docker0 bridge, no iptables rules, no ip_forward sysctl
 * (`--bridge=none --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false`), so containers
 * get only a loopback interface, and any number of engines can run side by side. An engine already
 * listening on the default socket is never used.
 *
 * `sharedDocker()` gives one engine per process (i.e. per test file: `node --test` runs each file in
 * its own process), started on first use and stopped when the process exits. Starting takes well under
 * a second, so sharing across files (a detached daemon plus reference counting) is not worth the risk
 * of leaking a daemon.
 *
 * Every engine is also stopped synchronously at process exit or on SIGINT/SIGTERM, should a test not
 * stop it: dockerd is killed, leftover containerd/shim processes it started are killed by pid,
 * mounts under its temp dir are unmounted and the dir is removed.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { basename, dirname, join } from 'node:path';
import { freePort } from './net.js';
import { daemonSet, type RunningDaemon, shortTempBase, spawnService } from './processes.js';
import { makeCa, SERVER_EXT, signCert } from './tls.js';
import { findTool, type RunOptions, type RunResult, requireTool, run, skipOrFail } from './tools.js';

/** A DOCKER_HOST no engine answers at: a runner that needs an engine cannot start. */
export const NO_ENGINE = 'unix:///nonexistent/kiln-test-docker.sock';

export interface DockerEngine {
  /** DOCKER_HOST value for this engine: `unix:///…/docker.sock`. */
  readonly host: string;
  readonly socketPath: string;
  /** The engine's temp dir (holds data-root, exec-root, log, CLI config); removed by stop(). */
  readonly dir: string;
  /** dockerd's stdout+stderr. */
  readonly logPath: string;
  /** The docker CLI binary used by docker(). */
  readonly cli: string;
  /** Environment that points a docker CLI at this engine (DOCKER_HOST, isolated DOCKER_CONFIG). */
  readonly env: NodeJS.ProcessEnv;
  /** With `tls`: the engine's tcp+TLS endpoint as a client sees it. */
  readonly tls?: DockerTls;
  /** Runs the docker CLI against this engine; never rejects on a non-zero exit. */
  docker(args: string[], opts?: RunOptions): Promise<RunResult>;
  /** Stops dockerd and removes its temp dir. Idempotent. */
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

export interface StartDockerOptions {
  /** Milliseconds to wait for the API to answer (default 60 000). */
  timeoutMs?: number;
  /** Extra dockerd arguments (e.g. `--storage-driver=vfs`). */
  extraArgs?: string[];
  /**
   * Also listen on tcp://127.0.0.1:PORT (a free port) with TLS that verifies clients (`--tlsverify`),
   * with certificates of a test CA made by openssl for this engine.
   */
  tls?: boolean;
}

/** A tcp+TLS endpoint of a private engine. */
export interface DockerTls {
  /** `tcp://127.0.0.1:PORT`. */
  host: string;
  /** A DOCKER_CERT_PATH: ca.pem (the test CA), cert.pem and key.pem (a client certificate it signed). */
  certPath: string;
  /** DOCKER_HOST, DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH, as the docker CLI reads them. */
  env: Record<string, string>;
}

/**
 * Why a private Docker engine cannot be started here (not root, dockerd/containerd/runc missing), as a
 * skip reason; undefined if it can. Throws in CI, where a missing prerequisite is a failure.
 */
export function dockerSkipReason(): string | undefined {
  if (process.getuid?.() !== 0) return skipOrFail('starting a private dockerd needs root');
  for (const tool of ['dockerd', 'containerd', 'runc']) {
    if (requireTool(tool) === undefined) return skipOrFail(`'${tool}' not found (apt-get install docker.io)`);
  }
  if (dockerCli() === undefined) return skipOrFail(`docker CLI not found (apt-get install docker.io)`);
  return undefined;
}

/**
 * The docker CLI: $KILN_DOCKER_CLI, else the one installed next to dockerd (same package and version,
 * e.g. /usr/bin/docker for /usr/sbin/dockerd), else the first `docker` on PATH.
 */
function dockerCli(): string | undefined {
  const override = process.env['KILN_DOCKER_CLI'];
  if (override) return findTool(override);
  const dockerd = findTool('dockerd');
  if (dockerd !== undefined) {
    const sbin = dirname(dockerd);
    for (const candidate of [join(sbin, 'docker'), join(dirname(sbin), 'bin', 'docker')]) {
      const found = findTool(candidate);
      if (found !== undefined) return found;
    }
  }
  return findTool('docker');
}

/** Stopped with SIGTERM, SIGKILL after 15 s. */
const daemons = daemonSet(15_000);

function ping(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request({ socketPath, path: '/_ping', method: 'GET', timeout: 2_000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode === 200));
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => {
      req.destroy();
      resolve(false);
    });
    req.end();
  });
}

function logTail(logPath: string, lines = 40): string {
  try {
    return readFileSync(logPath, 'utf8')
      .split('\n')
      .filter((l) => !l.includes('module=grpc'))
      .slice(-lines)
      .join('\n');
  } catch {
    return '(no log)';
  }
}

/** Starts a private dockerd and resolves once `docker version` answers. Stop it with stop(). */
export async function startDocker(opts: StartDockerOptions = {}): Promise<DockerEngine> {
  const reason = dockerSkipReason();
  if (reason !== undefined) throw new Error(`cannot start a private docker engine: ${reason}`);
  const dockerd = findTool('dockerd')!;
  const cli = dockerCli()!;
  const timeoutMs = opts.timeoutMs ?? 60_000;

  const dir = mkdtempSync(join(shortTempBase(), 'kd-'));
  const id = basename(dir); // unique: names the containerd namespaces
  const socketPath = join(dir, 'docker.sock');
  const host = `unix://${socketPath}`;
  const logPath = join(dir, 'dockerd.log');
  const configFile = join(dir, 'daemon.json');
  const cliConfig = join(dir, 'cli');
  for (const sub of ['data', 'exec', 'cli']) mkdirSync(join(dir, sub));
  const tls = opts.tls ? await makeTls(join(dir, 'tls')) : undefined;
  // Own trust key (dockerd 20.10 otherwise writes /etc/docker/key.json); only settable in daemon.json.
  writeFileSync(configFile, `${JSON.stringify({ 'deprecated-key-path': join(dir, 'key.json') })}\n`);
  writeFileSync(join(cliConfig, 'config.json'), '{}\n');

  const args = [
    `--config-file=${configFile}`,
    `--host=${host}`,
    `--data-root=${join(dir, 'data')}`,
    `--exec-root=${join(dir, 'exec')}`,
    `--pidfile=${join(dir, 'docker.pid')}`,
    `--containerd-namespace=${id}`,
    `--containerd-plugins-namespace=${id}-plugins`,
    '--bridge=none',
    '--iptables=false',
    '--ip6tables=false',
    '--ip-forward=false',
    '--ip-masq=false',
    '--shutdown-timeout=2',
    ...(tls?.args ?? []),
    ...(opts.extraArgs ?? []),
  ];
  const path = [process.env['PATH'] ?? '', '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin']
    .filter((p) => p !== '')
    .join(':');
  let spawnError: Error | undefined;
  // No handles keep the test process alive: a forgotten engine is stopped by the exit hook.
  const env0 = { ...process.env, PATH: path };
  const child = spawnService(dockerd, args, logPath, { env: env0, flags: 'a' }, (e) => {
    spawnError ??= e;
    running.exited = true;
  });
  const running: RunningDaemon = { dir, child, exited: false };
  daemons.track(running);

  const env: NodeJS.ProcessEnv = { ...process.env, DOCKER_HOST: host, DOCKER_CONFIG: cliConfig };
  for (const k of ['DOCKER_CONTEXT', 'DOCKER_TLS_VERIFY', 'DOCKER_CERT_PATH', 'DOCKER_API_VERSION'])
    delete env[k];

  const engine: DockerEngine = {
    host,
    socketPath,
    dir,
    logPath,
    cli,
    env,
    ...(tls ? { tls: tls.endpoint } : {}),
    docker: (dockerArgs, runOpts = {}) =>
      run(cli, dockerArgs, { ...runOpts, env: { ...env, ...runOpts.env, DOCKER_HOST: host } }),
    stop: () => daemons.stop(running),
    [Symbol.asyncDispose]: () => daemons.stop(running),
  };

  const fail = async (why: string): Promise<never> => {
    const log = logTail(logPath);
    await daemons.stop(running);
    throw new Error(
      `private dockerd ${why}\n--- ${dockerd} ${args.join(' ')}\n--- dockerd log (tail):\n${log}`,
    );
  };

  const started = Date.now();
  for (;;) {
    if (running.exited) {
      await fail(
        spawnError ? `could not be started: ${spawnError.message}` : `exited early (code ${child.exitCode})`,
      );
    }
    if (existsSync(socketPath) && (await ping(socketPath))) break;
    if (Date.now() - started > timeoutMs) await fail(`did not answer within ${timeoutMs} ms`);
    await new Promise((res) => setTimeout(res, 50));
  }
  const version = await engine.docker(['version', '--format', '{{.Server.Version}}'], { timeoutMs: 30_000 });
  if (version.code !== 0) await fail(`answers /_ping but 'docker version' failed: ${version.stderr.trim()}`);
  return engine;
}

/**
 * A test CA, a server certificate for 127.0.0.1 and a client certificate, both signed by it (EC keys),
 * in `dir`: dockerd's `--tlsverify` arguments for a free port, and the client's endpoint.
 */
async function makeTls(dir: string): Promise<{ args: string[]; endpoint: DockerTls }> {
  const certPath = join(dir, 'client');
  mkdirSync(certPath, { recursive: true });
  const ca = await makeCa(dir, join(certPath, 'ca.pem'), '/CN=kiln test engine CA');
  const serverCert = join(dir, 'server-cert.pem');
  const serverKey = join(dir, 'server-key.pem');
  await signCert(ca, 'localhost', serverKey, serverCert, SERVER_EXT);
  await signCert(ca, 'kiln-test-client', join(certPath, 'key.pem'), join(certPath, 'cert.pem'), [
    'keyUsage=critical,digitalSignature',
    'extendedKeyUsage=clientAuth',
  ]);
  const host = `tcp://127.0.0.1:${await freePort()}`;
  return {
    args: [
      `--host=${host}`,
      '--tlsverify',
      `--tlscacert=${ca.ca}`,
      `--tlscert=${serverCert}`,
      `--tlskey=${serverKey}`,
    ],
    endpoint: {
      host,
      certPath,
      env: { DOCKER_HOST: host, DOCKER_TLS_VERIFY: '1', DOCKER_CERT_PATH: certPath },
    },
  };
}

let shared: Promise<DockerEngine> | undefined;

/**
 * One private engine per process (per test file), started on first call and stopped at process exit.
 * Its stop() and asyncDispose are no-ops, so `await using` in one test cannot pull it from under
 * another; tests that need a pristine engine use startDocker().
 */
export function sharedDocker(): Promise<DockerEngine> {
  if (shared === undefined) {
    const starting = startDocker().then(
      (engine): DockerEngine => ({
        ...engine,
        stop: async () => {},
        [Symbol.asyncDispose]: async () => {},
      }),
    );
    starting.catch(() => {
      if (shared === starting) shared = undefined; // let a later call retry
    });
    shared = starting;
  }
  return shared;
}
