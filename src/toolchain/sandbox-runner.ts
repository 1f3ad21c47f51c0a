/**
 * The sandbox runner: builds in a bubblewrap (`bwrap`) sandbox, no daemon and no root needed. The
 * toolchain image's rootfs (unpacked once, see rootfs.ts) is bound read-only at /, with a private
 * /dev, /proc and /tmp, the source read-only at /src and the output directory writable at /out.
 * Every namespace is unshared (no network unless the job asks), the environment is cleared and set
 * to the same one the container runners give, and the build runs as the image's user inside a user
 * namespace that maps it to the invoking user: files in /out belong to that user on the host.
 *
 * Works with bwrap 0.8 (Debian 12): no overlay options are needed since nothing writes to /.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { constants as fsConstants } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import type { KilnContext } from '../context.js';
import { KilnError } from '../errors.js';
import { defaultRootfsRoot, ensureRootfs, RESOLV_CONF } from './rootfs.js';
import {
  type BuildJob,
  containerEnv,
  OUT_DIR,
  type Runner,
  type RunResult,
  SRC_DIR,
  type ToolchainImage,
} from './runner.js';

const HINT =
  'install bubblewrap (apt-get install bubblewrap) or allow unprivileged user namespaces ' +
  '(sysctl kernel.unprivileged_userns_clone=1), or pick another runner with --runner';

/** How long to wait for the sandbox's processes to be gone after bwrap itself exited. */
const REAP_MS = 5_000;

export interface SandboxRunnerOptions {
  /** The bwrap executable (default: `bwrap` on PATH). */
  bwrap?: string;
  /** Where rootfs directories are kept (default: `<kiln cache>/rootfs`). */
  rootfsRoot?: string;
  /** Debug lines (entries unpack refused or skipped). */
  debug?: (line: string) => void;
  /** Keeps the probe of bwrap, so every runner of this context asks once (else once per runner). */
  context?: KilnContext;
}

export class SandboxRunner implements Runner {
  readonly name = 'sandbox' as const;
  private readonly bwrap: string;
  private readonly rootfsRoot: string | undefined;
  private readonly debug: ((line: string) => void) | undefined;
  private readonly context: KilnContext | undefined;
  private probe: Promise<string | undefined> | undefined;

  constructor(options: SandboxRunnerOptions = {}) {
    this.bwrap = options.bwrap ?? 'bwrap';
    this.rootfsRoot = options.rootfsRoot;
    this.debug = options.debug;
    this.context = options.context;
  }

  /** Asked once per runner, or once per context: `auto` and the run share the answer. */
  unavailable(): Promise<string | undefined> {
    const bwrap = this.bwrap;
    this.probe ??= this.context
      ? this.context.memo(`sandbox-probe:${bwrap}`, () => probeBwrap(bwrap))
      : probeBwrap(bwrap);
    return this.probe;
  }

  async run(job: BuildJob): Promise<RunResult> {
    const image = job.image;
    if (image === undefined) throw new KilnError('E_RUNNER', 'the sandbox runner needs a toolchain image');
    throwIfAborted(job.signal);
    const why = await this.unavailable();
    if (why !== undefined)
      throw new KilnError('E_RUNNER', `the sandbox cannot run here: ${why}`, { hint: HINT });
    const srcDir = await existingDir(job.srcDir, 'source directory');
    const outDir = await existingDir(job.outDir, 'output directory');
    // An abort during a first unpack takes effect once it is done: unpack cannot be interrupted,
    // and what it leaves is a complete, reusable rootfs.
    const rootfs = await ensureRootfs(image, this.rootfsRoot ?? defaultRootfsRoot(), { debug: this.debug });
    throwIfAborted(job.signal);
    const user = await imageUser(image, rootfs);

    // Mounts are made in this order, each over what is before it: the rootfs first.
    const args = [
      '--unshare-all',
      // Explicit (--unshare-all only tries): --uid needs it, and a sandbox without one must fail.
      '--unshare-user',
      ...(job.network ? ['--share-net'] : []),
      '--die-with-parent',
      '--new-session',
      '--uid',
      String(user.uid),
      '--gid',
      String(user.gid),
      '--ro-bind',
      rootfs,
      '/',
      '--dev',
      '/dev',
      '--proc',
      '/proc',
      // HOME=/tmp: any image user must be able to write there.
      '--perms',
      '1777',
      '--tmpfs',
      '/tmp',
      '--ro-bind',
      srcDir,
      SRC_DIR,
      '--bind',
      outDir,
      OUT_DIR,
    ];
    // Only over a regular file ensureRootfs made or found: the rootfs is read-only, bwrap cannot create one.
    if (
      job.network &&
      (await isFile('/etc/resolv.conf', true)) &&
      (await isFile(path.join(rootfs, RESOLV_CONF), false))
    )
      args.push('--ro-bind', '/etc/resolv.conf', '/etc/resolv.conf');
    args.push('--chdir', SRC_DIR, '--clearenv');
    for (const entry of containerEnv(image, job.env)) {
      const eq = entry.indexOf('=');
      if (eq > 0) args.push('--setenv', entry.slice(0, eq), entry.slice(eq + 1));
    }
    // fd 3: bwrap reports the sandbox's pid, then the command's exit code only if it was started,
    // which tells a failing build from a sandbox that could not be set up.
    args.push('--json-status-fd', '3', '/bin/sh', '-c', job.command);
    return await this.spawnSandbox(args, job);
  }

  private async spawnSandbox(args: string[], job: BuildJob): Promise<RunResult> {
    const output = job.output ?? process.stderr;
    let child: ChildProcess;
    try {
      child = spawn(this.bwrap, args, {
        stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
        // Its own process group, so an abort can kill bwrap and its init together.
        detached: true,
      });
    } catch (err) {
      throw new KilnError('E_RUNNER', `cannot start ${this.bwrap}: ${(err as Error).message}`, {
        hint: HINT,
      });
    }
    child.stdout?.pipe(output, { end: false });
    child.stderr?.pipe(output, { end: false });
    let stderrTail = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      stderrTail = (stderrTail + chunk.toString('utf8')).slice(-4096);
    });
    let status = '';
    const statusStream = child.stdio[3] as Readable | null;
    statusStream?.setEncoding('utf8');
    statusStream?.on('data', (text: string) => {
      status += text;
    });

    const onAbort = () => killGroup(child);
    job.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const exit = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>(
        (resolve, reject) => {
          child.once('error', (err) => {
            killGroup(child);
            reject(
              new KilnError('E_RUNNER', `cannot start ${this.bwrap}: ${err.message}`, {
                hint: HINT,
                cause: err,
              }),
            );
          });
          child.once('close', (code, signal) => resolve({ code, signal }));
        },
      );
      const report = parseStatus(status);
      // bwrap is gone; its init (pid 1 in the sandbox) takes the sandbox's processes with it.
      if (report.childPid !== undefined) await waitGone(report.childPid, REAP_MS);
      if (job.signal?.aborted) throw new KilnError('E_ABORTED', 'the build was stopped');
      if (report.exitCode !== undefined) return { runner: 'sandbox', exitCode: report.exitCode };
      const said = bwrapMessage(stderrTail);
      const how =
        said ?? (exit.signal ? `bwrap was killed by ${exit.signal}` : `bwrap exited with ${exit.code}`);
      throw new KilnError('E_RUNNER', `the sandbox could not start the build: ${how}`, { hint: HINT });
    } finally {
      job.signal?.removeEventListener('abort', onAbort);
      child.stdout?.unpipe(output);
      child.stderr?.unpipe(output);
    }
  }
}

/** The bwrap arguments of the probe: a sandbox made like a build's, running `true`. */
export const PROBE_ARGS: readonly string[] = [
  '--unshare-all',
  '--unshare-user',
  '--uid',
  '0',
  '--gid',
  '0',
  '--die-with-parent',
  '--ro-bind',
  '/',
  '/',
  '--dev',
  '/dev',
  '--proc',
  '/proc',
  '--tmpfs',
  '/tmp',
  'true',
];

/** Undefined when a sandbox like a build's can be made here, else why not (one line). */
async function probeBwrap(bwrap: string): Promise<string | undefined> {
  return await new Promise((resolve) => {
    let stderr = '';
    let child: ChildProcess;
    try {
      child = spawn(bwrap, PROBE_ARGS, { stdio: ['ignore', 'ignore', 'pipe'] });
    } catch (err) {
      resolve(`cannot run ${bwrap}: ${(err as Error).message}`);
      return;
    }
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString('utf8')).slice(-4096);
    });
    child.once('error', (err) => {
      clearTimeout(timer);
      const code = (err as NodeJS.ErrnoException).code;
      resolve(
        code === 'ENOENT'
          ? `${bwrap} (bubblewrap) is not installed or not on PATH`
          : `cannot run ${bwrap}: ${err.message}`,
      );
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(undefined);
      else {
        const said = bwrapMessage(stderr) ?? (signal ? `killed by ${signal}` : `exit status ${code}`);
        resolve(`${bwrap} cannot create a sandbox here (${said})`);
      }
    });
  });
}

interface StatusReport {
  childPid?: number;
  exitCode?: number;
}

/** bwrap's --json-status-fd output: one JSON object per line. */
function parseStatus(text: string): StatusReport {
  const report: StatusReport = {};
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    let doc: Record<string, unknown>;
    try {
      doc = JSON.parse(line) as Record<string, unknown>;
    } catch {
      continue;
    }
    if (typeof doc['child-pid'] === 'number') report.childPid = doc['child-pid'];
    if (typeof doc['exit-code'] === 'number') report.exitCode = doc['exit-code'];
  }
  return report;
}

/** The last `bwrap: …` line bwrap printed, without the prefix. */
function bwrapMessage(stderr: string): string | undefined {
  const lines = stderr.split('\n').filter((l) => l.startsWith('bwrap: '));
  const last = lines[lines.length - 1];
  return last === undefined ? undefined : last.slice('bwrap: '.length).trim();
}

function killGroup(child: ChildProcess): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    // Already gone.
  }
}

/** Waits until `pid` has exited (or is a zombie nobody reaped yet), at most `ms`. */
async function waitGone(pid: number, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    let stat: string;
    try {
      stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8');
    } catch {
      return;
    }
    if (stat.slice(stat.lastIndexOf(')') + 2)[0] === 'Z') return;
    await new Promise((r) => setTimeout(r, 20));
  }
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new KilnError('E_ABORTED', 'the build was stopped');
}

async function existingDir(dir: string, what: string): Promise<string> {
  const full = path.resolve(dir);
  const st = await fs.stat(full).catch(() => undefined);
  if (!st?.isDirectory())
    throw new KilnError('E_NOT_FOUND', `${what} ${dir} does not exist or is not a directory`);
  return full;
}

async function isFile(p: string, follow: boolean): Promise<boolean> {
  const st = await (follow ? fs.stat(p) : fs.lstat(p)).catch(() => undefined);
  return st?.isFile() ?? false;
}

/**
 * The uid and gid to run as: the image's User (`user[:group]`, numeric or by name), root when it
 * has none, as Docker does. Names are looked up in the rootfs's own /etc/passwd and /etc/group.
 */
export async function imageUser(
  image: ToolchainImage,
  rootfs: string,
): Promise<{ uid: number; gid: number }> {
  const spec = image.config.config?.User?.trim() ?? '';
  if (spec === '') return { uid: 0, gid: 0 };
  const colon = spec.indexOf(':');
  const userPart = colon === -1 ? spec : spec.slice(0, colon);
  const groupPart = colon === -1 ? undefined : spec.slice(colon + 1);

  let uid: number;
  let primaryGid = 0;
  if (/^\d+$/.test(userPart)) {
    uid = Number(userPart);
    const entry = (await readDb(rootfs, 'etc/passwd')).find((f) => f[2] === userPart);
    if (entry && /^\d+$/.test(entry[3] ?? '')) primaryGid = Number(entry[3]);
  } else {
    const entry = (await readDb(rootfs, 'etc/passwd')).find((f) => f[0] === userPart);
    if (entry && /^\d+$/.test(entry[2] ?? '') && /^\d+$/.test(entry[3] ?? '')) {
      uid = Number(entry[2]);
      primaryGid = Number(entry[3]);
    } else if (userPart === 'root') uid = 0;
    else throw unknownUser(image, `user '${userPart}' is not in the image's /etc/passwd`);
  }

  let gid = primaryGid;
  if (groupPart !== undefined && groupPart !== '') {
    if (/^\d+$/.test(groupPart)) gid = Number(groupPart);
    else {
      const entry = (await readDb(rootfs, 'etc/group')).find((f) => f[0] === groupPart);
      if (entry && /^\d+$/.test(entry[2] ?? '')) gid = Number(entry[2]);
      else if (groupPart === 'root') gid = 0;
      else throw unknownUser(image, `group '${groupPart}' is not in the image's /etc/group`);
    }
  }
  if (uid > 0xfffffffe || gid > 0xfffffffe) throw unknownUser(image, `'${spec}' is out of range`);
  return { uid, gid };
}

function unknownUser(image: ToolchainImage, why: string): KilnError {
  return new KilnError('E_RUNNER', `cannot run as the user of ${image.name}: ${why}`);
}

/**
 * A passwd-style file of the rootfs, split into fields; empty when absent. Neither /etc nor the
 * file may be a symlink: one could point at the host's own files.
 */
async function readDb(rootfs: string, rel: string): Promise<string[][]> {
  const etc = await fs.lstat(path.join(rootfs, path.dirname(rel))).catch(() => undefined);
  if (!etc?.isDirectory()) return [];
  let text: string;
  try {
    const fh = await fs.open(path.join(rootfs, rel), fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW);
    try {
      if (!(await fh.stat()).isFile()) return [];
      text = await fh.readFile('utf8');
    } finally {
      await fh.close();
    }
  } catch {
    return [];
  }
  return text
    .split('\n')
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => line.split(':'));
}
