/**
 * `kiln compile`: a project to one .wasm (or one native binary for a linux target), built in its
 * toolchain image by a runner, or taken from the build cache when nothing that counts has changed
 * (then no runner starts and no network is used when kiln.lock pins the toolchain).
 *
 * The toolchain image always runs on the build machine's platform; a native target is reached by
 * cross-compiling there, told to the command through $KILN_TARGET_*. The artifact's header is checked
 * against the target afterwards (artifact-check.ts).
 *
 * A native build may write more than the artifact under /out (`lib/libfoo.so`, `share/app/...`):
 * those extras are kept, cached with the artifact and restored to `<output>.files/` (see
 * CompileResult.extras), for `kiln build` to lay out in layers of their own. A wasm build keeps
 * only its module.
 */
import { createReadStream } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { type KilnContext, withContext } from '../context.js';
import { KilnError } from '../errors.js';
import { newHash } from '../oci/digest.js';
import { formatPlatform, type Platform } from '../oci/platform.js';
import type { Descriptor } from '../oci/types.js';
import { LockFile } from '../project/lock.js';
import { type LoadedProject, loadProject } from '../project/project.js';
import { listSources, sourcesDigest } from '../project/sources.js';
import { buildPlatform, resolveToolchain, toolchainName } from '../toolchain/images.js';
import {
  DEFAULT_ARTIFACT,
  DEFAULT_NATIVE_ARTIFACT,
  detectLanguage,
  type Language,
  nativeBuild,
  preset,
} from '../toolchain/presets/index.js';
import { OUT_DIR, type RunnerName, type ToolchainImage } from '../toolchain/runner.js';
import { type RunnerChoice, selectRunner } from '../toolchain/select.js';
import {
  checkArtifact,
  resolveTarget,
  SUPPORTED_TARGETS,
  type Target,
  WASM_TARGET,
} from './artifact-check.js';
import { BuildCache, buildKey, type CacheEntry } from './cache.js';

/**
 * What a compile reports as it goes: a toolchain image being pulled, the runner chosen (and those
 * passed over, with why), a build cache hit (local store or `cacheFrom` registry, by key), a push
 * of the result to `cacheTo`.
 */
export type CompileEvent =
  | { type: 'pull'; ref: string }
  | { type: 'runner'; runner: RunnerName; skipped: string[]; reason: string }
  | { type: 'cache-hit'; where: 'local' | 'remote'; key: string }
  | { type: 'cache-push'; repo: string; key: string };

/**
 * What `compile` builds and how. Each field left out comes from the project's kiln.yaml, else from
 * the language preset (detected from the files when `lang` is not given).
 */
export interface CompileOptions {
  /** The project directory (default: the working directory). */
  dir?: string;
  /** An explicit project file instead of DIR/kiln.yaml. */
  file?: string;
  /** Where the artifact lands on the host (default: DIR/<name>.wasm, DIR/<name>-<os>-<arch> for native). */
  output?: string;
  /**
   * The platform to build for (default: wasip1/wasm). A linux one (amd64, arm64, arm/v7, 386,
   * ppc64le, s390x, riscv64) is cross-compiled in the same toolchain image.
   */
  target?: Platform;
  lang?: string;
  toolchain?: string;
  command?: string;
  /** The artifact's path in the build: relative to /out, or absolute under /out. */
  artifact?: string;
  env?: Record<string, string>;
  runner?: RunnerChoice;
  offline?: boolean;
  /** Neither read nor write the build cache. */
  noCache?: boolean;
  network?: boolean;
  cacheFrom?: string[];
  cacheTo?: string;
  /** Where the build's own output goes (default: stderr). */
  buildOutput?: NodeJS.WritableStream;
  onEvent?: (e: CompileEvent) => void;
  signal?: AbortSignal;
  /** Registry settings and connections, the store, the abort signal, events; default: a context for this call. */
  context?: KilnContext;
}

/** The artifact a compile left on the host, and how it was made (or restored from the cache). */
export interface CompileResult {
  /** The artifact on the host. */
  output: string;
  digest: string;
  size: number;
  /** Where it came from: a runner, or the cache (no runner started). */
  source: 'build' | 'cache' | 'remote-cache';
  runner?: RunnerName;
  lang?: Language;
  toolchain?: { name: string; pinned: string };
  key?: string;
  /** The platform built for, normalised (linux/aarch64 → linux/arm64). */
  target: Platform;
  /**
   * Native targets: a directory holding every other file the build wrote under /out, at the same
   * relative paths (`<output>.files/`, replaced as a whole on each compile; removed, and this
   * undefined, when the build wrote nothing else). Modes normalised (0644, 0755 for executables),
   * relative symlinks inside it kept.
   */
  extras?: string;
  project: LoadedProject;
  /** What the build was told: its command, environment (kiln.yaml, --env) and the sources' digest. */
  inputs?: { command: string; env: Record<string, string>; sources: string };
}

/** Where a native compile's extras land on the host, beside its artifact. */
export function extrasDir(output: string): string {
  return `${output}.files`;
}

/**
 * What the build command learns about its target. Set for every target, wasm too, so one
 * kiln.yaml `toolchain.command` can switch on them.
 */
export function targetEnv(target: Target): Record<string, string> {
  return {
    KILN_TARGET_OS: target.platform.os,
    KILN_TARGET_ARCH: target.platform.architecture,
    KILN_TARGET_VARIANT: target.platform.variant ?? '',
    KILN_TARGET_PLATFORM: formatPlatform(target.platform),
    KILN_TARGET_TRIPLE: target.triple,
  };
}

/** Where a target's artifact lands by default: DIR/<name>.wasm, or DIR/<name>-linux-arm64 (-v7 for arm/v7). */
export function defaultOutputName(name: string, target: Platform): string {
  if (target.architecture === 'wasm') return `${name}.wasm`;
  return [name, target.os, target.architecture, ...(target.variant ? [target.variant] : [])].join('-');
}

/** `app.wasm` or `/out/app.wasm` → `app.wasm`; anything outside /out is refused. */
export function artifactPath(value: string): string {
  let rel = value;
  if (path.posix.isAbsolute(value)) {
    if (!value.startsWith(`${OUT_DIR}/`))
      throw new KilnError('E_USAGE', `the artifact must be written under ${OUT_DIR}, got ${value}`, {
        hint: `write it to ${OUT_DIR}/NAME (also $KILN_OUT/NAME) and pass --artifact NAME`,
      });
    rel = value.slice(OUT_DIR.length + 1);
  }
  rel = path.posix.normalize(rel);
  if (rel === '.' || rel.startsWith('../') || rel === '..')
    throw new KilnError('E_USAGE', `the artifact path ${value} leaves ${OUT_DIR}`);
  return rel;
}

/** A gitignore pattern matching exactly one path (relative, posix). */
function exactPattern(rel: string): string {
  return `/${rel.replace(/([\\*?[\]!# ])/g, '\\$1')}`;
}

/**
 * `kiln compile`: builds a project's artifact (a .wasm, or a linux binary for a native `target`) in
 * its toolchain image, pinned by digest in kiln.lock. The build key covers the toolchain digest, the
 * command, the environment and the sources' digest: with a hit in the build cache (the store, then
 * `cacheFrom`) no runner starts. Otherwise the command runs in the runner chosen (docker, podman,
 * sandbox, local), without a network unless the preset or `network` asks for one, and its
 * artifact is checked against the target and copied to `output`.
 */
export async function compile(options: CompileOptions = {}): Promise<CompileResult> {
  return withContext(options.context, (context) => compileIn(context, options));
}

async function compileIn(context: KilnContext, options: CompileOptions): Promise<CompileResult> {
  const store = await context.store();
  const signal = context.signalWith(options.signal);
  const project = await loadProject(path.resolve(options.dir ?? '.'), {
    ...(options.file ? { file: options.file } : {}),
    store,
  });
  const p = project.project;
  if (p.workspace)
    throw new KilnError('E_USAGE', `${project.file} is a workspace: it lists projects to build`, {
      hint: 'compile one of them: `kiln compile DIR/PROJECT`; `kiln build DIR` builds them all',
    });
  const emit = context.events(options.onEvent) ?? (() => {});
  const target = resolveTarget(options.target ?? WASM_TARGET);

  const explicitImage = options.toolchain ?? p.toolchain?.image;
  const explicitCommand = options.command ?? p.toolchain?.command;
  const langName = options.lang ?? p.lang;
  const lang =
    langName !== undefined
      ? preset(langName).lang
      : explicitImage && explicitCommand
        ? undefined
        : await detectLanguage(project.sourceDir);
  const chosen = lang ? preset(lang) : undefined;
  // A custom command builds every target itself (it reads $KILN_TARGET_*); a preset has one
  // command for wasm and one for linux targets.
  const presetBuild =
    chosen && !target.wasm && !explicitCommand
      ? nativeBuild(
          chosen,
          {
            arch: target.platform.architecture,
            ...(target.platform.variant ? { variant: target.platform.variant } : {}),
            triple: target.triple,
          },
          formatPlatform(target.platform),
        )
      : chosen;
  const command = explicitCommand ?? presetBuild!.command;
  const image = explicitImage ?? chosen!.image;
  const artifact = artifactPath(
    options.artifact ?? p.toolchain?.artifact ?? (target.wasm ? DEFAULT_ARTIFACT : DEFAULT_NATIVE_ARTIFACT),
  );
  const network = options.network ?? p.toolchain?.network ?? chosen?.needsNetwork ?? false;
  const env = { ...(presetBuild?.env ?? {}), ...(p.env ?? {}), ...(options.env ?? {}) };

  const name = p.image?.name ?? path.basename(project.dir);
  const defaultOutput = path.join(project.dir, defaultOutputName(name, target.platform));
  const output = path.resolve(options.output ?? defaultOutput);

  // The artifact (where it goes now, where any target's goes by default, and wherever an earlier -o
  // put one: kiln.lock lists those) and the lock file live in the project but are outputs, not
  // inputs: the same sources give the same key whatever -o says, and building one platform does
  // not change the key of another.
  const lock = await LockFile.load(project.dir);
  const exclude = [...(p.exclude ?? []), '/kiln.lock'];
  const defaults = SUPPORTED_TARGETS.map((t) => {
    const [os, architecture, variant] = t.split('/') as [string, string, string | undefined];
    return path.join(
      project.dir,
      defaultOutputName(name, { os, architecture, ...(variant ? { variant } : {}) }),
    );
  });
  const recorded = lock.outputs().map((rel) => path.join(project.dir, ...rel.split('/')));
  for (const file of new Set([output, defaultOutput, ...defaults, ...recorded])) {
    const rel = path.relative(project.sourceDir, file);
    if (!rel.startsWith('..') && !path.isAbsolute(rel)) {
      const pattern = exactPattern(rel.split(path.sep).join('/'));
      // Also the temp file the cache writes it through: another target's compile running at the
      // same time must not count it (nor fail when it is renamed away mid-walk).
      // The extras beside it, and their temp names while they are swapped in, likewise.
      exclude.push(pattern, `${pattern}.kiln-tmp-*`, `${pattern}.files`, `${pattern}.files.kiln-*`);
    }
  }
  const files = await listSources(project.sourceDir, {
    ...(p.include ? { include: p.include } : {}),
    exclude,
  });
  const sources = sourcesDigest(files);

  const choice: RunnerChoice = options.runner ?? 'auto';
  const cache = new BuildCache(store, context);
  /** Lists the output in kiln.lock when it lies among the sources at a name no rule leaves out. */
  const recordOutput = (): void => {
    if (output === defaultOutput || defaults.includes(output)) return;
    const inSources = path.relative(project.sourceDir, output);
    if (inSources.startsWith('..') || path.isAbsolute(inSources)) return;
    const rel = path.relative(project.dir, output);
    if (!rel.startsWith('..') && !path.isAbsolute(rel)) lock.addOutput(rel.split(path.sep).join('/'));
  };
  const platform = buildPlatform();
  // A wasm target keeps the key it had before kiln built other targets, so existing caches hit.
  const keyPlatform =
    target.wasm && formatPlatform(target.platform) === formatPlatform(WASM_TARGET)
      ? formatPlatform(platform)
      : `${formatPlatform(platform)} target=${formatPlatform(target.platform)}`;

  // The local runner has no image to pin: its builds are never cached (the host's compiler may change).
  const local = choice === 'local';
  let toolchain: { name: string; pinned: string } | undefined;
  let resolved: ToolchainImage | undefined;
  const resolve = async (): Promise<void> => {
    const r = await resolveToolchain(image, {
      pins: lock,
      offline: options.offline ?? false,
      platform,
      store,
      onPull: (ref) => emit({ type: 'pull', ref }),
      context,
      signal,
    });
    resolved = r.image;
    toolchain = { name: r.image.name, pinned: r.pinned };
  };
  if (!local) {
    const tname = toolchainName(image);
    const pinned =
      lock.get(tname) ?? (tname.includes('@sha256:') ? tname.slice(tname.indexOf('@') + 1) : undefined);
    if (pinned) toolchain = { name: tname, pinned };
    else await resolve();
  }

  const key =
    toolchain && !options.noCache
      ? buildKey({
          toolchain: `${toolchain.name}@${toolchain.pinned}`,
          platform: keyPlatform,
          command,
          env,
          artifact,
          network,
          sources,
        })
      : undefined;
  const base = {
    output,
    ...(lang ? { lang } : {}),
    ...(toolchain ? { toolchain } : {}),
    target: target.platform,
    project,
    inputs: { command, env, sources },
  };

  const native = !target.wasm;
  const restoreExtras = async (extras: Descriptor | undefined): Promise<{ extras?: string }> => {
    if (!native) return {};
    const dir = await cache.extractExtras(extras, extrasDir(output));
    return dir ? { extras: dir } : {};
  };
  // A cache entry made the output: the artifact extracted (executable when native), its extras beside it.
  const fromEntry = async (entry: CacheEntry) => {
    await cache.extract(entry, output);
    if (native) await fs.chmod(output, 0o755);
    const extras = await restoreExtras(entry.extras);
    return { ...extras, digest: entry.artifact.digest, size: entry.artifact.size };
  };
  const push = async (entry: CacheEntry, repo: string, entryKey: string) => {
    await cache.push(entry, repo);
    emit({ type: 'cache-push', repo, key: entryKey });
  };

  if (key) {
    let entry: CacheEntry | undefined = await cache.get(key, { native });
    let where: 'local' | 'remote' = 'local';
    let pulledFrom: string | undefined;
    if (!entry && !options.offline) {
      for (const repo of options.cacheFrom ?? p.cache?.from ?? []) {
        entry = await cache.pull(key, repo, `${toolchain!.name}@${toolchain!.pinned}`, { native });
        if (entry) {
          where = 'remote';
          pulledFrom = repo;
          break;
        }
      }
    }
    if (entry) {
      emit({ type: 'cache-hit', where, key });
      const made = await fromEntry(entry);
      recordOutput();
      await lock.save();
      // A hit still fills the shared cache: a machine whose store persists would otherwise never
      // push anything. Only when the repository lacks the key (one HEAD), never pushed twice.
      const pushTo = options.cacheTo ?? p.cache?.to;
      if (pushTo && !options.offline && pushTo !== pulledFrom && !(await cache.has(key, pushTo)))
        await push(entry, pushTo, key);
      return { ...base, ...made, source: where === 'local' ? 'cache' : 'remote-cache', key };
    }
  }

  const { runner, skipped, reason } = await selectRunner(choice, context);
  emit({ type: 'runner', runner: runner.name, skipped, reason });
  if (!local && !resolved) await resolve();

  const outDir = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-out-'));
  try {
    const result = await runner.run({
      ...(resolved ? { image: resolved } : {}),
      command,
      // kiln's own facts about the target last: the build cannot be told another target than the key says.
      env: { ...env, ...targetEnv(target) },
      srcDir: project.sourceDir,
      outDir,
      network,
      ...(options.buildOutput ? { output: options.buildOutput } : {}),
      signal,
    });
    if (result.exitCode !== 0)
      throw new KilnError(
        'E_BUILD_FAILED',
        `the build${target.wasm ? '' : ` for ${formatPlatform(target.platform)}`} failed (exit ${result.exitCode}) in the ${runner.name} runner`,
        {
          hint: "the compiler's own messages are above",
        },
      );
    const built = path.join(outDir, artifact);
    const stat = await fs.lstat(built).catch(() => undefined);
    if (!stat?.isFile()) {
      const found = await fs.readdir(outDir, { recursive: true }).catch(() => [] as string[]);
      throw new KilnError('E_NO_ARTIFACT', `the build wrote no ${OUT_DIR}/${artifact}`, {
        hint: found.length
          ? `${OUT_DIR} holds: ${found.slice(0, 10).join(', ')}; pass --artifact`
          : `it wrote nothing to ${OUT_DIR} ($KILN_OUT)`,
      });
    }
    await checkArtifact(built, target, `${OUT_DIR}/${artifact}`);
    // Packed into the store even when not cached: one deterministic, checked form for every runner.
    const packed = native ? await cache.packExtras(outDir, artifact) : undefined;
    recordOutput();
    await lock.save();
    // What the host's own toolchain built (auto may fall back to it) is never stored under the
    // toolchain image's key: a later sandbox or engine build must not be served it.
    if (key && runner.name !== 'local') {
      const entry = await cache.put(
        key,
        built,
        `${toolchain!.name}@${toolchain!.pinned}`,
        native ? { title: artifact, ...(packed ? { extras: packed } : {}) } : undefined,
      );
      const made = await fromEntry(entry);
      const pushTo = options.cacheTo ?? p.cache?.to;
      if (pushTo && !options.offline) await push(entry, pushTo, key);
      return { ...base, ...made, source: 'build', runner: runner.name, key };
    }
    // Not cached (the local runner): hashed as a stream, never whole in memory.
    const hash = newHash();
    for await (const chunk of createReadStream(built)) hash.update(chunk as Buffer);
    await fs.mkdir(path.dirname(output), { recursive: true });
    await fs.copyFile(built, output);
    if (!target.wasm) await fs.chmod(output, 0o755);
    const extras = await restoreExtras(packed);
    return {
      ...base,
      ...extras,
      digest: `sha256:${hash.digest('hex')}`,
      size: stat.size,
      source: 'build',
      runner: runner.name,
    };
  } finally {
    await fs.rm(outDir, { recursive: true, force: true });
  }
}
