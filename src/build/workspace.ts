/**
 * Workspaces: many projects built by one `kiln build`. A workspace is either a pattern, `DIR/...`
 * (every project under DIR), or a directory whose kiln.yaml lists its projects (`workspace:`, each
 * entry a directory or a `DIR/...` pattern, relative to the file).
 *
 * A project is a directory with a kiln.yaml (or kiln.yml) that is not itself a workspace, or one
 * whose language kiln can tell (Cargo.toml, go.mod, *.c, ...); a walk does not look inside a
 * project, nor into hidden directories, node_modules or target.
 *
 * Each project is built as `build` builds it, with its own kiln.yaml and kiln.lock, up to `jobs` at
 * once, all on one KilnContext (one store, one registry pool). A failing project does not stop the
 * others unless `failFast`; then the ones running are aborted and the rest not started.
 */
import type { Dirent } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import { type KilnContext, withContext } from '../context.js';
import { KilnError } from '../errors.js';
import { formatPlatform } from '../oci/platform.js';
import { loadProject } from '../project/project.js';
import type { OciLayout } from '../store/layout.js';
import { detectLanguage } from '../toolchain/presets/index.js';
import { type BuildOptions, type BuildResult, build } from './build.js';

/** Directories a walk never enters: dependencies and build output, not projects. */
const SKIPPED = new Set(['node_modules', 'target']);
/** How much of a failed project's build output is kept (its end). */
const LOG_LIMIT = 64 * 1024;

/** What `buildWorkspace` builds: which projects, how many at once, and what every project shares. */
export interface WorkspaceOptions
  extends Omit<BuildOptions, 'dir' | 'file' | 'output' | 'to' | 'onBuildEvent' | 'buildOutput'> {
  /** `DIR/...`, or a directory whose kiln.yaml has `workspace:`. */
  dir: string;
  /**
   * Destinations for every project, `{name}` standing for the project directory's basename
   * (`oci:./out:{name}`, `registry/apps/{name}:1`); default each project's kiln.yaml `to`.
   */
  to?: string[];
  /** How many projects build at once (default: the number of CPUs). */
  jobs?: number;
  /** Stop at the first failure: abort the builds running, start no more. */
  failFast?: boolean;
  /** Called as each project starts and finishes. */
  onProject?: (event: ProjectEvent) => void;
}

/** A project of a workspace starting (its directory) or done (its result). */
export type ProjectEvent =
  | { type: 'start'; project: string; dir: string }
  | { type: 'done'; result: ProjectResult };

/** How one project of a workspace ended: built, cached, failed or cancelled, and what it wrote. */
export interface ProjectResult {
  /** The project's directory relative to the workspace's root (`.` for the root itself). */
  project: string;
  /** The directory's basename: `{name}` in destinations. */
  name: string;
  dir: string;
  /**
   * built: compiled by a runner; cached: every compile came from the build cache; failed; cancelled:
   * aborted or never started after another project failed (failFast).
   */
  status: 'built' | 'cached' | 'failed' | 'cancelled';
  platforms: string[];
  /** The digest written: the index's, or the one image's. */
  digest?: string;
  destinations: string[];
  seconds: number;
  error?: { code: string; message: string; hint?: string };
  /** A failed project's build output (its last 64 KiB). */
  log?: string;
  result?: BuildResult;
}

/** Every project of a workspace with its result, and how many did not succeed. */
export interface WorkspaceResult {
  /** The workspace's root directory. */
  root: string;
  /** In the order the projects were found (sorted by path), whatever order they finished in. */
  projects: ProjectResult[];
  /** How many failed or were cancelled. */
  failed: number;
}

/** True for `DIR/...`, the pattern for every project under DIR. */
export function isPattern(dir: string): boolean {
  return dir === '...' || dir.endsWith('/...') || dir.endsWith(`${path.sep}...`);
}

/**
 * The projects of a workspace: absolute directories, sorted, each once. Null when `dir` is neither
 * a pattern nor a directory whose kiln.yaml lists a workspace.
 */
export async function findProjects(
  dir: string,
  store: OciLayout,
): Promise<{ root: string; projects: string[] } | null> {
  if (isPattern(dir)) {
    const root = path.resolve(dir.slice(0, -3) || '.');
    const projects = new Set<string>();
    await walk(root, dir.slice(0, -3) || '.', store, projects);
    return done(root, projects, dir);
  }
  const root = path.resolve(dir);
  const loaded = await loadProject(root, { store });
  const members = loaded.project.workspace;
  if (!members) return null;
  const projects = new Set<string>();
  for (const member of members) {
    if (isPattern(member)) {
      await walk(path.resolve(loaded.dir, member.slice(0, -3) || '.'), member, store, projects);
      continue;
    }
    const abs = path.resolve(loaded.dir, member);
    const stat = await fs.stat(abs).catch(() => undefined);
    if (!stat?.isDirectory())
      throw new KilnError(
        'E_BAD_PROJECT',
        `${loaded.file}: workspace: ${member} ${stat ? 'is not a directory' : 'does not exist'}`,
        { hint: "list the projects' directories, relative to the workspace's kiln.yaml" },
      );
    if (abs === loaded.dir)
      throw new KilnError('E_BAD_PROJECT', `${loaded.file}: workspace: ${member} is the workspace itself`, {
        hint: "list the projects' directories, not the workspace's",
      });
    projects.add(abs);
  }
  return done(root, projects, dir);
}

function done(root: string, found: Set<string>, spec: string): { root: string; projects: string[] } {
  if (found.size === 0)
    throw new KilnError('E_NOT_FOUND', `no projects in ${spec}`, {
      hint: 'a project is a directory with a kiln.yaml, or with Cargo.toml, go.mod, *.c, ...',
    });
  return { root, projects: [...found].sort() };
}

async function walk(dir: string, shown: string, store: OciLayout, out: Set<string>): Promise<void> {
  let entries: Dirent[];
  try {
    entries = await fs.readdir(dir, { withFileTypes: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new KilnError(code === 'ENOENT' ? 'E_NOT_FOUND' : 'E_IO', `cannot read ${shown}: ${code ?? err}`);
  }
  const names = entries.map((e) => e.name);
  if (names.includes('kiln.yaml') || names.includes('kiln.yml')) {
    // A nested workspace's projects are found by walking on.
    if (!(await loadProject(dir, { store })).project.workspace) {
      out.add(dir);
      return;
    }
  } else if (
    await detectLanguage(dir).then(
      () => true,
      () => false,
    )
  ) {
    out.add(dir);
    return;
  }
  for (const entry of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) {
    if (!entry.isDirectory() || entry.name.startsWith('.') || SKIPPED.has(entry.name)) continue;
    await walk(path.join(dir, entry.name), path.join(shown, entry.name), store, out);
  }
}

/** `{name}` in a destination replaced by the project's name. */
export function destinationFor(template: string, name: string): string {
  return template.replaceAll('{name}', name);
}

/** Builds every project of the workspace `options.dir` (see the module's comment). */
export async function buildWorkspace(options: WorkspaceOptions): Promise<WorkspaceResult> {
  return withContext(options.context, (context) => buildIn(context, options));
}

async function buildIn(context: KilnContext, options: WorkspaceOptions): Promise<WorkspaceResult> {
  const found = await findProjects(options.dir, await context.store());
  if (!found)
    throw new KilnError('E_USAGE', `${options.dir} is not a workspace`, {
      hint: "pass DIR/... for every project under DIR, or list the projects in kiln.yaml's `workspace:`",
    });
  const { root, projects } = found;
  const jobs = options.jobs ?? os.availableParallelism();
  if (!Number.isInteger(jobs) || jobs < 1)
    throw new KilnError('E_USAGE', `jobs must be a whole number of at least 1, got ${jobs}`);
  const names = new Map<string, string>();
  for (const dir of projects) {
    const name = path.basename(dir);
    const other = names.get(name);
    if (other !== undefined && options.to?.some((t) => t.includes('{name}')))
      throw new KilnError(
        'E_USAGE',
        `two projects are named ${name}: ${path.relative(root, other) || '.'} and ${path.relative(root, dir) || '.'}`,
        { hint: '{name} in --to is the directory name; rename one, or give each a `to:` in its kiln.yaml' },
      );
    names.set(name, dir);
  }
  for (const template of options.to ?? [])
    if (projects.length > 1 && !template.includes('{name}'))
      throw new KilnError('E_USAGE', `every project would be written to ${template}`, {
        hint: 'put {name} in the destination, e.g. oci:./out:{name} or registry/apps/{name}:1',
      });

  const { jobs: _j, failFast, onProject, to, dir: _d, ...shared } = options;
  const stop = new AbortController();
  const signal = AbortSignal.any([stop.signal, context.signalWith(options.signal)]);
  const results: ProjectResult[] = new Array(projects.length);

  async function one(dir: string): Promise<ProjectResult> {
    const project = path.relative(root, dir) || '.';
    const name = path.basename(dir);
    const destinations = (to ?? []).map((t) => destinationFor(t, name));
    const base = { project, name, dir, platforms: [] as string[], destinations };
    if (signal.aborted) return { ...base, status: 'cancelled', seconds: 0 };
    onProject?.({ type: 'start', project, dir });
    const started = performance.now();
    let log = '';
    const buildOutput = new Writable({
      write(chunk: Buffer, _enc, callback) {
        log = (log + chunk.toString('utf8')).slice(-LOG_LIMIT);
        callback();
      },
    });
    const seconds = () => Math.round((performance.now() - started) / 100) / 10;
    try {
      const result = await build({
        ...shared,
        dir,
        ...(destinations.length ? { to: destinations } : {}),
        buildOutput,
        context,
        signal,
      });
      const platforms = [...new Set(result.images.map((i) => formatPlatform(i.platform)))];
      const digest = result.index?.digest ?? result.images[0]?.descriptor.digest;
      return {
        ...base,
        status: result.compiles.every((c) => c.source !== 'build') ? 'cached' : 'built',
        platforms,
        ...(digest ? { digest } : {}),
        destinations: [...new Set(result.images.map((i) => i.destination))],
        seconds: seconds(),
        result,
      };
    } catch (err) {
      const cancelled = stop.signal.aborted && !(err instanceof KilnError && err.code !== 'E_ABORTED');
      const error =
        err instanceof KilnError
          ? { code: err.code, message: err.message, ...(err.hint ? { hint: err.hint } : {}) }
          : { code: 'E_INTERNAL', message: err instanceof Error ? err.message : String(err) };
      if (failFast && !cancelled)
        stop.abort(new KilnError('E_ABORTED', `cancelled: ${project} failed (--fail-fast)`));
      return {
        ...base,
        status: cancelled ? 'cancelled' : 'failed',
        seconds: seconds(),
        error,
        ...(log && !cancelled ? { log } : {}),
      };
    }
  }

  let next = 0;
  const worker = async () => {
    while (next < projects.length) {
      const i = next++;
      const result = await one(projects[i]!);
      results[i] = result;
      if (result.seconds > 0 || result.status !== 'cancelled') onProject?.({ type: 'done', result });
    }
  };
  await Promise.all(Array.from({ length: Math.min(jobs, projects.length) }, worker));
  // Interrupted (the context's signal): that, not a table of cancelled projects.
  if (context.signalWith(options.signal).aborted) throw context.signalWith(options.signal).reason;
  return {
    root,
    projects: results,
    failed: results.filter((r) => r.status !== 'built' && r.status !== 'cached').length,
  };
}
