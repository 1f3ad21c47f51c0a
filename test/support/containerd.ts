/**
 * A private, throw-away containerd for tests, driven with `ctr`.
 *
 * `startContainerd()` starts the `containerd` binary (we must be root) in a fresh temp dir under a short
 * base (see shortTempBase): its own root (content store, snapshots, metadata), state dir, gRPC and ttrpc
 * sockets, and a generated config (version 2), so /etc/containerd/config.toml and a system containerd
 * at /run/containerd are never used. Plugins a test does not need are disabled: the CRI plugin (which
 * would set up CNI and a streaming server), the aufs/btrfs/devmapper/zfs snapshotters and the v1 linux
 * runtime; the `opt` plugin, which installs into /opt/containerd by default, gets a dir of its own. No
 * debug or metrics listener, no tcp address. It answers in well under a second.
 *
 * `ctr(args)` runs `ctr --address SOCKET args` with the CONTAINERD_* environment variables removed (so a
 * caller's CONTAINERD_NAMESPACE or _SNAPSHOTTER cannot leak in), in the `default` namespace. When the
 * overlayfs snapshotter cannot work on the temp dir's file system (an overlayfs /tmp in a container),
 * `snapshotter` is `native` and ctr is told so through CONTAINERD_SNAPSHOTTER.
 *
 * `stop()` (and process exit or SIGINT/SIGTERM, should a test not call it, as for docker.ts) stops
 * containerd, kills the shims it started (any process whose command line names its dir), unmounts what
 * is mounted under its dir and removes the dir. A test that runs containers through it (`ctr run`)
 * should know that containerd 1.6 puts shim sockets under /run/containerd/s whatever its state dir.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { daemonSet, type RunningDaemon, shortTempBase, spawnService } from './processes.js';
import { findTool, type RunOptions, type RunResult, run, skipOrFail, toolSkipReason } from './tools.js';

export interface Containerd {
  /** The gRPC socket, as `ctr --address` takes it. */
  readonly address: string;
  /** The daemon's temp dir (root, state, config, log); removed by stop(). Mount test targets here. */
  readonly dir: string;
  /** containerd's stdout+stderr. */
  readonly logPath: string;
  /** The snapshotter ctr uses: `overlayfs` (containerd's default) or, where that cannot work, `native`. */
  readonly snapshotter: 'overlayfs' | 'native';
  /** Runs `ctr --address SOCKET ...args`; never rejects on a non-zero exit. */
  ctr(args: string[], opts?: RunOptions): Promise<RunResult>;
  /** Stops containerd and its shims, unmounts and removes its temp dir. Idempotent. */
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

export interface StartContainerdOptions {
  /** Milliseconds to wait for `ctr version` to answer (default 30 000). */
  timeoutMs?: number;
}

/**
 * Why a private containerd cannot be started here (not root, containerd or ctr missing), as a skip
 * reason; undefined if it can. Throws in CI, where a missing prerequisite is a failure.
 */
export function containerdSkipReason(): string | undefined {
  if (process.getuid?.() !== 0) return skipOrFail('starting a private containerd needs root');
  return toolSkipReason('containerd', 'ctr');
}

/** Plugins no test needs; the CRI plugin first (it would set up CNI and listen for streaming). */
const DISABLED_PLUGINS = [
  'io.containerd.grpc.v1.cri',
  'io.containerd.snapshotter.v1.aufs',
  'io.containerd.snapshotter.v1.btrfs',
  'io.containerd.snapshotter.v1.devmapper',
  'io.containerd.snapshotter.v1.zfs',
  'io.containerd.runtime.v1.linux',
];

/** TOML basic string. */
const toml = (s: string): string => JSON.stringify(s);

/** The config containerd is started with: everything under `dir`, nothing the tests do not need. */
function configFor(dir: string, address: string): string {
  return [
    'version = 2',
    `root = ${toml(join(dir, 'root'))}`,
    `state = ${toml(join(dir, 'state'))}`,
    `disabled_plugins = [${DISABLED_PLUGINS.map(toml).join(', ')}]`,
    '',
    '[grpc]',
    `  address = ${toml(address)}`,
    '  tcp_address = ""',
    '[ttrpc]',
    `  address = ${toml(`${address}.ttrpc`)}`,
    '[debug]',
    '  address = ""',
    '[metrics]',
    '  address = ""',
    '',
    '[plugins]',
    '  [plugins."io.containerd.internal.v1.opt"]',
    `    path = ${toml(join(dir, 'opt'))}`,
    '',
  ].join('\n');
}

/** Stopped with SIGTERM, SIGKILL after 10 s. */
const daemons = daemonSet(10_000);

function logTail(logPath: string, lines = 40): string {
  try {
    return readFileSync(logPath, 'utf8').trimEnd().split('\n').slice(-lines).join('\n') || '(empty log)';
  } catch {
    return '(no log)';
  }
}

/** `ctr`'s environment: no CONTAINERD_* variable of the caller's. */
function ctrEnv(base: NodeJS.ProcessEnv, snapshotter: string | undefined): NodeJS.ProcessEnv {
  const env = { ...base };
  for (const k of Object.keys(env)) if (k.startsWith('CONTAINERD_')) delete env[k];
  if (snapshotter !== undefined) env['CONTAINERD_SNAPSHOTTER'] = snapshotter;
  return env;
}

/** Starts a private containerd and resolves once `ctr version` answers. Stop it with stop(). */
export async function startContainerd(opts: StartContainerdOptions = {}): Promise<Containerd> {
  const reason = containerdSkipReason();
  if (reason !== undefined) throw new Error(`cannot start a private containerd: ${reason}`);
  const containerd = findTool('containerd')!;
  const ctr = findTool('ctr')!;
  const timeoutMs = opts.timeoutMs ?? 30_000;

  const dir = mkdtempSync(join(shortTempBase(), 'kc-'));
  const address = join(dir, 'c.sock'); // e.g. /tmp/kc-AbC123/c.sock.ttrpc: far below 108 bytes
  const logPath = join(dir, 'containerd.log');
  const configPath = join(dir, 'config.toml');
  mkdirSync(join(dir, 'opt'));
  writeFileSync(configPath, configFor(dir, address));

  const args = ['--config', configPath];
  let spawnError: Error | undefined;
  const child = spawnService(
    containerd,
    args,
    logPath,
    { env: ctrEnv(process.env, undefined), flags: 'w' },
    (e) => {
      spawnError ??= e;
      running.exited = true;
    },
  );
  const running: RunningDaemon = { dir, child, exited: false };
  daemons.track(running);

  let snapshotterEnv: string | undefined;
  const ctrRun = (ctrArgs: string[], runOpts: RunOptions = {}) =>
    run(ctr, ['--address', address, ...ctrArgs], {
      ...runOpts,
      env: ctrEnv({ ...process.env, ...runOpts.env }, snapshotterEnv),
    });

  const fail = async (why: string): Promise<never> => {
    const log = logTail(logPath);
    await daemons.stop(running);
    throw new Error(
      `private containerd ${why}\n--- ${containerd} ${args.join(' ')}\n--- config:\n${configFor(dir, address)}` +
        `--- containerd log (tail):\n${log}`,
    );
  };

  const started = Date.now();
  for (;;) {
    if (running.exited) {
      await fail(
        spawnError ? `could not be started: ${spawnError.message}` : `exited early (code ${child.exitCode})`,
      );
    }
    if (existsSync(address)) {
      const version = await ctrRun(['version'], { timeoutMs: 10_000 });
      if (version.code === 0 && version.stdout.includes('Server:')) break;
    }
    if (Date.now() - started > timeoutMs) await fail(`did not answer 'ctr version' within ${timeoutMs} ms`);
    await new Promise((res) => setTimeout(res, 50));
  }

  // containerd's default snapshotter, unless it could not load here (overlay on an overlayfs /tmp).
  const plugins = await ctrRun(['plugins', 'ls'], { timeoutMs: 10_000 });
  if (plugins.code !== 0) await fail(`answers but 'ctr plugins ls' failed: ${plugins.stderr.trim()}`);
  const overlay = /^io\.containerd\.snapshotter\.v1\s+overlayfs\s+\S+\s+(\S+)/m.exec(plugins.stdout)?.[1];
  const snapshotter = overlay === 'ok' ? 'overlayfs' : 'native';
  if (snapshotter === 'native') snapshotterEnv = 'native';

  return {
    address,
    dir,
    logPath,
    snapshotter,
    ctr: ctrRun,
    stop: () => daemons.stop(running),
    [Symbol.asyncDispose]: () => daemons.stop(running),
  };
}
