/**
 * The single executable (`npm run sea` → dist/kiln): made from the current sources, copied alone into
 * a temp dir outside the repository and run there with an empty PATH, so neither node nor
 * node_modules can help it. It prints its version, packages examples/hello/hello.wasm into an oci:
 * layout, inspects it and runs it with WASI, copies it to a registry (Debian's docker-registry on
 * loopback) and runs it from there, and says nothing on stderr (no ExperimentalWarning, of the single
 * executable or of WASI).
 *
 * Needs: Linux (the script makes Linux executables only). Builds dist/kiln itself, ~10-30 s.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { registrySkipReason, sharedRegistry } from '../support/registry.js';
import { run, runOk, skipOrFail } from '../support/tools.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const skip =
  process.platform === 'linux' ? undefined : skipOrFail('npm run sea makes Linux executables only');

const work = mkdtempSync(join(tmpdir(), 'kiln-sea-test-'));
after(() => rmSync(work, { recursive: true, force: true }));

test('dist/kiln, the single executable: --version, package, inspect and run from a bare temp dir', {
  skip,
  timeout: 300_000,
}, async (t) => {
  await runOk(process.execPath, ['scripts/sea.mjs'], { cwd: ROOT, timeoutMs: 240_000 });
  const exe = join(work, 'kiln');
  copyFileSync(join(ROOT, 'dist', 'kiln'), exe);
  copyFileSync(join(ROOT, 'examples', 'hello', 'hello.wasm'), join(work, 'app.wasm'));
  const env = { PATH: '', HOME: work, KILN_HOME: join(work, 'home'), NO_COLOR: '1' };
  const kiln = async (...args: string[]) => {
    const r = await run(exe, args, { cwd: work, env, timeoutMs: 60_000 });
    assert.equal(r.code, 0, `kiln ${args.join(' ')} exited with ${r.code}\nstderr: ${r.stderr}`);
    assert.equal(r.stderr, '', `kiln ${args.join(' ')} wrote to stderr`);
    return r.stdout;
  };

  assert.equal((await kiln('--version')).trim(), VERSION);
  const digest = (await kiln('--quiet', 'package', 'app.wasm', '--to', 'oci:./out:app')).trim();
  assert.match(digest, /^sha256:[0-9a-f]{64}$/);
  const info = JSON.parse(await kiln('--json', 'inspect', 'oci:./out:app'));
  assert.equal(info.digest, digest);
  assert.deepEqual(info.image.platform, { os: 'wasip1', architecture: 'wasm' });
  assert.equal(await kiln('run', 'oci:./out:app', '--', 'from', 'one', 'file'), 'hello, from one file\n');

  // Through a registry: pulling a blob takes code paths an oci: layout does not (lazily loaded modules).
  const reason = registrySkipReason();
  if (reason !== undefined) return t.skip(reason);
  const registry = await sharedRegistry('none');
  await kiln('--quiet', 'copy', 'oci:./out:app', `${registry.host}/sea/app:1`);
  assert.equal(await kiln('run', `${registry.host}/sea/app:1`, '--', 'pulled'), 'hello, pulled\n');
});
