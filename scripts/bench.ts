/**
 * Benchmarks, side by side with the tools one would use instead, in one run; regenerates
 * BENCHMARKS.md at the repo root (`npm run bench`). Three parts:
 *
 * - layer: kiln's writeLayer against `tar | gzip -6` and `tar | pigz -6` on the same tree, and its
 *   zstd layer against `tar | zstd -T0 -3`.
 * - registry: kiln copy / package against skopeo between two local docker-registry processes
 *   (scripts/bench-registry.ts).
 * - compile: the toolchain runners (bubblewrap sandbox, docker) against the compiler alone and a plain
 *   `docker run`, and a cached `kiln build` (scripts/bench-compile.ts; root, bwrap, docker.io, debootstrap).
 *
 *   node --import tsx scripts/bench.ts                  every part, writes BENCHMARKS.md
 *   node --import tsx scripts/bench.ts --only layer     one part; rewrites only its section of BENCHMARKS.md
 *   node --import tsx scripts/bench.ts --only registry
 *   node --import tsx scripts/bench.ts --only compile
 *   node --import tsx scripts/bench.ts --only sign
 *   node --import tsx scripts/bench.ts --only scale     time and peak RSS against input size (scripts/bench-scale.ts)
 *   --quick (or KILN_BENCH_QUICK=1)                     ~50 MB tree, 1 run each, small registry image, 3 compile
 *                                                       rounds, no wait for a quiet machine; prints only
 *   --no-write                                          prints only
 *   KILN_BENCH_TREE=/some/dir                           layer: benchmark that directory instead
 *   KILN_BENCH_RUNS=n                                   layer: runs per contender (default 3)
 *   KILN_BENCH_COPY_RUNS=n, KILN_BENCH_SMALL_RUNS=n     registry: cold copies each (3), rounds of the rest (10)
 *   KILN_BENCH_COMPILE_RUNS=n                           compile: timed rounds of all contenders (default 11)
 *   KILN_BENCH_QUIET_WAIT=s                             registry, compile: wait up to s seconds (600) for a quiet machine
 *
 * Every contender runs as its own process (kiln as `node scripts/layer-child.mjs` over dist/, or
 * `node dist/bin/kiln.js`), so every timing includes a process start-up. Build first (`npm run build`).
 * Exits non-zero only if a contender fails; a missed target is reported, not fatal.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { collectEntries } from '../src/layer/entries.js';
import { median, timed } from './bench-common.js';
import { compileBench } from './bench-compile.js';
import { registryBench } from './bench-registry.js';
import { scaleBench } from './bench-scale.js';
import { signBench } from './bench-sign.js';

const SCRIPT = fileURLToPath(import.meta.url);
const ROOT = path.resolve(path.dirname(SCRIPT), '..');
const CHILD = path.join(ROOT, 'scripts', 'layer-child.mjs');

/** A tree to archive: `paths` relative to `base` (`.` for the whole of it). */
interface Tree {
  base: string;
  paths: string[];
}

const FULL_TREE: Tree = {
  base: '/usr',
  paths: ['lib/gcc', 'lib/python3.11', 'share/doc', 'share/locale'],
};
const QUICK_TREE: Tree = { base: '/usr', paths: ['lib/python3.11'] };

interface ChildResult {
  digest: string;
  size: number;
  diffId: string;
  uncompressedSize: number;
  entries: number;
  collectMs: number;
  writeMs: number;
  maxRssKiB: number;
  mainThreadCpuS: number;
}

interface Run {
  wallS: number;
  userS: number;
  sysS: number;
  maxRssKiB: number;
  outBytes: number;
  /** CPU (cores) busy on the machine during the run beyond the contender's own use: noise from other work. */
  otherLoad: number;
  child?: ChildResult;
}

interface Contender {
  name: string;
  command: string;
  runs: Run[];
  /** kiln's contenders: the layer compression the child writes. */
  kiln?: 'gzip' | 'zstd';
}

/** Median other load (cores) above which a time ratio is too noisy to pass or miss a goal. */
const NOISY_LOAD = 0.3;

/** The zstd level of both zstd contenders: zstd's default, and kiln's. */
const ZSTD_LEVEL = 3;

// ---------------------------------------------------------------------------------------------
// child mode: one writeLayer into a fresh layout, result as JSON on stdout

// ---------------------------------------------------------------------------------------------
// helpers

function sh(cmd: string): string {
  return execFileSync('bash', ['-c', cmd], { encoding: 'utf8' }).trim();
}

function tryRun(cmd: string): string {
  try {
    return sh(cmd);
  } catch {
    return 'unknown';
  }
}

function q(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

function tarCmd(tree: Tree): string {
  return `tar --sort=name -cf - -C ${q(tree.base)} ${tree.paths.map(q).join(' ')}`;
}

function fail(msg: string): never {
  console.error(`bench: ${msg}`);
  process.exit(1);
}

// ---------------------------------------------------------------------------------------------
// layer benchmark

/** Runs the layer benchmark; returns its section of BENCHMARKS.md. */
async function layerBench(quick: boolean): Promise<string> {
  const n = Number(process.env['KILN_BENCH_RUNS']) || (quick ? 1 : 3);
  const treeEnv = process.env['KILN_BENCH_TREE'];
  const tree: Tree = treeEnv ? { base: path.resolve(treeEnv), paths: ['.'] } : quick ? QUICK_TREE : FULL_TREE;
  for (const p of tree.paths)
    if (!existsSync(path.join(tree.base, p))) fail(`tree ${path.join(tree.base, p)} does not exist`);

  const tar = tarCmd(tree);
  const treeLabel = tree.paths.map((p) => path.join(tree.base, p)).join(' ');
  const duBytes = Number(
    sh(`cd ${q(tree.base)} && du -scb ${tree.paths.map(q).join(' ')} | tail -1 | cut -f1`),
  );
  const files = Number(sh(`cd ${q(tree.base)} && find ${tree.paths.map(q).join(' ')} | wc -l`));
  console.log(`tree: ${treeLabel} (${(duBytes / 1e6).toFixed(1)} MB, ${files} entries), ${n} run(s) each`);

  // kiln must accept the tree before anything is timed
  try {
    await collectEntries(
      tree.paths.map((p) => ({ source: path.join(tree.base, p), dest: p === '.' ? '' : p })),
    );
  } catch (err) {
    fail(`kiln cannot collect this tree, pick another: ${(err as Error).message}`);
  }

  // Warm the page cache. Not `tar -cf /dev/null`: GNU tar notices /dev/null and skips reading file
  // contents. Piping through wc reads everything and gives the uncompressed tar size as well.
  console.log('warming the page cache...');
  const tarBytes = Number(sh(`set -o pipefail; ${tar} | wc -c`));

  const work = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-bench-'));
  const contenders: Contender[] = [
    { name: 'tar | gzip -6', command: `${tar} | gzip -6`, runs: [] },
    { name: 'tar | pigz -6', command: `${tar} | pigz -6`, runs: [] },
    {
      name: 'kiln writeLayer',
      command: `node scripts/layer-child.mjs LAYOUT ${tree.base} ${tree.paths.join(' ')}`,
      runs: [],
      kiln: 'gzip',
    },
    { name: `tar | zstd -T0 -${ZSTD_LEVEL}`, command: `${tar} | zstd -q -T0 -${ZSTD_LEVEL}`, runs: [] },
    {
      name: 'kiln writeLayer zstd',
      command: `node scripts/layer-child.mjs --compression=zstd LAYOUT ${tree.base} ${tree.paths.join(' ')}`,
      runs: [],
      kiln: 'zstd',
    },
  ];
  const verified: string[] = [];
  try {
    for (let i = 0; i < n; i++) {
      for (const c of contenders) {
        const timeFile = path.join(work, 'time.txt');
        await fs.rm(timeFile, { force: true });
        let run: Run;
        if (c.kiln) {
          const layoutDir = path.join(work, `layout-${i}`);
          const r = await timed(
            [process.execPath, CHILD, `--compression=${c.kiln}`, layoutDir, tree.base, ...tree.paths],
            ROOT,
            timeFile,
          );
          if (r.code !== 0) fail(`${c.name} failed (exit ${r.code}): ${r.stderr.trim()}`);
          const child = JSON.parse(r.stdout.trim().split('\n').pop() ?? '') as ChildResult;
          const blob = path.join(layoutDir, 'blobs', 'sha256', child.digest.replace(/^sha256:/, ''));
          const st = await fs.stat(blob).catch(() => fail(`${c.name}: blob ${blob} missing`));
          if (st.size !== child.size)
            fail(`${c.name}: blob is ${st.size} bytes, descriptor says ${child.size}`);
          if (i === n - 1) {
            // untimed: the blob must decompress to the tar whose digest is the diff_id
            const unpack = c.kiln === 'zstd' ? 'zstd -dcq' : 'gzip -dc';
            const sum = sh(`set -o pipefail; ${unpack} ${q(blob)} | sha256sum | cut -d' ' -f1`);
            if (`sha256:${sum}` !== child.diffId) fail(`${c.name}: blob does not decompress to its diff_id`);
            verified.push(
              `${unpack} of kiln's ${c.kiln} blob matches its diff_id (${child.diffId.slice(0, 19)}…)`,
            );
          }
          await fs.rm(layoutDir, { recursive: true, force: true });
          run = { ...r, outBytes: child.size, child, maxRssKiB: r.maxRssKiB || child.maxRssKiB };
        } else {
          const out = path.join(work, 'out.tar.gz');
          const r = await timed(['bash', '-c', `set -o pipefail; ${c.command} > ${q(out)}`], ROOT, timeFile);
          if (r.code !== 0) fail(`${c.name} failed (exit ${r.code}): ${r.stderr.trim()}`);
          const st = await fs.stat(out);
          await fs.rm(out, { force: true });
          run = { ...r, outBytes: st.size };
        }
        c.runs.push(run);
        console.log(
          `  run ${i + 1}/${n} ${c.name.padEnd(20)} ${run.wallS.toFixed(2)} s  ${run.outBytes} bytes` +
            `  cpu ${(run.userS + run.sysS).toFixed(2)} s  other load ${run.otherLoad.toFixed(2)}` +
            (run.child
              ? `  (in-process: walk ${(run.child.collectMs / 1000).toFixed(2)} s, write ${(run.child.writeMs / 1000).toFixed(2)} s)`
              : ''),
        );
      }
    }
  } finally {
    await fs.rm(work, { recursive: true, force: true });
  }

  const [gzipC, pigzC, kilnC, zstdC, kilnZC] = contenders as [
    Contender,
    Contender,
    Contender,
    Contender,
    Contender,
  ];
  const wall = (c: Contender) => median(c.runs.map((r) => r.wallS));
  const size = (c: Contender) => c.runs[c.runs.length - 1]!.outBytes;
  const kilnChild = kilnC.runs[kilnC.runs.length - 1]!.child!;
  const zstdRuns = kilnZC.runs.map((r) => r.child!);

  const timeRatio = wall(kilnC) / wall(pigzC);
  const sizeRatio = size(kilnC) / size(pigzC);
  const timeOk = timeRatio <= 0.75;
  // A time ratio is a verdict only when neither side shared the CPUs much (median other load).
  const noisy = [kilnC, pigzC].some((c) => median(c.runs.map((r) => r.otherLoad)) > NOISY_LOAD);
  const timeVerdict = noisy ? `UNSURE (other load over ${NOISY_LOAD})` : timeOk ? 'PASS' : 'MISS';
  const sizeOk = sizeRatio <= 1.02;

  const cpuModel = tryRun(`grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-`);
  const machine = [
    `- Date: ${new Date().toISOString()}`,
    `- Machine: ${os.availableParallelism()} cores, ${cpuModel.trim()}, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB RAM, ${os.type()} ${os.release()}`,
    `- Node ${process.version}; ${tryRun('tar --version | head -1')}; ${tryRun('pigz --version 2>&1 | head -1')}; ${tryRun('gzip --version | head -1')}`,
    `- Tree: \`${treeLabel}\`: ${(duBytes / 1e6).toFixed(1)} MB on disk (du), ${files} entries, ${(tarBytes / 1e6).toFixed(1)} MB as an uncompressed GNU tar (kiln's tar: ${(kilnChild.uncompressedSize / 1e6).toFixed(1)} MB); throughput is GNU tar's size over the median time`,
    `- Runs: ${n} per contender, interleaved, median wall time; page cache warmed first by one untimed \`tar -cf - … | wc -c\`${quick ? ' (quick mode)' : ''}`,
  ];
  const mb = (b: number) => (b / 1e6).toFixed(1);
  const rows = contenders.map((c) => {
    const w = wall(c);
    const mid = c.runs.find((r) => r.wallS === w) ?? c.runs[0]!;
    const cpu = mid.userS + mid.sysS;
    return `| ${c.name.replace(/\|/g, '\\|')} | ${w.toFixed(2)} | ${c.runs.map((r) => r.wallS.toFixed(2)).join(', ')} | ${(tarBytes / 1e6 / w).toFixed(0)} | ${mb(size(c))} (${size(c)}) | ${((100 * size(c)) / tarBytes).toFixed(1)}% | ${Number.isNaN(cpu) ? '–' : cpu.toFixed(2)} | ${mid.maxRssKiB ? (mid.maxRssKiB / 1024).toFixed(0) : '–'} |`;
  });
  const kilnRuns = kilnC.runs.map((r) => r.child!);
  const md = [
    '## Layer writing',
    '',
    'Writing one gzip layer (and, opt-in, one zstd layer) from a directory tree: kiln against the tools one would use instead.',
    'Generated by `scripts/bench.ts` (`--only layer` runs this section alone; `KILN_BENCH_TREE=dir` to use',
    'another tree).',
    '',
    ...machine,
    '',
    '| Contender | Time (s, median) | Runs (s) | Throughput (MB/s of tar) | Output (MB, bytes) | Output / tar | CPU user+sys (s) | Peak RSS (MiB) |',
    '| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |',
    ...rows,
    '',
    '| Ratio | Value | Target | Result |',
    '| --- | ---: | ---: | --- |',
    `| kiln time / pigz time | ${timeRatio.toFixed(3)} | ≤ 0.75 | ${timeVerdict} |`,
    `| kiln size / pigz size | ${sizeRatio.toFixed(4)} | ≤ 1.02 | ${sizeOk ? 'PASS' : 'MISS'} |`,
    `| kiln time / gzip time | ${(wall(kilnC) / wall(gzipC)).toFixed(3)} | – | info |`,
    `| kiln zstd time / zstd -T0 -${ZSTD_LEVEL} time | ${(wall(kilnZC) / wall(zstdC)).toFixed(3)} | – (no goal set; compared as asked) | info |`,
    `| kiln zstd size / zstd -T0 -${ZSTD_LEVEL} size | ${(size(kilnZC) / size(zstdC)).toFixed(4)} | – | info |`,
    `| kiln zstd time / kiln gzip time | ${(wall(kilnZC) / wall(kilnC)).toFixed(3)} | – | info |`,
    '',
    'How each contender ran:',
    '',
    `- \`${gzipC.command}\` and \`${pigzC.command}\`, each as \`bash -c 'set -o pipefail; … > out'\`.`,
    `- kiln: a child process \`node scripts/layer-child.mjs LAYOUT …\` (plain Node over the built dist/) that runs \`collectEntries\` then \`writeLayer\` (tar + sha256 + parallel gzip -6 in 1 MiB members + blob write) into a fresh OCI layout; its wall time includes Node's start-up, like the tools' times include theirs. Inside the process: walk ${kilnRuns.map((r) => (r.collectMs / 1000).toFixed(2)).join(', ')} s, write ${kilnRuns.map((r) => (r.writeMs / 1000).toFixed(2)).join(', ')} s; main-thread CPU ${kilnRuns.map((r) => r.mainThreadCpuS.toFixed(2)).join(', ')} s; ${kilnChild.entries} entries.`,
    `- kiln zstd: the same child with \`--compression=zstd\` (\`writeLayer\` with \`compression: 'zstd'\`: @mongodb-js/zstd level ${ZSTD_LEVEL} in 4 MiB frames, several at once on libuv's pool; frames fixed by the input, so the blob is the same for any core count, while \`zstd -T0\` makes one frame). Inside the process: write ${zstdRuns.map((r) => (r.writeMs / 1000).toFixed(2)).join(', ')} s; main-thread CPU ${zstdRuns.map((r) => r.mainThreadCpuS.toFixed(2)).join(', ')} s.`,
    `- Other load: cores kept busy by anything else on the machine during each run (from /proc/stat, minus the contender's own CPU): ${contenders.map((c) => `${c.name} ${c.runs.map((r) => r.otherLoad.toFixed(2)).join(', ')}`).join('; ')}. Well above 0 means the run shared the CPUs and its time is inflated.`,
    `- Times are wall-clock around the whole process; CPU and peak RSS come from \`/usr/bin/time -f %M %U %S\` for the median run (for the shell pipelines, RSS is the largest single process).`,
    verified.length ? `- Check: ${verified.join('; ')}.` : '',
    '',
  ]
    .filter((l, i, a) => !(l === '' && a[i - 1] === ''))
    .join('\n');
  return md;
}

// ---------------------------------------------------------------------------------------------
// BENCHMARKS.md: one section per part, between markers, so a part run alone leaves the other be

type Part = 'layer' | 'registry' | 'compile' | 'sign' | 'scale';
const PARTS: Part[] = ['layer', 'registry', 'compile', 'sign', 'scale'];
const begin = (p: Part) => `<!-- bench:${p} -->`;
const end = (p: Part) => `<!-- /bench:${p} -->`;

const DOC_HEAD = [
  '# Benchmarks',
  '',
  'kiln against the tools one would use instead, each part side by side in one run. Generated by',
  '`scripts/bench.ts`: `npm run bench` runs every part; `node --import tsx scripts/bench.ts --only layer`',
  '(or `--only registry`, `--only compile`, `--only sign`, `--only scale`) runs one and rewrites only its section; `--quick` is a sanity run',
  'that only prints.',
  '',
].join('\n');

/** The sections of the current BENCHMARKS.md (before markers existed, the whole file was the layer part). */
function existingSections(doc: string): Partial<Record<Part, string>> {
  const out: Partial<Record<Part, string>> = {};
  for (const p of PARTS) {
    const i = doc.indexOf(begin(p));
    const j = doc.indexOf(end(p));
    if (i >= 0 && j > i) out[p] = doc.slice(i + begin(p).length, j).trim();
  }
  if (Object.keys(out).length === 0 && doc.startsWith('# Benchmarks'))
    out.layer = `## Layer writing\n\n${doc.slice('# Benchmarks'.length).trim()}`;
  return out;
}

function renderDoc(sections: Partial<Record<Part, string>>): string {
  const body = PARTS.filter((p) => sections[p] !== undefined).map(
    (p) => `${begin(p)}\n${sections[p]!.trim()}\n${end(p)}\n`,
  );
  return `${DOC_HEAD}\n${body.join('\n')}`;
}

// ---------------------------------------------------------------------------------------------
// main

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const quick = argv.includes('--quick') || process.env['KILN_BENCH_QUICK'] === '1';
  const write = !quick && !argv.includes('--no-write');
  const onlyAt = argv.indexOf('--only');
  const only = onlyAt >= 0 ? (argv[onlyAt + 1] ?? '') : argv.find((a) => a.startsWith('--only='))?.slice(7);
  if (only !== undefined && !PARTS.includes(only as Part))
    fail(`--only takes one of ${PARTS.join(', ')}, not '${only}'`);
  const parts = only ? [only as Part] : PARTS;

  const fresh: Partial<Record<Part, string>> = {};
  for (const part of parts) {
    console.log(`\n=== ${part} ===`);
    if (part === 'layer') fresh.layer = await layerBench(quick);
    else if (part === 'registry') {
      try {
        fresh.registry = (await registryBench({ root: ROOT, quick })).markdown;
      } catch (err) {
        fail(`registry: ${(err as Error).message}`);
      }
    } else if (part === 'scale') {
      try {
        fresh.scale = (await scaleBench({ root: ROOT, quick })).markdown;
      } catch (err) {
        fail(`scale: ${(err as Error).message}`);
      }
    } else if (part === 'sign') {
      try {
        fresh.sign = (await signBench({ root: ROOT, quick })).markdown;
      } catch (err) {
        fail(`sign: ${(err as Error).message}`);
      }
    } else {
      try {
        fresh.compile = (await compileBench({ root: ROOT, quick })).markdown;
      } catch (err) {
        fail(`compile: ${(err as Error).message}`);
      }
    }
    console.log(`\n${fresh[part]}`);
  }

  if (!write) {
    console.log(`(${quick ? 'quick mode' : '--no-write'}: BENCHMARKS.md not written)`);
    return;
  }
  const docPath = path.join(ROOT, 'BENCHMARKS.md');
  const old = existsSync(docPath) ? existingSections(readFileSync(docPath, 'utf8')) : {};
  await fs.writeFile(docPath, renderDoc({ ...old, ...fresh }));
  console.log(
    `wrote ${docPath} (${parts.join(', ')}${parts.length < PARTS.length ? '; other sections kept' : ''})`,
  );
}

await main();
