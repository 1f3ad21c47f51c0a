/**
 * examples/compact-runtime/build.sh end to end (the MetaCall "compact image" recipe): a dev image of
 * a Debian clang toolchain (debootstrap) + a build tools layer + a static program built in it by
 * `kiln compile` in the bubblewrap sandbox; a runtime image of a static busybox + `kiln diff` of the
 * dev image without and with the program, stacked with `kiln merge`. The runtime image runs in a real
 * Docker engine, holds no compiler, and its size (checked against the layout's own blobs) is printed
 * next to the dev image's and must be under a tenth of it.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { dockerSkipReason, sharedDocker } from '../support/docker.js';
import { KILN_CLI, kiln, kilnHome } from '../support/kiln.js';
import {
  busyboxRootfs,
  busyboxSkipReason,
  debianToolchainRootfs,
  debootstrapSkipReason,
} from '../support/toolchain-images.js';
import { requireTool, run, toolSkipReason } from '../support/tools.js';

const EXAMPLE = fileURLToPath(new URL('../../examples/compact-runtime/', import.meta.url));
const skip =
  (process.arch === 'x64' ? undefined : 'the example builds for linux/amd64 hosts') ??
  debootstrapSkipReason() ??
  toolSkipReason('bwrap', 'sh') ??
  busyboxSkipReason() ??
  dockerSkipReason();

const work = mkdtempSync(join(tmpdir(), 'kiln-compact-runtime-'));
after(() => rmSync(work, { recursive: true, force: true }));

interface Descriptor {
  digest: string;
  size: number;
}
interface Manifest {
  config: Descriptor;
  layers: Descriptor[];
}

function ok(r: { code: number; stdout: string; stderr: string }, what: string): string {
  assert.equal(r.code, 0, `${what} exited with ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r.stdout;
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

test('compact runtime: the dev image builds the program, the runtime image runs it in Docker at a fraction of the size', {
  skip,
  timeout: 1_800_000,
}, async (t) => {
  const devRootfs = await debianToolchainRootfs('c');
  const slimRootfs = await busyboxRootfs(join(work, 'busybox'));
  const out = join(work, 'out');
  const built = await run(requireTool('sh')!, [join(EXAMPLE, 'build.sh')], {
    env: {
      ...process.env,
      NO_COLOR: '1',
      KILN_HOME: kilnHome(),
      KILN: `${process.execPath} ${KILN_CLI}`,
      DEV_ROOTFS: devRootfs,
      SLIM_ROOTFS: slimRootfs,
      OUT: out,
    },
    timeoutMs: 1_500_000,
  });
  ok(built, 'examples/compact-runtime/build.sh');
  const printed = Object.fromEntries(
    [...built.stdout.matchAll(/^(dev-with-lib|runtime) (\d+) bytes$/gm)].map((m) => [m[1]!, Number(m[2])]),
  );

  const dev = image(out, 'dev-with-lib');
  const devWithout = image(out, 'dev-without-lib');
  const runtime = image(out, 'runtime');
  const slim = image(out, 'slim');
  assert.equal(printed['dev-with-lib'], dev.total, 'the script prints what the layout holds');
  assert.equal(printed.runtime, runtime.total);
  const mb = (n: number) => `${(n / 1e6).toFixed(2)} MB`;
  t.diagnostic(
    `dev-with-lib ${mb(dev.total)} (${dev.total} bytes), runtime ${mb(runtime.total)} (${runtime.total} bytes), ` +
      `${((100 * runtime.total) / dev.total).toFixed(2)}%`,
  );
  assert.ok(runtime.total < dev.total / 10, `runtime ${runtime.total} is under a tenth of dev ${dev.total}`);

  // The runtime image: the slim base's layer, then the layer the program added to the dev image, reused.
  assert.equal(dev.manifest.layers.length, devWithout.manifest.layers.length + 1);
  assert.deepEqual(
    runtime.manifest.layers.map((l) => l.digest),
    [slim.manifest.layers[0]!.digest, dev.manifest.layers.at(-1)!.digest],
  );

  const engine = await sharedDocker();
  ok(
    await kiln(['copy', `oci:${out}:runtime`, 'docker-daemon:kiln-compact-runtime:1'], {
      env: { DOCKER_HOST: engine.host },
    }),
    'kiln copy to docker-daemon',
  );
  const ran = await engine.docker(['run', '--rm', 'kiln-compact-runtime:1', 'kiln'], { timeoutMs: 120_000 });
  assert.equal(ok(ran, 'docker run').trim(), 'hello, kiln, from libgreet 1.0.0');
  const inside = await engine.docker(
    [
      'run',
      '--rm',
      '--entrypoint',
      '/bin/sh',
      'kiln-compact-runtime:1',
      '-c',
      'greet; if [ -e /usr/bin/clang-14 ]; then echo compiler; else echo no compiler; fi',
    ],
    { timeoutMs: 120_000 },
  );
  assert.equal(ok(inside, 'docker run sh').trim(), 'hello, world, from libgreet 1.0.0\nno compiler');
});
