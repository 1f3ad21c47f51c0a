/**
 * README.md's "Make a toolchain image" recipe, run as written: its sh block is read out of the
 * README and run with `sh -e` in a temp dir holding `app/main.c`. On PATH first: `kiln` (the built
 * CLI) and a caching `debootstrap` (the real one, once per machine for the same arguments; see
 * cachingDebootstrap). DOCKER_HOST names no engine, so `kiln compile` (runner auto) builds in the
 * bubblewrap sandbox. Checked: the program prints what main.c says, and the toolchain layer holds
 * debootstrap's /dev nodes as tar writes them.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { KILN_CLI, kiln, kilnHome } from '../support/kiln.js';
import { cachingDebootstrap, debootstrapSkipReason } from '../support/toolchain-images.js';
import { ok, requireTool, run, skipOrFail, toolSkipReason } from '../support/tools.js';

const README = readFileSync(fileURLToPath(new URL('../../README.md', import.meta.url)), 'utf8');
const skip =
  (process.arch === 'x64' ? undefined : 'the recipe makes a linux/amd64 image') ??
  (process.getuid?.() === 0 ? undefined : skipOrFail('debootstrap needs root')) ??
  debootstrapSkipReason() ??
  toolSkipReason('bwrap', 'sh', 'tar');

const work = mkdtempSync(join(tmpdir(), 'kiln-readme-toolchain-'));
after(() => rmSync(work, { recursive: true, force: true }));

test("README's toolchain recipe: debootstrap, kiln append (with /dev), kiln compile in it, kiln run", {
  skip,
  timeout: 1_200_000,
}, async () => {
  const heading = README.indexOf('\n#### Make a toolchain image');
  assert.ok(heading >= 0, 'the README has the section');
  const steps = /^```sh\n([\s\S]*?)^```$/m.exec(README.slice(heading))?.[1];
  assert.ok(steps, 'the section has a sh block');

  const dir = join(work, 'run');
  mkdirSync(join(dir, 'app'), { recursive: true });
  writeFileSync(
    join(dir, 'app', 'main.c'),
    '#include <stdio.h>\nint main(void) {\n  puts("hello from a kiln-made toolchain");\n  return 0;\n}\n',
  );
  const bin = cachingDebootstrap(join(work, 'bin'));
  writeFileSync(join(bin, 'kiln'), `#!/bin/sh\nexec '${process.execPath}' '${KILN_CLI}' "$@"\n`, {
    mode: 0o755,
  });
  const ran = await run(requireTool('sh')!, ['-e', '-c', steps], {
    cwd: dir,
    env: {
      ...process.env,
      PATH: `${bin}:${process.env.PATH}`,
      DOCKER_HOST: `unix://${join(work, 'no-engine.sock')}`,
      NO_COLOR: '1',
      KILN_HOME: kilnHome(),
    },
    timeoutMs: 1_100_000,
  });
  ok(ran, "the README's toolchain steps");
  assert.equal(ran.stdout.trim().split('\n').at(-1), 'hello from a kiln-made toolchain');
  assert.match(ran.stderr, /\bsandbox\b/, 'auto picked the sandbox');

  // The toolchain's one layer has debootstrap's device nodes, root-owned, as tar writes them.
  const info = JSON.parse(
    ok(await kiln(['--json', 'inspect', `oci:${join(dir, 'toolchains')}:clang-14`]), 'kiln inspect'),
  ) as { image: { layers: { digest: string }[] } };
  assert.equal(info.image.layers.length, 1);
  const blob = join(dir, 'toolchains', 'blobs', info.image.layers[0]!.digest.replace(':', '/'));
  const listed = ok(await run(requireTool('tar')!, ['-tvzf', blob, 'dev/'], { timeoutMs: 300_000 }), 'tar');
  assert.match(listed, /^crw-rw-rw- 0\/0 +1,3 .* dev\/null$/m);
  assert.match(listed, /^crw-rw-rw- 0\/0 +5,1 .* dev\/console$/m);
});
