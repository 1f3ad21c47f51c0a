/**
 * examples/compact-runtime end to end, as its README says: the "Run it" commands are read out of
 * examples/compact-runtime/README.md and run as written, with `sh -e`, in a copy of the example
 * directory (so `./build.sh` is the example's script). On PATH first: `kiln` (the built CLI),
 * `docker` (the CLI of a private engine, DOCKER_HOST pointing at it) and a caching `debootstrap`
 * (the real one, run once per machine for the same arguments; see cachingDebootstrap).
 *
 * Checked: the runtime image runs in Docker and says what the README's comment says, holds no
 * compiler, reuses the program's layer from the dev image, and every size in the README's table
 * (layers and totals) is within the tolerance the README states of what the layout holds.
 */
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { dockerSkipReason, sharedDocker } from '../support/docker.js';
import { KILN_CLI, kilnHome } from '../support/kiln.js';
import { busyboxSkipReason, cachingDebootstrap, debootstrapSkipReason } from '../support/toolchain-images.js';
import { ok, requireTool, run, toolSkipReason } from '../support/tools.js';

const EXAMPLE = fileURLToPath(new URL('../../examples/compact-runtime/', import.meta.url));
const README = readFileSync(join(EXAMPLE, 'README.md'), 'utf8');
const skip =
  (process.arch === 'x64' ? undefined : 'the example builds for linux/amd64 hosts') ??
  debootstrapSkipReason() ??
  toolSkipReason('bwrap', 'sh') ??
  busyboxSkipReason() ??
  dockerSkipReason();

const work = mkdtempSync(join(tmpdir(), 'kiln-compact-runtime-'));
after(() => rmSync(work, { recursive: true, force: true }));

/** The `n`th sh code block of the README section under `heading`. */
function shBlock(heading: string, n = 0): string {
  const start = README.indexOf(`\n${heading}\n`);
  assert.ok(start >= 0, `the README has a section ${heading}`);
  const next = README.indexOf('\n## ', start + heading.length + 2);
  const section = README.slice(start, next === -1 ? undefined : next);
  const blocks = [...section.matchAll(/^```sh\n([\s\S]*?)^```$/gm)].map((m) => m[1]!);
  assert.ok(blocks[n], `${heading} has a sh block #${n}`);
  return blocks[n];
}

/** The README's size table: per image, each `NAME ≈ N UNIT` of its layers cell and its total. */
function readmeSizes(): {
  tolerance: number;
  images: Map<string, { layers: Map<string, number>; total: number }>;
} {
  const tolerance = Number(/to within (\d+)%/.exec(README)?.[1]);
  assert.ok(tolerance > 0, 'the README states its tolerance');
  const bytes = (n: string, unit: string) => Number(n) * { B: 1, kB: 1e3, MB: 1e6 }[unit]!;
  const images = new Map<string, { layers: Map<string, number>; total: number }>();
  for (const row of README.matchAll(/^\| ([\w-]+) \| (.+) \| ≈ ([\d.]+) (B|kB|MB) \|$/gm)) {
    const layers = new Map(
      [...row[2]!.matchAll(/([\w-]+) ≈ ([\d.]+) (B|kB|MB)/g)].map((m) => [m[1]!, bytes(m[2]!, m[3]!)]),
    );
    images.set(row[1]!, { layers, total: bytes(row[3]!, row[4]!) });
  }
  return { tolerance, images };
}

interface Descriptor {
  digest: string;
  size: number;
}
interface Manifest {
  config: Descriptor;
  layers: Descriptor[];
}

/** The manifest tagged `tag` in an OCI layout, read from disk, and its size as a registry serves it. */
function image(layout: string, tag: string): { manifest: Manifest; total: number } {
  const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8')) as {
    manifests: (Descriptor & { annotations?: Record<string, string> })[];
  };
  const desc = index.manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === tag);
  assert.ok(desc, `${layout} has no tag ${tag}`);
  const file = (d: Descriptor) => join(layout, 'blobs', d.digest.replace(':', '/'));
  const manifest = JSON.parse(readFileSync(file(desc), 'utf8')) as Manifest;
  const blobs = [desc, manifest.config, ...manifest.layers];
  for (const b of blobs) assert.equal(statSync(file(b)).size, b.size, `blob ${b.digest} has its size`);
  return { manifest, total: blobs.reduce((n, b) => n + b.size, 0) };
}

test('the README lists the kiln commands build.sh runs, in order', () => {
  const commands = (text: string) =>
    [...text.matchAll(/^\s*kiln (\w+) (\S+)/gm)].map((m) => `${m[1]} ${m[2]!.replace(/"/g, '')}`);
  const script = readFileSync(join(EXAMPLE, 'build.sh'), 'utf8');
  const listed = commands(shBlock('## Run it', 1));
  assert.ok(listed.length >= 8);
  // build.sh's arguments name its temp dir ("$work/src") where the README says ./src
  assert.deepEqual(
    commands(script).map((c) => c.replace('$work/', './')),
    listed,
  );
});

test('compact runtime: the README steps build the dev and runtime images, the runtime runs in Docker at the sizes the README gives', {
  skip,
  timeout: 1_800_000,
}, async (t) => {
  const steps = shBlock('## Run it');
  const dir = join(work, 'example');
  cpSync(EXAMPLE, dir, { recursive: true });
  const bin = cachingDebootstrap(join(work, 'bin'));
  writeFileSync(join(bin, 'kiln'), `#!/bin/sh\nexec '${process.execPath}' '${KILN_CLI}' "$@"\n`, {
    mode: 0o755,
  });
  const engine = await sharedDocker();
  symlinkSync(engine.cli, join(bin, 'docker'));
  const ran = await run(requireTool('sh')!, ['-e', '-c', steps], {
    cwd: dir,
    env: {
      ...process.env,
      ...engine.env,
      PATH: `${bin}:${process.env.PATH}`,
      NO_COLOR: '1',
      KILN_HOME: kilnHome(),
    },
    timeoutMs: 1_500_000,
  });
  ok(ran, "the README's Run it steps");

  // What docker run printed, as the README's comment on that line says.
  const said = /^docker run .*#\s*(.+)$/m.exec(steps)?.[1];
  assert.ok(said, 'the README says what docker run prints');
  assert.equal(ran.stdout.trim().split('\n').at(-1), said);

  const out = join(dir, 'out');
  const printed = Object.fromEntries(
    [...ran.stdout.matchAll(/^(dev-with-lib|runtime) (\d+) bytes$/gm)].map((m) => [m[1]!, Number(m[2])]),
  );
  const dev = image(out, 'dev-with-lib');
  const devWithout = image(out, 'dev-without-lib');
  const runtime = image(out, 'runtime');
  const slim = image(out, 'slim');
  assert.equal(printed['dev-with-lib'], dev.total, 'build.sh prints what the layout holds');
  assert.equal(printed.runtime, runtime.total);
  const mb = (n: number) => `${(n / 1e6).toFixed(2)} MB`;
  t.diagnostic(
    `dev-with-lib ${mb(dev.total)} (layers ${dev.manifest.layers.map((l) => l.size).join(' + ')}), ` +
      `runtime ${mb(runtime.total)} (layers ${runtime.manifest.layers.map((l) => l.size).join(' + ')}), ` +
      `${((100 * runtime.total) / dev.total).toFixed(2)}%`,
  );
  assert.ok(runtime.total < dev.total / 100, `runtime ${runtime.total} is under 1% of dev ${dev.total}`);

  // The runtime image: the slim base's layer, then the layer the program added to the dev image, reused.
  assert.equal(dev.manifest.layers.length, devWithout.manifest.layers.length + 1);
  assert.deepEqual(
    runtime.manifest.layers.map((l) => l.digest),
    [slim.manifest.layers[0]!.digest, dev.manifest.layers.at(-1)!.digest],
  );

  // Every size the README gives, within its tolerance.
  const { tolerance, images } = readmeSizes();
  const measured = new Map([
    ['dev-with-lib', { names: ['toolchain', 'tools', 'greet'], image: dev }],
    ['runtime', { names: ['busybox', 'greet'], image: runtime }],
  ]);
  assert.deepEqual([...images.keys()], [...measured.keys()], "the README's size table has both images");
  for (const [name, { names, image: img }] of measured) {
    const claims = images.get(name)!;
    assert.deepEqual([...claims.layers.keys()], names, `the README names ${name}'s layers`);
    const near = (actual: number, claimed: number, what: string) =>
      assert.ok(
        Math.abs(actual - claimed) <= (claimed * tolerance) / 100,
        `${what}: ${actual} bytes, the README says about ${claimed} (±${tolerance}%)`,
      );
    near(img.total, claims.total, `${name} total`);
    for (const [i, layer] of names.entries())
      near(img.manifest.layers[i]!.size, claims.layers.get(layer)!, `${name} ${layer} layer`);
  }

  const inside = await engine.docker(
    [
      'run',
      '--rm',
      '--entrypoint',
      '/bin/sh',
      'compact-runtime:1',
      '-c',
      'greet; if [ -e /usr/bin/clang-14 ]; then echo compiler; else echo no compiler; fi',
    ],
    { timeoutMs: 120_000 },
  );
  assert.equal(ok(inside, 'docker run sh').trim(), 'hello, world, from libgreet 1.0.0\nno compiler');
});
