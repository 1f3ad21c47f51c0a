/**
 * Compile benchmark, run by scripts/bench.ts (`--only compile` runs it alone): what the toolchain
 * runners add to the compiler's own time, and what a cached rebuild costs end to end.
 *
 * The toolchain is the Debian C rootfs of the compile tests (clang 14 + wasi-libc, debootstrap'd once
 * per machine under /var/tmp/kiln-test-cache by test/support/toolchain-images.ts), made an image with
 * `kiln append scratch --layer ROOTFS --to oci:DIR:c`. One small C file is compiled to wasm32-wasi by
 * the same command in every contender:
 *
 * 1. the compiler alone: `chroot ROOTFS /bin/sh -c 'cd /src && CMD'` (no namespaces, no mounts);
 * 2. the sandbox runner alone, in this process: `new SandboxRunner().run(job)` (what the < 50 ms target is about);
 * 3. `kiln compile --runner sandbox --no-cache` (the whole kiln process);
 * 4. `kiln compile --runner docker --no-cache` against a private dockerd (also without
 *    NODE_EXTRA_CA_CERTS, and, with KILN_BENCH_BASELINE=DIR, the kiln built in DIR (`DIR/dist/bin`,
 *    e.g. an earlier commit's checkout) for a before/after in the same run);
 * 5. plain `docker run --rm --network none -v SRC:/src:ro -v OUT:/out -w /src IMAGE /bin/sh -c CMD`
 *    (the docker runner's goal: ≤ 1.15× its time);
 *
 * then `kiln build` and `kiln compile` with nothing changed (served from the build cache), and the
 * floors: `node -e 0`, and a bare bwrap sandbox running `true` (the probe kiln runs before a build).
 *
 * Every contender but 2 is a whole process, timed wall-clock from spawn to exit (under /usr/bin/time for
 * CPU and peak RSS). All run round-robin, after an untimed warm-up round; medians are reported. kiln
 * runs as `node dist/bin/kiln.js` (build first; a copy of dist/bin is run) with its store (KILN_HOME)
 * in a temp dir. The docker engine, the temp dirs and the hard-linked rootfs copy are removed at the
 * end, also on failure or Ctrl-C. Needs root (chroot, dockerd), bwrap, docker.io, debootstrap.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import { OciLayout } from '../src/store/layout.js';
import { buildPlatform, resolveToolchain } from '../src/toolchain/images.js';
import type { BuildJob } from '../src/toolchain/runner.js';
import { PROBE_ARGS, SandboxRunner } from '../src/toolchain/sandbox-runner.js';
import { type DockerEngine, dockerSkipReason, startDocker } from '../test/support/docker.js';
import {
  DEBIAN_TOOLCHAINS,
  debianToolchainRootfs,
  debootstrapSkipReason,
} from '../test/support/toolchain-images.js';
import { findTool } from '../test/support/tools.js';
import {
  CLK_TCK,
  firstLine,
  idleLoad,
  machineBusyS,
  median,
  runQuiet,
  sourceState,
  spawnCollect,
  verdict,
  waitQuiet,
} from './bench-common.js';

const TIME_BIN = '/usr/bin/time';
const PATH_ENV = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
/** Debian names it clang-14 (`clang` is in /usr/lib/llvm-14/bin, not on PATH); Debian's sysroot is /usr. */
const COMMAND = 'clang-14 --target=wasm32-wasi --sysroot=/usr -O2 -o /out/app.wasm main.c';
const CACHED_TARGET_MS = 200;
const SANDBOX_TARGET_MS = 50;
/** kiln compile --runner docker against `docker run` of the same image and command (issue 15). */
const DOCKER_RATIO_GOAL = 1.15;
/** How long to wait for another process's debootstrap of the C rootfs. */
const ROOTFS_WAIT_MS = 30 * 60 * 1000;

export interface CompileBenchOptions {
  /** Repository root (dist/bin/kiln.js is found from it). */
  root: string;
  /** Fewer runs and no wait for a quiet machine; a sanity check, not numbers to publish. */
  quick: boolean;
}

export interface CompileBenchResult {
  /** The `## Compile runners` section of BENCHMARKS.md. */
  markdown: string;
}

/** One timed run. */
interface Sample {
  wallMs: number;
  /** user+sys of the process and the children it waited for (/usr/bin/time); NaN if unknown. */
  cpuS: number;
  maxRssKiB: number;
  /**
   * CPU the whole machine spent during the run beyond `cpuS` and this script: the docker engine and
   * the container's processes, processes whose parent never waited for them (the sandbox's), and any
   * background work.
   */
  outsideS: number;
}

type Group = 'build' | 'cached' | 'floor';

interface Contender {
  key: string;
  group: Group;
  label: string;
  /** The command as a reader would type it (for the notes). */
  shown: string;
  run: () => Promise<Sample>;
  samples: Sample[];
}

// ---------------------------------------------------------------------------------------------
// helpers (the shared ones are in bench-common.ts)

/** CPU seconds of this process's reaped children so far (cutime + cstime). */
function childrenCpuS(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[13]) + Number(f[14])) / CLK_TCK; // cutime, cstime (fields 16, 17)
}

function selfCpuS(since: NodeJS.CpuUsage): number {
  const u = process.cpuUsage(since);
  return (u.user + u.system) / 1e6;
}

async function sha256File(file: string): Promise<string> {
  return `sha256:${createHash('sha256')
    .update(await fs.readFile(file))
    .digest('hex')}`;
}

/** True if some process has `needle` on its command line (a debootstrap still writing its target). */
function someProcessMentions(needle: string): boolean {
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${name}/cmdline`, 'utf8').includes(needle)) return true;
    } catch {
      // gone meanwhile
    }
  }
  return false;
}

/**
 * The Debian C toolchain rootfs. Another process (a test run) may be debootstrapping it right now:
 * rather than start a second debootstrap, wait for that one's `.building-c-*` to become complete.
 */
async function cToolchainRootfs(): Promise<string> {
  const cache = process.env['KILN_TEST_CACHE'] ?? '/var/tmp/kiln-test-cache';
  const t0 = Date.now();
  for (let said = false; ; said = true) {
    const names = existsSync(cache) ? readdirSync(cache) : [];
    const complete = names.some(
      (n) => n.startsWith('debootstrap-c-') && existsSync(path.join(cache, n, '.complete')),
    );
    const building = names.filter(
      (n) => n.startsWith('.building-c-') && someProcessMentions(path.join(cache, n)),
    );
    if (complete || building.length === 0) break;
    if (Date.now() - t0 > ROOTFS_WAIT_MS)
      throw new Error(`${path.join(cache, building[0]!)} is still being built after 30 minutes`);
    if (!said) console.log(`setup: waiting for another process's debootstrap (${building.join(', ')})...`);
    await new Promise((resolve) => setTimeout(resolve, 5000));
  }
  if (!existsSync(cache) || !readdirSync(cache).some((n) => n.startsWith('debootstrap-c-')))
    console.log('setup: debootstrapping the C toolchain rootfs (a few minutes, once per machine)...');
  return await debianToolchainRootfs('c');
}

/** ~50 lines of C with printf: a small program, compiled at -O2. */
const MAIN_C = `#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct item {
  const char *name;
  int weight;
  int value;
};

static const struct item items[] = {
  {"map", 9, 150},   {"compass", 13, 35}, {"water", 153, 200}, {"sandwich", 50, 160},
  {"glucose", 15, 60}, {"tin", 68, 45},   {"banana", 27, 60},  {"apple", 39, 40},
};
#define N_ITEMS (sizeof items / sizeof items[0])

static int best[N_ITEMS + 1][401];

/* 0/1 knapsack over the items for a bag of capacity cap. */
static int knapsack(int cap) {
  for (size_t i = 1; i <= N_ITEMS; i++)
    for (int w = 0; w <= cap; w++) {
      best[i][w] = best[i - 1][w];
      int rest = w - items[i - 1].weight;
      if (rest >= 0 && best[i - 1][rest] + items[i - 1].value > best[i][w])
        best[i][w] = best[i - 1][rest] + items[i - 1].value;
    }
  return best[N_ITEMS][cap];
}

static unsigned long fib(unsigned n) {
  unsigned long a = 0, b = 1;
  while (n--) {
    unsigned long t = a + b;
    a = b;
    b = t;
  }
  return a;
}

int main(int argc, char **argv) {
  int cap = argc > 1 ? atoi(argv[1]) : 400;
  if (cap < 0 || cap > 400) cap = 400;
  printf("knapsack(%d) = %d\\n", cap, knapsack(cap));
  for (unsigned n = 10; n <= 50; n += 10) printf("fib(%u) = %lu\\n", n, fib(n));
  char word[32];
  strncpy(word, argc > 2 ? argv[2] : "kiln", sizeof word - 1);
  word[sizeof word - 1] = 0;
  for (size_t i = 0, j = strlen(word); i < j / 2; i++) {
    char t = word[i];
    word[i] = word[j - 1 - i];
    word[j - 1 - i] = t;
  }
  printf("reversed: %s\\n", word);
  return 0;
}
`;

const fmtMs = (ms: number) => (Math.abs(ms) >= 1000 ? ms.toFixed(0) : ms.toFixed(1));

// ---------------------------------------------------------------------------------------------
// the benchmark

export async function compileBench(opts: CompileBenchOptions): Promise<CompileBenchResult> {
  const { root, quick } = opts;
  const builtBin = path.join(root, 'dist', 'bin');
  if (!existsSync(path.join(builtBin, 'kiln.js')))
    throw new Error(`${builtBin}/kiln.js missing: run npm run build first`);
  if (process.getuid?.() !== 0)
    throw new Error('the compile benchmark needs root (chroot, a private dockerd)');
  for (const tool of ['bwrap', 'chroot', 'cp']) if (!findTool(tool)) throw new Error(`'${tool}' not found`);
  const why = debootstrapSkipReason() ?? dockerSkipReason();
  if (why !== undefined) throw new Error(why);
  const bwrap = findTool('bwrap')!;
  const useTime = existsSync(TIME_BIN);
  if (!useTime) console.log(`note: ${TIME_BIN} missing: no CPU or RSS figures for whole processes`);

  const rounds = Number(process.env['KILN_BENCH_COMPILE_RUNS']) || (quick ? 3 : 11);

  const work = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-bench-compile-'));
  const cleanupWork = () => rmSync(work, { recursive: true, force: true, maxRetries: 3 });
  process.once('exit', cleanupWork);
  const onSignal = () => {
    cleanupWork();
    process.exit(130); // the docker support's exit hook stops the engine
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  // The bundled CLI is self-contained: run a copy, so a rebuild of dist/ meanwhile changes nothing.
  const kilnBin = path.join(work, 'kiln', 'bin', 'kiln.js');
  await fs.cp(builtBin, path.dirname(kilnBin), { recursive: true });
  await fs.writeFile(path.join(work, 'kiln', 'package.json'), '{ "type": "module" }\n');
  // jco is not in the bundle (components load it from node_modules).
  await fs.symlink(path.join(root, 'node_modules'), path.join(work, 'kiln', 'node_modules'));
  const built = await sourceState(root);
  // An earlier kiln for a before/after: its own copy, with its own checkout's node_modules.
  const baselineRoot = process.env['KILN_BENCH_BASELINE'];
  let baseline: { bin: string; state: string } | undefined;
  if (baselineRoot) {
    const dir = path.join(work, 'baseline');
    await fs.cp(path.join(baselineRoot, 'dist', 'bin'), path.join(dir, 'bin'), { recursive: true });
    await fs.writeFile(path.join(dir, 'package.json'), '{ "type": "module" }\n');
    await fs.symlink(path.join(baselineRoot, 'node_modules'), path.join(dir, 'node_modules'));
    baseline = { bin: path.join(dir, 'bin', 'kiln.js'), state: await sourceState(baselineRoot) };
  }

  const home = path.join(work, 'home');
  const toolchainDir = path.join(work, 'toolchain');
  const toolchainRef = `oci:${toolchainDir}:c`;
  const proj = path.join(work, 'app');
  const chrootDir = path.join(work, 'rootfs');
  const imageOut = path.join(work, 'image');
  const tmpOuts = path.join(work, 'outs');
  await fs.mkdir(tmpOuts);
  if (process.env['NODE_OPTIONS'])
    console.log(`note: NODE_OPTIONS=${process.env['NODE_OPTIONS']} applies to kiln`);

  let engine: DockerEngine | undefined;
  try {
    // -- setup (untimed) ------------------------------------------------------------------------
    const tSetup = performance.now();
    const rootfs = await cToolchainRootfs();
    console.log(`setup: toolchain rootfs ${rootfs}`);
    // A hard-linked copy (instant, same files and page cache): the chroot contender's root, and the
    // tree the image is made from. Device nodes debootstrap made in /dev are dropped: kiln does not
    // put special files in layers, and the sandbox and docker bring their own /dev.
    await runQuiet('cp', ['-al', rootfs, chrootDir]);
    const specials = (
      await runQuiet('find', [
        chrootDir,
        ...'-xdev ( -type c -o -type b -o -type p -o -type s ) -print -delete'.split(' '),
      ])
    )
      .split('\n')
      .filter(Boolean)
      .map((p) => `/${path.relative(chrootDir, p)}`);
    const envAsIs: NodeJS.ProcessEnv = { ...process.env, KILN_HOME: home };
    const envClean: NodeJS.ProcessEnv = { ...envAsIs };
    delete envClean['NODE_EXTRA_CA_CERTS'];
    const kiln = (...args: string[]) => [process.execPath, kilnBin, ...args];
    console.log('setup: kiln append scratch --layer ROOTFS (one layer of the whole rootfs)...');
    const tAppend = performance.now();
    await runQuiet(
      process.execPath,
      [
        kilnBin,
        '-q',
        'append',
        'scratch',
        '--platform',
        'linux/amd64',
        '--layer',
        chrootDir,
        '--to',
        toolchainRef,
      ],
      { env: envAsIs },
    );
    const appendS = (performance.now() - tAppend) / 1000;
    const layoutBytes = Number(
      (await runQuiet('du', ['-sb', path.join(toolchainDir, 'blobs')])).split('\t')[0] ?? Number.NaN,
    );
    const rootfsBytes = Number((await runQuiet('du', ['-sb', chrootDir])).split('\t')[0] ?? Number.NaN);
    // The chroot sees the source as a copy at /src and writes to /out (not in the image: made after it).
    await fs.mkdir(path.join(chrootDir, 'src'), { recursive: true });
    await fs.mkdir(path.join(chrootDir, 'out'), { recursive: true });
    await fs.mkdir(proj);
    await fs.writeFile(path.join(proj, 'main.c'), MAIN_C);
    await fs.writeFile(path.join(chrootDir, 'src', 'main.c'), MAIN_C);

    console.log('setup: starting a private dockerd...');
    engine = await startDocker();
    const eng = engine;
    envAsIs['DOCKER_HOST'] = eng.host;
    envClean['DOCKER_HOST'] = eng.host;

    // -- the timed process -----------------------------------------------------------------------
    const timeFile = path.join(work, 'time.txt');
    const timed = async (
      argv: string[],
      env: NodeJS.ProcessEnv,
      cwd = work,
    ): Promise<Sample & { stdout: string }> => {
      await fs.rm(timeFile, { force: true });
      const [cmd, ...args] = useTime ? [TIME_BIN, '-f', '%M %U %S', '-o', timeFile, ...argv] : argv;
      const self0 = process.cpuUsage();
      const busy0 = machineBusyS();
      const t0 = performance.now();
      const { code, stdout, stderr } = await spawnCollect(cmd!, args, { cwd, env });
      const wallMs = performance.now() - t0;
      const busyS = machineBusyS() - busy0;
      const selfS = selfCpuS(self0);
      if (code !== 0)
        throw new Error(
          `${argv.join(' ')} failed (exit ${code}): ${(stderr.trim() || stdout.trim()).slice(0, 2000)}`,
        );
      let maxRssKiB = 0;
      let cpuS = Number.NaN;
      if (useTime && existsSync(timeFile)) {
        const last = readFileSync(timeFile, 'utf8').trim().split('\n').pop() ?? '';
        const [m, u, s] = last.split(/\s+/).map(Number);
        maxRssKiB = m ?? 0;
        cpuS = (u ?? Number.NaN) + (s ?? Number.NaN);
      }
      const outsideS = Math.max(0, busyS - (Number.isNaN(cpuS) ? 0 : cpuS) - selfS);
      return { stdout, wallMs, cpuS, maxRssKiB, outsideS };
    };

    // Every artifact is checked (untimed) against the first one the compiler made alone.
    let reference = '';
    const digests = new Map<string, Set<string>>();
    const check = (who: string, digest: string) => {
      if (reference === '') reference = digest;
      const seen = digests.get(who) ?? new Set<string>();
      seen.add(digest);
      digests.set(who, seen);
    };
    const freshOut = () => fs.mkdtemp(path.join(tmpOuts, 'out-'));

    const all: Contender[] = [];
    const add = (key: string, group: Group, label: string, shown: string, run: () => Promise<Sample>) =>
      all.push({ key, group, label, shown, run, samples: [] });

    // 1. The compiler alone. chroot(8) exec's the shell in the rootfs; no namespaces, no mounts: the
    //    source is a copy in the rootfs's /src, /out is emptied before each run (untimed).
    const chrootOut = path.join(chrootDir, 'out');
    const chrootEnv: NodeJS.ProcessEnv = { PATH: PATH_ENV, HOME: '/tmp', KILN_OUT: '/out', KILN_SRC: '/src' };
    add(
      'compiler',
      'build',
      'compiler alone: chroot, no isolation',
      `chroot ROOTFS /bin/sh -c 'cd /src && ${COMMAND}'`,
      async () => {
        await fs.rm(chrootOut, { recursive: true, force: true });
        await fs.mkdir(chrootOut);
        const r = await timed(
          [findTool('chroot')!, chrootDir, '/bin/sh', '-c', `cd /src && ${COMMAND}`],
          chrootEnv,
        );
        check('compiler', await sha256File(path.join(chrootOut, 'app.wasm')));
        return r;
      },
    );

    // 2. The sandbox runner in this process, with the image as kiln's store has it. Same job as kiln
    //    compile gives it: no preset env, no network, the rootfs kiln compile unpacked.
    let sandboxRunner: SandboxRunner | undefined;
    let job: Omit<BuildJob, 'outDir'> | undefined;
    add(
      'sandboxRunner',
      'build',
      'sandbox runner alone (in-process SandboxRunner.run)',
      'new SandboxRunner({ rootfsRoot: KILN_HOME/rootfs }).run(job), in this process',
      async () => {
        if (!sandboxRunner || !job) {
          const store = await OciLayout.open(home);
          const resolved = await resolveToolchain(toolchainRef, {
            store,
            offline: true,
            platform: buildPlatform(),
          });
          sandboxRunner = new SandboxRunner({ rootfsRoot: path.join(home, 'rootfs') });
          job = { image: resolved.image, command: COMMAND, env: {}, srcDir: proj, network: false };
        }
        const outDir = await freshOut();
        const said = new PassThrough();
        let text = '';
        said.setEncoding('utf8').on('data', (d: string) => {
          text += d;
        });
        const self0 = process.cpuUsage();
        const children0 = childrenCpuS();
        const busy0 = machineBusyS();
        const t0 = performance.now();
        const result = await sandboxRunner.run({ ...job, outDir, output: said });
        const wallMs = performance.now() - t0;
        const busyS = machineBusyS() - busy0;
        const cpuS = selfCpuS(self0) + childrenCpuS() - children0;
        if (result.exitCode !== 0)
          throw new Error(`SandboxRunner.run: the build exited with ${result.exitCode}: ${text.trim()}`);
        check('sandboxRunner', await sha256File(path.join(outDir, 'app.wasm')));
        await fs.rm(outDir, { recursive: true, force: true });
        return { wallMs, cpuS, maxRssKiB: 0, outsideS: Math.max(0, busyS - cpuS) };
      },
    );

    // 3, 4. kiln compile, the whole process.
    const compileArgs = (runner: string, ...more: string[]) =>
      kiln(
        '--json',
        'compile',
        proj,
        '--toolchain',
        toolchainRef,
        '--command',
        COMMAND,
        '--runner',
        runner,
        ...more,
      );
    interface CompileJson {
      digest: string;
      source: string;
      runner?: string;
    }
    const kilnCompile =
      (who: string, runner: string, env: NodeJS.ProcessEnv, cached: boolean, output: string, bin = kilnBin) =>
      async () => {
        const argv = compileArgs(runner, '-o', path.join(work, output), ...(cached ? [] : ['--no-cache']));
        argv[1] = bin;
        const r = await timed(argv, env);
        const res = JSON.parse(r.stdout) as CompileJson;
        const want = cached ? 'cache' : 'build';
        if (res.source !== want) throw new Error(`${who}: source ${res.source}, expected ${want}`);
        if (!cached && res.runner !== runner) throw new Error(`${who}: ran in ${res.runner}, not ${runner}`);
        check(who, res.digest);
        return r;
      };
    const shownCompile = (runner: string, more: string) =>
      `kiln compile APP --toolchain oci:DIR:c --command '…' --runner ${runner}${more}`;
    add(
      'kilnSandbox',
      'build',
      'kiln compile --runner sandbox --no-cache',
      shownCompile('sandbox', ' --no-cache'),
      kilnCompile('kilnSandbox', 'sandbox', envAsIs, false, 'sandbox.wasm'),
    );
    add(
      'kilnSandboxClean',
      'build',
      'kiln compile --runner sandbox --no-cache, NODE_EXTRA_CA_CERTS unset',
      `env -u NODE_EXTRA_CA_CERTS ${shownCompile('sandbox', ' --no-cache')}`,
      kilnCompile('kilnSandboxClean', 'sandbox', envClean, false, 'sandbox-clean.wasm'),
    );
    add(
      'kilnDocker',
      'build',
      'kiln compile --runner docker --no-cache',
      `DOCKER_HOST=unix://…/docker.sock ${shownCompile('docker', ' --no-cache')}`,
      kilnCompile('kilnDocker', 'docker', envAsIs, false, 'docker.wasm'),
    );
    add(
      'kilnDockerClean',
      'build',
      'kiln compile --runner docker --no-cache, NODE_EXTRA_CA_CERTS unset',
      `env -u NODE_EXTRA_CA_CERTS DOCKER_HOST=unix://…/docker.sock ${shownCompile('docker', ' --no-cache')}`,
      kilnCompile('kilnDockerClean', 'docker', envClean, false, 'docker-clean.wasm'),
    );
    if (baseline)
      add(
        'kilnDockerBaseline',
        'build',
        `kiln compile --runner docker --no-cache, before (${baseline.state})`,
        `DOCKER_HOST=unix://…/docker.sock node BASELINE/dist/bin/kiln.js compile APP --toolchain oci:DIR:c --command '…' --runner docker --no-cache`,
        kilnCompile('kilnDockerBaseline', 'docker', envAsIs, false, 'docker-baseline.wasm', baseline.bin),
      );

    // 5. Plain docker run of the same image (tagged once it is loaded) on the same engine.
    const dockerTag = 'kiln-bench/c:1';
    add(
      'dockerRun',
      'build',
      'docker run (CLI)',
      `docker run --rm --network none -v APP:/src:ro -v OUT:/out -w /src ${dockerTag} /bin/sh -c '${COMMAND}'`,
      async () => {
        const outDir = await freshOut();
        const r = await timed(
          [
            eng.cli,
            'run',
            '--rm',
            '--network',
            'none',
            '-v',
            `${proj}:/src:ro`,
            '-v',
            `${outDir}:/out`,
            '-w',
            '/src',
            dockerTag,
            '/bin/sh',
            '-c',
            COMMAND,
          ],
          eng.env,
        );
        check('dockerRun', await sha256File(path.join(outDir, 'app.wasm')));
        await fs.rm(outDir, { recursive: true, force: true });
        return r;
      },
    );

    // Cached rebuilds: nothing changed since the untimed build that filled the cache.
    const buildArgs = kiln(
      '--json',
      'build',
      proj,
      '--toolchain',
      toolchainRef,
      '--command',
      COMMAND,
      '--runner',
      'sandbox',
      '--to',
      `oci:${imageOut}:app`,
      '-o',
      path.join(work, 'build.wasm'),
    );
    let imageDigest = '';
    const cachedBuild =
      (who: string, env: NodeJS.ProcessEnv, extra: string[] = []) =>
      async () => {
        const r = await timed([...buildArgs, ...extra], env);
        const res = JSON.parse(r.stdout) as {
          compile: CompileJson;
          images: { descriptor: { digest: string } }[];
        };
        if (res.compile.source !== 'cache')
          throw new Error(`${who}: source ${res.compile.source}, not cache`);
        const digest = res.images[0]?.descriptor.digest ?? '';
        if (imageDigest === '') imageDigest = digest;
        if (digest !== imageDigest) throw new Error(`${who}: image ${digest}, before ${imageDigest}`);
        check(who, res.compile.digest);
        return r;
      };
    const shownBuild = `kiln build APP --toolchain oci:DIR:c --command '…' --runner sandbox --to oci:OUT:app`;
    add('cachedBuild', 'cached', 'kiln build, cached', shownBuild, cachedBuild('cachedBuild', envAsIs));
    add(
      'cachedBuildClean',
      'cached',
      'kiln build, cached, NODE_EXTRA_CA_CERTS unset',
      `env -u NODE_EXTRA_CA_CERTS ${shownBuild}`,
      cachedBuild('cachedBuildClean', envClean),
    );
    // What the SBOM (made and attached on every build) costs of the above.
    add(
      'cachedBuildNoSbom',
      'cached',
      'kiln build, cached, NODE_EXTRA_CA_CERTS unset, --no-sbom',
      `env -u NODE_EXTRA_CA_CERTS ${shownBuild} --no-sbom`,
      cachedBuild('cachedBuildNoSbom', envClean, ['--no-sbom']),
    );
    add(
      'cachedCompile',
      'cached',
      'kiln compile, cached',
      shownCompile('sandbox', ''),
      kilnCompile('cachedCompile', 'sandbox', envAsIs, true, 'cached.wasm'),
    );

    // Floors.
    add('node', 'floor', 'node -e 0', 'node -e 0', () => timed([process.execPath, '-e', '0'], envAsIs));
    add(
      'nodeClean',
      'floor',
      'node -e 0, NODE_EXTRA_CA_CERTS unset',
      'env -u NODE_EXTRA_CA_CERTS node -e 0',
      () => timed([process.execPath, '-e', '0'], envClean),
    );
    add('kilnVersion', 'floor', 'kiln --version', 'kiln --version', () => timed(kiln('--version'), envAsIs));
    // The docker CLI's own start-up, which `docker run` pays as kiln pays Node's.
    add('dockerVersion', 'floor', 'docker --version', 'docker --version', () =>
      timed([eng.cli, '--version'], eng.env),
    );
    // The probe kiln's sandbox runner makes once per process before a build (a sandbox like a build's).
    const probeArgs = PROBE_ARGS;
    add(
      'bwrapTrue',
      'floor',
      'bwrap … true (the probe kiln runs once per process)',
      `bwrap ${probeArgs.join(' ')}`,
      () => timed([bwrap, ...probeArgs], envAsIs),
    );

    // First runs, untimed: the store gets the toolchain (kiln.lock pins it), the sandbox unpacks its
    // rootfs, the docker runner loads the image into the engine, the build cache gets the artifact.
    console.log('setup: first sandbox compile (pulls the toolchain into the store, unpacks the rootfs)...');
    const tFirstSandbox = performance.now();
    await timed(compileArgs('sandbox', '-o', path.join(work, 'first.wasm'), '--no-cache'), envAsIs);
    const firstSandboxS = (performance.now() - tFirstSandbox) / 1000;
    console.log('setup: first docker compile (loads the image into the engine)...');
    const tFirstDocker = performance.now();
    await timed(compileArgs('docker', '-o', path.join(work, 'first-docker.wasm'), '--no-cache'), envAsIs);
    const firstDockerS = (performance.now() - tFirstDocker) / 1000;
    const layout = await OciLayout.open(toolchainDir);
    const configDigest = (
      JSON.parse((await layout.readBlob((await layout.resolve('c')).digest)).toString()) as {
        config: { digest: string };
      }
    ).config.digest;
    const tagged = await eng.docker(['tag', configDigest, dockerTag]);
    if (tagged.code !== 0)
      throw new Error(
        `docker tag ${configDigest} ${dockerTag}: ${tagged.stderr.trim()} (was the image loaded?)`,
      );
    console.log('setup: first build (fills the build cache)...');
    const first = JSON.parse((await timed(buildArgs, envAsIs)).stdout) as { compile: CompileJson };
    if (first.compile.source === 'cache') throw new Error('the first build came from the cache');
    console.log(`setup took ${((performance.now() - tSetup) / 1000).toFixed(1)} s`);

    console.log('warm-up round...');
    for (const c of all) await c.run();

    // -- timed rounds: round-robin, starting one further each round ------------------------------
    const quietWaitS = Number(process.env['KILN_BENCH_QUIET_WAIT'] ?? (quick ? 0 : 600));
    const waited = quietWaitS > 0 ? await waitQuiet(quietWaitS) : undefined;
    if (waited)
      console.log(
        `waited ${waited.waitedS.toFixed(0)} s for a quiet machine${waited.quiet ? '' : ': it did not get quiet, going on'}`,
      );
    const idleBefore = await idleLoad(3000);
    console.log(`background load before: ${idleBefore.toFixed(2)} cores busy with nothing of ours running`);
    const load0 = os.loadavg();
    const busy0 = machineBusyS();
    const t0 = performance.now();
    for (let i = 0; i < rounds; i++) {
      for (let j = 0; j < all.length; j++) {
        const c = all[(i + j) % all.length]!;
        c.samples.push(await c.run());
      }
      console.log(
        `  round ${i + 1}/${rounds}: ${all.map((c) => `${c.key} ${fmtMs(c.samples[i]!.wallMs)}`).join(', ')}`,
      );
    }
    const elapsedS = (performance.now() - t0) / 1000;
    const load1 = os.loadavg();
    const machineLoad = (machineBusyS() - busy0) / elapsedS;
    const idleAfter = await idleLoad(3000);
    console.log(`background load after: ${idleAfter.toFixed(2)} cores`);

    // -- report ---------------------------------------------------------------------------------
    const byKey = (key: string) => all.find((c) => c.key === key)!;
    const wall = (key: string) => median(byKey(key).samples.map((s) => s.wallMs));
    const mid = (c: Contender) => {
      const w = median(c.samples.map((s) => s.wallMs));
      return c.samples.reduce((best, s) => (Math.abs(s.wallMs - w) < Math.abs(best.wallMs - w) ? s : best));
    };
    /** Median of the per-round differences a − b (the two ran within seconds of each other). */
    const paired = (a: string, b: string) => {
      const xs = byKey(a).samples;
      const ys = byKey(b).samples;
      return median(xs.map((x, i) => x.wallMs - ys[i]!.wallMs));
    };

    const compilerMs = wall('compiler');
    const sandboxOver = wall('sandboxRunner') - compilerMs;
    const targets: [string, string, string, boolean | undefined][] = [
      [
        'sandbox runner alone − compiler alone',
        `${fmtMs(sandboxOver)} ms (paired ${fmtMs(paired('sandboxRunner', 'compiler'))})`,
        `< ${SANDBOX_TARGET_MS} ms`,
        sandboxOver < SANDBOX_TARGET_MS,
      ],
      ['bwrap … true (a bare sandbox, the probe)', `${fmtMs(wall('bwrapTrue'))} ms`, '–', undefined],
      [
        'kiln compile --runner sandbox − compiler alone',
        `${fmtMs(wall('kilnSandbox') - compilerMs)} ms`,
        '–',
        undefined,
      ],
      [
        "kiln compile --runner sandbox − sandbox runner alone − node -e 0: kiln's own work in the process (CLI load and probe included)",
        `${fmtMs(wall('kilnSandbox') - wall('sandboxRunner') - wall('node'))} ms`,
        '–',
        undefined,
      ],
      [
        "of which kiln --version − node -e 0: loading kiln's CLI bundle",
        `${fmtMs(wall('kilnVersion') - wall('node'))} ms`,
        '–',
        undefined,
      ],
      [
        'kiln compile --runner sandbox, NODE_EXTRA_CA_CERTS unset − compiler alone',
        `${fmtMs(wall('kilnSandboxClean') - compilerMs)} ms`,
        '–',
        undefined,
      ],
      ['docker run − compiler alone', `${fmtMs(wall('dockerRun') - compilerMs)} ms`, '–', undefined],
      [
        'kiln compile --runner docker − compiler alone',
        `${fmtMs(wall('kilnDocker') - compilerMs)} ms`,
        '–',
        undefined,
      ],
      [
        'kiln compile --runner docker − docker run',
        `${fmtMs(wall('kilnDocker') - wall('dockerRun'))} ms (paired ${fmtMs(paired('kilnDocker', 'dockerRun'))})`,
        '–',
        undefined,
      ],
      [
        'kiln compile --runner docker / docker run',
        `${(wall('kilnDocker') / wall('dockerRun')).toFixed(2)}×`,
        `≤ ${DOCKER_RATIO_GOAL}×`,
        wall('kilnDocker') / wall('dockerRun') <= DOCKER_RATIO_GOAL,
      ],
      [
        'kiln compile --runner docker, NODE_EXTRA_CA_CERTS unset / docker run',
        `${(wall('kilnDockerClean') / wall('dockerRun')).toFixed(2)}×`,
        `≤ ${DOCKER_RATIO_GOAL}×`,
        wall('kilnDockerClean') / wall('dockerRun') <= DOCKER_RATIO_GOAL,
      ],
      ...(baseline
        ? ([
            [
              'kiln compile --runner docker, before / docker run',
              `${(wall('kilnDockerBaseline') / wall('dockerRun')).toFixed(2)}×`,
              `≤ ${DOCKER_RATIO_GOAL}×`,
              wall('kilnDockerBaseline') / wall('dockerRun') <= DOCKER_RATIO_GOAL,
            ],
            [
              'kiln compile --runner docker: before − now',
              `${fmtMs(wall('kilnDockerBaseline') - wall('kilnDocker'))} ms (paired ${fmtMs(paired('kilnDockerBaseline', 'kilnDocker'))})`,
              '–',
              undefined,
            ],
          ] as [string, string, string, boolean | undefined][])
        : []),
      [
        'kiln compile --runner docker − docker run − (node -e 0 − docker --version): beyond the two start-ups',
        `${fmtMs(wall('kilnDocker') - wall('dockerRun') - (wall('node') - wall('dockerVersion')))} ms`,
        '–',
        undefined,
      ],
      [
        'kiln compile: --runner docker − --runner sandbox',
        `${fmtMs(wall('kilnDocker') - wall('kilnSandbox'))} ms`,
        '–',
        undefined,
      ],
      [
        'kiln build, cached (end to end)',
        `${fmtMs(wall('cachedBuild'))} ms`,
        `< ${CACHED_TARGET_MS} ms`,
        wall('cachedBuild') < CACHED_TARGET_MS,
      ],
      [
        'kiln build, cached, NODE_EXTRA_CA_CERTS unset',
        `${fmtMs(wall('cachedBuildClean'))} ms`,
        `< ${CACHED_TARGET_MS} ms`,
        wall('cachedBuildClean') < CACHED_TARGET_MS,
      ],
      ['kiln compile, cached', `${fmtMs(wall('cachedCompile'))} ms`, '–', undefined],
      [
        'kiln build, cached, NODE_EXTRA_CA_CERTS unset, --no-sbom',
        `${fmtMs(wall('cachedBuildNoSbom'))} ms`,
        `< ${CACHED_TARGET_MS} ms`,
        wall('cachedBuildNoSbom') < CACHED_TARGET_MS,
      ],
      [
        'kiln build, cached, NODE_EXTRA_CA_CERTS unset − node -e 0 (unset)',
        `${fmtMs(wall('cachedBuildClean') - wall('nodeClean'))} ms`,
        '–',
        undefined,
      ],
    ];

    const groupTitle: Record<Group, string> = {
      build: '1. compile main.c, no cache',
      cached: '2. rebuild, nothing changed (build cache)',
      floor: 'Start-up floors, for reference',
    };
    const groups: Group[] = ['build', 'cached', 'floor'];
    const shownOrder = [...all].sort((x, y) => groups.indexOf(x.group) - groups.indexOf(y.group));
    const rows = shownOrder.map((c, i) => {
      const m = mid(c);
      const title = i > 0 && shownOrder[i - 1]!.group === c.group ? '' : groupTitle[c.group];
      return `| ${title} | ${c.label} | ${fmtMs(median(c.samples.map((s) => s.wallMs)))} | ${c.samples.map((s) => fmtMs(s.wallMs)).join(', ')} | ${Number.isNaN(m.cpuS) ? '–' : m.cpuS.toFixed(2)} | ${m.maxRssKiB ? (m.maxRssKiB / 1024).toFixed(0) : '–'} | ${median(c.samples.map((s) => s.outsideS)).toFixed(2)} |`;
    });

    // Artifacts: every run's must be the compiler's own.
    const odd = [...digests].filter(([, set]) => set.size !== 1 || !set.has(reference)).map(([who]) => who);
    const artifactNote = odd.length
      ? `**artifacts differ** from the compiler's own (${reference.slice(0, 19)}…) in: ${odd.join(', ')}`
      : `every run of every contender made the same app.wasm as the compiler alone (${reference.slice(0, 19)}…, checked untimed after each run)`;

    const cpuModel =
      readFileSync('/proc/cpuinfo', 'utf8')
        .match(/model name\s*:\s*(.*)/)?.[1]
        ?.trim() ?? 'unknown CPU';
    const osName =
      readFileSync('/etc/os-release', 'utf8').match(/^PRETTY_NAME="?([^"\n]*)"?/m)?.[1] ?? os.type();
    const bwrapVersion = await firstLine(bwrap, ['--version']);
    const serverVersion = (await eng.docker(['version', '--format', '{{.Server.Version}}'])).stdout.trim();
    const cliVersion = await firstLine(eng.cli, ['--version']);
    const driver = (await eng.docker(['info', '--format', '{{.Driver}}'])).stdout.trim();
    const runcVersion = await firstLine(findTool('runc') ?? 'runc', ['--version']);
    const clangVersion = await firstLine(
      findTool('chroot')!,
      [chrootDir, '/usr/bin/clang-14', '--version'],
      chrootEnv,
    );
    const extraCa = process.env['NODE_EXTRA_CA_CERTS'];
    const allOther = all.flatMap((c) => (c.group === 'floor' ? c.samples.map((s) => s.outsideS) : []));
    const loadNote =
      Math.max(idleBefore, idleAfter) > 0.15
        ? 'Other work was running on the machine: the times are inflated by it.'
        : 'The machine was otherwise quiet.';

    const about: Record<string, string> = {
      compiler: `\`chroot\` into the hard-linked copy of the rootfs (the image's files; as root, no namespaces, no mounts, so no /proc and a /tmp on disk), with the environment the runners give (PATH, HOME=/tmp, KILN_OUT, KILN_SRC) and main.c copied into its /src once; /out emptied before each run, untimed. Exec of chroot, the shell, clang and wasm-ld: the compiler's own time`,
      sandboxRunner: `\`SandboxRunner.run\` (src/toolchain/sandbox-runner.ts) called in this process, with the image resolved from the store once (\`resolveToolchain(…, { offline: true })\`) and the rootfs kiln compile unpacked, the same job kiln compile gives it: stat of the rootfs and the directories, bwrap making user, pid, mount, net, ipc, uts and cgroup namespaces with the rootfs read-only at /, /dev, /proc, a tmpfs /tmp, /src read-only and /out, then the build, then waiting for the sandbox's init to be gone. No Node start-up and no probe (done once, in the warm-up). The < ${SANDBOX_TARGET_MS} ms target is about this one`,
      kilnSandbox:
        'The whole kiln process: Node start-up, CLI, kiln.lock, source listing, toolchain lookup in the store, the bwrap probe, the sandbox run, the artifact copied out. `--no-cache`: the build cache is neither read nor written',
      kilnSandboxClean: 'The same, without NODE_EXTRA_CA_CERTS in its environment',
      kilnDocker:
        "The same through the Engine API (node's http on the unix socket, no client library): container created by the image's ID (no network, no capabilities, no-new-privileges, read-only root, tmpfs /tmp, /src and /out bind-mounted), attached, started, waited for, removed",
      kilnDockerClean: 'The same, without NODE_EXTRA_CA_CERTS in its environment',
      kilnDockerBaseline:
        'The same with the kiln built in KILN_BENCH_BASELINE (its own dist/bin and node_modules): the docker runner as it was before, for a before/after in this run',
      dockerRun:
        "The docker CLI against the same engine and image (tagged once); nothing beyond the options shown, so it keeps Docker's default capabilities and a writable root",
      cachedBuild:
        'Nothing changed since an untimed build filled the cache: kiln lists and hashes the sources, finds the key in the local build cache, extracts the .wasm, packages it and writes the (unchanged) image to an OCI layout; no runner starts. Each run is checked to have come from the cache and to give the same image digest',
      cachedBuildClean: 'The same, without NODE_EXTRA_CA_CERTS in its environment',
      cachedCompile: 'The same cache hit without the packaging',
      node: 'Node start-up, which every kiln run pays',
      nodeClean: 'The same, without NODE_EXTRA_CA_CERTS',
      kilnVersion: "Node start-up plus loading kiln's CLI bundle (dist/bin/kiln.js), no command",
      dockerVersion:
        "The docker CLI's start-up (a Go binary), which `docker run` pays where kiln pays Node's",
      bwrapTrue:
        "A sandbox of the host's / running `true`: what making bwrap's namespaces and mounts costs. the same sandbox as the availability probe kiln's sandbox runner makes once per process (probeBwrap in sandbox-runner.ts)",
    };
    const md = [
      '## Compile runners',
      '',
      "What the toolchain runners add to the compiler's own time, and a cached rebuild end to end. Generated by",
      '`scripts/bench.ts` (`npm run build && node --import tsx scripts/bench.ts --only compile` runs this section alone).',
      '',
      `- Date: ${new Date().toISOString()}`,
      `- Machine: ${os.availableParallelism()} cores, ${cpuModel}, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB RAM, ${osName}, Linux ${os.release()}`,
      `- Node ${process.version}; ${bwrapVersion}; dockerd ${serverVersion} (storage driver ${driver}), CLI: ${cliVersion}; ${runcVersion}; kiln: the checkout was at ${built} when the run began`,
      `- Toolchain: the Debian bookworm C rootfs of the compile tests (\`debootstrap --variant=minbase\` of ${DEBIAN_TOOLCHAINS.c.join(', ')}; ${clangVersion}), ${(rootfsBytes / 1e6).toFixed(0)} MB, made an image with \`kiln append scratch --platform linux/amd64 --layer ROOTFS --to oci:DIR:c\` (one layer, ${(layoutBytes / 1e6).toFixed(0)} MB gzipped, ${appendS.toFixed(0)} s) from a hard-linked copy of it${specials.length ? ` without the device nodes debootstrap left in /dev (${specials.join(', ')}): \`kiln append\` refuses special files` : ''}.`,
      `- Build: \`${COMMAND}\` in /src, a ${MAIN_C.split('\n').length - 1}-line main.c (a knapsack, Fibonacci, printf). The same explicit command in every contender rather than the C preset's script (which picks the newest /usr/bin/clang-NN): Debian's clang is \`clang-14\` on PATH, \`clang\` is only in /usr/lib/llvm-14/bin.`,
      `- kiln runs as \`node dist/bin/kiln.js\` (a copy of dist/bin taken at the start) with KILN_HOME in a temp dir; \`--toolchain oci:DIR:c\` is pinned in APP/kiln.lock and in the store after an untimed first run (${firstSandboxS.toFixed(0)} s with the sandbox, which unpacks the rootfs, ${firstDockerS.toFixed(0)} s with docker, which loads the image into the engine). The docker engine is a private \`dockerd\` started by the script (test/support/docker.ts: own data-root in /tmp, no bridge, no iptables).`,
      `- Runs: ${rounds} round${rounds === 1 ? '' : 's'} of all ${all.length} contenders, round-robin (each round starts one further), after one untimed warm-up round${quick ? ' (quick mode)' : ''}. Times are medians of wall-clock time from spawn to exit of the whole process; the in-process sandbox runner from the call to its return.`,
      `- Load: ${waited ? (waited.quiet ? `the timed part started once the machine had been quiet for 6 s (waited ${waited.waitedS.toFixed(0)} s); ` : `the machine did not get quiet within ${quietWaitS} s, the timed part started anyway; `) : ''}with nothing of the benchmark's running, ${idleBefore.toFixed(2)} cores were busy just before the timed part and ${idleAfter.toFixed(2)} just after (3 s each, /proc/stat). Load average ${load0.map((l) => l.toFixed(2)).join(' ')} at the start, ${load1.map((l) => l.toFixed(2)).join(' ')} at the end; ${machineLoad.toFixed(2)} cores busy on average over the timed part, all included; CPU outside the floors' processes: median ${median(allOther).toFixed(2)} s. ${loadNote}`,
      '',
      '| Benchmark | Contender | Median (ms) | Runs (ms) | CPU user+sys (s) | Peak RSS (MiB) | CPU outside the process (s) |',
      '| --- | --- | ---: | --- | ---: | ---: | ---: |',
      ...rows,
      '',
      '| Overhead | Measured | Target | Result |',
      '| --- | ---: | ---: | --- |',
      ...targets.map(
        ([label, value, target, ok]) =>
          `| ${label} | ${value} | ${target} | ${ok === undefined ? 'info' : verdict(ok)} |`,
      ),
      '',
      'Differences are of the medians; "paired" is the median of the per-round differences (the two ran within seconds of each other).',
      '',
      'What each contender measures:',
      '',
      ...shownOrder.map((c) => `- ${c.label}: \`${c.shown}\`${about[c.key] ? `. ${about[c.key]}.` : ''}`),
      '- APP is the project directory (main.c and the kiln.lock kiln writes), DIR the OCI layout of the toolchain image, OUT a fresh empty directory per run (made and removed untimed). kiln runs always with `--json` (to check what it did) and `-o` outside APP.',
      `- CPU user+sys and peak RSS: \`/usr/bin/time -f "%M %U %S"\` of the median run: the process and the children it waited for (peak RSS is the largest single one: clang's ~90 MiB for the compiler, kiln's own for the kiln rows). Not counted there: the sandbox's processes (bwrap exits once its command has, without waiting for the sandbox's init, so clang's CPU and memory never reach kiln's rusage) and everything docker runs (dockerd, containerd, the shim, runc and the container's clang). For the in-process runner: this process's CPU during the call plus its reaped children's (bwrap), no RSS.`,
      "- CPU outside the process: busy CPU of the whole machine during the run (/proc/stat) minus the contender's own and this script's: the engine and the container for docker, clang for the sandbox rows, and any background work (the floors show how much of that there was).",
      `- NODE_EXTRA_CA_CERTS: this machine sets it (${extraCa ?? 'unset here'}), and Node reads and parses that bundle at every start-up before any of kiln's code runs: compare the two \`node -e 0\` rows (${fmtMs(wall('node') - wall('nodeClean'))} ms). The "unset" rows run kiln without it.`,
      `- Check: ${artifactNote}.`,
      '',
    ].join('\n');
    return { markdown: md };
  } finally {
    await engine?.stop();
    cleanupWork();
    process.off('exit', cleanupWork);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
