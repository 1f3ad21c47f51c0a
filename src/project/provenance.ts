/**
 * The `org.opencontainers.image.*` annotations kiln can fill in itself: when (SOURCE_DATE_EPOCH
 * only, so an unset epoch adds nothing and output stays reproducible), from where (the git remote
 * `origin`) and which commit (HEAD). git runs as a child process; no git or no repository simply
 * leaves those out.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { defaultMtime } from '../layer/tar-writer.js';

export const ANNOTATION_CREATED = 'org.opencontainers.image.created';
export const ANNOTATION_SOURCE = 'org.opencontainers.image.source';
export const ANNOTATION_REVISION = 'org.opencontainers.image.revision';
export const ANNOTATION_BASE_NAME = 'org.opencontainers.image.base.name';
export const ANNOTATION_BASE_DIGEST = 'org.opencontainers.image.base.digest';

/** SOURCE_DATE_EPOCH as RFC 3339 UTC, or undefined when it is not set. */
export function createdFromEpoch(env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env.SOURCE_DATE_EPOCH === undefined || env.SOURCE_DATE_EPOCH === '') return undefined;
  return new Date(defaultMtime(env) * 1000).toISOString().replace('.000Z', 'Z');
}

/**
 * A git remote URL as a browsable https URL without credentials: `git@host:o/r.git` and
 * `ssh://git@host/o/r.git` become `https://host/o/r`; `https://user:token@host/o/r.git` loses the
 * user info. Anything else (a local path, file://) is not a public source: undefined.
 */
export function sourceUrl(remote: string): string | undefined {
  const value = remote.trim();
  if (value === '') return undefined;
  // scp-like syntax: [user@]host:path, where the host has no '/' before the ':'.
  const scp = /^(?:[^@/\s]+@)?([^:/\s]+):(?!\/\/)([^\s]+)$/.exec(value);
  if (scp && !/^[a-z]$/i.test(scp[1]!)) return finish(`https://${scp[1]}/${scp[2]!.replace(/^\/+/, '')}`);
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return undefined;
  }
  if (!['http:', 'https:', 'ssh:', 'git:', 'git+ssh:', 'ssh+git:'].includes(url.protocol)) return undefined;
  // ssh's port is not the web server's; http(s) keeps its own.
  const keepPort = url.protocol === 'http:' || url.protocol === 'https:';
  const host = keepPort ? url.host : url.hostname;
  const scheme = url.protocol === 'http:' ? 'http' : 'https';
  return finish(`${scheme}://${host}${url.pathname}`);
}

function finish(url: string): string {
  return url.replace(/\/+$/, '').replace(/\.git$/, '');
}

function git(dir: string, args: string[]): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile(
      'git',
      ['-C', dir, ...args],
      // Never prompt, never page; a slow or broken git is treated as no git.
      { timeout: 10_000, env: { ...process.env, GIT_TERMINAL_PROMPT: '0', GIT_PAGER: 'cat' } },
      (err, stdout) => resolve(err ? undefined : stdout.trim() || undefined),
    );
  });
}

/** Whether `dir` may be in a git work tree: a `.git` here or above (or GIT_DIR), checked without spawning git. */
function mayBeInGit(dir: string): boolean {
  if (process.env.GIT_DIR) return true;
  for (let d = path.resolve(dir); ; d = path.dirname(d)) {
    if (existsSync(path.join(d, '.git'))) return true;
    if (path.dirname(d) === d) return false;
  }
}

/** The commit checked out in `dir` and its `origin` URL, each when known. */
export async function gitInfo(dir: string): Promise<{ revision?: string; source?: string }> {
  // Most builds outside a repository would pay two process starts for nothing: a cached rebuild's budget.
  if (!mayBeInGit(dir)) return {};
  const [revision, remote] = await Promise.all([
    git(dir, ['rev-parse', '--verify', '--quiet', 'HEAD^{commit}']),
    git(dir, ['config', '--get', 'remote.origin.url']),
  ]);
  if (revision === undefined || !/^[0-9a-f]{40,64}$/.test(revision)) return {};
  const source = remote === undefined ? undefined : sourceUrl(remote);
  return { revision, ...(source ? { source } : {}) };
}

/** created, source and revision annotations for a project in `dir`: only those that are known. */
export async function provenanceAnnotations(
  dir: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const created = createdFromEpoch(env);
  if (created) out[ANNOTATION_CREATED] = created;
  const { revision, source } = await gitInfo(dir);
  if (source) out[ANNOTATION_SOURCE] = source;
  if (revision) out[ANNOTATION_REVISION] = revision;
  return out;
}
