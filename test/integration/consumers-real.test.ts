/**
 * What real consumers do with what kiln writes, as Debian 12 ships them: containerd 1.6.20 (a private
 * daemon, test/support/containerd.ts, driven with its `ctr`) and crun 1.8.1 (built without a wasm
 * handler). Evidence for `kiln check` (issue "Every consumer, checked before the push"): each test
 * pins one behaviour with the exact text the consumer prints, so a rule can cite it, and fails when a
 * consumer (or kiln) starts doing something else.
 *
 * containerd: every `kiln package --format` pushed to a test registry, then `ctr images pull
 * --plain-http --platform wasip1/wasm` and `ctr images check`; `ctr content fetch` (ctr 1.6 has no
 * `--skip-unpack`); an index of `kiln index create` with only a wasip1/wasm entry pulled for other
 * platforms; a lone manifest pulled for linux/amd64; the index `kiln build --wasi-alias` writes
 * (`package` and `index create` of this kiln have no `--wasi-alias`).
 *
 * crun: a bundle of `kiln unpack`ed `--format image` rootfs, config.json from `crun spec` with
 * args[0] `/core-command.wasm` and the annotations a wasm handler looks at, run with `crun run` as
 * root, with --cgroup-manager=disabled (no cgroup is made on the host). crun 1.8.1 refuses every
 * container on a cgroup v1/v2 hybrid host; there the runs happen in a private mount namespace
 * (`unshare --mount`) with /sys/fs/cgroup/unified unmounted, which the host does not see.
 *
 * Needs root, containerd, ctr, crun, unshare, a static busybox, docker-registry. Outside CI a missing
 * one skips; in CI it fails. The kiln CLI must be built (`npm run build`).
 */
import assert from 'node:assert/strict';
import { copyFileSync, lstatSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { type Containerd, containerdSkipReason, startContainerd } from '../support/containerd.js';
import { type ImageIndex, type ImageManifest, OCI_INDEX, OCI_MANIFEST } from '../support/images.js';
import { kiln, kilnDigest, kilnIndexCreate, kilnOk } from '../support/kiln.js';
import { registrySkipReason, sharedRegistry } from '../support/registry.js';
import { freshPaths, workDir } from '../support/temp.js';
import { busyboxSkipReason } from '../support/toolchain-images.js';
import { ok, type RunResult, requireTool, run, skipOrFail, toolSkipReason } from '../support/tools.js';

const WASM = new URL('../fixtures/wasm/core-command.wasm', import.meta.url).pathname;
const MODULE = readFileSync(WASM);
const TIMEOUT = { timeout: 300_000 };
const work = workDir('kiln-consumers-real');
const fresh = freshPaths(work, { create: true });

const FORMATS = ['image', 'artifact', 'runwasi', 'istio', 'istio-oci', 'wasm-to-oci'] as const;
type Format = (typeof FORMATS)[number];

/** Media types ctr 1.6 warns about ("reference for unknown type: ..."): config, then the module layer. */
const UNKNOWN_TYPES: Partial<Record<Format, [string, string]>> = {
  artifact: ['application/vnd.wasm.config.v0+json', 'application/wasm'],
  'istio-oci': [
    'application/vnd.module.wasm.config.v1+json',
    'application/vnd.module.wasm.content.layer.v1+wasm',
  ],
  'wasm-to-oci': ['application/vnd.wasm.config.v1+json', 'application/vnd.wasm.content.layer.v1+wasm'],
  runwasi: ['', 'application/vnd.bytecodealliance.wasm.component.layer.v0+wasm'],
};

/** Blobs `ctr images check` counts (manifest excluded): config and layers. */
const BLOBS: Record<Format, number> = {
  image: 2,
  artifact: 2,
  runwasi: 2,
  istio: 2,
  'istio-oci': 3,
  'wasm-to-oci': 2,
};

/** The native platform of this machine, as a kiln/containerd platform, and one it is not. */
const NATIVE = process.arch === 'arm64' ? 'linux/arm64' : 'linux/amd64';
const FOREIGN = process.arch === 'arm64' ? 'linux/amd64' : 'linux/arm64';

const show = (r: RunResult) => `exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`;

// -------------------------------------------------------------------------------------------------
// containerd 1.6

describe('containerd 1.6 (a private daemon, ctr)', {
  skip: registrySkipReason('none') ?? containerdSkipReason(),
}, () => {
  let host: string;
  let counter = 0;

  before(async () => {
    host = (await sharedRegistry('none')).host;
  });

  /** `kiln package core-command.wasm --format F --to HOST/consumers/F:N`; the ref and digest. */
  async function pushed(format: Format): Promise<{ ref: string; digest: string }> {
    const ref = `${host}/consumers/${format}:${++counter}`;
    const digest = await kilnDigest(['package', WASM, '--format', format, '--to', ref]);
    return { ref, digest };
  }

  /** `kiln index create` (with `extra`) of a pushed `--format image` at HOST/consumers/index:N; the ref and digest. */
  async function pushedIndex(extra: string[] = []): Promise<{ ref: string; digest: string }> {
    const image = await pushed('image');
    const ref = `${host}/consumers/index:${++counter}`;
    return { ref, digest: await kilnIndexCreate(ref, [image.ref], extra) };
  }

  const pull = (c: Containerd, ref: string, platform?: string, extra: string[] = []) =>
    c.ctr(['images', 'pull', '--plain-http', ...extra, ...(platform ? ['--platform', platform] : []), ref], {
      timeoutMs: 120_000,
    });

  /** A test with a fresh private containerd of its own, stopped after it. */
  const ctrTest = (name: string, body: (c: Containerd) => Promise<void>) =>
    test(name, TIMEOUT, async () => {
      await using c = await startContainerd();
      await body(c);
    });

  /** A pull for wasip1/wasm (with `extra`) that exits 1 with `line` on stderr: its result. */
  async function pullFails(c: Containerd, ref: string, line: RegExp, extra: string[] = []) {
    const r = await pull(c, ref, 'wasip1/wasm', extra);
    assert.equal(r.code, 1, show(r));
    assert.match(r.stderr, line);
    return r;
  }

  /** What `kiln check --for CONSUMER` predicts for REF: ok, and the rules of its findings. */
  async function predicted(ref: string, consumer: string): Promise<{ ok: boolean; rules: string[] }> {
    const r = await kiln(['check', ref, '--for', consumer, '--json']);
    const out = JSON.parse(r.stdout) as { verdicts: { ok: boolean; findings: { rule: string }[] }[] };
    const v = out.verdicts[0]!;
    assert.equal(r.code, v.ok ? 0 : 1, `kiln check exits 1 only when the consumer would fail: ${r.stderr}`);
    return { ok: v.ok, rules: v.findings.map((f) => f.rule) };
  }

  interface CheckRow {
    type: string;
    digest: string;
    status: string;
    unpacked: boolean;
  }

  /** `ctr images check name==REF`: its exit and the image's row (REF TYPE DIGEST STATUS SIZE UNPACKED). */
  /** `ctr images check`'s row of `format`'s manifest: every blob there, nothing unpacked. */
  function assertFetched(row: CheckRow, digest: string, format: Format) {
    const n = BLOBS[format];
    assert.deepEqual(row, { type: OCI_MANIFEST, digest, status: `complete (${n}/${n})`, unpacked: false });
  }

  async function check(c: Containerd, ref: string): Promise<{ r: RunResult; row: CheckRow }> {
    const r = await c.ctr(['images', 'check', `name==${ref}`], { timeoutMs: 60_000 });
    const line = r.stdout.split('\n').find((l) => l.startsWith(`${ref} `));
    assert.ok(line, `ctr images check lists ${ref}\n${show(r)}`);
    const m = /^\S+\s+(\S+)\s+(sha256:[0-9a-f]{64})\s+(\w+ \([^)]*\))\s+.*\s(true|false)\s*$/.exec(line);
    assert.ok(m, `a check row: ${line}`);
    return { r, row: { type: m[1]!, digest: m[2]!, status: m[3]!, unpacked: m[4] === 'true' } };
  }

  /** The top of REF's unpacked rootfs (for `platform`), through `ctr images mount`: name → mode, file bytes. */
  async function rootfs(c: Containerd, ref: string, platform?: string) {
    const target = join(c.dir, `mnt-${++counter}`);
    mkdirSync(target);
    const p = platform ? ['--platform', platform] : [];
    ok(await c.ctr(['images', 'mount', ...p, ref, target]), `ctr images mount ${ref}`);
    try {
      return new Map(
        readdirSync(target).map((name) => {
          const path = join(target, name);
          const st = lstatSync(path);
          return [
            name,
            { mode: st.mode & 0o7777, data: st.isFile() ? readFileSync(path) : undefined },
          ] as const;
        }),
      );
    } finally {
      ok(await c.ctr(['images', 'unmount', '--rm', target]), `ctr images unmount ${target}`);
    }
  }

  for (const [format, file, mode] of [
    ['image', 'core-command.wasm', 0o755],
    ['istio', 'plugin.wasm', 0o644],
  ] as const) {
    ctrTest(
      `containerd 1.6 pulls and unpacks --format ${format} for wasip1/wasm: check says complete, unpacked; the rootfs is /${file}`,
      async (c) => {
        const { ref, digest } = await pushed(format);
        const r = await pull(c, ref, 'wasip1/wasm');
        assert.equal(r.code, 0, show(r));
        assert.match(r.stdout, new RegExp(`unpacking wasip1/wasm ${digest}\\.\\.\\.\\s+done`));
        const { r: checked, row } = await check(c, ref);
        assert.equal(checked.code, 0, show(checked));
        assert.deepEqual(row, { type: OCI_MANIFEST, digest, status: 'complete (2/2)', unpacked: true });
        const files = await rootfs(c, ref);
        assert.deepEqual([...files.keys()], [file]);
        assert.equal(files.get(file)!.mode, mode);
        assert.ok(files.get(file)!.data?.equals(MODULE), `/${file} is the module`);
        // kiln check saw it coming: containerd takes it on any version.
        assert.deepEqual(await predicted(ref, 'containerd'), { ok: true, rules: [] });
      },
    );
  }

  for (const format of ['artifact', 'runwasi', 'istio-oci', 'wasm-to-oci'] as const) {
    const [configType, layerType] = UNKNOWN_TYPES[format]!;
    ctrTest(
      `containerd 1.6 fetches --format ${format} but will not unpack it: "mismatched image rootfs and manifest layers" (exit 1); the image stays, not unpacked`,
      async (c) => {
        const { ref, digest } = await pushed(format);
        const r = await pullFails(c, ref, /^ctr: mismatched image rootfs and manifest layers$/m);
        // Not refused for its media types: ctr only warns about them, then finds no layer to unpack.
        if (configType) assert.ok(r.stderr.includes(`reference for unknown type: ${configType}`), r.stderr);
        assert.ok(r.stderr.includes(`reference for unknown type: ${layerType}`), r.stderr);
        // kiln check predicted it: the version gate that 1.6.20 (older than 1.6.25) falls under.
        assert.deepEqual(await predicted(ref, 'containerd'), { ok: true, rules: ['containerd.layers'] });
        assert.match(r.stdout, new RegExp(`unpacking wasip1/wasm ${digest}\\.\\.\\.`));
        const { r: checked, row } = await check(c, ref);
        assert.equal(checked.code, 0, show(checked));
        assertFetched(row, digest, format);
      },
    );
  }

  ctrTest(
    'ctr 1.6.20 has no --skip-unpack ("flag provided but not defined: -skip-unpack"); ctr content fetch, its pull without unpacking, takes all five formats',
    async (c) => {
      const version = ok(await c.ctr(['--version']), 'ctr --version');
      assert.match(version, /^ctr github\.com\/containerd\/containerd 1\.6\./);
      const image = await pushed('image');
      await pullFails(c, image.ref, /^ctr: flag provided but not defined: -skip-unpack$/m, ['--skip-unpack']);
      for (const format of FORMATS) {
        const { ref, digest } = format === 'image' ? image : await pushed(format);
        const fetched = await c.ctr(['content', 'fetch', '--plain-http', '--platform', 'wasip1/wasm', ref], {
          timeoutMs: 120_000,
        });
        assert.equal(fetched.code, 0, `${format}: ${show(fetched)}`);
        const { row } = await check(c, ref);
        assertFetched(row, digest, format);
      }
    },
  );

  ctrTest(
    'containerd 1.6 refuses an index with only a wasip1/wasm entry (kiln index create) for linux/amd64, no --platform and wasi/wasm: "no match for platform in manifest <index digest>: not found"',
    async (c) => {
      const { ref, digest } = await pushedIndex();
      const refused = `ctr: no match for platform in manifest ${digest}: not found`;
      for (const platform of ['linux/amd64', undefined, 'wasi/wasm']) {
        const r = await pull(c, ref, platform);
        assert.equal(r.code, 1, `${platform ?? 'no --platform'}: ${show(r)}`);
        assert.ok(r.stderr.split('\n').includes(refused), `${platform ?? 'no --platform'}: ${r.stderr}`);
        // The index itself was fetched and the image recorded before the unpack step gave up.
        assert.match(r.stdout, new RegExp(`unpacking ${platform ?? NATIVE} ${digest}\\.\\.\\.`));
      }
      const { r: unmatched, row } = await check(c, ref);
      assert.equal(unmatched.code, 1, show(unmatched));
      assert.deepEqual(row, { type: OCI_INDEX, digest, status: 'unavailable (0/?)', unpacked: false });
      // kiln check predicted the node's refusal, and names the flag that fixes it.
      assert.deepEqual(await predicted(ref, 'k8s'), { ok: false, rules: ['k8s.node-platform'] });
    },
  );

  test(
    'kiln index create --node-alias linux/amd64,linux/arm64: containerd 1.6 pulls the wasm image for a node platform (as the CRI does), and kiln check --for k8s says ok',
    TIMEOUT,
    async () => {
      const { ref, digest } = await pushedIndex(['--node-alias', 'linux/amd64,linux/arm64']);
      for (const platform of [NATIVE, FOREIGN, 'wasip1/wasm']) {
        await using c = await startContainerd();
        const r = await pull(c, ref, platform);
        assert.equal(r.code, 0, `${platform}: ${show(r)}`);
        assert.match(r.stdout, new RegExp(`unpacking ${platform} ${digest}\\.\\.\\.\\s+done`));
        assert.deepEqual([...(await rootfs(c, ref, platform)).keys()], ['core-command.wasm'], platform);
      }
      assert.deepEqual(await predicted(ref, 'k8s'), { ok: true, rules: [] });
    },
  );

  ctrTest(
    'containerd 1.6 pulls a kiln index create index for wasip1/wasm, but ctr images check judges it by the host platform: "unable to check unpack for REF: no match for platform in manifest" (exit 1)',
    async (c) => {
      const { ref, digest } = await pushedIndex();
      const r = await pull(c, ref, 'wasip1/wasm');
      assert.equal(r.code, 0, show(r));
      assert.match(r.stdout, new RegExp(`unpacking wasip1/wasm ${digest}\\.\\.\\.\\s+done`));
      const files = await rootfs(c, ref, 'wasip1/wasm');
      assert.deepEqual([...files.keys()], ['core-command.wasm']);
      const { r: checked, row } = await check(c, ref);
      assert.equal(checked.code, 1, show(checked));
      assert.ok(
        checked.stderr.includes(
          `ctr: unable to check unpack for ${ref}: no match for platform in manifest ${digest}: not found`,
        ),
        checked.stderr,
      );
      assert.deepEqual(row, { type: OCI_INDEX, digest, status: 'unavailable (0/?)', unpacked: false });
    },
  );

  test(
    'containerd 1.6 does not check the platform of a lone manifest: --format image (wasip1/wasm, no index) pulls and unpacks for linux/amd64, linux/arm64 and no --platform',
    TIMEOUT,
    async () => {
      const { ref, digest } = await pushed('image');
      for (const platform of ['linux/amd64', 'linux/arm64', undefined]) {
        await using c = await startContainerd(); // a fresh one each time: nothing unpacked before
        const r = await pull(c, ref, platform);
        assert.equal(r.code, 0, `${platform ?? 'no --platform'}: ${show(r)}`);
        assert.match(r.stdout, new RegExp(`unpacking ${platform ?? NATIVE} ${digest}\\.\\.\\.\\s+done`));
        const { row } = await check(c, ref);
        assert.deepEqual(row, { type: OCI_MANIFEST, digest, status: 'complete (2/2)', unpacked: true });
        assert.deepEqual([...(await rootfs(c, ref, platform)).keys()], ['core-command.wasm']);
      }
    },
  );

  describe('kiln build --wasi-alias', { skip: busyboxSkipReason() }, () => {
    let project: string;
    /** `kiln build` of a project whose command copies core-command.wasm (busybox for a linux target). */
    const build = (platforms: string, ref: string, extra: string[] = []) =>
      kilnOk([
        'build',
        project,
        ...['--lang', 'c', '--runner', 'local', '--no-sbom', '-o', join(project, 'app.wasm')],
        ...['--command', 'sh build.sh', '--platform', platforms, '--wasi-alias', ...extra, '--to', ref],
      ]);

    async function manifest(ref: string): Promise<ImageIndex | ImageManifest> {
      const [repo, tag] = [ref.slice(0, ref.lastIndexOf(':')), ref.slice(ref.lastIndexOf(':') + 1)];
      const res = await fetch(`http://${repo.replace('/', '/v2/')}/manifests/${tag}`, {
        headers: { Accept: `${OCI_INDEX}, ${OCI_MANIFEST}` },
      });
      assert.equal(res.status, 200, `GET manifest ${ref}`);
      return (await res.json()) as ImageIndex | ImageManifest;
    }

    before(() => {
      project = fresh('project');
      copyFileSync(WASM, join(project, 'prebuilt.wasm'));
      copyFileSync(requireTool('busybox')!, join(project, 'busybox'));
      writeFileSync(
        join(project, 'build.sh'),
        'if [ "$KILN_TARGET_OS" = linux ]; then cp busybox "$KILN_OUT/app"; ' +
          'else cp prebuilt.wasm "$KILN_OUT/app.wasm"; fi\n',
      );
    });

    test(
      'with wasip1/wasm only, kiln build --wasi-alias writes an index of the wasm image under wasip1/wasm and wasi/wasm; containerd 1.6 pulls it for both, and kiln check --for docker says ok',
      TIMEOUT,
      async () => {
        const ref = `${host}/consumers/alias:${++counter}`;
        await build('wasip1/wasm', ref);
        const written = (await manifest(ref)) as ImageIndex;
        assert.equal(written.mediaType, OCI_INDEX, 'aliases are index entries');
        assert.deepEqual(
          written.manifests.map((m) => `${m.platform?.os}/${m.platform?.architecture}`),
          ['wasip1/wasm', 'wasi/wasm'],
        );
        assert.equal(written.manifests[0]!.digest, written.manifests[1]!.digest);
        for (const platform of ['wasi/wasm', 'wasip1/wasm']) {
          await using c = await startContainerd();
          const r = await pull(c, ref, platform);
          assert.equal(r.code, 0, show(r));
          assert.match(r.stdout, new RegExp(`unpacking ${platform} sha256:[0-9a-f]{64}\\.\\.\\.\\s+done`));
        }
        assert.deepEqual(await predicted(ref, 'docker'), { ok: true, rules: ['docker.classic-store'] });
      },
    );

    test(
      `with wasip1/wasm and ${NATIVE}, containerd 1.6 takes the wasm image for wasi/wasm and wasip1/wasm, the native one for ${NATIVE}, and refuses ${FOREIGN}`,
      TIMEOUT,
      async () => {
        const base = `${host}/consumers/base:${++counter}`;
        const baseLayer = fresh('base');
        writeFileSync(join(baseLayer, 'base.txt'), 'base\n');
        await kilnDigest(['append', 'scratch', '--platform', NATIVE, '--layer', baseLayer, '--to', base]);
        const ref = `${host}/consumers/alias:${++counter}`;
        await build(`wasip1/wasm,${NATIVE}`, ref, ['--base', base]);
        const index = (await manifest(ref)) as ImageIndex;
        assert.equal(index.mediaType, OCI_INDEX);
        const entries = index.manifests.map((m) => [
          `${m.platform?.os}/${m.platform?.architecture}`,
          m.digest,
        ]);
        assert.deepEqual(
          entries.map(([p]) => p),
          ['wasip1/wasm', 'wasi/wasm', NATIVE],
        );
        const wasm = entries[0]![1]!;
        assert.equal(entries[1]![1], wasm, 'wasi/wasm lists the same manifest');
        const indexDigest = await kilnDigest(['digest', ref]);
        for (const platform of ['wasi/wasm', 'wasip1/wasm', NATIVE]) {
          await using c = await startContainerd();
          const r = await pull(c, ref, platform);
          assert.equal(r.code, 0, `${platform}: ${show(r)}`);
          const files = [...(await rootfs(c, ref, platform)).keys()].sort();
          // The native image: the base's layer, then the binary (under /usr).
          assert.deepEqual(files, platform === NATIVE ? ['base.txt', 'usr'] : ['app.wasm'], platform);
        }
        await using c = await startContainerd();
        const r = await pull(c, ref, FOREIGN);
        assert.equal(r.code, 1, show(r));
        assert.ok(
          r.stderr.includes(`ctr: no match for platform in manifest ${indexDigest}: not found`),
          r.stderr,
        );
      },
    );
  });
});

// -------------------------------------------------------------------------------------------------
// crun 1.8.1

function crunSkipReason(): string | undefined {
  if (process.getuid?.() !== 0) return skipOrFail('running crun needs root');
  return toolSkipReason('crun', 'unshare') ?? busyboxSkipReason();
}

/**
 * True on a cgroup v1/v2 hybrid host whose unified hierarchy has controllers (here: hugetlb), which
 * crun 1.8.1 refuses outright.
 */
function cgroupHybrid(): boolean {
  const unified = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .some((l) => {
      const f = l.split(' ');
      return f[4] === '/sys/fs/cgroup/unified' && f[f.indexOf('-') + 1] === 'cgroup2';
    });
  if (!unified) return false;
  try {
    return readFileSync('/sys/fs/cgroup/unified/cgroup.controllers', 'utf8').trim() !== '';
  } catch {
    return false;
  }
}

const HYBRID_REFUSAL = 'cgroups in hybrid mode not supported, drop all controllers from cgroupv2';

describe('crun 1.8.1 (Debian, no wasm handler)', { skip: crunSkipReason() }, () => {
  const hybrid = cgroupHybrid();
  let bundle: string;
  let state: string;
  let ids = 0;

  /** `crun ...args` (a private mount namespace without the cgroup2 hierarchy on a hybrid host). */
  function crun(args: string[], options: { isolate?: boolean } = {}): Promise<RunResult> {
    const crunPath = requireTool('crun')!;
    if (!(options.isolate ?? hybrid)) return run(crunPath, args, { timeoutMs: 60_000 });
    const script = 'umount /sys/fs/cgroup/unified && exec "$@"';
    return run(
      requireTool('unshare')!,
      ['--mount', '--propagation', 'private', 'sh', '-c', script, 'sh', crunPath, ...args],
      { timeoutMs: 60_000 },
    );
  }

  /** Runs the bundle with `args` and `annotations` in its config.json. */
  async function runBundle(
    args: string[],
    annotations: Record<string, string>,
    options: { isolate?: boolean } = {},
  ): Promise<RunResult> {
    const configPath = join(bundle, 'config.json');
    const config = JSON.parse(readFileSync(configPath, 'utf8')) as {
      process: { args: string[]; terminal: boolean };
      annotations?: Record<string, string>;
    };
    config.process.args = args;
    config.process.terminal = false;
    config.annotations = annotations;
    writeFileSync(configPath, `${JSON.stringify(config, null, 2)}\n`);
    const id = `kiln-${process.pid}-${++ids}`;
    return crun(['--cgroup-manager=disabled', '--root', state, 'run', '--bundle', bundle, id], options);
  }

  before(async () => {
    bundle = fresh('bundle');
    state = fresh('crun-state');
    const layout = fresh('layout');
    await kilnDigest(['package', WASM, '--to', `oci:${layout}:wasm`]);
    await kilnOk(['unpack', `oci:${layout}:wasm`, join(bundle, 'rootfs')]);
    copyFileSync(requireTool('busybox')!, join(bundle, 'rootfs', 'busybox'));
    ok(await run(requireTool('crun')!, ['spec'], { cwd: bundle }), 'crun spec');
  });

  test('crun 1.8.1 lists no WASM feature in --version, and has no `crun features` ("unknown command features", exit 1)', async () => {
    const version = ok(await run(requireTool('crun')!, ['--version']), 'crun --version');
    assert.match(version, /^crun version 1\.8\.1$/m);
    const features = version.split('\n').find((l) => l.startsWith('+'));
    assert.ok(features, version);
    assert.ok(!/WASM|wasmedge|wasmtime|wasmer|wamr/i.test(features), features);
    const r = await run(requireTool('crun')!, ['features']);
    assert.equal(r.code, 1, show(r));
    assert.equal(r.stderr.trim(), 'unknown command features');
  });

  test('on a cgroup v1/v2 hybrid host crun 1.8.1 runs nothing, even with --cgroup-manager=disabled: "cgroups in hybrid mode not supported, drop all controllers from cgroupv2"', {
    skip: hybrid ? false : 'the host is not a cgroup v1/v2 hybrid (with controllers in the v2 hierarchy)',
  }, async () => {
    const r = await runBundle(['/busybox', 'true'], {}, { isolate: false });
    assert.equal(r.code, 1, show(r));
    assert.equal(r.stderr.trim(), HYBRID_REFUSAL);
  });

  test('crun 1.8.1 runs a static ELF from the same bundle (the control: crun works, only the wasm fails)', async () => {
    const r = await runBundle(['/busybox', 'echo', 'crun ok'], {});
    assert.equal(r.code, 0, show(r));
    assert.equal(r.stdout, 'crun ok\n');
  });

  const CASES: Array<[string, Record<string, string>]> = [
    ['no annotation', {}],
    ['module.wasm.image/variant=compat-smart', { 'module.wasm.image/variant': 'compat-smart' }],
    ['module.wasm.image/variant=compat', { 'module.wasm.image/variant': 'compat' }],
    ['run.oci.handler=wasm', { 'run.oci.handler': 'wasm' }],
    [
      'run.oci.handler=wasmtime and variant compat-smart',
      { 'run.oci.handler': 'wasmtime', 'module.wasm.image/variant': 'compat-smart' },
    ],
    ['run.oci.handler=no-such-handler', { 'run.oci.handler': 'no-such-handler' }],
  ];
  for (const [label, annotations] of CASES) {
    test(`crun 1.8.1 without a wasm handler, given ${label}, does not refuse: it execs /core-command.wasm and fails with "Exec format error" (exit 1)`, async () => {
      const r = await runBundle(['/core-command.wasm'], annotations);
      assert.equal(r.code, 1, show(r));
      assert.equal(r.stdout, '');
      assert.equal(r.stderr.trim(), 'exec container process `/core-command.wasm`: Exec format error');
    });
  }
});
