/**
 * src/debian without the network: Debian version comparison against a table of known orderings (policy
 * §5.6.12 and dpkg's own cases), relationship fields, deb822 stanzas, resolution on a small index
 * (alternatives, virtual packages, versioned Provides, satisfied groups, cycles, E_UNRESOLVED naming
 * the chain), the lock file, and a .deb made here read into a layer and a top layer (merged /usr,
 * directories with the first package's mode, dpkg's info files and status).
 */
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import * as tar from 'tar-stream';
import { alternativesAdminFile, parseAlternatives } from '../../src/debian/alternatives.js';
import { parseRelations, parseStanzas, readStanzas } from '../../src/debian/control.js';
import { arMembers } from '../../src/debian/deb.js';
import { debianPlatform, debianPurl, planGroups } from '../../src/debian/from-packages.js';
import {
  mergedUsrDirs,
  statusStanza,
  topLayerEntries,
  type UnpackedPackage,
  usrMergedPath,
  writePackageLayer,
} from '../../src/debian/layers.js';
import { encodePackagesLock, type PackagesLock, readPackagesLock } from '../../src/debian/lock.js';
import { type IndexPackage, PackageIndex, parseRequest, resolvePackages } from '../../src/debian/resolve.js';
import { systemMirror } from '../../src/debian/sources.js';
import { compareVersions, parseVersion, satisfiesVersion } from '../../src/debian/version.js';
import { isKilnError } from '../../src/errors.js';
import { listTar } from '../../src/layer/tar-reader.js';
import { OciLayout } from '../../src/store/layout.js';

/** [a, b, sign of compare(a, b)]: policy's examples, dpkg's test cases, and versions as Debian ships them. */
const ORDER: [string, string, -1 | 0 | 1][] = [
  ['1.0', '1.0', 0],
  ['1.0', '1.1', -1],
  ['1.1', '1.0', 1],
  ['9', '10', -1],
  ['1.002', '1.2', 0],
  ['1.2', '1.2.0', -1],
  ['1.2.3', '1.2', 1],
  ['1.3', '1.2.2-2', 1],
  ['0:1.0', '1.0', 0],
  ['1:0.1', '2.0', 1],
  ['1:1.0', '2:0.1', -1],
  ['10:1', '9:1', 1],
  // ~ sorts before anything, even the end: ~~ < ~~a < ~ < (end) < a (policy §5.6.12)
  ['1.0~~', '1.0~~a', -1],
  ['1.0~~a', '1.0~', -1],
  ['1.0~', '1.0', -1],
  ['1.0', '1.0a', -1],
  ['1.0~rc1', '1.0', -1],
  ['1.0~beta1~svn1245', '1.0~beta1', -1],
  ['1.0~rc1', '1.0~rc2', -1],
  // letters sort before other characters
  ['1.2a', '1.2b', -1],
  ['1.2+', '1.2a', 1],
  ['1.2.', '1.2+', 1],
  ['7.6p2-4', '7.6-0', 1],
  ['0.4a6-2', '0.4a7-1', -1],
  // revisions
  ['1.0-1', '1.0-2', -1],
  ['1.0-1', '1.0', 1],
  ['1.0-0', '1.0', 0],
  ['1.0.3-3', '1.0-1', 1],
  ['2.36-9', '2.36-9+deb12u4', -1],
  ['2.36-9+deb12u9', '2.36-9+deb12u10', -1],
  ['1:1.35.0-4+deb12u1', '1:1.35.0-4+deb12u1+b1', -1],
  ['3.0~rc1-1~bpo12+1', '3.0~rc1-1', -1],
  ['1.0-1ubuntu1', '1.0-1', 1],
  ['1:2.36-1', '2.38-1', 1],
  ['12.2.0-14+deb12u1', '12.2.0-14', 1],
  ['1.3.4.20200120-3.1', '1.3.4.20200120-3', 1],
];

describe('Debian versions', () => {
  for (const [a, b, want] of ORDER) {
    it(`${a} ${want < 0 ? '<' : want > 0 ? '>' : '='} ${b}`, () => {
      assert.equal(compareVersions(a, b), want);
      assert.equal(compareVersions(b, a), want === 0 ? 0 : -want);
    });
  }

  it('sorting a shuffled list gives dpkg order', () => {
    const sorted = ['1.0~~', '1.0~~a', '1.0~', '1.0', '1.0-1', '1.0-1+b1', '1.0a', '1.0+b1', '1:0.1'];
    const shuffled = [...sorted].reverse().sort(() => 0);
    assert.deepEqual(shuffled.sort(compareVersions), sorted);
  });

  it('splits epoch, upstream and revision; the revision is after the last hyphen', () => {
    assert.deepEqual(parseVersion('1:2.3-4-5'), { epoch: 1, upstream: '2.3-4', revision: '5' });
    assert.deepEqual(parseVersion('2.36'), { epoch: 0, upstream: '2.36', revision: '' });
    for (const bad of ['a:1.0', '', ':1', '1.0-', '1.0 2'])
      assert.throws(
        () => parseVersion(bad),
        (e) => isKilnError(e, 'E_USAGE'),
        bad,
      );
  });

  it('relations: << <= = >= >>, and the obsolete < and > as <= and >=', () => {
    assert.ok(satisfiesVersion('2.36-9', '>=', '2.34'));
    assert.ok(!satisfiesVersion('2.36-9', '<<', '2.36'));
    assert.ok(satisfiesVersion('2.36~rc1', '<<', '2.36'));
    assert.ok(satisfiesVersion('1.0', '=', '0:1.0'));
    assert.ok(satisfiesVersion('1.1', '>>', '1.0'));
    assert.ok(satisfiesVersion('1.0', '<=', '1.0'));
    assert.equal(parseRelations('a (< 1.0)', 'test')[0]![0]!.op, '<=');
  });
});

describe('relationship fields and stanzas', () => {
  it('parses groups, alternatives, versions, arch qualifiers; drops arch lists and profiles', () => {
    const groups = parseRelations(
      'libc6 (>= 2.34), libgcc-s1 | libgcc1,  python3:any (>= 3.9~) [amd64 arm64] <!nocheck>, awk',
      'test',
    );
    assert.deepEqual(groups, [
      [{ name: 'libc6', op: '>=', version: '2.34' }],
      [{ name: 'libgcc-s1' }, { name: 'libgcc1' }],
      [{ name: 'python3', archQualifier: 'any', op: '>=', version: '3.9~' }],
      [{ name: 'awk' }],
    ]);
    assert.deepEqual(parseRelations(undefined, 'x'), []);
    assert.throws(
      () => parseRelations('libc6 (>= )', 'pkg Depends'),
      (e) => isKilnError(e, 'E_BAD_ARCHIVE'),
    );
  });

  it('reads stanzas across chunk boundaries, continuation lines, comments; keeps only the fields asked', async () => {
    const text =
      'Package: a\nVersion: 1\nDescription: short\n long line\n .\n more\n\n\n# comment\nPackage: b\r\nDepends: a\n';
    const chunks = [...Buffer.from(text)].map((b) => Uint8Array.of(b)); // one byte at a time
    const all = [];
    for await (const s of readStanzas(chunks, 'test')) all.push(s);
    assert.deepEqual(all, [
      [
        ['Package', 'a'],
        ['Version', '1'],
        ['Description', 'short\nlong line\n.\nmore'],
      ],
      [
        ['Package', 'b'],
        ['Depends', 'a'],
      ],
    ]);
    const kept = [];
    for await (const s of readStanzas([text], 'test', new Set(['package']))) kept.push(s);
    assert.deepEqual(kept, [[['Package', 'a']], [['Package', 'b']]]);
    await assert.rejects(parseStanzas(' orphan\n', 'test'), (e) => isKilnError(e, 'E_BAD_ARCHIVE'));
    await assert.rejects(parseStanzas('no colon here\n', 'test'), /test:1/);
  });
});

function pkg(name: string, version: string, fields: Partial<IndexPackage> = {}): IndexPackage {
  return {
    name,
    version,
    architecture: 'amd64',
    filename: `pool/main/${name[0]}/${name}/${name}_${version}_amd64.deb`,
    size: 100,
    sha256: '0'.repeat(64),
    ...fields,
  };
}

/** A small world: a libc, a virtual awk with two providers, a versioned Provides, a cycle. */
const INDEX = new PackageIndex(
  [
    pkg('gcc-base', '12-1'),
    pkg('libgcc-s1', '12-1', { depends: 'gcc-base (= 12-1), libc6 (>= 2.35)' }),
    pkg('libc6', '2.36-9', { depends: 'libgcc-s1' }),
    pkg('mawk', '1.3.4-3', { depends: 'libc6 (>= 2.34)', provides: 'awk', priority: 'required' }),
    pkg('gawk', '5.2-1', { depends: 'libc6', provides: 'awk', priority: 'optional' }),
    pkg('base-files', '12.4', { preDepends: 'awk', essential: true }),
    pkg('tool', '1.0', { depends: 'missing-lib | libc6 (>= 2.30), awk' }),
    pkg('newer', '1.0', { depends: 'libc6 (>= 2.40)' }),
    pkg('deep', '1.0', { depends: 'middle' }),
    pkg('middle', '1.0', { depends: 'ghost-lib (>= 2) | newer' }),
    pkg('py', '3.11', { provides: 'python3-api (= 3.11), python-any' }),
    pkg('wants-api', '1', { depends: 'python3-api (>= 3.10)' }),
    pkg('wants-unversioned-virtual', '1', { depends: 'python-any (>= 1)' }),
    pkg('two', '1.0'),
    pkg('two', '2.0'),
    pkg('wants-old-two', '1', { depends: 'two (<< 2)' }),
  ],
  'test main (amd64)',
);

const names = (list: { name: string }[]) => list.map((p) => p.name);

describe('resolution', () => {
  it('follows Depends and Pre-Depends; dependencies come first, a cycle is broken where it closes', () => {
    assert.deepEqual(names(resolvePackages(INDEX, [{ name: 'libc6' }])), ['gcc-base', 'libgcc-s1', 'libc6']);
  });

  it('a virtual package: the provider with the highest Priority; one already chosen satisfies it', () => {
    assert.deepEqual(names(resolvePackages(INDEX, [{ name: 'base-files' }])), [
      'gcc-base',
      'libgcc-s1',
      'libc6',
      'mawk',
      'base-files',
    ]);
    const withGawk = resolvePackages(INDEX, [{ name: 'gawk' }, { name: 'base-files' }]);
    assert.ok(!names(withGawk).includes('mawk'), 'gawk, asked for, provides awk already');
    assert.equal(withGawk.find((p) => p.name === 'gawk')!.neededBy, undefined);
  });

  it('alternatives: the first one that can be had; the reason each package is there', () => {
    const r = resolvePackages(INDEX, [{ name: 'tool' }]);
    assert.deepEqual(names(r), ['gcc-base', 'libgcc-s1', 'libc6', 'mawk', 'tool']);
    assert.equal(r.find((p) => p.name === 'libc6')!.neededBy, 'tool');
  });

  it('versioned relations: the highest version that fits; a versioned Provides satisfies, an unversioned one does not', () => {
    assert.deepEqual(
      resolvePackages(INDEX, [{ name: 'wants-old-two' }]).map((p) => `${p.name} ${p.version}`),
      ['two 1.0', 'wants-old-two 1'],
    );
    assert.deepEqual(names(resolvePackages(INDEX, [{ name: 'wants-api' }])), ['py', 'wants-api']);
    assert.throws(
      () => resolvePackages(INDEX, [{ name: 'wants-unversioned-virtual' }]),
      (e) => isKilnError(e, 'E_UNRESOLVED') && /python-any \(>= 1\)/.test(e.message),
    );
  });

  it('E_UNRESOLVED names the whole chain and why each alternative fails', () => {
    assert.throws(
      () => resolvePackages(INDEX, [{ name: 'deep' }]),
      (e: Error) => {
        assert.ok(isKilnError(e, 'E_UNRESOLVED'), String(e));
        assert.match(e.message, /deep → middle → ghost-lib \(>= 2\) \| newer → libc6 \(>= 2\.40\)/);
        assert.match(e.message, /libc6 has only 2\.36-9 in test main/);
        return true;
      },
    );
  });

  it('a name that is no package: E_NOT_FOUND with similar names; a virtual name with two providers: E_AMBIGUOUS', () => {
    assert.throws(
      () => resolvePackages(INDEX, [{ name: 'libc' }]),
      (e: Error) =>
        isKilnError(e, 'E_NOT_FOUND') &&
        /no package libc in test main/.test(e.message) &&
        /libc6/.test((e as { hint?: string }).hint ?? ''),
    );
    assert.throws(
      () => resolvePackages(INDEX, [{ name: 'awk' }]),
      (e) => isKilnError(e, 'E_AMBIGUOUS'),
    );
    assert.deepEqual(names(resolvePackages(INDEX, [{ name: 'two', version: '1.0' }])), ['two']);
    assert.throws(
      () => resolvePackages(INDEX, [{ name: 'two', version: '3' }]),
      (e) => isKilnError(e, 'E_NOT_FOUND'),
    );
  });

  it('requests: NAME or NAME=VERSION', () => {
    assert.deepEqual(parseRequest('libc6=2.36-9'), { name: 'libc6', version: '2.36-9' });
    assert.throws(
      () => parseRequest('Bad Name'),
      (e) => isKilnError(e, 'E_USAGE'),
    );
  });
});

describe('kiln.packages.lock', () => {
  const lock: PackagesLock = {
    lockVersion: 1,
    suite: 'bookworm',
    mirror: 'http://deb.debian.org/debian',
    architecture: 'amd64',
    components: ['main'],
    requested: ['busybox-static'],
    packages: [
      {
        name: 'busybox-static',
        version: '1:1.35.0-4+deb12u1+b1',
        architecture: 'amd64',
        filename: 'pool/main/b/busybox/busybox-static_1.35.0-4+deb12u1+b1_amd64.deb',
        size: 928188,
        sha256: '3d3fdbe91d4660c873e14b092c213fe81c1da6362daa236eb25d0171eb108744',
      },
    ],
  };

  it('is JSON with sorted keys and reads back as it was', async () => {
    const text = encodePackagesLock(lock);
    const keys = Object.keys(JSON.parse(text));
    assert.deepEqual(keys, [...keys].sort());
    assert.deepEqual(Object.keys(JSON.parse(text).packages[0]), [
      'architecture',
      'filename',
      'name',
      'sha256',
      'size',
      'version',
    ]);
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-lock-'));
    try {
      const file = path.join(dir, 'kiln.packages.lock');
      await fs.writeFile(file, text);
      assert.deepEqual(await readPackagesLock(file), lock);
      assert.equal(await readPackagesLock(path.join(dir, 'none')), undefined);
      for (const [change, want] of [
        [{ packages: [{ ...lock.packages[0], sha256: 'XYZ' }] }, /sha256/],
        [{ packages: [{ ...lock.packages[0], filename: '../etc/passwd.deb' }] }, /filename/],
        [{ packages: [{ ...lock.packages[0], version: 'a:b' }] }, /version/],
        [{ lockVersion: 2 }, /version 1/],
      ] as const) {
        await fs.writeFile(file, JSON.stringify({ ...lock, ...change }));
        await assert.rejects(
          readPackagesLock(file),
          (e: Error) => isKilnError(e, 'E_BAD_PROJECT') && want.test(e.message),
        );
      }
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});

describe('helpers', () => {
  it('merged /usr: debootstrap directories per architecture, paths under them moved to /usr', () => {
    assert.deepEqual(mergedUsrDirs('amd64'), ['bin', 'sbin', 'lib', 'lib32', 'lib64', 'libx32']);
    assert.deepEqual(mergedUsrDirs('arm64'), ['bin', 'sbin', 'lib']);
    const merged = mergedUsrDirs('amd64');
    assert.equal(usrMergedPath('bin/busybox', merged), 'usr/bin/busybox');
    assert.equal(usrMergedPath('lib64', merged), 'usr/lib64');
    assert.equal(usrMergedPath('library/x', merged), 'library/x');
    assert.equal(usrMergedPath('usr/bin/x', merged), 'usr/bin/x');
  });

  it('layer groups: one per package while they fit, then the rest together; purls; platforms', () => {
    assert.deepEqual(planGroups([1, 2, 3], 3), [[1], [2], [3]]);
    assert.deepEqual(planGroups([1, 2, 3, 4, 5], 3), [[1], [2], [3, 4, 5]]);
    assert.deepEqual(planGroups([1, 2, 3], 1), [[1, 2, 3]]);
    assert.equal(
      debianPurl('busybox-static', '1:1.35.0-4+deb12u1+b1', 'amd64'),
      'pkg:deb/debian/busybox-static@1:1.35.0-4%2Bdeb12u1%2Bb1?arch=amd64',
    );
    assert.deepEqual(debianPlatform('armhf'), { os: 'linux', architecture: 'arm', variant: 'v7' });
    assert.throws(
      () => debianPlatform('vax'),
      (e) => isKilnError(e, 'E_BAD_PLATFORM'),
    );
  });

  it("the system's mirror for a suite, from one-line and deb822 sources", async () => {
    const root = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-apt-'));
    try {
      await fs.mkdir(path.join(root, 'sources.list.d'));
      await fs.writeFile(
        path.join(root, 'sources.list'),
        '# none\ndeb [arch=amd64] http://old.example/debian/ bullseye main\n',
      );
      await fs.writeFile(
        path.join(root, 'sources.list.d/debian.sources'),
        'Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n',
      );
      assert.equal(await systemMirror('bullseye', 'main', root), 'http://old.example/debian');
      assert.equal(await systemMirror('bookworm', 'main', root), 'http://mirror.example/debian');
      assert.equal(await systemMirror('trixie', 'main', root), undefined);
    } finally {
      await fs.rm(root, { recursive: true, force: true });
    }
  });
});

describe('update-alternatives in a postinst', () => {
  const mawk = `#!/bin/sh
set -e
if [ "$1" = "configure" ]; then
        update-alternatives --install /usr/bin/awk awk /usr/bin/mawk 5 \\
            --slave /usr/share/man/man1/awk.1.gz awk.1.gz /usr/share/man/man1/mawk.1.gz \\
            --slave /usr/bin/nawk nawk /usr/bin/mawk
        update-alternatives --install "$BINPATH"/x x /usr/bin/y 10
        update-alternatives --install /usr/bin/lzma lzma /usr/bin/xz 20 $(slaves)
fi
`;

  it('reads the literal calls, with their slaves; leaves calls with variables alone', () => {
    assert.deepEqual(parseAlternatives(mawk), [
      {
        link: '/usr/bin/awk',
        name: 'awk',
        path: '/usr/bin/mawk',
        priority: 5,
        slaves: [
          { link: '/usr/share/man/man1/awk.1.gz', name: 'awk.1.gz', path: '/usr/share/man/man1/mawk.1.gz' },
          { link: '/usr/bin/nawk', name: 'nawk', path: '/usr/bin/mawk' },
        ],
      },
    ]);
  });

  it("writes update-alternatives' administrative file as it does (auto mode)", () => {
    const [awk] = parseAlternatives(mawk);
    const gawk = { link: '/usr/bin/awk', name: 'awk', path: '/usr/bin/gawk', priority: 10, slaves: [] };
    assert.equal(
      alternativesAdminFile([awk!, gawk]),
      'auto\n/usr/bin/awk\nawk.1.gz\n/usr/share/man/man1/awk.1.gz\nnawk\n/usr/bin/nawk\n\n' +
        '/usr/bin/mawk\n5\n/usr/share/man/man1/mawk.1.gz\n/usr/bin/mawk\n/usr/bin/gawk\n10\n\n\n\n',
    );
  });
});

/** An ar archive of `members`, as dpkg-deb writes one. */
function ar(members: [string, Buffer][]): Buffer {
  const parts: Buffer[] = [Buffer.from('!<arch>\n')];
  for (const [name, data] of members) {
    const h = Buffer.alloc(60, 0x20);
    h.write(name, 0, 'latin1');
    h.write('0', 16);
    h.write('0', 28);
    h.write('0', 34);
    h.write('100644', 40);
    h.write(String(data.length), 48);
    h.write('`\n', 58, 'latin1');
    parts.push(h, data);
    if (data.length % 2) parts.push(Buffer.from('\n'));
  }
  return Buffer.concat(parts);
}

interface TarItem {
  name: string;
  type?: 'file' | 'directory' | 'symlink' | 'link';
  mode?: number;
  uid?: number;
  gid?: number;
  content?: string;
  linkname?: string;
}

async function tarOf(items: TarItem[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (c: unknown) => void chunks.push(c as Buffer));
  const ended = new Promise<void>((r) => pack.on('end', () => r()));
  for (const i of items) {
    const body = i.content === undefined ? undefined : Buffer.from(i.content);
    pack.entry(
      {
        name: i.name,
        type: i.type ?? 'file',
        mode: i.mode ?? 0o644,
        uid: i.uid ?? 0,
        gid: i.gid ?? 0,
        ...(i.linkname ? { linkname: i.linkname } : {}),
        ...(body ? { size: body.length } : {}),
      },
      body ?? '',
    );
  }
  pack.finalize();
  await ended;
  return Buffer.concat(chunks);
}

async function deb(
  control: string,
  files: Record<string, string>,
  data: TarItem[],
  compress: 'gz' | 'xz' | 'zst',
): Promise<Buffer> {
  const controlTar = gzipSync(
    await tarOf([
      { name: './', type: 'directory', mode: 0o755 },
      { name: './control', content: control },
      ...Object.entries(files).map(([name, content]) => ({ name: `./${name}`, content, mode: 0o755 })),
    ]),
  );
  const dataTar = await tarOf(data);
  const compressed =
    compress === 'gz'
      ? gzipSync(dataTar)
      : spawnSync(compress === 'xz' ? 'xz' : 'zstd', ['-c'], { input: dataTar, maxBuffer: 1 << 26 }).stdout;
  return ar([
    ['debian-binary', Buffer.from('2.0\n')],
    ['control.tar.gz', controlTar],
    [`data.tar.${compress}`, compressed],
  ]);
}

describe('a .deb into layers', () => {
  it('reads ar members in order, odd sizes padded', async () => {
    const bytes = ar([
      ['a', Buffer.from('odd')],
      ['b/', Buffer.from('even')],
    ]);
    const seen: string[] = [];
    // One byte at a time, reading only part of the first member.
    const chunks = [...bytes].map((b) => Uint8Array.of(b));
    for await (const m of arMembers(chunks, 'test.deb')) {
      if (m.name === 'a') {
        for await (const c of m.content) {
          seen.push(`${m.name}:${Buffer.from(c).toString()}`);
          break;
        }
      } else {
        let text = '';
        for await (const c of m.content) text += Buffer.from(c).toString();
        seen.push(`${m.name}:${text}`);
      }
    }
    assert.deepEqual(seen, ['a:o', 'b:even']);
    await assert.rejects(
      (async () => {
        for await (const m of arMembers([bytes.subarray(0, 70)], 'cut.deb'))
          for await (const _ of m.content) {
            // read it all
          }
      })(),
      (e) => isKilnError(e, 'E_BAD_ARCHIVE'),
    );
  });

  it('a corrupt data.tar.xz is E_BAD_ARCHIVE naming the package, and nothing is stored', async (t) => {
    if (spawnSync('xz', ['--version']).status !== 0) return t.skip('xz is not installed');
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-deb-'));
    try {
      const store = await OciLayout.open(path.join(dir, 'store'), { create: true });
      const good = await deb(
        'Package: x\nVersion: 1\nArchitecture: all\n',
        {},
        [{ name: './a', content: 'a'.repeat(5000) }],
        'xz',
      );
      // Cut the xz stream short: the ar member keeps its declared size, its content is garbage at the end.
      const at = good.indexOf('data.tar.xz');
      const corrupt = Buffer.from(good);
      corrupt.fill(0x55, at + 60 + 40, corrupt.length - 2);
      await assert.rejects(
        writePackageLayer(store, [{ what: 'x 1', open: () => [corrupt] }], { mtime: 0, merged: [] }),
        (e: Error) => isKilnError(e, 'E_BAD_ARCHIVE') && /x 1 data\.tar\.xz/.test(e.message),
      );
      assert.deepEqual(
        (await fs.readdir(path.join(dir, 'store/blobs/sha256'))).filter((f) => !f.startsWith('.')),
        [],
      );
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  it('files under /bin go to /usr/bin, directories to the top layer with the first mode; info files, conffiles and status', async (t) => {
    if (spawnSync('xz', ['--version']).status !== 0) return t.skip('xz is not installed');
    const zstd = spawnSync('zstd', ['--version']).status === 0;
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-deb-'));
    try {
      const store = await OciLayout.open(path.join(dir, 'store'), { create: true });
      const base = await deb(
        'Package: base\nVersion: 1.0\nArchitecture: amd64\nMaintainer: t <t@example.org>\nDescription: base\n long\n',
        { postinst: '#!/bin/sh\n', conffiles: '/etc/base.conf\n' },
        [
          { name: './', type: 'directory', mode: 0o755 },
          { name: './bin/', type: 'directory', mode: 0o755 },
          { name: './tmp/', type: 'directory', mode: 0o1777 },
          { name: './etc/', type: 'directory', mode: 0o755 },
          { name: './etc/base.conf', content: 'x=1\n' },
          { name: './bin/tool', content: '#!/bin/sh\n', mode: 0o4755 },
          { name: './bin/tool2', type: 'link', linkname: './bin/tool' },
          { name: './bin/sh', type: 'symlink', linkname: 'tool' },
          { name: './usr/', type: 'directory', mode: 0o755 },
          { name: './usr/share/', type: 'directory', mode: 0o755 },
          { name: './usr/share/base-passwd/', type: 'directory', mode: 0o755 },
          { name: './usr/share/base-passwd/passwd.master', content: 'root:*:0:0:root:/root:/bin/sh\n' },
        ],
        'xz',
      );
      const lib = await deb(
        'Package: lib\nVersion: 2:1.0-1\nArchitecture: amd64\nMulti-Arch: same\nDescription: lib\n',
        {},
        [
          { name: './tmp/', type: 'directory', mode: 0o755 }, // a later package's mode does not win
          { name: './lib64/', type: 'directory', mode: 0o755 },
          { name: './lib64/ld.so', content: 'ELF' },
          { name: './bin', type: 'symlink', linkname: 'usr/bin' }, // a package's own merged-/usr link
        ],
        zstd ? 'zst' : 'gz', // Ubuntu's .debs are zstd
      );
      const merged = mergedUsrDirs('amd64');
      const { layer, packages } = await writePackageLayer(
        store,
        [
          { what: 'base 1.0', open: () => [base] },
          { what: 'lib 2:1.0-1', open: () => [lib] },
        ],
        { mtime: 0, merged },
      );
      const entries = await listTar(store.openBlob(layer.descriptor.digest));
      assert.deepEqual(
        entries.map((e) => `${e.path} ${e.type} ${e.mode.toString(8)}${e.linkname ? ` ${e.linkname}` : ''}`),
        [
          'etc/base.conf file 644',
          'usr/bin/tool file 4755',
          'usr/bin/tool2 hardlink 644 usr/bin/tool',
          'usr/bin/sh symlink 777 tool',
          'usr/share/base-passwd/passwd.master file 644',
          'var/lib/dpkg/info/base.list file 644',
          'var/lib/dpkg/info/base.conffiles file 644',
          'var/lib/dpkg/info/base.postinst file 755',
          'usr/lib64/ld.so file 644',
          'var/lib/dpkg/info/lib:amd64.list file 644',
        ],
      );
      assert.ok(entries.every((e) => e.mtime === 0 && e.uid === 0));
      const [pb, pl] = packages as [UnpackedPackage, UnpackedPackage];
      assert.deepEqual(pb.scripts, ['postinst']);
      assert.deepEqual(pb.conffiles, [['/etc/base.conf', createHash('md5').update('x=1\n').digest('hex')]]);
      assert.deepEqual(pl.skipped, [{ path: 'bin', reason: 'merged-/usr symlink: made in the top layer' }]);

      const status = statusStanza(pb);
      assert.equal(
        status,
        'Package: base\nStatus: install ok installed\nMaintainer: t <t@example.org>\nArchitecture: amd64\nVersion: 1.0\n' +
          `Conffiles:\n /etc/base.conf ${pb.conffiles[0]![1]}\nDescription: base\n long\n`,
      );

      const top = topLayerEntries([pb, pl], { mtime: 0, merged });
      const byPath = new Map(top.entries.map((e) => [e.path, e]));
      assert.equal(byPath.get('tmp')!.mode, 0o1777, 'the first package to ship a directory sets its mode');
      assert.equal(byPath.get('bin')!.type, 'symlink');
      assert.equal(byPath.get('bin')!.linkname, 'usr/bin');
      assert.equal(byPath.get('usr/lib64')!.type, 'dir');
      assert.ok(byPath.get('var/lib/dpkg/status'));
      assert.ok(!byPath.has('etc/passwd'), 'only base-passwd gets its postinst effect');
      const sorted = top.entries.map((e) => e.path);
      assert.deepEqual(sorted, [...sorted].sort());
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
