/**
 * What every benchmark part (bench.ts, bench-registry.ts, bench-compile.ts) measures the machine
 * and its contenders with: medians, machine-wide CPU from /proc/stat, waiting for a quiet machine,
 * and the source state a run was made from.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';

const TIME_BIN = '/usr/bin/time';

/** USER_HZ: /proc/stat and /proc/PID/stat count in 1/100 s on Linux. */
export const CLK_TCK = 100;

export const verdict = (ok: boolean) => (ok ? 'PASS' : 'MISS');

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Busy CPU seconds of the whole machine so far (all cores, steal included), from /proc/stat. */
export function machineBusyS(): number {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = f;
    return (user + nice + system + irq + softirq + steal) / CLK_TCK;
  } catch {
    return Number.NaN;
  }
}

/** The first line a command prints (stdout or stderr), or 'unknown'. */
export function firstLine(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv = process.env,
): Promise<string> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      out += d;
    });
    child.on('error', () => resolve('unknown'));
    child.on('close', () => resolve(out.trim().split('\n')[0] ?? 'unknown'));
  });
}

/** Runs a command to completion: its exit code and output. */
export async function spawnCollect(
  cmd: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(cmd, args, { ...opts, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    stdout += d;
  });
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
  });
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (c) => resolve(c));
  });
  return { code, stdout, stderr };
}

/** Runs a command to completion, untimed; throws with its output if it fails. */
export async function runQuiet(
  cmd: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Promise<string> {
  const { code, stdout, stderr } = await spawnCollect(cmd, args, opts);
  if (code !== 0)
    throw new Error(
      `${cmd} ${args.join(' ')} failed (exit ${code}): ${(stderr || stdout).trim().slice(0, 2000)}`,
    );
  return stdout;
}

/** Cores the machine keeps busy over `ms` (this script sleeping meanwhile). */
export async function idleLoad(ms: number): Promise<number> {
  const b0 = machineBusyS();
  const t0 = performance.now();
  await new Promise((resolve) => setTimeout(resolve, ms));
  return (machineBusyS() - b0) / ((performance.now() - t0) / 1000);
}

/**
 * Waits (up to `maxS`) until the machine has been quiet, under 0.15 cores busy, for three 2-second
 * windows in a row: other people's tests share this machine. Returns the seconds waited and whether it got quiet.
 */
export async function waitQuiet(maxS: number): Promise<{ waitedS: number; quiet: boolean }> {
  const t0 = performance.now();
  let calm = 0;
  let shown = false;
  const done = (quiet: boolean) => {
    if (shown) process.stdout.write('\n');
    return { waitedS: (performance.now() - t0) / 1000, quiet };
  };
  while (calm < 3) {
    if ((performance.now() - t0) / 1000 >= maxS) return done(false);
    const load = await idleLoad(2000);
    calm = load < 0.15 ? calm + 1 : 0;
    if (calm === 0) {
      process.stdout.write(`\r  waiting for a quiet machine: ${load.toFixed(2)} cores busy `);
      shown = true;
    }
  }
  return done(true);
}

/** The commit checked out, and the files under src/ changed since (read-only git: no index refresh). */
export async function sourceState(root: string): Promise<string> {
  const head = await firstLine('git', ['-C', root, 'rev-parse', '--short', 'HEAD']);
  let dirty = '';
  try {
    dirty = await runQuiet('git', ['--no-optional-locks', '-C', root, 'status', '--porcelain', '--', 'src']);
  } catch {
    // not a checkout
  }
  // porcelain lines are `XY path`
  const files = dirty
    .split('\n')
    .filter((l) => l.length > 3)
    .map((l) => l.slice(3));
  return files.length ? `commit ${head} with uncommitted changes to ${files.join(', ')}` : `commit ${head}`;
}

export interface Spawned {
  otherLoad: number;
  code: number | null;
  stdout: string;
  stderr: string;
  wallS: number;
  userS: number;
  sysS: number;
  maxRssKiB: number;
}

/** Runs argv under /usr/bin/time (when present): wall time of the whole process, its CPU and peak RSS. */
export async function timed(
  argv: string[],
  cwd: string,
  timeFile: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<Spawned> {
  const useTime = existsSync(TIME_BIN);
  const [cmd, ...args] = useTime ? [TIME_BIN, '-f', '%M %U %S', '-o', timeFile, ...argv] : argv;
  const busy0 = machineBusyS();
  const t0 = performance.now();
  const { code, stdout, stderr } = await spawnCollect(cmd!, args, { cwd, env });
  const wallS = (performance.now() - t0) / 1000;
  const busyS = machineBusyS() - busy0;
  let maxRssKiB = 0;
  let userS = Number.NaN;
  let sysS = Number.NaN;
  if (useTime && existsSync(timeFile)) {
    const last = readFileSync(timeFile, 'utf8').trim().split('\n').pop() ?? '';
    const [m, u, s] = last.split(/\s+/).map(Number);
    maxRssKiB = m ?? 0;
    userS = u ?? Number.NaN;
    sysS = s ?? Number.NaN;
  }
  const otherLoad = Math.max(0, (busyS - userS - sysS) / wallS);
  return { code, stdout, stderr, wallS, userS, sysS, maxRssKiB, otherLoad };
}
