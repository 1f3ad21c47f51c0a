/**
 * `kiln image from-packages` against the real Debian mirror (deb.debian.org, bookworm, amd64), through
 * the built CLI: busybox-static resolved from the signed index, locked, and built twice on fresh
 * stores to the same digest; its rootfs (kiln unpack) has busybox under merged /usr and dpkg-query
 * lists exactly the locked packages; an image with dependencies (base-files: a virtual awk, libc6)
 * within a layer budget, checked by dpkg itself (--audit, --verify against the md5sums), run under
 * Docker (busybox, and awk: the update-alternatives link to mawk, linked against the image's libc6).
 * Tampering: a lock with a wrong SHA-256 (E_DIGEST_MISMATCH, nothing written), a package the mirror
 * no longer has (E_NOT_FOUND), a package that does not exist, a corrupted InRelease and the wrong
 * keyring (E_VERIFY_FAILED). Resolution of real packages (python3) checked for closure and order.
 *
 * Network use is kept small: the Packages index (8 MB) is fetched once into this file's store and
 * found there by digest afterwards; the .debs are busybox-static and base-files' few dependencies.
 * Needs `npm run build`, gpgv, xz, dpkg and dpkg-query; Docker (as root) for the run.
 */
import * as assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import { get } from 'node:http';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { DEBIAN_KEYRING, loadIndex } from '../../src/debian/archive.js';
import { parseRelations } from '../../src/debian/control.js';
import { Mirror } from '../../src/debian/mirror.js';
import { resolvePackages } from '../../src/debian/resolve.js';
import { satisfiesVersion } from '../../src/debian/version.js';
import { HttpClient } from '../../src/registry/http.js';
import { OciLayout } from '../../src/store/layout.js';
import { type DockerEngine, dockerSkipReason, sharedDocker } from '../support/docker.js';
import { kiln, kilnStore } from '../support/kiln.js';
import { freshPaths } from '../support/temp.js';
import { ok, run, skipOrFail, toolSkipReason } from '../support/tools.js';

const MIRROR = 'http://deb.debian.org/debian';
const { work, home, k } = kilnStore('kiln-debian', () => ({}), 300_000);
const fresh = freshPaths(work);
const skip = toolSkipReason('gpgv', 'xz', 'dpkg-query', 'dpkg');

/** The real InRelease, fetched once (also tells whether the mirror is reachable). */
let inRelease: Buffer | undefined;
let unreachable: string | undefined;

before(async () => {
  if (skip) return;
  try {
    inRelease = await new Promise<Buffer>((resolve, reject) => {
      const req = get(`${MIRROR}/dists/bookworm/InRelease`, { timeout: 20_000 }, (res) => {
        if (res.statusCode !== 200) return reject(new Error(`HTTP ${res.statusCode}`));
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('end', () => resolve(Buffer.concat(parts)));
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(new Error('timed out')));
      req.on('error', reject);
    });
  } catch (err) {
    unreachable = skipOrFail(`${MIRROR} is not reachable: ${(err as Error).message}`);
  }
});

/** Why a test cannot run here, or undefined. */
const cannot = () => skip ?? unreachable;

interface Result {
  descriptor: { digest: string };
  packages: { name: string; version: string; sha256: string; purl: string }[];
  layers: { packages: string[]; cached: boolean }[];
  lock?: { file: string; used: boolean; written: boolean };
  downloaded: { packages: number; bytes: number };
  skippedScripts: { package: string; scripts: string[] }[];
  effects: { package: string; path: string }[];
  sbom?: { digest: string };
}

/** `kiln image from-packages ARGS --json` in `env`'s store, which must succeed. */
async function fromPackages(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Result> {
  const r = await k(['image', 'from-packages', ...args, '--json'], env);
  return JSON.parse(ok(r, `kiln image from-packages ${args.join(' ')}`)) as Result;
}

/** `kiln image from-packages ARGS --json`, which must fail with `code`; returns the error. */
async function fromPackagesFails(args: string[], code: string, env: NodeJS.ProcessEnv = {}) {
  const r = await k(['image', 'from-packages', ...args, '--json'], env);
  assert.notEqual(r.code, 0, `should fail with ${code}\nstdout: ${r.stdout}`);
  const { error } = JSON.parse(r.stdout) as { error: { code: string; message: string; hint?: string } };
  assert.equal(error.code, code, error.message);
  return error;
}

/** The packages dpkg-query lists in an unpacked rootfs. */
async function dpkgQuery(rootfs: string): Promise<string[]> {
  const r = await run('dpkg-query', [
    '-W',
    '-f',
    // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's format, not a template
    '${Package} ${Version}\n',
    `--admindir=${rootfs}/var/lib/dpkg`,
  ]);
  return ok(r, 'dpkg-query').trim().split('\n').sort();
}

async function unpack(ref: string): Promise<string> {
  const dir = fresh('rootfs');
  ok(await k(['unpack', ref, dir]), `kiln unpack ${ref}`);
  return dir;
}

const busyboxLock = join(work, 'busybox.lock');
const busyboxArgs = (to: string, lock = busyboxLock) => [
  '--suite',
  'bookworm',
  '--arch',
  'amd64',
  '--mirror',
  MIRROR,
  '--package',
  'busybox-static',
  '--entrypoint',
  '["/bin/busybox"]',
  '--lock',
  lock,
  '--to',
  to,
];
let busybox: Result | undefined;
const busyboxLayout = join(work, 'busybox');

test('busybox-static: resolved and locked, built again on a fresh store from the lock to the same digest', {
  skip: cannot(),
}, async (t) => {
  if (cannot()) return t.skip(cannot());
  busybox = await fromPackages(busyboxArgs(`oci:${busyboxLayout}:1`));
  assert.deepEqual(
    busybox.packages.map((p) => p.name),
    ['busybox-static'],
  );
  assert.deepEqual(busybox.lock, { file: busyboxLock, used: false, written: true });
  assert.match(
    busybox.packages[0]!.purl,
    /^pkg:deb\/debian\/busybox-static@1:1\.35\.0-4%2Bdeb12u\d+(%2Bb\d+)?\?arch=amd64$/,
  );
  assert.ok(busybox.sbom, 'an SBOM is attached to an oci: destination');

  // The lock: JSON with sorted keys, the package's hash as the index gave it.
  const text = await fs.readFile(busyboxLock, 'utf8');
  const lock = JSON.parse(text);
  const sorted = (v: unknown): unknown =>
    Array.isArray(v)
      ? v.map(sorted)
      : v && typeof v === 'object'
        ? Object.fromEntries(
            Object.keys(v)
              .sort()
              .map((key) => [key, sorted((v as Record<string, unknown>)[key])]),
          )
        : v;
  assert.equal(text, `${JSON.stringify(sorted(lock), null, 2)}\n`);
  assert.equal(lock.suite, 'bookworm');
  assert.equal(lock.mirror, MIRROR);
  assert.deepEqual(lock.requested, ['busybox-static']);
  assert.equal(lock.packages[0].sha256, busybox.packages[0]!.sha256);
  assert.match(lock.packages[0].filename, /^pool\/main\/b\/busybox\/busybox-static_.*_amd64\.deb$/);

  // A fresh store, the lock: no index, the same .deb, the same image.
  const freshHome = fresh('home');
  const again = await fromPackages(busyboxArgs(`oci:${fresh('again')}:1`), { KILN_HOME: freshHome });
  assert.equal(again.descriptor.digest, busybox.descriptor.digest);
  assert.deepEqual(again.lock, { file: busyboxLock, used: true, written: false });
  assert.equal(again.downloaded.packages, 1);
  const index = /^ ([0-9a-f]{64}) +\d+ main\/binary-amd64\/Packages\.xz$/m.exec(
    inRelease!.toString('utf8'),
  )![1]!;
  assert.ok(existsSync(join(home, 'blobs/sha256', index)), 'the first build stored the index');
  assert.ok(!existsSync(join(freshHome, 'blobs/sha256', index)), 'the build from the lock read no index');

  // The same store again: the layer is found, nothing is downloaded.
  const warm = await fromPackages(busyboxArgs(`oci:${fresh('warm')}:1`));
  assert.equal(warm.descriptor.digest, busybox.descriptor.digest);
  assert.equal(warm.downloaded.packages, 0);
  assert.ok(warm.layers[0]!.cached);
});

test('busybox-static: the rootfs has busybox under merged /usr, dpkg-query lists the locked packages, it runs', {
  skip: cannot(),
}, async (t) => {
  if (!busybox) return t.skip('the build above did not run');
  const rootfs = await unpack(`oci:${busyboxLayout}:1`);
  assert.equal(await fs.readlink(join(rootfs, 'bin')), 'usr/bin');
  const st = await fs.stat(join(rootfs, 'usr/bin/busybox'));
  assert.ok(st.isFile() && (st.mode & 0o111) !== 0, 'busybox is an executable file');
  const lock = JSON.parse(await fs.readFile(busyboxLock, 'utf8'));
  assert.deepEqual(
    await dpkgQuery(rootfs),
    lock.packages.map((p: { name: string; version: string }) => `${p.name} ${p.version}`).sort(),
  );
  const verify = await run('dpkg', [`--root=${rootfs}`, '--verify']);
  assert.equal(ok(verify, 'dpkg --verify') + verify.stderr, '', 'every file as the md5sums say');
  // Static, and this is an amd64 host: it runs from the rootfs as it is.
  if (process.arch === 'x64') {
    const r = await run(join(rootfs, 'bin/busybox'), ['echo', 'hi']);
    assert.equal(ok(r, 'busybox echo hi'), 'hi\n');
  }
  // The SBOM lists the package with its purl.
  const sbom = JSON.parse(ok(await k(['sbom', `oci:${busyboxLayout}:1`]), 'kiln sbom'));
  const purls = sbom.packages.flatMap((p: { externalRefs?: { referenceLocator: string }[] }) =>
    (p.externalRefs ?? []).map((r) => r.referenceLocator),
  );
  assert.ok(purls.includes(busybox.packages[0]!.purl), purls.join('\n'));
});

test('tampering: a lock with a wrong SHA-256 is E_DIGEST_MISMATCH and writes nothing; a .deb the mirror lacks is E_NOT_FOUND', {
  skip: cannot(),
}, async (t) => {
  if (!busybox) return t.skip('the build above did not run');
  const lock = JSON.parse(await fs.readFile(busyboxLock, 'utf8'));
  const wrong = join(work, 'wrong-hash.lock');
  const bad = structuredClone(lock);
  bad.packages[0].sha256 = 'f'.repeat(64);
  const badText = `${JSON.stringify(bad, null, 2)}\n`;
  await fs.writeFile(wrong, badText);
  const to = fresh('tampered');
  const freshHome = fresh('home');
  const err = await fromPackagesFails(busyboxArgs(`oci:${to}:1`, wrong), 'E_DIGEST_MISMATCH', {
    KILN_HOME: freshHome,
  });
  assert.match(err.message, /busybox-static/);
  assert.match(err.message, /f{64}/);
  assert.ok(!existsSync(to), 'no destination was written');
  assert.equal(await fs.readFile(wrong, 'utf8'), badText, 'the lock is left as it was');
  const blobs = join(freshHome, 'blobs', 'sha256');
  const stored = existsSync(blobs) ? readdirSync(blobs) : [];
  assert.deepEqual(
    stored.filter((b) => b === 'f'.repeat(64) || b.startsWith('.tmp-')),
    [],
    'nothing stored under the wrong name',
  );

  const gone = join(work, 'gone.lock');
  const missing = structuredClone(lock);
  missing.packages[0].filename = 'pool/main/b/busybox/busybox-static_0.0-0_amd64.deb';
  await fs.writeFile(gone, JSON.stringify(missing));
  const notFound = await fromPackagesFails(busyboxArgs(`oci:${fresh('gone')}:1`, gone), 'E_NOT_FOUND', {
    KILN_HOME: fresh('home'),
  });
  assert.match(notFound.message, /busybox-static .*busybox-static_0\.0-0_amd64\.deb/);

  // A lock made for other packages is not used silently.
  const other = await fromPackagesFails(
    ['--package', 'hello', '--lock', busyboxLock, '--to', `oci:${fresh('other')}:1`],
    'E_USAGE',
  );
  assert.match(other.hint ?? '', /--update-lock/);
});

test('a package that does not exist is E_NOT_FOUND naming it; a corrupted InRelease and a wrong keyring are E_VERIFY_FAILED', {
  skip: cannot(),
}, async (t) => {
  if (cannot()) return t.skip(cannot());
  const none = await fromPackagesFails(
    [
      '--suite',
      'bookworm',
      '--arch',
      'amd64',
      '--mirror',
      MIRROR,
      '--no-lock',
      '--package',
      'kiln-no-such-package',
      '--to',
      `oci:${fresh('none')}:1`,
    ],
    'E_NOT_FOUND',
  );
  assert.match(none.message, /no package kiln-no-such-package in bookworm main \(amd64\)/);

  // The real InRelease with one byte of its signed text changed, served by a file: mirror.
  const mirror = fresh('mirror');
  await fs.mkdir(join(mirror, 'dists/bookworm'), { recursive: true });
  const text = inRelease!.toString('utf8');
  assert.ok(text.includes('Codename: bookworm'));
  await fs.writeFile(
    join(mirror, 'dists/bookworm/InRelease'),
    text.replace('Codename: bookworm', 'Codename: bookwarm'),
  );
  const corrupted = await fromPackagesFails(
    [
      '--suite',
      'bookworm',
      '--arch',
      'amd64',
      '--mirror',
      `file://${mirror}`,
      '--no-lock',
      '--package',
      'busybox-static',
      '--to',
      `oci:${fresh('corrupt')}:1`,
    ],
    'E_VERIFY_FAILED',
  );
  assert.match(corrupted.message, /dists\/bookworm\/InRelease/);
  assert.match(corrupted.message, /signature/);

  const keyring = '/usr/share/keyrings/debian-archive-removed-keys.gpg';
  if (existsSync(keyring)) {
    const wrongKey = await fromPackagesFails(
      [
        '--suite',
        'bookworm',
        '--arch',
        'amd64',
        '--mirror',
        MIRROR,
        '--keyring',
        keyring,
        '--no-lock',
        '--package',
        'busybox-static',
        '--to',
        `oci:${fresh('key')}:1`,
      ],
      'E_VERIFY_FAILED',
    );
    assert.match(wrongKey.message, /InRelease/);
  }
});

let engine: DockerEngine | undefined;

test('dependencies within a layer budget: base-files needs awk (mawk) and libc6; dpkg-query lists them all, dpkg verifies them; awk runs under Docker', {
  skip: cannot(),
}, async (t) => {
  if (cannot()) return t.skip(cannot());
  const lockFile = join(work, 'base.lock');
  const layout = join(work, 'base');
  const r = await fromPackages([
    '--suite',
    'bookworm',
    '--arch',
    'amd64',
    '--mirror',
    MIRROR,
    '--package',
    'base-files,busybox-static',
    '--package',
    'base-passwd',
    '--layers',
    '4',
    '--entrypoint',
    '["/bin/busybox"]',
    '--lock',
    lockFile,
    '--to',
    `oci:${layout}:1`,
  ]);
  const names = r.packages.map((p) => p.name);
  for (const n of [
    'base-files',
    'busybox-static',
    'base-passwd',
    'mawk',
    'libc6',
    'libgcc-s1',
    'gcc-12-base',
  ])
    assert.ok(names.includes(n), `${n} in ${names.join(', ')}`);
  assert.ok(names.indexOf('libc6') < names.indexOf('mawk'), 'libc6 is installed before mawk');
  assert.ok(names.indexOf('mawk') < names.indexOf('base-files'), 'awk (Pre-Depends) before base-files');
  // 4 layers: the first two packages alone, the rest together, the top layer.
  assert.equal(r.layers.length, 4);
  assert.deepEqual(r.layers[0]!.packages, [names[0]]);
  assert.deepEqual(r.layers[2]!.packages, names.slice(2));
  assert.deepEqual(r.layers[3]!.packages, []);
  assert.ok(r.skippedScripts.some((s) => s.package === 'libc6' && s.scripts.includes('postinst')));
  const effects = r.effects.map((e) => `${e.package} ${e.path}`);
  for (const e of [
    'base-passwd /etc/passwd',
    'base-passwd /etc/group',
    'mawk /usr/bin/awk',
    'base-files /etc/profile',
    'base-files /var/run',
  ])
    assert.ok(effects.includes(e), `${e} in ${effects.join(', ')}`);

  const rootfs = await unpack(`oci:${layout}:1`);
  const lock = JSON.parse(await fs.readFile(lockFile, 'utf8'));
  assert.deepEqual(
    await dpkgQuery(rootfs),
    lock.packages.map((p: { name: string; version: string }) => `${p.name} ${p.version}`).sort(),
  );
  assert.equal(
    (await fs.stat(join(rootfs, 'tmp'))).mode & 0o7777,
    0o1777,
    "base-files' /tmp keeps its sticky mode",
  );
  assert.equal((await fs.stat(join(rootfs, 'root'))).mode & 0o7777, 0o700);
  assert.match(
    await fs.readFile(join(rootfs, 'etc/passwd'), 'utf8'),
    /^root:\*:0:0:root:\/root:\/bin\/bash$/m,
  );
  assert.match(
    await fs
      .readFile(join(rootfs, 'etc/os-release'), 'utf8')
      .catch(() => fs.readFile(join(rootfs, 'usr/lib/os-release'), 'utf8')),
    /bookworm/,
  );
  // base-files' postinst: /var/run and /var/lock into /run, the default profile, /var/mail root:mail.
  assert.equal(await fs.readlink(join(rootfs, 'var/run')), '/run');
  assert.equal(await fs.readlink(join(rootfs, 'var/lock')), '/run/lock');
  assert.match(await fs.readFile(join(rootfs, 'etc/profile'), 'utf8'), /PATH=/);
  const mail = await fs.stat(join(rootfs, 'var/mail'));
  assert.deepEqual([mail.mode & 0o7777, mail.gid], [0o2775, 8]);
  // mawk's postinst would have run update-alternatives: its links are made.
  assert.equal(await fs.readlink(join(rootfs, 'usr/bin/awk')), '/etc/alternatives/awk');
  assert.equal(await fs.readlink(join(rootfs, 'etc/alternatives/awk')), '/usr/bin/mawk');
  assert.match(
    await fs.readFile(join(rootfs, 'var/lib/dpkg/alternatives/awk'), 'utf8'),
    /^auto\n\/usr\/bin\/awk\n/,
  );
  const status = await fs.readFile(join(rootfs, 'var/lib/dpkg/status'), 'utf8');
  assert.match(status, /Package: base-files\nEssential: yes\nStatus: install ok installed\n/);
  assert.match(status, /Conffiles:\n \/etc\/debian_version [0-9a-f]{32}\n/);
  assert.ok(
    existsSync(join(rootfs, 'var/lib/dpkg/info/libc6:amd64.list')),
    'Multi-Arch: same info files carry the architecture',
  );
  // dpkg itself finds its database whole and every file as its package's md5sums say.
  const audit = await run('dpkg', [`--root=${rootfs}`, '--audit']);
  assert.equal(ok(audit, 'dpkg --audit') + audit.stderr, '');
  const verify = await run('dpkg', [`--root=${rootfs}`, '--verify']);
  assert.equal(ok(verify, 'dpkg --verify') + verify.stderr, '');

  const noDocker = dockerSkipReason();
  if (noDocker) return t.skip(noDocker);
  engine = await sharedDocker();
  ok(
    await kiln(['copy', `oci:${layout}:1`, 'docker-daemon:kiln-debian-base:1'], {
      env: { KILN_HOME: home, DOCKER_HOST: engine.host },
    }),
    'kiln copy to the engine',
  );
  const hi = await engine.docker(['run', '--rm', 'kiln-debian-base:1', 'echo', 'hi'], { timeoutMs: 120_000 });
  assert.equal(ok(hi, 'docker run busybox echo hi'), 'hi\n');
  // awk -> /etc/alternatives/awk -> mawk, dynamically linked: the loader through /lib64 -> usr/lib64, libc6 from the image, no ld.so.cache.
  const awk = await engine.docker(
    ['run', '--rm', '--entrypoint', 'mawk', 'kiln-debian-base:1', 'BEGIN { print 6 * 7 }'],
    {
      timeoutMs: 120_000,
    },
  );
  assert.equal(ok(awk, 'docker run awk'), '42\n');
});

test('resolution of real packages: python3 from the verified bookworm index is closed under its dependencies and ordered', {
  skip: cannot(),
}, async (t) => {
  if (cannot()) return t.skip(cannot());
  const store = await OciLayout.open(home, { create: true });
  const http = new HttpClient();
  try {
    const index = await loadIndex(new Mirror(MIRROR, http, new AbortController().signal), {
      suite: 'bookworm',
      architecture: 'amd64',
      components: ['main'],
      keyring: DEBIAN_KEYRING,
      store,
    });
    assert.ok(index.size > 30_000, `${index.size} packages`);
    const resolved = resolvePackages(index, [{ name: 'python3' }]);
    const at = new Map(resolved.map((p, i) => [p.name, i]));
    assert.ok(at.has('libpython3.11-stdlib') && at.has('libc6'), [...at.keys()].join(', '));
    // Every Depends and Pre-Depends group is met by a package in the set.
    const meets = (q: (typeof resolved)[number], r: ReturnType<typeof parseRelations>[number][number]) =>
      (q.name === r.name && (!r.op || satisfiesVersion(q.version, r.op, r.version!))) ||
      parseRelations(q.provides, q.name).some((g) =>
        g.some(
          (v) =>
            v.name === r.name &&
            (!r.op || (v.version !== undefined && satisfiesVersion(v.version, r.op, r.version!))),
        ),
      );
    const needs = new Map<string, string[]>();
    for (const p of resolved) {
      const out: string[] = [];
      for (const group of [...parseRelations(p.preDepends, p.name), ...parseRelations(p.depends, p.name)]) {
        const by = resolved.filter((q) => group.some((r) => meets(q, r)));
        assert.ok(by.length > 0, `${p.name}: ${group.map((r) => r.name).join(' | ')} is met`);
        out.push(...by.map((q) => q.name));
      }
      needs.set(p.name, out);
    }
    // Install order: what a package needs comes first, unless the two depend on each other (a cycle).
    const reaches = (from: string, to: string) => {
      const seen = new Set([from]);
      const queue = [from];
      while (queue.length > 0) {
        for (const n of needs.get(queue.shift()!) ?? []) {
          if (n === to) return true;
          if (!seen.has(n)) {
            seen.add(n);
            queue.push(n);
          }
        }
      }
      return false;
    };
    for (const p of resolved)
      for (const dep of needs.get(p.name)!)
        if (at.get(dep)! > at.get(p.name)!)
          assert.ok(reaches(dep, p.name), `${dep} before ${p.name}, or a cycle`);
  } finally {
    http.close();
  }
});
