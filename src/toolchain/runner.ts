/**
 * The one interface every runner implements (docker/podman engine, bubblewrap sandbox, host), and
 * what a build is: a shell command run in a toolchain image with the source at /src (read-only,
 * the working directory) and an empty /out (writable, also $KILN_OUT) whose files are the artifacts.
 */
import type { Descriptor, ImageConfig } from '../oci/types.js';
import type { OciLayout } from '../store/layout.js';

/** Where a compile runs: docker, podman, kiln's sandbox, or locally. */
export type RunnerName = 'docker' | 'podman' | 'sandbox' | 'local';
/** The runners a compile can use. */
export const RUNNER_NAMES: readonly RunnerName[] = ['docker', 'podman', 'sandbox', 'local'];

/** Where a build sees its inputs and outputs inside a container. */
export const SRC_DIR = '/src';
export const OUT_DIR = '/out';

/** A toolchain image pinned by digest and present in kiln's store (pulled there first). */
export interface ToolchainImage {
  /** The reference as the user, kiln.yaml or the preset named it. */
  name: string;
  /** The platform's image manifest, in `store`. */
  descriptor: Descriptor;
  config: ImageConfig;
  store: OciLayout;
}

export interface BuildJob {
  /** Absent only for the local runner. */
  image?: ToolchainImage;
  /** Run by `/bin/sh -c` in SRC_DIR. */
  command: string;
  /** Variables on top of the image's own Env (preset's, kiln.yaml's, --env). */
  env: Record<string, string>;
  /** Host directory mounted read-only at SRC_DIR. */
  srcDir: string;
  /** Host directory (existing, empty) mounted writable at OUT_DIR. */
  outDir: string;
  /** Give the build a network (default: none). */
  network: boolean;
  /** Where the build's stdout and stderr go (default: kiln's stderr, so stdout stays for --json). */
  output?: NodeJS.WritableStream;
  signal?: AbortSignal;
}

export interface RunResult {
  runner: RunnerName;
  /** The build command's exit status (non-zero is not thrown: the caller reports it). */
  exitCode: number;
}

export interface Runner {
  readonly name: RunnerName;
  /** Undefined when the runner can run here, else why not (one line, for `auto` and errors). */
  unavailable(): Promise<string | undefined>;
  /**
   * Runs the job. Throws KilnError for kiln's own failures (engine unreachable, image missing,
   * E_ABORTED on the signal); leaves nothing behind (container, temp dirs) on any path.
   */
  run(job: BuildJob): Promise<RunResult>;
}

/**
 * The environment a containerised build sees: the image's Env, then HOME=/tmp (toolchains write
 * caches there; the root filesystem is read-only), KILN_OUT and KILN_SRC, then the job's own.
 * Every container runner uses this, so the same build sees the same environment on each.
 */
export function containerEnv(image: ToolchainImage | undefined, env: Record<string, string>): string[] {
  const merged = new Map<string, string>();
  for (const entry of image?.config.config?.Env ?? []) {
    const eq = entry.indexOf('=');
    if (eq > 0) merged.set(entry.slice(0, eq), entry.slice(eq + 1));
  }
  if (!merged.has('PATH')) merged.set('PATH', '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin');
  merged.set('HOME', '/tmp');
  merged.set('KILN_OUT', OUT_DIR);
  merged.set('KILN_SRC', SRC_DIR);
  for (const [k, v] of Object.entries(env)) merged.set(k, v);
  return [...merged].map(([k, v]) => `${k}=${v}`);
}
