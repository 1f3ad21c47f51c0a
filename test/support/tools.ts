/**
 * Finding external tools and running processes, for tests.
 *
 * Policy: outside CI a missing tool lets a test skip with a clear reason; in CI (env CI set, and not
 * "false"/"0") a missing tool is an error, so nothing is ever silently skipped there.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';

/** Debian package that provides each tool the tests use (for error messages and `.ci/run`). */
export const DEBIAN_PACKAGES: Readonly<Record<string, string>> = {
  docker: 'docker.io',
  dockerd: 'docker.io',
  containerd: 'containerd',
  ctr: 'containerd',
  runc: 'runc',
  crun: 'crun',
  unshare: 'util-linux',
  'docker-registry': 'docker-registry',
  skopeo: 'skopeo',
  umoci: 'umoci',
  'oci-image-tool': 'oci-image-tool',
  bwrap: 'bubblewrap',
  clang: 'clang',
  'wasm-ld': 'lld',
  pigz: 'pigz',
  busybox: 'busybox-static',
  tar: 'tar',
  gzip: 'gzip',
  umount: 'mount',
  debootstrap: 'debootstrap',
  gpgv: 'gpgv',
  xz: 'xz-utils',
  zstd: 'zstd',
  'dpkg-query': 'dpkg',
  dpkg: 'dpkg',
};

/** True when running in CI (env CI=true): missing tools are failures, not skips. */
export function inCI(): boolean {
  const ci = process.env['CI'];
  return ci !== undefined && ci !== '' && ci !== 'false' && ci !== '0';
}

/** Directories searched after $PATH: sbin dirs hold dockerd/runc and are not always on a user's PATH. */
const EXTRA_DIRS = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

function isExecutableFile(path: string): boolean {
  try {
    if (!statSync(path).isFile()) return false;
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Absolute path of `name` on $PATH (then the usual sbin/bin dirs), or undefined. Never throws. */
export function findTool(name: string): string | undefined {
  if (name.includes('/')) return isExecutableFile(name) ? name : undefined;
  const dirs = (process.env['PATH'] ?? '').split(delimiter).filter((d) => d !== '');
  for (const dir of [...dirs, ...EXTRA_DIRS]) {
    const candidate = join(dir, name);
    if (isExecutableFile(candidate)) return candidate;
  }
  return undefined;
}

/** The message used when `name` is missing, naming the Debian package that installs it. */
export function missingToolMessage(name: string): string {
  const pkg = DEBIAN_PACKAGES[name];
  const how = pkg ? `install it with: apt-get install ${pkg}` : 'install it';
  return `required tool '${name}' not found on PATH (${how})`;
}

/**
 * Path of tool `name`. If it is missing: in CI, throws an Error naming the Debian package to install;
 * outside CI, returns undefined so the test can `t.skip(...)` (see {@link toolSkipReason}).
 */
export function requireTool(name: string): string | undefined {
  const found = findTool(name);
  if (found !== undefined) return found;
  if (inCI()) throw new Error(`${missingToolMessage(name)} [CI=true: missing tools are failures]`);
  return undefined;
}

/**
 * A skip reason if any of `names` is missing (outside CI), else undefined; throws in CI.
 * Made for `test('…', { skip: toolSkipReason('skopeo') }, async () => …)`.
 */
export function toolSkipReason(...names: string[]): string | undefined {
  const missing = names.filter((n) => requireTool(n) === undefined);
  if (missing.length === 0) return undefined;
  return missing.map(missingToolMessage).join('; ');
}

/**
 * Common policy for a missing prerequisite that is not a single tool (a library, root, a service):
 * throws in CI, returns `reason` as a skip reason outside CI.
 */
export function skipOrFail(reason: string): string {
  if (inCI()) throw new Error(`${reason} [CI=true: missing prerequisites are failures]`);
  return reason;
}

export interface RunOptions {
  cwd?: string;
  /** Environment for the child; defaults to process.env. */
  env?: NodeJS.ProcessEnv;
  /** Written to the child's stdin, which is then closed. Without it stdin is /dev/null. */
  input?: string | Uint8Array;
  /** Kill the child (SIGKILL) after this many ms; the result then has timedOut = true. */
  timeoutMs?: number;
}

export interface RunResult {
  /** Exit code; 128 + signal number when killed by a signal (as a shell reports it). */
  code: number;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

const SIGNAL_NUMBERS: Partial<Record<NodeJS.Signals, number>> = {
  SIGHUP: 1,
  SIGINT: 2,
  SIGQUIT: 3,
  SIGABRT: 6,
  SIGKILL: 9,
  SIGSEGV: 11,
  SIGPIPE: 13,
  SIGALRM: 14,
  SIGTERM: 15,
};

/**
 * Runs `cmd` with `args` (no shell) and resolves with its exit code and output; a non-zero exit does
 * not reject. Rejects only if the process cannot be started (e.g. ENOENT).
 */
export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    let timer: NodeJS.Timeout | undefined;
    if (opts.timeoutMs !== undefined) {
      timer = setTimeout(() => {
        timedOut = true;
        child.kill('SIGKILL');
      }, opts.timeoutMs);
    }
    child.stdout?.on('data', (b: Buffer) => out.push(b));
    child.stderr?.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e) => {
      if (timer) clearTimeout(timer);
      reject(new Error(`cannot run ${cmd}: ${e.message}`, { cause: e }));
    });
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      resolve({
        code: code ?? 128 + (signal ? (SIGNAL_NUMBERS[signal] ?? 0) : 0),
        signal,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        timedOut,
      });
    });
    if (child.stdin) {
      child.stdin.on('error', () => {}); // EPIPE if the child does not read its input
      child.stdin.end(opts.input);
    }
  });
}

/** Like {@link run} but rejects (with the output in the message) unless the exit code is 0. */
export async function runOk(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) {
    throw new Error(
      `${cmd} ${args.join(' ')} exited with ${r.code}${r.timedOut ? ' (timed out)' : ''}\n` +
        `stdout: ${r.stdout.trim()}\nstderr: ${r.stderr.trim()}`,
    );
  }
  return r;
}

/** Asserts that a process (kiln, a tool) exited with 0, its output in the message; returns its stdout. */
export function ok(r: { code: number; stdout: string; stderr: string }, what: string): string {
  assert.equal(r.code, 0, `${what} exited with ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r.stdout;
}
