/** Temp dirs for tests: one work dir per test file (removed once its tests are done), fresh dirs and trees of files in it. */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after } from 'node:test';

/**
 * A new dir `$TMPDIR/PREFIX-XXXXXX`, removed after the file's tests: call it at the top level of a
 * test file (node:test's `after`).
 */
export function workDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), `${prefix}-`));
  after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * Fresh paths under `root`: each call gives `root/NAME-N` with a new N, created (parents too) when
 * `create` is set, else only named.
 */
export function freshPaths(root: string, options: { create?: boolean } = {}): (name: string) => string {
  let counter = 0;
  return (name) => {
    const dir = join(root, `${name}-${++counter}`);
    if (options.create) mkdirSync(dir, { recursive: true });
    return dir;
  };
}

/** Writes `files` (relative path → content) under `dir`, parents made, `*.sh` executable; returns `dir`. */
export function writeTree(dir: string, files: Record<string, string | Buffer>): string {
  mkdirSync(dir, { recursive: true });
  for (const [p, content] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, p)), { recursive: true });
    writeFileSync(join(dir, p), content, { mode: p.endsWith('.sh') ? 0o755 : 0o644 });
  }
  return dir;
}
