/**
 * Running the built kiln CLI (`dist/bin/kiln.js`, the bundle `npm run build` makes) in tests.
 *
 * Every call runs `process.execPath dist/bin/kiln.js ...args` with KILN_HOME set to a temp dir that is
 * shared by all calls in this process (i.e. one per test file: `node --test` runs each file in its own
 * process) and removed at exit, so tests never touch ~/.cache/kiln.
 *
 * The helpers below run kiln and assert how it ended: it succeeded (kilnOk), printed a digest
 * (kilnDigest) or JSON (kilnJson), or failed with an error code (kilnFails); kilnAppend and
 * kilnIndexCreate spell out the two commands most tests make images with.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { workDir } from './temp.js';
import { ok, run } from './tools.js';

/** Absolute path of the built CLI. */
export const KILN_CLI = fileURLToPath(new URL('../../dist/bin/kiln.js', import.meta.url));

export interface KilnOptions {
  /** Extra environment, on top of process.env and the test KILN_HOME (which it may override). */
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Written to kiln's stdin, which is then closed. */
  input?: string | Uint8Array;
  /** Kill kiln after this many ms (default 120 000). */
  timeoutMs?: number;
}

export interface KilnResult {
  code: number;
  stdout: string;
  stderr: string;
}

let home: string | undefined;

/** This process's KILN_HOME: a temp dir, created on first use and removed at process exit. */
export function kilnHome(): string {
  if (home === undefined) {
    const dir = mkdtempSync(join(tmpdir(), 'kiln-home-'));
    home = dir;
    process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  }
  return home;
}

const SRC = fileURLToPath(new URL('../../src', import.meta.url));

/** The newest modification time of any file under `dir`, in ms. */
export function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(p) : statSync(p).mtimeMs);
  }
  return newest;
}

let checkedBuild = false;

/**
 * Refuses a missing or stale dist/: an integration test of an old bundle would pass or fail for the
 * wrong reasons. Checked once per test file.
 */
export function checkBuilt(cli = KILN_CLI, src = SRC): void {
  if (checkedBuild && cli === KILN_CLI) return;
  if (!existsSync(cli)) throw new Error(`${cli} not found: run 'npm run build' first`);
  const built = statSync(cli).mtimeMs;
  const changed = newestMtime(src);
  if (changed > built)
    throw new Error(
      `${cli} is older than src/ (changed ${new Date(changed).toISOString()}): run 'npm run build' first`,
    );
  if (cli === KILN_CLI) checkedBuild = true;
}

/** Runs the kiln CLI; never rejects on a non-zero exit (only if node itself cannot be started). */
export async function kiln(args: string[], opts: KilnOptions = {}): Promise<KilnResult> {
  checkBuilt();
  const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1', KILN_HOME: kilnHome(), ...opts.env };
  const r = await run(process.execPath, [KILN_CLI, ...args], {
    env,
    cwd: opts.cwd,
    input: opts.input,
    timeoutMs: opts.timeoutMs ?? 120_000,
  });
  return { code: r.code, stdout: r.stdout, stderr: r.stderr };
}

/** A digest as kiln prints it. */
export const DIGEST = /^sha256:[0-9a-f]{64}$/;

/** Runs kiln, which must succeed; returns its stdout. */
export async function kilnOk(args: string[], opts: KilnOptions = {}): Promise<string> {
  return ok(await kiln(args, opts), `kiln ${args.join(' ')}`);
}

/** Runs kiln, which must succeed and print a digest; returns it. */
export async function kilnDigest(args: string[], opts: KilnOptions = {}): Promise<string> {
  const digest = (await kilnOk(args, opts)).trim();
  assert.match(digest, DIGEST, `kiln ${args[0]} should print a digest, printed: ${digest}`);
  return digest;
}

/** Runs kiln with --json, which must succeed; returns what it printed, parsed. */
export async function kilnJson<T>(args: string[], opts: KilnOptions = {}): Promise<T> {
  return JSON.parse(await kilnOk([...args, '--json'], opts)) as T;
}

export interface KilnJsonError {
  code: string;
  message: string;
  hint?: string;
}

/** Runs kiln with --json, which must fail with the error `code`; returns the error. */
export async function kilnFails(
  args: string[],
  code: string,
  opts: KilnOptions = {},
): Promise<KilnJsonError> {
  const r = await kiln([...args, '--json'], opts);
  assert.notEqual(r.code, 0, `kiln ${args.join(' ')} should fail\nstdout: ${r.stdout}`);
  const { error } = JSON.parse(r.stdout) as { error: KilnJsonError };
  assert.equal(error.code, code, error.message);
  return error;
}

/**
 * `kiln append BASE [--platform P] --layer L… --to TO [extra…]`, which must succeed; returns the
 * digest. A layer is `SRC` or `SRC:DEST`.
 */
export function kilnAppend(
  base: string,
  layers: string[],
  to: string,
  options: { platform?: string; extra?: string[]; env?: NodeJS.ProcessEnv } = {},
): Promise<string> {
  const platform = options.platform ? ['--platform', options.platform] : [];
  const layerArgs = layers.flatMap((l) => ['--layer', l]);
  return kilnDigest(['append', base, ...platform, ...layerArgs, '--to', to, ...(options.extra ?? [])], {
    env: options.env,
  });
}

/** `kiln index create [extra…] --to TO IMAGE…`, which must succeed; returns the index digest. */
export function kilnIndexCreate(to: string, images: string[], extra: string[] = []): Promise<string> {
  return kilnDigest(['index', 'create', ...extra, '--to', to, ...images]);
}

/**
 * kiln with an environment of its own on top of the test one (a file's KILN_HOME, its engine's
 * DOCKER_HOST…), read at each call (`env` is a function: what it names may be set up in `before`);
 * a call's `env` overrides it.
 */
export function kilnWith(
  env: () => NodeJS.ProcessEnv,
  timeoutMs = 600_000,
): (args: string[], extraEnv?: NodeJS.ProcessEnv, timeout?: number) => Promise<KilnResult> {
  return (args, extraEnv = {}, timeout = timeoutMs) =>
    kiln(args, { env: { ...env(), ...extraEnv }, timeoutMs: timeout });
}

/**
 * A test file's own kiln store: a work dir (workDir, removed after the file's tests) with KILN_HOME
 * at `home` in it, and `k`, kiln with that home and `env()` ({@link kilnWith}).
 */
export function kilnStore(
  prefix: string,
  env: () => NodeJS.ProcessEnv = () => ({}),
  timeoutMs?: number,
): { work: string; home: string; k: ReturnType<typeof kilnWith> } {
  const work = workDir(prefix);
  const home = join(work, 'home');
  return { work, home, k: kilnWith(() => ({ KILN_HOME: home, ...env() }), timeoutMs) };
}

/**
 * The helpers above with a fixed environment (KILN_PASSWORD, say) under each call's own, every result
 * also handed to `seen` (a test that scans all output for secrets collects it there).
 */
export function kilnWithEnv(env: NodeJS.ProcessEnv, seen?: (r: KilnResult) => void) {
  const k = async (args: string[], opts: KilnOptions = {}): Promise<KilnResult> => {
    const r = await kiln(args, { ...opts, env: { ...env, ...opts.env } });
    seen?.(r);
    return r;
  };
  const kOk = async (args: string[], opts: KilnOptions = {}) =>
    ok(await k(args, opts), `kiln ${args.join(' ')}`);
  const kJson = async <T>(args: string[], opts: KilnOptions = {}) =>
    JSON.parse(await kOk([...args, '--json'], opts)) as T;
  const kFails = async (args: string[], code: string, opts: KilnOptions = {}): Promise<KilnJsonError> => {
    const r = await k([...args, '--json'], opts);
    assert.notEqual(r.code, 0, `kiln ${args.join(' ')} should fail\nstdout: ${r.stdout}`);
    const { error } = JSON.parse(r.stdout) as { error: KilnJsonError };
    assert.equal(error.code, code, error.message);
    return error;
  };
  return { k, kOk, kJson, kFails };
}
