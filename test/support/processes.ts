/**
 * Service processes the tests start (dockerd, docker-registry): stopped gracefully when a test asks,
 * and synchronously at process exit or on SIGINT/SIGTERM when it doesn't, so none outlives its test.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';

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
