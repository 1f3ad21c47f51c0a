/**
 * The pure parts of multi-platform builds: the layer plan (budget, order, determinism), the index
 * (alias, annotations), the git remote → source URL rules, and provenance from a real git repo.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  createReadStream,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { indexOf } from '../../src/build/build.js';
import { BuildCache } from '../../src/build/cache.js';
import { groupFiles, outFiles, type PlannedFile, planLayers } from '../../src/build/layering.js';
import { mergeEnv } from '../../src/image/image.js';
import { listTar } from '../../src/layer/tar-reader.js';
import type { Platform } from '../../src/oci/platform.js';
import type { Descriptor } from '../../src/oci/types.js';
import { createdFromEpoch, gitInfo, provenanceAnnotations, sourceUrl } from '../../src/project/provenance.js';
import { OciLayout } from '../../src/store/layout.js';
import { workDir } from '../support/temp.js';
import { findTool } from '../support/tools.js';

const work = workDir('kiln-layering');

const file = (rel: string, size: number): PlannedFile & { rel: string } => ({
  rel,
  path: `usr/local/${rel}`,
  source: `/out/${rel}`,
  size,
  executable: false,
});
const APP: PlannedFile = { path: 'usr/local/bin/app', source: '/out/app', size: 10, executable: true };
const FILES = [
  file('share/a', 50),
  file('lib/x.so', 300),
  file('lib/y.so', 100),
  file('etc/conf', 5),
  file('README', 1),
];

describe('planLayers', () => {
  test('the app alone on top; groups by top-level dir, largest lowest; the rest merged', () => {
    const plan = planLayers(groupFiles(FILES), APP, 3);
    assert.deepEqual(
      plan.map((l) => l.groups),
      [['lib'], ['share', 'etc', '.'], ['app']],
    );
    assert.deepEqual(
      plan.map((l) => l.size),
      [400, 56, 10],
    );
    assert.deepEqual(plan[2]!.files, [APP]);
    // Files in each layer are sorted by path.
    assert.deepEqual(
      plan[1]!.files.map((f) => f.path),
      ['usr/local/README', 'usr/local/etc/conf', 'usr/local/share/a'],
    );
  });

  test('a larger budget gives each group its own layer; a budget of 1 one layer', () => {
    assert.deepEqual(
      planLayers(groupFiles(FILES), APP, 10).map((l) => l.groups),
      [['lib'], ['share'], ['etc'], ['.'], ['app']],
    );
    const one = planLayers(groupFiles(FILES), APP, 1);
    assert.equal(one.length, 1);
    assert.equal(one[0]!.files.length, FILES.length + 1);
    assert.deepEqual(planLayers([], APP, 3), [{ groups: ['app'], files: [APP], size: 10 }]);
    assert.throws(() => planLayers([], APP, 0), RangeError);
  });

  test('deterministic whatever the order of the files', () => {
    const a = planLayers(groupFiles(FILES), APP, 2);
    const b = planLayers(groupFiles([...FILES].reverse()), APP, 2);
    assert.deepEqual(a, b);
  });

  test('outFiles walks /out, leaves out the artifact, keeps the x bit', async () => {
    const out = join(work, 'out');
    mkdirSync(join(out, 'lib'), { recursive: true });
    writeFileSync(join(out, 'app'), 'binary', { mode: 0o755 });
    writeFileSync(join(out, 'lib', 'x.so'), 'lib', { mode: 0o755 });
    writeFileSync(join(out, 'notes.txt'), 'n', { mode: 0o644 });
    const found = await outFiles(out, 'app');
    assert.deepEqual(
      found.map((f) => [f.rel, f.path, f.size, f.executable]),
      [
        ['lib/x.so', 'usr/local/lib/x.so', 3, true],
        ['notes.txt', 'usr/local/notes.txt', 1, false],
      ],
    );
  });
});

describe('extras: what a native build wrote besides the artifact', () => {
  const tree = (name: string): string => {
    const out = join(work, name);
    mkdirSync(join(out, 'lib'), { recursive: true });
    mkdirSync(join(out, 'share', 'app'), { recursive: true });
    writeFileSync(join(out, 'app'), 'binary', { mode: 0o755 });
    writeFileSync(join(out, 'lib', 'libfoo.so.1'), 'elf-ish', { mode: 0o755 });
    symlinkSync('libfoo.so.1', join(out, 'lib', 'libfoo.so'));
    writeFileSync(join(out, 'share', 'app', 'data.json'), '{"a":1}\n', { mode: 0o640 });
    return out;
  };

  test('outFiles keeps relative symlinks inside /out, with their target', async () => {
    const found = await outFiles(tree('links'), 'app');
    assert.deepEqual(
      found.map((f) => [f.rel, f.path, f.linkname, f.size]),
      [
        ['lib/libfoo.so', 'usr/local/lib/libfoo.so', 'libfoo.so.1', 0],
        ['lib/libfoo.so.1', 'usr/local/lib/libfoo.so.1', undefined, 7],
        ['share/app/data.json', 'usr/local/share/app/data.json', undefined, 8],
      ],
    );
  });

  test('outFiles refuses links that leave /out (absolute, by .., through another link) and special files', async () => {
    const cases: Array<[string, (out: string) => void]> = [
      ['absolute', (out) => symlinkSync('/etc/passwd', join(out, 'lib', 'evil'))],
      ['absolute into /out', (out) => symlinkSync('/out/app', join(out, 'lib', 'evil'))],
      ['dot-dot', (out) => symlinkSync('../../etc', join(out, 'lib', 'evil'))],
      [
        'through another link',
        (out) => {
          symlinkSync('.', join(out, 'lib', 'self'));
          symlinkSync('self/self/../..', join(out, 'lib', 'evil'));
        },
      ],
      ['fifo', (out) => execFileSync('mkfifo', [join(out, 'lib', 'evil')])],
    ];
    for (const [name, make] of cases) {
      if (name === 'fifo' && !findTool('mkfifo')) continue;
      const out = tree(`refuse-${name.replaceAll(' ', '-')}`);
      make(out);
      await assert.rejects(outFiles(out, 'app'), (err: { code?: string; message?: string }) => {
        assert.equal(err.code, 'E_UNSAFE_PATH', name);
        assert.match(err.message ?? '', /\/out\/lib\/evil/);
        return true;
      });
    }
  });

  test('packExtras is deterministic (mtimes, modes, listing order); extractExtras restores and replaces', async () => {
    const store = await OciLayout.open(join(work, 'store'), { create: true });
    const cache = new BuildCache(store);
    const a = tree('pack-a');
    const b = tree('pack-b');
    // Other mtimes and group/other bits: the same blob.
    utimesSync(join(b, 'share', 'app', 'data.json'), 12345, 12345);
    chmodSync(join(b, 'share', 'app', 'data.json'), 0o600);
    chmodSync(join(b, 'lib', 'libfoo.so.1'), 0o700);
    const da = await cache.packExtras(a, 'app');
    const db = await cache.packExtras(b, 'app');
    assert.ok(da && db);
    assert.equal(da.mediaType, 'application/vnd.oci.image.layer.v1.tar+gzip');
    assert.equal(da.digest, db.digest);
    const entries = await listTar(createReadStream(store.blobPath(da.digest)));
    assert.deepEqual(
      entries.map((e) => [e.path, e.type, e.mode.toString(8), e.mtime, e.linkname]),
      [
        ['lib', 'dir', '755', 0, undefined],
        ['lib/libfoo.so', 'symlink', '777', 0, 'libfoo.so.1'],
        ['lib/libfoo.so.1', 'file', '755', 0, undefined],
        ['share', 'dir', '755', 0, undefined],
        ['share/app', 'dir', '755', 0, undefined],
        ['share/app/data.json', 'file', '644', 0, undefined],
      ],
    );
    // Only the artifact: nothing to pack.
    const lone = join(work, 'lone');
    mkdirSync(lone);
    writeFileSync(join(lone, 'app'), 'x');
    assert.equal(await cache.packExtras(lone, 'app'), undefined);

    const dest = join(work, 'restored', 'hello-linux-amd64.files');
    mkdirSync(join(dest, 'stale'), { recursive: true });
    writeFileSync(join(dest, 'stale', 'old.txt'), 'old');
    assert.equal(await cache.extractExtras(da, dest), dest);
    assert.equal(readlinkSync(join(dest, 'lib', 'libfoo.so')), 'libfoo.so.1');
    assert.equal(readFileSync(join(dest, 'share', 'app', 'data.json'), 'utf8'), '{"a":1}\n');
    assert.equal(statSync(join(dest, 'lib', 'libfoo.so.1')).mode & 0o777, 0o755);
    assert.ok(!existsSync(join(dest, 'stale')), 'the old directory is replaced, not merged');
    assert.deepEqual(readdirSync(join(work, 'restored')), ['hello-linux-amd64.files'], 'no temp left');
    assert.equal(await cache.extractExtras(undefined, dest), undefined);
    assert.ok(!existsSync(dest), 'no extras: the directory goes');
  });
});

describe('index of a multi-platform build', () => {
  const d = (n: string): Descriptor => ({
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    digest: `sha256:${n.repeat(64)}`,
    size: 100,
  });
  const built: Array<{ platform: Platform; descriptor: Descriptor; annotations?: Record<string, string> }> = [
    { platform: { os: 'linux', architecture: 'amd64' }, descriptor: d('a'), annotations: { z: '1', a: '2' } },
    { platform: { os: 'wasip1', architecture: 'wasm' }, descriptor: d('b'), annotations: {} },
  ];

  test('entries in order with their manifest annotations; the wasm alias only when asked', () => {
    const plain = indexOf(built, { k: 'v' }, {});
    assert.deepEqual(
      plain.manifests.map((m) => [m.platform?.os, m.digest, m.annotations]),
      [
        ['linux', d('a').digest, { a: '2', z: '1' }],
        ['wasip1', d('b').digest, undefined],
      ],
    );
    assert.deepEqual(plain.annotations, { k: 'v' });
    const aliased = indexOf(built, {}, { wasi: true });
    assert.deepEqual(
      aliased.manifests.map((m) => `${m.platform?.os}/${m.platform?.architecture} ${m.digest.slice(7, 8)}`),
      ['linux/amd64 a', 'wasip1/wasm b', 'wasi/wasm b'],
    );
    assert.equal(aliased.annotations, undefined);
    // A wasi/wasm image of its own is not aliased again.
    const own = indexOf(
      [...built, { platform: { os: 'wasi', architecture: 'wasm' }, descriptor: d('c') }],
      {},
      { wasi: true },
    );
    assert.equal(own.manifests.filter((m) => m.platform?.os === 'wasi').length, 1);
  });
});

describe('provenance', () => {
  test('git remotes become https URLs without credentials', () => {
    const cases: [string, string | undefined][] = [
      ['git@github.com:o/r.git', 'https://github.com/o/r'],
      ['github.com:o/r', 'https://github.com/o/r'],
      ['ssh://git@gitlab.example:2222/g/sub/r.git', 'https://gitlab.example/g/sub/r'],
      ['https://user:s3cret@github.com/o/r.git', 'https://github.com/o/r'],
      ['https://ghp_token@github.com/o/r/', 'https://github.com/o/r'],
      ['http://git.local:8080/o/r', 'http://git.local:8080/o/r'],
      ['git://host/o/r.git', 'https://host/o/r'],
      ['/srv/git/r.git', undefined],
      ['file:///srv/git/r.git', undefined],
      ['C:/repos/r', undefined],
      ['', undefined],
    ];
    for (const [remote, want] of cases) assert.equal(sourceUrl(remote), want, remote);
  });

  test('created only from SOURCE_DATE_EPOCH', () => {
    assert.equal(createdFromEpoch({}), undefined);
    assert.equal(createdFromEpoch({ SOURCE_DATE_EPOCH: '1700000000' }), '2023-11-14T22:13:20Z');
    assert.throws(() => createdFromEpoch({ SOURCE_DATE_EPOCH: 'soon' }), /SOURCE_DATE_EPOCH/);
  });

  test('revision and source from a git repository; nothing outside one', {
    skip: !findTool('git'),
  }, async () => {
    const repo = join(work, 'repo');
    mkdirSync(repo);
    const git = (...args: string[]) =>
      execFileSync('git', ['-C', repo, ...args], {
        env: { ...process.env, GIT_CONFIG_GLOBAL: '/dev/null', GIT_CONFIG_NOSYSTEM: '1' },
      })
        .toString()
        .trim();
    git('init', '-q');
    writeFileSync(join(repo, 'main.c'), 'int main(void) { return 0; }\n');
    git('add', '.');
    git('-c', 'user.name=t', '-c', 'user.email=t@example.com', 'commit', '-qm', 'one');
    git('remote', 'add', 'origin', 'https://kiln:token@git.example/o/app.git');
    const head = git('rev-parse', 'HEAD');
    assert.deepEqual(await gitInfo(repo), { revision: head, source: 'https://git.example/o/app' });
    assert.deepEqual(await provenanceAnnotations(repo, { SOURCE_DATE_EPOCH: '0' }), {
      'org.opencontainers.image.created': '1970-01-01T00:00:00Z',
      'org.opencontainers.image.source': 'https://git.example/o/app',
      'org.opencontainers.image.revision': head,
    });
    const plain = join(work, 'plain');
    mkdirSync(plain);
    assert.deepEqual(await provenanceAnnotations(plain, {}), {});
  });
});

test('mergeEnv (the one env merge, also for native images): kiln.yaml wins over the base in place, new names appended', () => {
  assert.deepEqual(mergeEnv(['PATH=/bin', 'HOME=/root', 'ODD'], { HOME: '/app', A: '1' }), [
    'PATH=/bin',
    'HOME=/app',
    'ODD',
    'A=1',
  ]);
});
