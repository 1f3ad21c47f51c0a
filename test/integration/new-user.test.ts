/**
 * A new user's first hour, as README.md tells it: this repository (its committed HEAD) is cloned into
 * a temp dir and the README's own commands are read out of the clone's README and run there with
 * `sh -e`, as written:
 *
 * 1. the demo line of the opening block (`npm ci && npm run demo`; the other line, `bash .ci/run`,
 *    is CI itself), which must print `hello, from kiln`;
 * 2. the first sh block of "## Install" (`npm ci`, `npm pack`, `npm install -g ./kiln-oci-*.tgz`,
 *    `kiln --version`). npm's global prefix is a temp dir (npm_config_prefix), so `-g` installs
 *    there, and its bin dir is first on PATH; npm prefers its cache (npm_config_prefer_offline);
 * 3. `git status --porcelain` in the clone must then be empty: nothing the steps made is tracked or
 *    left unignored;
 * 4. the installed `kiln` runs from a directory outside the clone, and the installed package is
 *    imported as the library (`from 'kiln-oci'`);
 * 5. every sh block of "## Use", in the clone, with `registry.example.com` replaced by a throw-away
 *    registry (Debian's docker-registry on loopback).
 *
 * Needs: git, npm (beside node), docker-registry. Outside CI a missing one skips; in CI it fails.
 * Takes a few minutes (two builds: the demo's and npm pack's).
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { registrySkipReason, sharedRegistry } from '../support/registry.js';
import { findTool, type RunResult, run, runOk, skipOrFail, toolSkipReason } from '../support/tools.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const NPM = join(dirname(process.execPath), 'npm');
const skip =
  toolSkipReason('git', 'sh') ??
  (findTool(NPM) ? undefined : skipOrFail(`npm not found beside node (${NPM})`)) ??
  registrySkipReason();

const work = mkdtempSync(join(tmpdir(), 'kiln-new-user-'));
after(() => rmSync(work, { recursive: true, force: true }));

/** The fenced sh blocks of the README section headed `heading` (up to the next heading of its level). */
export function shBlocks(readme: string, heading: string): string[] {
  const level = /^#+/.exec(heading)![0];
  const start = readme.indexOf(`\n${heading}\n`);
  assert.ok(start >= 0, `README.md has a section '${heading}'`);
  const rest = readme.slice(start + heading.length + 2);
  const end = rest.search(new RegExp(`^${level} `, 'm'));
  const section = end >= 0 ? rest.slice(0, end) : rest;
  return [...section.matchAll(/^```sh\n([\s\S]*?)^```$/gm)].map((m) => m[1]!);
}

function ok(r: RunResult, what: string): string {
  assert.equal(
    r.code,
    0,
    `${what} exited with ${r.code}\n--- stdout:\n${r.stdout}\n--- stderr:\n${r.stderr}`,
  );
  return r.stdout;
}

test("a new user's path: clone, the README's demo and install, kiln from PATH, the Use examples", {
  skip,
  timeout: 1_200_000,
}, async () => {
  const clone = join(work, 'kiln');
  await runOk('git', ['clone', '--quiet', ROOT, clone]);
  const readme = readFileSync(join(clone, 'README.md'), 'utf8');

  const prefix = join(work, 'npm-global');
  const outside = join(work, 'elsewhere');
  mkdirSync(outside);
  // The user's environment, without what `npm test` sets for its own scripts (npm_*): those name
  // this checkout, not the clone.
  const env: NodeJS.ProcessEnv = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k) && k !== 'INIT_CWD'),
  );
  Object.assign(env, {
    PATH: `${join(prefix, 'bin')}:${dirname(process.execPath)}:${process.env['PATH'] ?? ''}`,
    npm_config_prefix: prefix,
    npm_config_prefer_offline: 'true',
    npm_config_audit: 'false',
    npm_config_fund: 'false',
    npm_config_update_notifier: 'false',
    KILN_HOME: join(work, 'kiln-home'),
    NO_COLOR: '1',
  });
  const sh = (script: string, cwd: string, timeoutMs = 600_000) =>
    run('sh', ['-e', '-c', script], { cwd, env, timeoutMs });

  // 1. The demo line of the opening block.
  const opening = /^```sh\n([\s\S]*?)^```$/m.exec(readme.slice(0, readme.indexOf('\n## ')))?.[1];
  const demo = opening?.split('\n').find((l) => l.includes('npm run demo'));
  assert.ok(demo, "the README's opening block has the demo line");
  assert.match(ok(await sh(demo, clone), demo), /^hello, from kiln$/m);

  // 2. Install, as written.
  const install = shBlocks(readme, '## Install')[0] ?? '';
  assert.ok(install.includes('npm install -g'), 'the Install section installs the packed tarball');
  const installed = ok(await sh(install, clone), "the README's Install block");
  assert.match(installed, new RegExp(`^${VERSION.replace(/\./g, '\\.')}$`, 'm'), 'kiln --version');

  // 3. Nothing left behind that git would see.
  assert.equal((await runOk('git', ['status', '--porcelain'], { cwd: clone })).stdout, '');

  // 4. The installed kiln and library, away from the clone.
  const which = ok(await sh('command -v kiln', outside), 'command -v kiln').trim();
  assert.equal(which, join(prefix, 'bin', 'kiln'));
  assert.equal(ok(await sh('kiln --version', outside), 'kiln --version').trim(), VERSION);
  const hello = join(clone, 'examples', 'hello', 'hello.wasm');
  assert.equal(ok(await sh(`kiln run '${hello}' -- outside`, outside), 'kiln run'), 'hello, outside\n');
  mkdirSync(join(outside, 'node_modules'));
  symlinkSync(join(prefix, 'lib', 'node_modules', 'kiln-oci'), join(outside, 'node_modules', 'kiln-oci'));
  const library = [
    "import { pack, inspect } from 'kiln-oci';",
    `const { descriptor } = await pack({ file: ${JSON.stringify(hello)}, to: 'oci:./lib-out:app', format: 'image' });`,
    "const info = await inspect('oci:./lib-out:app');",
    'console.log(descriptor.digest === info.digest ? "same digest" : "different digests");',
  ].join('\n');
  const imported = await run(process.execPath, ['--input-type=module', '-e', library], { cwd: outside, env });
  assert.equal(ok(imported, "import from 'kiln-oci'"), 'same digest\n');

  // 5. The Use examples, as written, against a local registry.
  const registry = await sharedRegistry('none');
  const blocks = shBlocks(readme, '## Use');
  assert.ok(blocks.length >= 1, 'the Use section has sh blocks');
  let out = '';
  for (const block of blocks) {
    const script = block.replaceAll('registry.example.com', registry.host);
    out += ok(await sh(script, clone, 300_000), `a Use block of the README:\n${script}`);
  }
  assert.match(out, /^hello, arg1 arg2$/m);
  assert.match(out, /^hello, from the registry$/m);
});
