/**
 * Service processes the tests start (dockerd, containerd, docker-registry): stopped gracefully when a
 * test asks, and synchronously at process exit or on SIGINT/SIGTERM when it doesn't, so none outlives
 * its test; what a daemon left behind (shims, mounts) is removed with its dir.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { closeSync, openSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';

const sweeps = new Set<() => void>();
let hooksInstalled = false;

function sweepAll(): void {
  for (const sweep of sweeps) sweep();
}

function installExitHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', sweepAll);
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    const onSignal = () => {
      sweepAll();
      process.off(sig, onSignal);
      process.kill(process.pid, sig);
    };
    process.on(sig, onSignal);
  }
}

/**
 * A set of running things that `cleanupSync` is called on at exit, for those still in it. Callers
 * add what they start and delete what they stopped.
 */
export function exitSet<T>(cleanupSync: (item: T) => void): Set<T> {
  const live = new Set<T>();
  sweeps.add(() => {
    for (const item of [...live]) cleanupSync(item);
  });
  installExitHooks();
  return live;
}

export function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Alive and not a zombie (a dead child stays a zombie until the event loop reaps it). */
export function pidAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

/** For process exit: SIGTERM, wait up to `graceMs`, SIGKILL, wait up to `killMs`. */
export function killSync(child: ChildProcess, graceMs: number, killMs: number, pollMs = 50): void {
  const pid = child.pid;
  if (pid === undefined || !pidAlive(pid)) return;
  child.kill('SIGTERM');
  const deadline = Date.now() + graceMs;
  while (pidAlive(pid) && Date.now() < deadline) sleepSync(pollMs);
  if (!pidAlive(pid)) return;
  child.kill('SIGKILL');
  const killDeadline = Date.now() + killMs;
  while (pidAlive(pid) && Date.now() < killDeadline) sleepSync(pollMs);
}

/** SIGTERM, then SIGKILL if it has not exited within `graceMs`; resolves once it exited (or `killMs` passed). */
export async function killAndWait(
  child: ChildProcess,
  hasExited: () => boolean,
  graceMs: number,
  killMs: number,
): Promise<void> {
  if (hasExited()) return;
  child.ref(); // keep the event loop alive while we wait for it to exit
  const exited = new Promise<void>((resolve) => {
    if (hasExited()) resolve();
    else child.once('exit', () => resolve());
  });
  const within = (ms: number) => {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((res) => {
      timer = setTimeout(res, ms, false);
    });
    return Promise.race([exited.then(() => true), timeout]).finally(() => clearTimeout(timer));
  };
  child.kill('SIGTERM');
  if (!(await within(graceMs))) {
    child.kill('SIGKILL');
    await within(killMs);
  }
}

/** A daemon running in a dir of its own (dockerd, containerd): its process, and whether it exited. */
export interface RunningDaemon {
  dir: string;
  child: ChildProcess;
  exited: boolean;
}

/**
 * Daemons of one kind: `track` one once started, `stop` it (SIGTERM, SIGKILL after `graceMs`, then
 * what it left behind removed); one still running at exit is stopped synchronously the same way.
 */
export function daemonSet(graceMs: number): {
  track: (d: RunningDaemon) => void;
  stop: (d: RunningDaemon) => Promise<void>;
} {
  const live = exitSet<RunningDaemon>((d) => {
    live.delete(d);
    if (!d.exited) killSync(d.child, graceMs, 5_000);
    removeLeftovers(d.dir);
  });
  return {
    track: (d) => void live.add(d),
    stop: async (d) => {
      if (!live.has(d)) return;
      // Stays in `live` until done, so the exit hook still cleans up if the process exits meanwhile.
      await killAndWait(d.child, () => d.exited, graceMs, 5_000);
      live.delete(d);
      removeLeftovers(d.dir);
    },
  };
}

/**
 * Starts a service (dockerd, a registry) with its stdout and stderr in `logPath` (appended with flag
 * `a`, truncated with `w`), unref'd: a forgotten one is stopped by an exit hook, it does not keep the
 * test process alive. `onEnd` is called when it exits, or with the error when it cannot be started.
 */
export function spawnService(
  cmd: string,
  args: string[],
  logPath: string,
  options: { env: NodeJS.ProcessEnv; flags: 'a' | 'w' },
  onEnd: (spawnError?: Error) => void,
): ChildProcess {
  const logFd = openSync(logPath, options.flags);
  let child: ChildProcess;
  try {
    child = spawn(cmd, args, { stdio: ['ignore', logFd, logFd], env: options.env });
  } finally {
    closeSync(logFd);
  }
  child.unref();
  child.on('error', (e) => onEnd(e));
  child.on('exit', () => onEnd());
  return child;
}

/**
 * A short temp base for a daemon's dir: unix socket paths in it (containerd's, dockerd's) must stay
 * < 108 bytes.
 */
export function shortTempBase(): string {
  const t = tmpdir();
  return t.length <= 40 ? t : '/tmp';
}

/** Pids of processes whose command line mentions `dir` (containerd and shims a test daemon started). */
function processesUsing(dir: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (cmdline.includes(`${dir}/`) && pidAlive(Number(entry))) pids.push(Number(entry));
    } catch {
      // gone already
    }
  }
  return pids;
}

function unescapeMountPath(p: string): string {
  return p.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(Number.parseInt(oct, 8)));
}

/** Mount points at or under `dir`, deepest first. */
function mountsUnder(dir: string): string[] {
  const points = new Set<string>();
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const field = line.split(' ')[4];
    if (field === undefined) continue;
    const mp = unescapeMountPath(field);
    if (mp === dir || mp.startsWith(`${dir}/`)) points.add(mp);
  }
  return [...points].sort((a, b) => b.length - a.length);
}

/**
 * After a daemon (dockerd, containerd) is gone: kill what it left behind (processes whose command line
 * names its dir: containerd, shims), unmount what is mounted under its dir (overlay, netns, binds),
 * remove the dir.
 */
export function removeLeftovers(dir: string): void {
  for (const pid of processesUsing(dir)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  for (let pass = 0; pass < 5; pass++) {
    const mounts = mountsUnder(dir);
    if (mounts.length === 0) break;
    for (const mp of mounts) {
      const r = spawnSync('umount', [mp], { stdio: 'ignore' });
      if (r.status !== 0) spawnSync('umount', ['-l', mp], { stdio: 'ignore' });
    }
  }
  rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
}
