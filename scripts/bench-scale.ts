/**
 * The scale part of `npm run bench`: time and peak memory against input size.
 *
 * - Trees of ~50, ~200 and ~800 MB (directories of /usr): writing the tree as a layer (as the layer
 *   part does), `kiln diff` of an image of the tree (one layer per directory) over an unrelated small
 *   image (so the diff holds the whole tree), and `kiln flatten` of that image: each writes the same
 *   bytes. Goal (issue 15): diff and flatten within 2x of writing the layer. Interleaved, medians.
 * - A 2 GiB layer (a sparse file, plain tar, in /dev/shm so the disk does not set the pace) through
 *   `kiln unpack`, `copy`, `diff` and `flatten`: peak RSS, goal < 200 MiB.
 *
 * KILN_BENCH_SCALE_SIZES=50,200 (or none) the trees to run, KILN_BENCH_SCALE_RUNS=n rounds at 50
 * and 200 MB (default 3; 1 at 800 MB), KILN_BENCH_BIG_MB=n
 * the big layer's size (2048), KILN_BENCH_BASELINE=DIR another checkout (built) whose diff and
 * flatten run alongside, for before/after numbers.
 */
import { createReadStream, existsSync, rmSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { END_OF_ARCHIVE, encodeHeader, padding } from '../src/layer/tar-header.js';
import { newHash } from '../src/oci/digest.js';
import { idleLoad, median, runQuiet, type Spawned, sourceState, timed, verdict } from './bench-common.js';

export interface ScaleBenchOptions {
  root: string;
  quick: boolean;
}

interface Size {
  label: string;
  /** Directories under /usr, one layer each. */
  paths: string[];
  runs: number;
}

const MiB = 1024 * 1024;
const GOAL_RATIO = 2;
const GOAL_RSS_MIB = 200;
/** Not in any tree: LOWER of the diffs, so each diff holds all of its UPPER. */
const LOWER_PATH = 'share/perl';

function sizes(quick: boolean): Size[] {
  const runs = Number(process.env['KILN_BENCH_SCALE_RUNS']) || 3;
  const all: Size[] = [
    { label: '50 MB', paths: ['lib/python3.11'], runs },
    { label: '200 MB', paths: ['lib/gcc', 'lib/python3.11', 'share/icons'], runs },
    { label: '800 MB', paths: ['include', 'lib/gcc', 'lib/llvm-14', 'share/locale'], runs: 1 },
  ];
  const only = process.env['KILN_BENCH_SCALE_SIZES']; // e.g. "50,200", or "none" for the memory runs alone
  if (only !== undefined) return all.filter((s) => only.split(',').includes(s.label.split(' ')[0]!));
  return quick ? all.slice(0, 1).map((s) => ({ ...s, runs: 1 })) : all;
}

interface Sample {
  wallS: number;
  cpuS: number;
  rssMiB: number;
  otherLoad: number;
}

function sample(r: Spawned, what: string): Sample {
  if (r.code !== 0) throw new Error(`${what} failed (exit ${r.code}): ${r.stderr.trim().slice(0, 1000)}`);
  return { wallS: r.wallS, cpuS: r.userS + r.sysS, rssMiB: r.maxRssKiB / 1024, otherLoad: r.otherLoad };
}

const med = (xs: Sample[], k: keyof Sample) => median(xs.map((x) => x[k]));
const max = (xs: Sample[], k: keyof Sample) => Math.max(...xs.map((x) => x[k]));

export async function scaleBench(opts: ScaleBenchOptions): Promise<{ markdown: string }> {
  for (const p of [LOWER_PATH, ...sizes(false).flatMap((s) => s.paths)])
    if (!existsSync(path.join('/usr', p)))
      throw new Error(`/usr/${p} does not exist: the trees are made of it`);
  const work = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-bench-scale-'));
  const shm = existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir();
  const big = await fs.mkdtemp(path.join(shm, 'kiln-bench-scale-'));
  process.once('exit', () => {
    rmSync(work, { recursive: true, force: true });
    rmSync(big, { recursive: true, force: true });
  });
  const timeFile = path.join(work, 'time');
  const env: NodeJS.ProcessEnv = { ...process.env, KILN_HOME: path.join(work, 'home') };
  const kilnOf = (root: string) => {
    const args = (a: string[]) => [path.join(root, 'dist', 'bin', 'kiln.js'), '-q', ...a];
    return Object.assign((a: string[]) => [process.execPath, ...args(a)], { args });
  };
  const kiln = kilnOf(opts.root);
  const baselineDir = process.env['KILN_BENCH_BASELINE'];
  const baseline = baselineDir ? kilnOf(path.resolve(baselineDir)) : undefined;
  const run = async (argv: string[], what: string, e = env) =>
    sample(await timed(argv, work, timeFile, e), what);
  const clean = (...ps: string[]) => Promise.all(ps.map((p) => fs.rm(p, { recursive: true, force: true })));

  const images = path.join(work, 'images');
  await runQuiet(
    process.execPath,
    kiln.args([
      'append',
      'scratch',
      '--layer',
      `/usr/${LOWER_PATH}:/usr/${LOWER_PATH}`,
      '--to',
      `oci:${images}:lower`,
    ]),
    { env },
  );

  const rows: string[] = [];
  const ratios: { label: string; diff: number; flatten: number }[] = [];
  const perMb: { label: string; write: number; diff: number; flatten: number }[] = [];
  const quietLoad = await idleLoad(2000);
  for (const size of sizes(opts.quick)) {
    const tag = size.label.replace(/\W/g, '');
    const layers = size.paths.flatMap((p) => ['--layer', `/usr/${p}:/usr/${p}`]);
    await runQuiet(
      process.execPath,
      kiln.args(['append', 'scratch', ...layers, '--to', `oci:${images}:${tag}`]),
      {
        env,
      },
    );
    const write: Sample[] = [];
    const diff: Sample[] = [];
    const flat: Sample[] = [];
    const baseDiff: Sample[] = [];
    const baseFlat: Sample[] = [];
    let tarMb = 0;
    for (let round = 0; round < size.runs; round++) {
      console.log(`  ${size.label}: round ${round + 1}/${size.runs}`);
      const layout = path.join(work, 'written');
      const w = await timed(
        [process.execPath, path.join(opts.root, 'scripts', 'layer-child.mjs'), layout, '/usr', ...size.paths],
        work,
        timeFile,
        env,
      );
      write.push(sample(w, 'layer writing'));
      tarMb = JSON.parse(w.stdout).uncompressedSize / 1e6;
      await clean(layout);
      const out = path.join(work, 'diff.tar.gz');
      const flatTo = path.join(work, 'flat');
      const contenders: [Sample[], (a: string[]) => string[]][] = [[diff, kiln]];
      if (baseline) contenders.push([baseDiff, baseline]);
      for (const [into, k] of contenders) {
        into.push(
          await run(k(['diff', `oci:${images}:lower`, `oci:${images}:${tag}`, '--output', out]), 'kiln diff'),
        );
        await clean(out);
      }
      const flatteners: [Sample[], (a: string[]) => string[]][] = [[flat, kiln]];
      if (baseline) flatteners.push([baseFlat, baseline]);
      for (const [into, k] of flatteners) {
        into.push(await run(k(['flatten', `oci:${images}:${tag}`, '--to', `oci:${flatTo}`]), 'kiln flatten'));
        await clean(flatTo, path.join(work, 'home'));
      }
    }
    const w = med(write, 'wallS');
    const line = (name: string, xs: Sample[]) =>
      `| ${size.label} (${tarMb.toFixed(0)} MB tar) | ${name} | ${med(xs, 'wallS').toFixed(2)} | ${xs.map((x) => x.wallS.toFixed(2)).join(', ')} | ${med(xs, 'cpuS').toFixed(2)} | ${max(xs, 'rssMiB').toFixed(0)} | ${name === 'layer writing' ? '' : (med(xs, 'wallS') / w).toFixed(2)} | ${med(xs, 'otherLoad').toFixed(2)} |`;
    rows.push(line('layer writing', write), line('kiln diff', diff), line('kiln flatten', flat));
    if (baseline)
      rows.push(line('kiln diff (baseline)', baseDiff), line('kiln flatten (baseline)', baseFlat));
    console.log(rows.slice(baseline ? -5 : -3).join('\n'));
    ratios.push({ label: size.label, diff: med(diff, 'wallS') / w, flatten: med(flat, 'wallS') / w });
    perMb.push({
      label: `${size.label} (${tarMb.toFixed(0)} MB)`,
      write: (w * 1000) / tarMb,
      diff: (med(diff, 'wallS') * 1000) / tarMb,
      flatten: (med(flat, 'wallS') * 1000) / tarMb,
    });
  }

  // The big layer: memory, one run each.
  const bigMb = Number(process.env['KILN_BENCH_BIG_MB']) || (opts.quick ? 256 : 2048);
  console.log(`  big layer: ${bigMb} MiB`);
  const bigImages = path.join(big, 'images');
  await sparseImage(bigImages, bigMb * MiB);
  const bigEnv = { ...env, KILN_HOME: path.join(big, 'home') };
  const memory: [string, Sample][] = [];
  const memo = async (name: string, args: string[], after: string[]) => {
    memory.push([name, await run(kiln(args), name, bigEnv)]);
    console.log(`  ${name}: peak RSS ${memory.at(-1)![1].rssMiB.toFixed(0)} MiB`);
    await clean(...after);
  };
  const unpacked = path.join(big, 'unpacked');
  await memo('kiln unpack', ['unpack', `oci:${bigImages}:big`, unpacked], [unpacked]);
  const copied = path.join(big, 'copied');
  await memo('kiln copy (layout to layout)', ['copy', `oci:${bigImages}:big`, `oci:${copied}:big`], [copied]);
  const diffOut = path.join(big, 'diff.tar');
  await memo(
    'kiln diff --output (plain tar)',
    ['diff', `oci:${images}:lower`, `oci:${bigImages}:big`, '--output', diffOut],
    [diffOut],
  );
  const flatTo = path.join(big, 'flat');
  await memo(
    'kiln flatten',
    ['flatten', `oci:${bigImages}:big`, '--to', `oci:${flatTo}`],
    [flatTo, path.join(big, 'home')],
  );

  const state = await sourceState(opts.root);
  const ok = ratios.every((r) => r.diff <= GOAL_RATIO && r.flatten <= GOAL_RATIO);
  const memOk = memory.every(([, s]) => s.rssMiB < GOAL_RSS_MIB);
  const md = [
    '## Scaling with input size',
    '',
    `- Date: ${new Date().toISOString()}; ${state}; ${os.cpus().length} cores; machine load before the run ${quietLoad.toFixed(2)} cores.`,
    `- Trees: directories of /usr, one layer each in the image diffed and flattened; LOWER of the diff is an image of /usr/${LOWER_PATH} (in no tree), so the diff holds the whole tree, as flatten and layer writing do.`,
    '- Every contender is its own process (layer writing: `scripts/layer-child.mjs`, as in the layer part); times include start-up; rounds interleaved; "other load" is CPU the rest of the machine used meanwhile.',
    `- Goal: diff and flatten within ${GOAL_RATIO}x of layer writing: **${verdict(ok)}** (${ratios.map((r) => `${r.label}: diff ${r.diff.toFixed(2)}, flatten ${r.flatten.toFixed(2)}`).join('; ')}).`,
    '',
    '| size | what | wall s (median) | runs | CPU s | peak RSS MiB | / layer writing | other load |',
    '|---|---|---:|---|---:|---:|---:|---:|',
    ...rows,
    '',
    'Slope: milliseconds per MB of tar (linear when flat down the column).',
    '',
    '| size | layer writing | diff | flatten |',
    '|---|---:|---:|---:|',
    ...perMb.map(
      (p) => `| ${p.label} | ${p.write.toFixed(1)} | ${p.diff.toFixed(1)} | ${p.flatten.toFixed(1)} |`,
    ),
    '',
    `### Memory: a ${bigMb} MiB layer`,
    '',
    `A plain tar of one ${bigMb} MiB file (sparse, in ${shm}), one run each. Goal: peak RSS < ${GOAL_RSS_MIB} MiB: **${verdict(memOk)}**.`,
    '',
    '| command | wall s | CPU s | peak RSS MiB |',
    '|---|---:|---:|---:|',
    ...memory.map(
      ([n, s]) => `| ${n} | ${s.wallS.toFixed(2)} | ${s.cpuS.toFixed(2)} | ${s.rssMiB.toFixed(0)} |`,
    ),
    '',
  ].join('\n');
  return { markdown: md };
}

/**
 * An OCI layout at `dir` tagged `big`: one plain-tar layer holding `big/zeros` of `size` bytes. The
 * blob is a sparse file (header, then a hole), so it costs no memory or disk until read.
 */
async function sparseImage(dir: string, size: number): Promise<void> {
  const blobs = path.join(dir, 'blobs', 'sha256');
  await fs.mkdir(blobs, { recursive: true });
  const header = encodeHeader({
    path: 'big/zeros',
    type: 'file',
    mode: 0o644,
    uid: 0,
    gid: 0,
    size,
    mtime: 0,
  });
  const total = header.length + size + padding(size) + END_OF_ARCHIVE.length;
  const tmp = path.join(blobs, 'tmp');
  const handle = await fs.open(tmp, 'w');
  await handle.write(header, 0, header.length, 0);
  await handle.truncate(total);
  await handle.close();
  const hash = newHash();
  for await (const chunk of createReadStream(tmp, { highWaterMark: 4 * MiB })) hash.update(chunk as Buffer);
  const layer = `sha256:${hash.digest('hex')}`;
  await fs.rename(tmp, path.join(blobs, layer.slice(7)));
  const put = async (json: unknown) => {
    const bytes = Buffer.from(JSON.stringify(json));
    const digest = `sha256:${newHash().update(bytes).digest('hex')}`;
    await fs.writeFile(path.join(blobs, digest.slice(7)), bytes);
    return { digest, size: bytes.length };
  };
  const config = await put({
    architecture: os.arch() === 'arm64' ? 'arm64' : 'amd64',
    os: 'linux',
    rootfs: { type: 'layers', diff_ids: [layer] },
  });
  const manifest = await put({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: layer, size: total }],
  });
  await fs.writeFile(path.join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  await fs.writeFile(
    path.join(dir, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          ...manifest,
          annotations: { 'org.opencontainers.image.ref.name': 'big' },
        },
      ],
    }),
  );
}
