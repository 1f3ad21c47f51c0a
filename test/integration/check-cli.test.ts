/**
 * `kiln check` from the command line, `--format runwasi`'s exact layout, the platform aliases on
 * `package` and `index create`, and `package --check` refusing (and writing nothing) when a named
 * consumer would not run the image. The verdicts themselves are tested rule by rule in
 * test/unit/check.test.ts.
 */
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type ImageIndex, layoutBlob, layoutJson, sha256, sha256hex, tagged } from '../support/images.js';
import { kiln, kilnDigest, kilnFails, kilnJson, kilnOk } from '../support/kiln.js';
import { freshPaths, workDir } from '../support/temp.js';

const WASM = fileURLToPath(new URL('../fixtures/wasm/core-command.wasm', import.meta.url));
const COMPONENT = fileURLToPath(new URL('../fixtures/wasm/component-command.wasm', import.meta.url));
const work = workDir('kiln-check-cli');
const fresh = freshPaths(work);
/** kiln package of WASM with `args` to `oci:<dir>:app`: its digest. */
const packageWasm = (dir: string, args: string[] = []) =>
  kilnDigest(['package', WASM, ...args, '--to', `oci:${dir}:app`]);

interface CheckJson {
  name: string;
  digest: string;
  ok: boolean;
  verdicts: {
    consumer: string;
    ok: boolean;
    picked?: { digest: string; layer?: string };
    findings: { rule: string; severity: string; message: string; fix?: string }[];
  }[];
}

describe('kiln check', () => {
  test('an image every asked-for consumer takes: exit 0, one ok line each', async () => {
    const dir = fresh('ok');
    const digest = await packageWasm(dir);
    const r = await kiln(['check', `oci:${dir}:app`, '--for', 'containerd,crun', '--for', 'runwasi']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^containerd\s+ok/m);
    assert.match(r.stdout, /^crun\s+ok/m);
    assert.match(r.stdout, /^runwasi\s+ok/m);
    assert.match(r.stdout, /all 3 would run it/);
    const json = await kilnJson<CheckJson>(['check', `oci:${dir}:app`, '--for', 'crun']);
    assert.equal(json.digest, digest);
    assert.deepEqual(
      json.verdicts.map((v) => [v.consumer, v.ok, v.picked?.digest]),
      [['crun', true, digest]],
    );
  });

  test('a consumer that would fail: exit 1, the finding, its rule and the flag that fixes it; --json too', async () => {
    const dir = fresh('fail');
    await packageWasm(dir);
    const r = await kiln(['check', `oci:${dir}:app`, '--for', 'wkg']);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /^wkg\s+FAIL/m);
    assert.match(r.stdout, /not application\/vnd\.wasm\.config\.v0\+json \[wkg\.config\]/);
    assert.match(r.stdout, /fix: --format artifact/);
    const j = await kiln(['check', `oci:${dir}:app`, '--for', 'wkg', '--json']);
    assert.equal(j.code, 1);
    const json = JSON.parse(j.stdout) as CheckJson;
    assert.equal(json.ok, false);
    assert.deepEqual(
      json.verdicts[0]!.findings.map((f) => f.rule),
      ['wkg.config', 'wkg.layer'],
    );
  });

  test('no --for checks every consumer; a gate alone is not a failure', async () => {
    const dir = fresh('all');
    await kilnDigest(['package', COMPONENT, '--format', 'artifact', '--to', `oci:${dir}:app`]);
    const json = JSON.parse((await kiln(['check', `oci:${dir}:app`, '--json'])).stdout) as CheckJson;
    assert.deepEqual(
      json.verdicts.map((v) => v.consumer),
      ['containerd', 'k8s', 'runwasi', 'crun', 'docker', 'istio', 'spin', 'wkg'],
    );
    const containerd = json.verdicts[0]!;
    assert.equal(containerd.ok, true);
    assert.deepEqual(
      containerd.findings.map((f) => [f.rule, f.severity]),
      [['containerd.layers', 'gate']],
    );
  });

  test('a .wasm file is checked as packaged with --format (default image), and nothing is written', async () => {
    const json = await kilnJson<CheckJson & { format: string }>([
      'check',
      COMPONENT,
      '--format',
      'artifact',
      '--for',
      'wkg,spin',
    ]);
    assert.equal(json.name, COMPONENT);
    assert.equal(json.format, 'artifact');
    assert.ok(json.ok, JSON.stringify(json.verdicts));
    const image = await kiln(['check', WASM, '--for', 'istio', '--json']);
    assert.equal(image.code, 1);
    assert.equal((JSON.parse(image.stdout) as CheckJson).verdicts[0]!.findings[0]!.rule, 'istio.plugin');
  });

  test('usage errors: an unknown consumer, --format with an image', async () => {
    const dir = fresh('usage');
    await packageWasm(dir);
    const e = await kilnFails(['check', `oci:${dir}:app`, '--for', 'kubernetes'], 'E_USAGE');
    assert.match(e.message, /unknown consumer 'kubernetes'/);
    assert.match(e.hint ?? '', /containerd, k8s, runwasi/);
    await kilnFails(['check', `oci:${dir}:app`, '--format', 'artifact'], 'E_USAGE');
  });
});

describe('kiln package --check', () => {
  test('refuses an image a named consumer would not run, and writes nothing', async () => {
    const dir = fresh('refused');
    const e = await kilnFails(
      ['package', WASM, '--format', 'runwasi', '--check', 'k8s,crun', '--to', `oci:${dir}:app`],
      'E_CHECK_FAILED',
    );
    assert.match(e.message, /^crun would not run this image: no module\.wasm\.image\/variant/);
    assert.match(e.hint ?? '', /--format image/);
    assert.equal(existsSync(join(dir, 'index.json')), false, 'nothing written');
  });

  test('writes it when every named consumer takes it', async () => {
    const dir = fresh('taken');
    const digest = await packageWasm(dir, ['--format', 'runwasi', '--check', 'runwasi,k8s']);
    assert.equal(tagged(dir, 'app').digest, digest);
  });
});

describe('--format runwasi', () => {
  test("the layout runwasi's oci-tar-builder writes: raw wasm layer, arch wasm, no diff_ids, Entrypoint <name>.wasm, the layers label", async () => {
    const dir = fresh('runwasi');
    const digest = await packageWasm(dir, ['--format', 'runwasi', '--name', 'hello']);
    const manifest = layoutJson(dir, digest);
    assert.equal(manifest.mediaType, 'application/vnd.oci.image.manifest.v1+json');
    assert.equal(manifest.config.mediaType, 'application/vnd.oci.image.config.v1+json');
    const module = readFileSync(WASM);
    assert.deepEqual(manifest.layers, [
      {
        mediaType: 'application/vnd.bytecodealliance.wasm.component.layer.v0+wasm',
        digest: sha256(module),
        size: module.length,
      },
    ]);
    assert.ok(layoutBlob(dir, manifest.layers[0]!.digest).equals(module));
    const config = layoutJson<Record<string, unknown>>(dir, manifest.config.digest);
    assert.equal(config.architecture, 'wasm');
    assert.equal(config.os, 'wasip1');
    assert.deepEqual(config.rootfs, { type: 'layers', diff_ids: [] });
    assert.equal(config.history, undefined);
    assert.deepEqual(config.config, {
      Entrypoint: ['hello.wasm'],
      // sha256 (hex) of the layers' hex digests joined, as runwasi's `digest(layer_digests.join(""))`
      Labels: { 'containerd.runwasi.layers': sha256hex(sha256hex(module)) },
    });
    // A component is wasip2; the same input gives the same digest.
    const c = fresh('runwasi-c');
    const cd = await kilnDigest(['package', COMPONENT, '--format', 'runwasi', '--to', `oci:${c}:app`]);
    assert.equal(layoutJson<{ os: string }>(c, layoutJson(c, cd).config.digest).os, 'wasip2');
    assert.equal(await packageWasm(fresh('again'), ['--format', 'runwasi', '--name', 'hello']), digest);
  });
});

describe('platform aliases on package and index create', () => {
  test('package --wasi-alias --node-alias writes an index: the image, then its aliases', async () => {
    const dir = fresh('aliases');
    const digest = await packageWasm(dir, [
      '--wasi-alias',
      '--node-alias',
      'linux/amd64',
      '--node-alias',
      'linux/arm64',
    ]);
    const index = layoutJson<ImageIndex>(dir, digest);
    assert.equal(index.mediaType, 'application/vnd.oci.image.index.v1+json');
    const platforms = index.manifests.map((m) => `${m.platform?.os}/${m.platform?.architecture}`);
    assert.deepEqual(platforms, ['wasip1/wasm', 'wasi/wasm', 'linux/amd64', 'linux/arm64']);
    assert.equal(new Set(index.manifests.map((m) => m.digest)).size, 1, 'one manifest under four platforms');
    const json = await kilnJson<CheckJson>(['check', `oci:${dir}:app`, '--for', 'k8s,docker,containerd']);
    assert.ok(json.ok, JSON.stringify(json.verdicts));
  });

  test('index create --node-alias refuses to hide a native image; a wasm platform is not a node', async () => {
    const dir = fresh('native');
    await kilnDigest(['package', WASM, '--to', `oci:${dir}:wasm`]);
    await kilnDigest(['package', WASM, '--platform', 'linux/amd64', '--to', `oci:${dir}:amd64`]);
    // index create of both images to `oci:<dir>:multi`, with `alias` as a node alias.
    const indexArgs = (alias: string) => [
      'index',
      'create',
      '--node-alias',
      alias,
      '--to',
      `oci:${dir}:multi`,
      `oci:${dir}:wasm`,
      `oci:${dir}:amd64`,
    ];
    const e = await kilnFails(indexArgs('linux/amd64'), 'E_AMBIGUOUS');
    assert.match(e.message, /has an image of its own for linux\/amd64/);
    await kilnFails(
      ['index', 'create', '--node-alias', 'wasi/wasm', '--to', `oci:${dir}:multi`, `oci:${dir}:wasm`],
      'E_USAGE',
    );
    const ok = await kilnDigest(indexArgs('linux/arm64'));
    const platforms = layoutJson<ImageIndex>(dir, ok).manifests.map(
      (m) => `${m.platform?.os}/${m.platform?.architecture}`,
    );
    assert.deepEqual(platforms, ['wasip1/wasm', 'linux/arm64', 'linux/amd64']);
  });
});

describe("kiln build with kiln.yaml's check:", () => {
  test('a build whose image a listed consumer would not run fails E_CHECK_FAILED and writes nothing; --check overrides', async () => {
    const project = fresh('project');
    mkdirSync(project, { recursive: true });
    copyFileSync(WASM, join(project, 'prebuilt.wasm'));
    writeFileSync(join(project, 'kiln.yaml'), 'lang: c\ncheck: [wkg]\n');
    const out = fresh('build-out');
    const args = [
      'build',
      project,
      '--runner',
      'local',
      '--no-sbom',
      '--command',
      'cp prebuilt.wasm "$KILN_OUT/app.wasm"',
    ];
    const e = await kilnFails([...args, '--to', `oci:${out}:app`], 'E_CHECK_FAILED');
    assert.match(e.message, /^wkg would not run this image/);
    assert.equal(existsSync(join(out, 'index.json')), false, 'nothing written');
    // The artifact format is what wkg reads; and --check on the command line replaces kiln.yaml's list.
    await kilnOk([...args, '--format', 'artifact', '--to', `oci:${out}:artifact`]);
    await kilnOk([...args, '--check', 'crun', '--to', `oci:${out}:image`]);
    assert.deepEqual(
      layoutJson<ImageIndex>(out, tagged(out, 'image').digest).mediaType,
      'application/vnd.oci.image.manifest.v1+json',
    );
  });
});
