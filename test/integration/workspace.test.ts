/**
 * Workspaces end to end (`kiln build DIR/...`, kiln.yaml `workspace:`), against real parts: three
 * small C projects compiled by the bubblewrap sandbox in a Debian clang + wasi-libc toolchain image
 * (toolchain-images.ts), pulled from a real registry; one of them does not compile.
 *
 * Checks: the summary table and the JSON array; the projects ran at once (the sum of their times
 * exceeds the whole run's) and the store they shared holds only blobs whose bytes match their
 * digests; exit code 1 when one fails while the others are still written; --fail-fast cancels
 * the rest; a second run is all cached with the same digests; a workspace's kiln.yaml; the usage
 * errors (a --to without {name}, compiling a workspace).
 *
 * The kiln CLI must be built (`npm run build`). Outside CI a missing tool skips; in CI it fails.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { kilnStore } from '../support/kiln.js';
import { registrySkipReason, sharedRegistry } from '../support/registry.js';
import { writeTree } from '../support/temp.js';
import { debianToolchainRootfs, debootstrapSkipReason } from '../support/toolchain-images.js';
import { ok, toolSkipReason } from '../support/tools.js';

const skip = debootstrapSkipReason() ?? toolSkipReason('bwrap') ?? registrySkipReason('none');
const LONG = { timeout: 1_200_000 };

const { work, k } = kilnStore('kiln-workspace');
/** The workspace runs get a store of their own: every project pulls the toolchain into it at once. */
const home = join(work, 'ws-home');
let cImage: string;
let services: string;

interface ProjectJson {
  project: string;
  name: string;
  status: 'built' | 'cached' | 'failed' | 'cancelled';
  platforms: string[];
  digest?: string;
  destinations: string[];
  seconds: number;
  error?: { code: string; message: string };
  log?: string;
}

function cProject(dir: string, body: string): void {
  writeTree(dir, {
    'main.c': `#include <stdio.h>\nint main(void) {\n  ${body}\n  return 0;\n}\n`,
    'kiln.yaml': `lang: c\ntoolchain:\n  image: ${cImage}\n`,
  });
}

/** `kiln build ARGS --runner sandbox` with the workspace store: its exit code, output and wall time. */
async function ws(args: string[]) {
  const started = performance.now();
  const r = await k(['build', ...args, '--runner', 'sandbox'], { KILN_HOME: home });
  return { ...r, wall: (performance.now() - started) / 1000 };
}

async function wsJson(args: string[]) {
  const r = await ws([...args, '--json']);
  let projects: ProjectJson[];
  try {
    projects = JSON.parse(r.stdout) as ProjectJson[];
  } catch {
    assert.fail(`not JSON (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
  }
  return { ...r, projects, by: Object.fromEntries(projects.map((p) => [p.name, p])) };
}

/** Every blob in the store hashes to its name. */
function checkStore(dir: string): number {
  const blobs = join(dir, 'blobs', 'sha256');
  const names = readdirSync(blobs);
  for (const name of names) {
    const digest = createHash('sha256')
      .update(readFileSync(join(blobs, name)))
      .digest('hex');
    assert.equal(digest, name, `blob ${name} holds other bytes`);
  }
  JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8'));
  return names.length;
}

describe('workspaces', { skip }, () => {
  before(async () => {
    const reg = await sharedRegistry('none');
    const rootfs = await debianToolchainRootfs('c');
    cImage = `${reg.host}/toolchains/c:14`;
    ok(
      await k(
        ['append', 'scratch', '--platform', 'linux/amd64', '--layer', rootfs, '--to', cImage],
        {},
        900_000,
      ),
      `push ${cImage}`,
    );
    services = join(work, 'repo', 'services');
    // Sorted: broken, hello, world; and a directory that is no project.
    cProject(join(services, 'broken'), 'printf("no semicolon\\n")');
    cProject(join(services, 'hello'), 'printf("hello from the workspace\\n");');
    cProject(join(services, 'world'), 'printf("world from the workspace\\n");');
    writeTree(join(services, 'docs'), { 'README.md': 'not a project\n' });
  }, LONG);

  test(
    'DIR/... builds every project at once; one failing does not stop the others; exit 1',
    LONG,
    async () => {
      const out = join(work, 'out');
      const r = await ws([`${services}/...`, '--to', `oci:${out}:{name}`, '--jobs', '3']);
      assert.equal(r.code, 1, `exit 1 when a project failed\n${r.stdout}\n${r.stderr}`);
      const rows = r.stdout.trim().split('\n');
      assert.match(rows[0]!, /^PROJECT\s+PLATFORMS\s+DIGEST\s+RESULT\s+TIME$/);
      assert.equal(rows.length, 4, r.stdout);
      assert.match(rows[1]!, /^broken\s+-\s+-\s+failed\s+\d+\.\ds$/);
      assert.match(rows[2]!, /^hello\s+wasip1\/wasm\s+sha256:[0-9a-f]{12}\s+built\s+\d+\.\ds$/);
      assert.match(rows[3]!, /^world\s+wasip1\/wasm\s+sha256:[0-9a-f]{12}\s+built\s+\d+\.\ds$/);
      // One line per project as it finishes; the failing one with its compiler's messages.
      assert.match(
        r.stderr,
        /^broken: failed: the build failed \(exit 1\) in the sandbox runner \(E_BUILD_FAILED/m,
      );
      assert.match(r.stderr, /^ {2}\| .*main\.c:\d+:\d+: error: expected ';'/m);
      assert.match(r.stderr, /^hello: built sha256:[0-9a-f]{64} \(wasip1\/wasm, [\d.]+s\) -> oci:/m);
      assert.match(r.stderr, /^3 projects: 2 built, 1 failed$/m);

      // The others were written, each to its own tag, and run.
      for (const name of ['hello', 'world'])
        assert.equal(
          ok(await k(['run', `oci:${out}:${name}`], { KILN_HOME: home }), `kiln run ${name}`).trim(),
          `${name} from the workspace`,
        );
      const tags = (
        JSON.parse(readFileSync(join(out, 'index.json'), 'utf8')) as {
          manifests: Array<{ annotations?: Record<string, string> }>;
        }
      ).manifests.map((m) => m.annotations?.['org.opencontainers.image.ref.name']);
      // (The SBOMs' referrers are tagged sha256-…: no layout referrers API.)
      assert.deepEqual(tags.filter((t) => !t?.startsWith('sha256-')).sort(), ['hello', 'world']);

      // At once: three projects' times add up to more than the whole run took.
      const seconds = rows.slice(1).map((row) => Number(/(\d+\.\d)s$/.exec(row)![1]));
      const sum = seconds.reduce((a, b) => a + b, 0);
      assert.ok(
        sum > r.wall,
        `projects took ${sum}s together, the run ${r.wall.toFixed(1)}s: not in parallel`,
      );
      // They shared one store, pulling the same toolchain into it at once: nothing in it is corrupt.
      assert.ok(checkStore(home) > 3);
    },
  );

  test('--fail-fast: the first failure cancels the projects not yet started', LONG, async () => {
    const r = await wsJson([
      `${services}/...`,
      '--to',
      `oci:${join(work, 'ff')}:{name}`,
      '-j',
      '1',
      '--fail-fast',
    ]);
    assert.equal(r.code, 1);
    assert.deepEqual(
      r.projects.map((p) => [p.project, p.status]),
      [
        ['broken', 'failed'],
        ['hello', 'cancelled'],
        ['world', 'cancelled'],
      ],
    );
    assert.equal(r.by.broken!.error?.code, 'E_BUILD_FAILED');
    assert.match(r.by.broken!.log ?? '', /error: expected ';'/);
    // Without it, the same run builds the others (from the cache now).
    const all = await wsJson([`${services}/...`, '--to', `oci:${join(work, 'ff')}:{name}`, '-j', '1']);
    assert.equal(all.code, 1);
    assert.deepEqual(
      all.projects.map((p) => p.status),
      ['failed', 'cached', 'cached'],
    );
  });

  test('fixed, it builds; a second run is all cached with the same digests; exit 0', LONG, async () => {
    cProject(join(services, 'broken'), 'printf("fixed\\n");');
    const to = `oci:${join(work, 'out2')}:{name}`;
    const first = await wsJson([`${services}/...`, '--to', to]);
    assert.equal(first.code, 0, first.stderr);
    assert.deepEqual(
      first.projects.map((p) => [p.name, p.status]),
      [
        ['broken', 'built'],
        ['hello', 'cached'],
        ['world', 'cached'],
      ],
    );
    const second = await wsJson([`${services}/...`, '--to', to]);
    assert.equal(second.code, 0, second.stderr);
    assert.deepEqual(
      second.projects.map((p) => p.status),
      ['cached', 'cached', 'cached'],
    );
    for (const p of second.projects) {
      assert.match(p.digest ?? '', /^sha256:[0-9a-f]{64}$/);
      assert.equal(p.digest, first.by[p.name]!.digest, `${p.name}: same digest`);
      assert.deepEqual(p.platforms, ['wasip1/wasm']);
      assert.deepEqual(p.destinations, [to.replace('{name}', p.name)]);
      // Each project kept its own lock.
      assert.ok(JSON.parse(readFileSync(join(services, p.name, 'kiln.lock'), 'utf8')).toolchains[cImage]);
    }
    assert.ok(checkStore(home) > 3);
  });

  test("a kiln.yaml's workspace: lists the projects; usage errors", LONG, async () => {
    const root = join(work, 'repo');
    writeFileSync(join(root, 'kiln.yaml'), 'workspace:\n  - services/hello\n  - services/world\n');
    const r = await wsJson([root, '--to', `oci:${join(work, 'out3')}:{name}`]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(
      r.projects.map((p) => [p.project, p.status]),
      [
        ['services/hello', 'cached'],
        ['services/world', 'cached'],
      ],
    );

    const same = await ws([`${services}/...`, '--to', `oci:${join(work, 'x')}:app`, '--json']);
    assert.equal(same.code, 2, 'a usage error, before anything is built');
    assert.equal(JSON.parse(same.stdout).error.code, 'E_USAGE');
    assert.match(JSON.parse(same.stdout).error.hint, /\{name\}/);

    const compile = await k(['compile', root, '--json'], { KILN_HOME: home });
    assert.notEqual(compile.code, 0);
    assert.equal(JSON.parse(compile.stdout).error.code, 'E_USAGE');

    writeFileSync(join(root, 'kiln.yaml'), 'workspace:\n  - services/hello\nlang: c\n');
    const mixed = await ws([root, '--json']);
    assert.equal(JSON.parse(mixed.stdout).error.code, 'E_BAD_PROJECT');
    assert.match(
      JSON.parse(mixed.stdout).error.message,
      /kiln\.yaml:3:1: lang: a workspace's kiln\.yaml holds only/,
    );
  });
});
