/**
 * Registry benchmark, run by scripts/bench.ts (`--only registry` runs it alone): kiln against skopeo
 * between two real docker-registry processes on loopback, in one run.
 *
 * 1. Cold copy: a multi-layer image of incompressible data from registry A to a fresh repository on
 *    registry B, `kiln copy` and `skopeo copy` alternating; median wall time, kiln/skopeo ratio, peak RSS.
 * 2. Warm copy: the same copy of a 10-layer image that B already holds in full.
 * 3. `kiln package hello.wasm --to REGISTRY/hello:N` end to end, with `skopeo copy oci:LAYOUT docker://…`
 *    of the same image beside it, and `node -e 0` as the floor every Node program pays, with `kiln --version`
 *    (kiln's own floor: it answers before the CLI loads) beside it. Issue 15's goals are checked: warm copy
 *    ≤ 1.5× skopeo, package ≤ 2× skopeo, --version ≤ 8 ms and a warm copy ≤ 40 ms over `node -e 0`.
 *
 * Every contender is a whole process, timed wall-clock from spawn to exit (under /usr/bin/time for CPU
 * and peak RSS). kiln runs as `node dist/bin/kiln.js` (build first; a copy of dist/bin is run), with its cache (KILN_HOME) in a temp
 * dir. The small contenders run round-robin, so all see the same machine. Registries and temp dirs are
 * removed at the end, also on failure or Ctrl-C.
 */
import { existsSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { makeImage } from '../test/support/images.js';
import { type OpenRegistry, startRegistry } from '../test/support/registry.js';
import { findTool } from '../test/support/tools.js';
import {
  CLK_TCK,
  firstLine,
  idleLoad,
  machineBusyS,
  median,
  sourceState,
  spawnCollect,
  verdict,
  waitQuiet,
} from './bench-common.js';

const TIME_BIN = '/usr/bin/time';
const MIB = 2 ** 20;

export interface RegistryBenchOptions {
  /** Repository root (dist/bin/kiln.js and examples/ are found from it). */
  root: string;
  /** Smaller image and fewer runs; a sanity check, not numbers to publish. */
  quick: boolean;
}

export interface RegistryBenchResult {
  /** The `## Registry …` section of BENCHMARKS.md. */
  markdown: string;
}

/** One timed process. */
interface Sample {
  wallMs: number;
  cpuS: number;
  maxRssKiB: number;
  /** CPU seconds both registries spent during the run. */
  registryCpuS: number;
  /** Cores kept busy by anything else (not the contender, the registries or this script), on average. */
  otherLoad: number;
}

interface Contender {
  key: string;
  group: 'cold' | 'warm' | 'package' | 'floor';
  label: string;
  /** The command as a reader would type it (for the notes). */
  shown: string;
  samples: Sample[];
}

// ---------------------------------------------------------------------------------------------
// helpers

/** CPU seconds (user+sys) a process has used so far; 0 once it is gone. */
function processCpuS(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / CLK_TCK; // utime, stime (fields 14, 15)
  } catch {
    return 0;
  }
}

/** The pid of the docker-registry serving `reg` (found by its config path on the command line). */
function registryPid(reg: OpenRegistry): number | undefined {
  const config = path.join(reg.dir, 'config.json');
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const argv = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0');
      if (argv.includes('serve') && argv.includes(config)) return Number(name);
    } catch {
      // gone meanwhile
    }
  }
  return undefined;
}

class Runner {
  private readonly timeFile: string;
  private readonly useTime = existsSync(TIME_BIN);

  constructor(
    work: string,
    private readonly cwd: string,
    /** The registries whose CPU is counted apart (the source and the current destination). */
    public registryPids: number[],
  ) {
    this.timeFile = path.join(work, 'time.txt');
  }

  /** Runs argv to completion and measures it; throws with its stderr if it fails. */
  async run(argv: string[], env: NodeJS.ProcessEnv): Promise<Sample & { stdout: string }> {
    await fs.rm(this.timeFile, { force: true });
    const [cmd, ...args] = this.useTime ? [TIME_BIN, '-f', '%M %U %S', '-o', this.timeFile, ...argv] : argv;
    const reg0 = this.registryCpu();
    const self0 = process.cpuUsage();
    const busy0 = machineBusyS();
    const t0 = performance.now();
    const { code, stdout, stderr } = await spawnCollect(cmd!, args, { cwd: this.cwd, env });
    const wallMs = performance.now() - t0;
    const busyS = machineBusyS() - busy0;
    const self = process.cpuUsage(self0);
    const registryCpuS = this.registryCpu() - reg0;
    if (code !== 0)
      throw new Error(
        `${argv.join(' ')} failed (exit ${code}): ${(stderr.trim() || stdout.trim()).slice(0, 2000)}`,
      );
    let maxRssKiB = 0;
    let cpuS = Number.NaN;
    if (this.useTime && existsSync(this.timeFile)) {
      const last = readFileSync(this.timeFile, 'utf8').trim().split('\n').pop() ?? '';
      const [m, u, s] = last.split(/\s+/).map(Number);
      maxRssKiB = m ?? 0;
      cpuS = (u ?? Number.NaN) + (s ?? Number.NaN);
    }
    const selfS = (self.user + self.system) / 1e6;
    const otherLoad = Math.max(0, (busyS - cpuS - registryCpuS - selfS) / (wallMs / 1000));
    return { stdout, wallMs, cpuS, maxRssKiB, registryCpuS, otherLoad };
  }

  private registryCpu(): number {
    return this.registryPids.reduce((sum, pid) => sum + processCpuS(pid), 0);
  }
}

const MANIFEST_ACCEPT = [
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
].join(', ');

/** The digest the registry serves for repo:tag (HEAD, Docker-Content-Digest). */
async function remoteDigest(reg: OpenRegistry, repo: string, tag: string): Promise<string> {
  const res = await fetch(`${reg.url}/v2/${repo}/manifests/${tag}`, {
    method: 'HEAD',
    headers: { Accept: MANIFEST_ACCEPT },
  });
  if (res.status !== 200) throw new Error(`HEAD ${reg.host}/${repo}:${tag} → ${res.status}`);
  return res.headers.get('docker-content-digest') ?? '';
}

const fmtMs = (ms: number) => (ms >= 1000 ? ms.toFixed(0) : ms.toFixed(1));

// ---------------------------------------------------------------------------------------------
// the benchmark

export async function registryBench(opts: RegistryBenchOptions): Promise<RegistryBenchResult> {
  const { root, quick } = opts;
  const builtBin = path.join(root, 'dist', 'bin');
  const helloWasm = path.join(root, 'examples', 'hello', 'hello.wasm');
  if (!existsSync(path.join(builtBin, 'kiln.js')))
    throw new Error(`${builtBin}/kiln.js missing: run npm run build first`);
  const skopeo = findTool('skopeo');
  if (!skopeo) throw new Error("'skopeo' not found (apt-get install skopeo)");
  if (!findTool('docker-registry'))
    throw new Error("'docker-registry' not found (apt-get install docker-registry)");

  const coldRuns = Number(process.env['KILN_BENCH_COPY_RUNS']) || 3;
  const smallRuns = Number(process.env['KILN_BENCH_SMALL_RUNS']) || (quick ? 5 : 10);
  const coldLayers = 8;
  const coldLayerBytes = (quick ? 4 : 32) * MIB;
  const warmLayers = 10;
  const warmLayerBytes = 1 * MIB;

  const work = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-bench-registry-'));
  const cleanupWork = () => rmSync(work, { recursive: true, force: true, maxRetries: 3 });
  process.once('exit', cleanupWork);
  const onSignal = () => {
    cleanupWork();
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  // The bundled CLI is self-contained: run a copy of it, so a rebuild of dist/ during the run (tests
  // running on the same checkout) cannot change what is measured half-way.
  const kilnBin = path.join(work, 'kiln', 'bin', 'kiln.js');
  await fs.cp(builtBin, path.dirname(kilnBin), { recursive: true });
  await fs.writeFile(path.join(work, 'kiln', 'package.json'), '{ "type": "module" }\n');

  // kiln's cache in the temp dir; the as-is environment otherwise (NODE_EXTRA_CA_CERTS included).
  const envAsIs: NodeJS.ProcessEnv = { ...process.env, KILN_HOME: path.join(work, 'kiln-home') };
  const envClean: NodeJS.ProcessEnv = { ...envAsIs };
  delete envClean['NODE_EXTRA_CA_CERTS'];
  const extraCa = process.env['NODE_EXTRA_CA_CERTS'];
  const built = await sourceState(root);
  if (process.env['NODE_OPTIONS'])
    console.log(`note: NODE_OPTIONS=${process.env['NODE_OPTIONS']} applies to kiln`);

  const regs: OpenRegistry[] = [];
  try {
    const a = await startRegistry({ auth: 'none' });
    regs.push(a);
    const b = await startRegistry({ auth: 'none' });
    regs.push(b);
    const pids = [registryPid(a), registryPid(b)].filter((p): p is number => p !== undefined);
    if (pids.length !== 2) console.log('note: registry pids not found; their CPU is counted as other load');
    const runner = new Runner(work, root, pids);
    console.log(`registries: A ${a.host}, B ${b.host}`);

    const kiln = (...args: string[]) => [process.execPath, kilnBin, ...args];
    const skopeoCopy = (src: string, dst: string) => [
      skopeo,
      '--insecure-policy',
      'copy',
      '--quiet',
      '--src-tls-verify=false',
      '--dest-tls-verify=false',
      src,
      dst,
    ];

    // -- setup (untimed) ------------------------------------------------------------------------
    const tSetup = performance.now();
    console.log(
      `setup: writing ${coldLayers} x ${coldLayerBytes / MIB} MiB and ${warmLayers} x ${warmLayerBytes / MIB} MiB images of random data...`,
    );
    const big = await makeImage(path.join(work, 'big'), 'big', {
      layers: coldLayers,
      layerBytes: coldLayerBytes,
      seed: 'kiln-bench-cold',
    });
    const ten = await makeImage(path.join(work, 'ten'), 'ten', {
      layers: warmLayers,
      layerBytes: warmLayerBytes,
      seed: 'kiln-bench-warm',
    });
    await runner.run(kiln('-q', 'copy', `oci:${big.layout}:big`, `${a.host}/big:1`), envAsIs);
    await runner.run(kiln('-q', 'copy', `oci:${ten.layout}:ten`, `${a.host}/ten:1`), envAsIs);
    await runner.run(kiln('-q', 'copy', `${a.host}/ten:1`, `${b.host}/ten:1`), envAsIs); // B holds it all
    const helloLayout = path.join(work, 'hello-layout');
    const packed = JSON.parse(
      (await runner.run(kiln('--json', 'package', helloWasm, '--to', `oci:${helloLayout}:hello`), envAsIs))
        .stdout,
    ) as { descriptor: { digest: string } };
    const helloDigest = packed.descriptor.digest;
    const bigBytes = big.layers.reduce((n, l) => n + l.size, 0);
    const tenBytes = ten.layers.reduce((n, l) => n + l.size, 0);
    console.log(`setup took ${((performance.now() - tSetup) / 1000).toFixed(1)} s`);

    // -- contenders -----------------------------------------------------------------------------
    const all: Contender[] = [];
    const add = (key: string, group: Contender['group'], label: string, shown: string): Contender => {
      const c: Contender = { key, group, label, shown, samples: [] };
      all.push(c);
      return c;
    };
    const coldKiln = add(
      'coldKiln',
      'cold',
      'kiln copy',
      `kiln copy ${a.host}/big:1 127.0.0.1:PORT/cold-kiln-N:1`,
    );
    const coldSkopeo = add(
      'coldSkopeo',
      'cold',
      'skopeo copy',
      `skopeo --insecure-policy copy --src-tls-verify=false --dest-tls-verify=false docker://${a.host}/big:1 docker://127.0.0.1:PORT/cold-skopeo-N:1`,
    );
    const coldKilnJ1 = add(
      'coldKilnJ1',
      'cold',
      'kiln copy --jobs 1 (memory check)',
      `kiln --jobs 1 copy ${a.host}/big:1 127.0.0.1:PORT/cold-kiln-j1-0:1`,
    );
    const small: { c: Contender; run: (i: number) => Promise<Sample> }[] = [];
    const smallOne = (
      key: string,
      group: Contender['group'],
      label: string,
      shown: string,
      run: (i: number) => Promise<Sample>,
    ) => small.push({ c: add(key, group, label, shown), run });

    // Verified untimed after each run: the destination serves the expected digest.
    const expect = async (reg: OpenRegistry, repo: string, tag: string, digest: string, who: string) => {
      const got = await remoteDigest(reg, repo, tag);
      if (got !== digest) throw new Error(`${who}: ${reg.host}/${repo}:${tag} is ${got}, expected ${digest}`);
    };
    const kilnCopied = (stdout: string) =>
      JSON.parse(stdout) as { descriptor: { digest: string }; blobsCopied: number };

    const warmKiln = (env: NodeJS.ProcessEnv) => async () => {
      const r = await runner.run(kiln('--json', 'copy', `${a.host}/ten:1`, `${b.host}/ten:1`), env);
      const res = kilnCopied(r.stdout);
      if (res.blobsCopied !== 0 || res.descriptor.digest !== ten.descriptor.digest)
        throw new Error(`warm kiln copy copied ${res.blobsCopied} blobs (${res.descriptor.digest})`);
      return r;
    };
    smallOne(
      'warmKiln',
      'warm',
      'kiln copy (warm)',
      `kiln copy ${a.host}/ten:1 ${b.host}/ten:1`,
      warmKiln(envAsIs),
    );
    smallOne(
      'warmKilnClean',
      'warm',
      'kiln copy (warm), NODE_EXTRA_CA_CERTS unset',
      `env -u NODE_EXTRA_CA_CERTS kiln copy …`,
      warmKiln(envClean),
    );
    smallOne(
      'warmSkopeo',
      'warm',
      'skopeo copy (warm)',
      `skopeo … copy docker://${a.host}/ten:1 docker://${b.host}/ten:1`,
      async () => {
        const r = await runner.run(
          skopeoCopy(`docker://${a.host}/ten:1`, `docker://${b.host}/ten:1`),
          envAsIs,
        );
        await expect(b, 'ten', '1', ten.descriptor.digest, 'skopeo warm copy');
        return r;
      },
    );
    smallOne('nodeAsIs', 'floor', 'node -e 0', 'node -e 0', () =>
      runner.run([process.execPath, '-e', '0'], envAsIs),
    );
    smallOne(
      'nodeClean',
      'floor',
      'node -e 0, NODE_EXTRA_CA_CERTS unset',
      'env -u NODE_EXTRA_CA_CERTS node -e 0',
      () => runner.run([process.execPath, '-e', '0'], envClean),
    );
    // kiln's own floor: --version answers before the CLI loads (issue 15: ≤ 8 ms over node -e 0).
    const version = (env: NodeJS.ProcessEnv) => async () => {
      const r = await runner.run(kiln('--version'), env);
      if (!/^\d+\.\d+\.\d+\n$/.test(r.stdout)) throw new Error(`kiln --version printed ${r.stdout}`);
      return r;
    };
    smallOne('versionAsIs', 'floor', 'kiln --version', 'kiln --version', version(envAsIs));
    smallOne(
      'versionClean',
      'floor',
      'kiln --version, NODE_EXTRA_CA_CERTS unset',
      'env -u NODE_EXTRA_CA_CERTS kiln --version',
      version(envClean),
    );
    const pkg =
      (env: NodeJS.ProcessEnv, repo: (i: number) => string, tag: (i: number) => string, who: string) =>
      async (i: number) => {
        const r = await runner.run(
          kiln('--json', 'package', helloWasm, '--to', `${b.host}/${repo(i)}:${tag(i)}`),
          env,
        );
        const got = (JSON.parse(r.stdout) as { descriptor: { digest: string } }).descriptor.digest;
        if (got !== helloDigest) throw new Error(`${who}: packaged ${got}, the layout has ${helloDigest}`);
        await expect(b, repo(i), tag(i), helloDigest, who);
        return r;
      };
    const skopeoPkg =
      (repo: (i: number) => string, tag: (i: number) => string, who: string) => async (i: number) => {
        const r = await runner.run(
          skopeoCopy(`oci:${helloLayout}:hello`, `docker://${b.host}/${repo(i)}:${tag(i)}`),
          envAsIs,
        );
        await expect(b, repo(i), tag(i), helloDigest, who);
        return r;
      };
    smallOne(
      'pkgTag',
      'package',
      'kiln package → hello:N',
      `kiln package examples/hello/hello.wasm --to ${b.host}/hello:N`,
      pkg(
        envAsIs,
        () => 'hello',
        (i) => `a${i}`,
        'kiln package',
      ),
    );
    smallOne(
      'pkgTagClean',
      'package',
      'kiln package → hello:N, NODE_EXTRA_CA_CERTS unset',
      `env -u NODE_EXTRA_CA_CERTS kiln package … --to ${b.host}/hello:N`,
      pkg(
        envClean,
        () => 'hello',
        (i) => `c${i}`,
        'kiln package (clean env)',
      ),
    );
    smallOne(
      'pkgFresh',
      'package',
      'kiln package → new repository',
      `kiln package examples/hello/hello.wasm --to ${b.host}/pkg-N:1`,
      pkg(
        envAsIs,
        (i) => `pkg-a${i}`,
        () => '1',
        'kiln package (new repo)',
      ),
    );
    smallOne(
      'pkgFreshClean',
      'package',
      'kiln package → new repository, NODE_EXTRA_CA_CERTS unset',
      `env -u NODE_EXTRA_CA_CERTS kiln package … --to ${b.host}/pkg-N:1`,
      pkg(
        envClean,
        (i) => `pkg-c${i}`,
        () => '1',
        'kiln package (new repo, clean env)',
      ),
    );
    smallOne(
      'skopeoTag',
      'package',
      'skopeo copy oci: → hello-skopeo:N',
      `skopeo … copy oci:LAYOUT:hello docker://${b.host}/hello-skopeo:N`,
      skopeoPkg(
        () => 'hello-skopeo',
        (i) => `s${i}`,
        'skopeo copy oci:',
      ),
    );
    smallOne(
      'skopeoFresh',
      'package',
      'skopeo copy oci: → new repository',
      `skopeo … copy oci:LAYOUT:hello docker://${b.host}/pkg-skopeo-N:1`,
      skopeoPkg(
        (i) => `pkg-s${i}`,
        () => '1',
        'skopeo copy oci: (new repo)',
      ),
    );

    // Warm-up (untimed): page cache for node, kiln and skopeo; the `hello:N` repositories get the blobs
    // once, so every timed `hello:N` run is a new tag for an image the repository already has.
    console.log('warm-up...');
    for (const { run } of small) await run(-1);

    // -- 1. cold copy ---------------------------------------------------------------------------
    // Each run copies into a registry started for it: a fresh repository name on a long-lived B is not
    // enough, as skopeo remembers where it pushed blobs (its blob-info cache) and mounts them from there.
    const coldCopy = async (c: Contender, i: number, args: string[] = []) => {
      const dest = await startRegistry({ auth: 'none' });
      try {
        runner.registryPids = [registryPid(a), registryPid(dest)].filter((p): p is number => p !== undefined);
        const repo = `${c.key.replace(/[A-Z]/g, (m) => `-${m.toLowerCase()}`)}-${i}`; // cold-kiln-0
        let r: Sample & { stdout: string };
        if (c.key.startsWith('coldKiln')) {
          r = await runner.run(
            kiln(...args, '--json', 'copy', `${a.host}/big:1`, `${dest.host}/${repo}:1`),
            envAsIs,
          );
          const res = kilnCopied(r.stdout);
          if (res.blobsCopied !== coldLayers + 1) throw new Error(`kiln copied ${res.blobsCopied} blobs`);
        } else {
          r = await runner.run(
            skopeoCopy(`docker://${a.host}/big:1`, `docker://${dest.host}/${repo}:1`),
            envAsIs,
          );
        }
        await expect(dest, repo, '1', big.descriptor.digest, c.label);
        c.samples.push(r);
        console.log(
          `  cold ${i + 1} ${c.label.padEnd(12)} ${fmtMs(r.wallMs).padStart(7)} ms` +
            `  cpu ${r.cpuS.toFixed(2)} s  rss ${(r.maxRssKiB / 1024).toFixed(0)} MiB` +
            `  registries ${r.registryCpuS.toFixed(2)} s  other load ${r.otherLoad.toFixed(2)}`,
        );
      } finally {
        runner.registryPids = pids;
        await dest.stop();
      }
    };
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
    for (let i = 0; i < coldRuns; i++) {
      const order = i % 2 === 0 ? [coldKiln, coldSkopeo] : [coldSkopeo, coldKiln];
      for (const c of order) await coldCopy(c, i);
    }
    // Memory check: were each blob in flight held whole, 4 at once would need 3 layers more than 1.
    await coldCopy(coldKilnJ1, 0, ['--jobs', '1']);

    // -- 2 and 3. warm copy, package: round-robin, starting one further each round --------------
    for (let i = 0; i < smallRuns; i++) {
      for (let j = 0; j < small.length; j++) {
        const { c, run } = small[(i + j) % small.length]!;
        c.samples.push(await run(i));
      }
      console.log(
        `  round ${i + 1}/${smallRuns}: ${small.map(({ c }) => `${c.key} ${fmtMs(c.samples[i]!.wallMs)}`).join(', ')}`,
      );
    }
    const elapsedS = (performance.now() - t0) / 1000;
    const load1 = os.loadavg();
    const machineLoad = (machineBusyS() - busy0) / elapsedS;
    const idleAfter = await idleLoad(3000);
    console.log(`background load after: ${idleAfter.toFixed(2)} cores`);

    // -- report ---------------------------------------------------------------------------------
    const wall = (c: Contender) => median(c.samples.map((s) => s.wallMs));
    const byKey = (key: string) => all.find((c) => c.key === key)!;
    const mid = (c: Contender) => {
      const w = wall(c);
      return c.samples.reduce((best, s) => (Math.abs(s.wallMs - w) < Math.abs(best.wallMs - w) ? s : best));
    };
    const rssMiB = (c: Contender) => median(c.samples.map((s) => s.maxRssKiB)) / 1024;

    const ratio = wall(coldKiln) / wall(coldSkopeo);
    const coldRss = Math.round(rssMiB(coldKiln));
    const j1Rss = Math.round(rssMiB(coldKilnJ1));
    const warmRss = Math.round(rssMiB(byKey('warmKiln')));
    const rssOk = coldRss - j1Rss < coldLayerBytes / MIB;
    const targets: [string, string, string, boolean | undefined][] = [
      [
        `kiln copy / skopeo copy, cold, ${coldLayers} × ${coldLayerBytes / MIB} MiB`,
        ratio.toFixed(3),
        '≤ 0.80',
        ratio <= 0.8,
      ],
      [
        'kiln peak RSS, cold copy: 4 blobs in flight − 1 in flight',
        `${coldRss.toFixed(0)} − ${j1Rss.toFixed(0)} = ${(coldRss - j1Rss).toFixed(0)} MiB`,
        `< ${coldLayerBytes / MIB} MiB (one layer)`,
        rssOk,
      ],
      [
        'kiln peak RSS: cold copy (4 in flight) over warm copy (no blob data)',
        `${coldRss.toFixed(0)} − ${warmRss.toFixed(0)} = ${(coldRss - warmRss).toFixed(0)} MiB`,
        '–',
        undefined,
      ],
    ];
    const msTarget = (key: string, label: string, limit: number, strict: boolean) => {
      const w = wall(byKey(key));
      targets.push([
        label,
        `${fmtMs(w)} ms`,
        `${strict ? '<' : '≤'} ${limit} ms`,
        strict ? w < limit : w <= limit,
      ]);
    };
    msTarget('warmKiln', `kiln warm copy, ${warmLayers} layers`, 150, true);
    msTarget('warmKilnClean', `kiln warm copy, ${warmLayers} layers, NODE_EXTRA_CA_CERTS unset`, 150, true);
    msTarget('pkgTag', 'kiln package → registry (hello:N)', 100, false);
    msTarget('pkgTagClean', 'kiln package → registry (hello:N), NODE_EXTRA_CA_CERTS unset', 100, false);
    msTarget('pkgFresh', 'kiln package → registry (new repository)', 100, false);
    msTarget(
      'pkgFreshClean',
      'kiln package → registry (new repository), NODE_EXTRA_CA_CERTS unset',
      100,
      false,
    );
    // Issue 15's goals: ratios to skopeo, and kiln's fixed cost over Node's own start-up.
    const ratioTarget = (label: string, key: string, other: string, limit: number) => {
      const r = wall(byKey(key)) / wall(byKey(other));
      targets.push([label, r.toFixed(2), `≤ ${limit}`, r <= limit]);
    };
    ratioTarget('kiln warm copy / skopeo warm copy', 'warmKiln', 'warmSkopeo', 1.5);
    ratioTarget(
      'kiln warm copy, NODE_EXTRA_CA_CERTS unset / skopeo warm copy',
      'warmKilnClean',
      'warmSkopeo',
      1.5,
    );
    ratioTarget('kiln package (hello:N) / skopeo copy oci: (hello-skopeo:N)', 'pkgTag', 'skopeoTag', 2);
    ratioTarget(
      'kiln package (hello:N), NODE_EXTRA_CA_CERTS unset / skopeo copy oci: (hello-skopeo:N)',
      'pkgTagClean',
      'skopeoTag',
      2,
    );
    const overNode = (label: string, key: string, node: string, limit: number | undefined) => {
      const over = wall(byKey(key)) - wall(byKey(node));
      targets.push([
        label,
        `${fmtMs(over)} ms`,
        limit === undefined ? '–' : `≤ ${limit} ms`,
        limit === undefined ? undefined : over <= limit,
      ]);
    };
    overNode('kiln --version above node -e 0', 'versionAsIs', 'nodeAsIs', 8);
    overNode('kiln --version above node -e 0, NODE_EXTRA_CA_CERTS unset', 'versionClean', 'nodeClean', 8);
    // The warm copy's four round trips (two pings, the source's manifest, the destination's HEAD) are
    // in this too: an upper bound of its non-network work (goal ≤ 40 ms).
    overNode('kiln warm copy above node -e 0 (round trips included)', 'warmKiln', 'nodeAsIs', 40);
    overNode(
      'kiln warm copy above node -e 0, NODE_EXTRA_CA_CERTS unset (round trips included)',
      'warmKilnClean',
      'nodeClean',
      40,
    );
    targets.push([
      'kiln package (hello:N) above node -e 0, NODE_EXTRA_CA_CERTS unset',
      `${fmtMs(wall(byKey('pkgTagClean')) - wall(byKey('nodeClean')))} ms`,
      '–',
      undefined,
    ]);

    const groupTitle: Record<Contender['group'], string> = {
      cold: `1. cold copy A → B, ${coldLayers} × ${coldLayerBytes / MIB} MiB (${(bigBytes / MIB).toFixed(1)} MiB of blobs)`,
      warm: `2. warm copy A → B, ${warmLayers} × ${warmLayerBytes / MIB} MiB, all at B already`,
      package: `3. package hello.wasm (${(statSync(helloWasm).size / 1000).toFixed(1)} kB) → B`,
      floor: 'Start-up: Node alone, and kiln --version',
    };
    const groups: Contender['group'][] = ['cold', 'warm', 'package', 'floor'];
    const shownOrder = [...all].sort((x, y) => groups.indexOf(x.group) - groups.indexOf(y.group));
    const rows = shownOrder.map((c, i) => {
      const m = mid(c);
      const title = i > 0 && shownOrder[i - 1]!.group === c.group ? '' : groupTitle[c.group];
      return `| ${title} | ${c.label} | ${fmtMs(wall(c))} | ${c.samples.map((s) => fmtMs(s.wallMs)).join(', ')} | ${Number.isNaN(m.cpuS) ? '–' : m.cpuS.toFixed(2)} | ${m.maxRssKiB ? (m.maxRssKiB / 1024).toFixed(0) : '–'} | ${m.registryCpuS.toFixed(2)} | ${median(c.samples.map((s) => s.otherLoad)).toFixed(2)} |`;
    });

    const cpuModel =
      readFileSync('/proc/cpuinfo', 'utf8')
        .match(/model name\s*:\s*(.*)/)?.[1]
        ?.trim() ?? 'unknown CPU';
    const osName =
      readFileSync('/etc/os-release', 'utf8').match(/^PRETTY_NAME="?([^"\n]*)"?/m)?.[1] ?? os.type();
    const skopeoVersion = await firstLine(skopeo, ['--version']);
    const registryVersion = await firstLine(findTool('docker-registry')!, ['--version']);
    const smallOther = median(small.flatMap(({ c }) => c.samples.map((x) => x.otherLoad)));
    const busiest = Math.max(...small.flatMap(({ c }) => c.samples.map((x) => x.otherLoad)));
    const loadNote =
      Math.max(idleBefore, idleAfter, smallOther) > 0.15
        ? 'Other work was running on the machine: the times are inflated by it.'
        : busiest > 0.3
          ? 'The machine was quiet apart from short bursts (see the Other load column).'
          : 'The machine was otherwise quiet.';
    const md = [
      '## Registry: copy and push',
      '',
      'kiln against skopeo between two local registries, in one run. Generated by `scripts/bench.ts`',
      '(`npm run build && node --import tsx scripts/bench.ts --only registry` runs this section alone).',
      '',
      `- Date: ${new Date().toISOString()}`,
      `- Machine: ${os.availableParallelism()} cores, ${cpuModel}, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB RAM, ${osName}, Linux ${os.release()}`,
      `- Node ${process.version}; ${skopeoVersion}; ${registryVersion}; kiln: the checkout was at ${built} when the run began`,
      `- Registries: two \`docker-registry serve\` processes (A and B) on 127.0.0.1, plain HTTP, no auth, filesystem storage in temp dirs, started and stopped by the script. kiln runs as \`node dist/bin/kiln.js\` (a copy of dist/bin taken at the start, so a rebuild meanwhile changes nothing) with KILN_HOME in a temp dir.`,
      `- Load: ${waited ? (waited.quiet ? `the timed part started once the machine had been quiet for 6 s (waited ${waited.waitedS.toFixed(0)} s); ` : `the machine did not get quiet within ${quietWaitS} s, the timed part started anyway; `) : ''}with nothing of the benchmark's running, the machine was ${idleBefore.toFixed(2)} cores busy just before the timed part and ${idleAfter.toFixed(2)} just after (3 s each, from /proc/stat); Other load of the warm-copy and package runs: median ${smallOther.toFixed(2)}, at most ${busiest.toFixed(2)} cores. Load average ${load0.map((l) => l.toFixed(2)).join(' ')} when the timed part began (it still counts the setup), ${load1.map((l) => l.toFixed(2)).join(' ')} at its end; ${machineLoad.toFixed(2)} cores busy on average over the timed part, all included. ${loadNote}`,
      `- Runs: cold copy ${coldRuns} each, kiln and skopeo alternating (who goes first alternates too), each into a fresh repository on a registry started empty for that run (not the long-lived B: skopeo's blob-info cache would mount blobs from the repositories of earlier runs), then one \`kiln --jobs 1\` copy for the memory check; the other ${small.length} contenders ${smallRuns} rounds each, round-robin, after one untimed warm-up round${quick ? ' (quick mode: small layers)' : ''}. Times are medians of wall-clock time from spawn to exit of the whole process.`,
      '',
      '| Benchmark | Contender | Median (ms) | Runs (ms) | CPU user+sys (s) | Peak RSS (MiB) | Registries CPU (s) | Other load (cores) |',
      '| --- | --- | ---: | --- | ---: | ---: | ---: | ---: |',
      ...rows,
      '',
      '| Target | Measured | Target | Result |',
      '| --- | ---: | ---: | --- |',
      ...targets.map(
        ([label, value, target, ok]) =>
          `| ${label} | ${value} | ${target} | ${ok === undefined ? 'info' : verdict(ok)} |`,
      ),
      '',
      'How each contender ran:',
      '',
      ...shownOrder.map((c) => `- ${c.label}: \`${c.shown}\``),
      '- PORT is the registry started empty for that one run; LAYOUT the OCI layout with the hello image.',
      `- skopeo always with \`--insecure-policy copy --quiet --src-tls-verify=false --dest-tls-verify=false\`; kiln with \`--json\` (to check what it did), treating loopback registries as insecure on its own. Both with their default parallelism (kiln 4 blobs at once, skopeo up to 6 layers).`,
      `- The images: ${coldLayers} layers of ${coldLayerBytes / MIB} MiB of seeded random bytes (gzip cannot shrink them) written by test/support/images.ts and pushed once into A with kiln; the warm image ${warmLayers} layers of ${warmLayerBytes / MIB} MiB (${(tenBytes / MIB).toFixed(1)} MiB), copied to B once before timing. The hello image is the same digest (${helloDigest.slice(0, 19)}…) from kiln package and from the OCI layout skopeo reads (written by kiln package --to oci:).`,
      '- `hello:N` is a new tag each run in a repository that already has the blobs (as a rebuild and push of an unchanged image); "new repository" pushes the config and layer blobs too (kiln uploads them; skopeo may mount them from a repository its blob-info cache knows). Every destination is checked after its run (HEAD of the manifest: the expected digest), untimed.',
      "- kiln's code cache (V8's, which the bin keeps in KILN_HOME/.code-cache) was written by the untimed warm-up round: the timed runs load it, as every run after a user's first does.",
      `- NODE_EXTRA_CA_CERTS: this machine sets it (${extraCa ?? 'unset here'}), and Node then reads and parses that bundle at every start-up, before any of kiln's code runs: compare the two \`node -e 0\` rows. kiln itself loads the TLS trust store only when a registry speaks TLS, which these do not.`,
      `- Peak RSS from \`/usr/bin/time -f %M\` (medians). The memory check: kiln streams each blob from A to B (hashing as it goes); were each blob in flight held whole, the default 4 in flight would need at least 3 layers (${(3 * coldLayerBytes) / MIB} MiB) more than \`--jobs 1\`. What RSS grows by over the warm copy is buffers and garbage not yet collected, about the same with 1 blob in flight as with 4.`,
      '- Registries CPU: user+sys of both docker-registry processes during the run (from /proc/PID/stat). Other load: cores kept busy by anything else during the run (/proc/stat minus the contender, the registries and the script itself). It includes kernel work charged to no process (loopback networking in softirq, disk writeback, VM steal), so the cold copies show some even on a quiet machine.',
      '',
    ].join('\n');
    return { markdown: md };
  } finally {
    for (const r of regs) await r.stop();
    cleanupWork();
    process.off('exit', cleanupWork);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
