/**
 * Running the built kiln CLI (`dist/bin/kiln.js`, the bundle `npm run build` makes) in tests.
 *
 * Every call runs `process.execPath dist/bin/kiln.js ...args` with KILN_HOME set to a temp dir that is
 * shared by all calls in this process (i.e. one per test file: `node --test` runs each file in its own
 * process) and removed at exit, so tests never touch ~/.cache/kiln.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from './tools.js';

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

/** Runs the kiln CLI; never rejects on a non-zero exit (only if node itself cannot be started). */
export async function kiln(args: string[], opts: KilnOptions = {}): Promise<KilnResult> {
  if (!existsSync(KILN_CLI)) throw new Error(`${KILN_CLI} not found: run 'npm run build' first`);
  const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1', KILN_HOME: kilnHome(), ...opts.env };
  const r = await run(process.execPath, [KILN_CLI, ...args], {
    env,
    cwd: opts.cwd,
    input: opts.input,
    timeoutMs: opts.timeoutMs ?? 120_000,
  });
  return { code: r.code, stdout: r.stdout, stderr: r.stderr };
}
