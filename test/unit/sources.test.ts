import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { isKilnError } from '../../src/errors.js';
import {
  type ListSourcesOptions,
  listSources,
  type SourceFile,
  sourcesDigest,
} from '../../src/project/sources.js';
import { sha256 } from '../support/images.js';
import { freshPaths, workDir } from '../support/temp.js';

const work = workDir('kiln-sources');
const freshDir = freshPaths(work, { create: true });

/** Writes files (path → content; content `-> target` makes a symlink). */
async function tree(name: string, files: Record<string, string>): Promise<string> {
  const dir = freshDir(name);
  await writeTree(dir, files);
  return dir;
}

async function writeTree(dir: string, files: Record<string, string>): Promise<void> {
  for (const [rel, content] of Object.entries(files)) {
    const abs = path.join(dir, rel);
    await fs.mkdir(path.dirname(abs), { recursive: true });
    if (content.startsWith('-> ')) await fs.symlink(content.slice(3), abs);
    else await fs.writeFile(abs, content);
  }
}

const sha = sha256;
const paths = (files: SourceFile[]) => files.map((f) => f.path);
/** Files of content `x`, named in `names` (space-separated). */
const xs = (names: string) => Object.fromEntries(names.split(' ').map((n) => [n, 'x']));

describe('listSources', () => {
  test('lists files sorted by path, with size and content digest', async () => {
    const dir = await tree('basic', { 'b.txt': 'bee', 'a/z.txt': 'zed', 'a/b/c.txt': '', 'A.txt': 'upper' });
    const files = await listSources(dir);
    assert.deepEqual(paths(files), ['A.txt', 'a/b/c.txt', 'a/z.txt', 'b.txt']);
    assert.deepEqual(files[3], {
      path: 'b.txt',
      type: 'file',
      executable: false,
      size: 3,
      digest: sha('bee'),
    });
    assert.deepEqual(files[1], {
      path: 'a/b/c.txt',
      type: 'file',
      executable: false,
      size: 0,
      digest: sha(''),
    });
  });

  test('sorted by UTF-8 bytes, not UTF-16 code units', async () => {
    // U+FF5E sorts after U+1F600 in UTF-16 (0xFF5E > 0xD83D) but before it in UTF-8.
    const dir = await tree('order', { '\u{1F600}': '1', '\uFF5E': '2', z: '3', _: '4', Z: '5' });
    const got = paths(await listSources(dir));
    assert.deepEqual(got, ['Z', '_', 'z', '\uFF5E', '\u{1F600}']);
  });

  /** What listSources keeps of a tree (files of `x` unless given), by ignore files and options. */
  const SELECTIONS: {
    title: string;
    files: Record<string, string>;
    options?: ListSourcesOptions;
    want: string;
  }[] = [
    {
      title: 'skips .git (directory or file), .kiln and node_modules/.cache',
      files: {
        ...xs('.git/config .git/objects/ab/cd sub/lib.rs .kiln/state node_modules/.cache/big'),
        ...xs('node_modules/pkg/index.js .github/workflow.yml main'),
        'sub/.git': 'gitdir: ../.git/modules/sub',
      },
      want: '.github/workflow.yml main node_modules/pkg/index.js sub/lib.rs',
    },
    {
      title: 'the root .gitignore is respected, negations too',
      files: {
        '.gitignore': '# build output\ntarget/\n*.log\n!keep.log\n/root-only.txt\nNOTES.txt\n',
        'notes.txt': 'case matters, as git on Linux',
        ...xs(
          'target/debug/app src/target.rs a.log sub/b.log keep.log root-only.txt sub/root-only.txt src/main.rs',
        ),
      },
      want: '.gitignore keep.log notes.txt src/main.rs src/target.rs sub/root-only.txt',
    },
    {
      title: 'nested .gitignore files apply below their directory, and win over outer ones',
      files: {
        '.gitignore': '*.tmp\n',
        'a/.gitignore': '/gen/\n!important.tmp\n',
        ...xs('a/gen/x.rs a/b/gen/y.rs a/important.tmp a/other.tmp b/gen/z.rs b/important.tmp'),
      },
      want: '.gitignore a/.gitignore a/b/gen/y.rs a/important.tmp b/gen/z.rs',
    },
    {
      // git leaves out a/b/d.log too; kiln cannot tell the outer `*.log` from the outer `a/b/` for
      // paths under a/b, and errs on the side of a file too many.
      title: 'a directory one .gitignore leaves out and a deeper one takes back is walked',
      files: { '.gitignore': 'a/b/\n*.log\n', 'a/.gitignore': '!b/\n', ...xs('a/b/c.rs a/b/d.log a/e.log') },
      want: '.gitignore a/.gitignore a/b/c.rs a/b/d.log',
    },
    {
      title: '.kilnignore is read like .gitignore, and may re-include what git ignores',
      files: {
        '.gitignore': 'vendor/\n*.generated.rs\n',
        '.kilnignore': 'docs/\n!api.generated.rs\n',
        ...xs('docs/readme.md vendor/dep.rs api.generated.rs other.generated.rs src/docs/inner.md lib.rs'),
      },
      want: '.gitignore .kilnignore api.generated.rs lib.rs',
    },
    {
      title: 'exclude is applied on top of the ignore files, and cannot be undone by them',
      files: { 'sub/.gitignore': '!*.md\n', ...xs('docs/a.md sub/b.md sub/c.rs kiln.lock src/kiln.lock') },
      options: { exclude: ['docs/', '*.md', '/kiln.lock'] },
      want: 'src/kiln.lock sub/.gitignore sub/c.rs',
    },
  ];
  for (const [i, c] of SELECTIONS.entries()) {
    test(c.title, async () => {
      const dir = await tree(`selection-${i}`, c.files);
      assert.deepEqual(paths(await listSources(dir, c.options)), c.want.split(' '));
    });
  }

  test('include keeps only matching files, gitignore-style', async () => {
    const dir = await tree(
      'include',
      xs('Cargo.toml Cargo.lock src/main.rs src/gen/out.rs crates/x/Cargo.toml README.md src/notes.md'),
    );
    const files = await listSources(dir, { include: ['src/**', '/Cargo.*', '!*.md'] });
    assert.deepEqual(paths(files), ['Cargo.lock', 'Cargo.toml', 'src/gen/out.rs', 'src/main.rs']);
    const anywhere = await listSources(dir, { include: ['Cargo.toml'] });
    assert.deepEqual(paths(anywhere), ['Cargo.toml', 'crates/x/Cargo.toml']);
    // A later pattern carves out of a directory an earlier one took in, and the other way round.
    assert.deepEqual(paths(await listSources(dir, { include: ['src/', '!src/gen/'] })), [
      'src/main.rs',
      'src/notes.md',
    ]);
    assert.deepEqual(paths(await listSources(dir, { include: ['!*.md', 'src/'] })), [
      'src/gen/out.rs',
      'src/main.rs',
      'src/notes.md',
    ]);
    // Ignored files stay out even when included.
    await fs.writeFile(path.join(dir, '.gitignore'), 'gen/\n');
    assert.deepEqual(paths(await listSources(dir, { include: ['src/'] })), ['src/main.rs', 'src/notes.md']);
  });

  test('symlinks are recorded, not followed', async () => {
    const outside = await tree('outside', { 'secret.txt': 'secret', 'dir/inner.txt': 'x' });
    const dir = await tree('links', {
      'real.txt': 'real',
      'to-file': '-> real.txt',
      'to-outside': `-> ${path.join(outside, 'secret.txt')}`,
      'to-dir': `-> ${path.join(outside, 'dir')}`,
      dangling: '-> no/such/file',
    });
    const files = await listSources(dir);
    assert.deepEqual(paths(files), ['dangling', 'real.txt', 'to-dir', 'to-file', 'to-outside']);
    const byPath = new Map(files.map((f) => [f.path, f]));
    assert.deepEqual(byPath.get('to-file'), {
      path: 'to-file',
      type: 'symlink',
      executable: false,
      size: 'real.txt'.length,
      digest: sha('real.txt'),
    });
    assert.equal(byPath.get('to-outside')?.digest, sha(path.join(outside, 'secret.txt')));
    assert.equal(byPath.get('dangling')?.type, 'symlink');
    // Only the target counts: changing what it points at changes nothing.
    const before = sourcesDigest(files);
    await fs.writeFile(path.join(outside, 'secret.txt'), 'changed');
    await fs.writeFile(path.join(outside, 'dir', 'inner.txt'), 'changed');
    assert.equal(sourcesDigest(await listSources(dir)), before);
    // Retargeting a link does.
    await fs.rm(path.join(dir, 'to-file'));
    await fs.symlink('./real.txt', path.join(dir, 'to-file'));
    assert.notEqual(sourcesDigest(await listSources(dir)), before);
  });

  test('a symlink and a file with the same content differ', async () => {
    const a = await tree('link-a', { x: '-> target' });
    const b = await tree('link-b', { x: 'target' });
    const [la, lb] = [await listSources(a), await listSources(b)];
    assert.equal(la[0]?.digest, lb[0]?.digest);
    assert.notEqual(sourcesDigest(la), sourcesDigest(lb));
  });

  test('the executable bit counts', async () => {
    const dir = await tree('exec', { 'build.sh': '#!/bin/sh\n', 'data.txt': 'x' });
    const before = await listSources(dir);
    assert.equal(before[0]?.executable, false);
    await fs.chmod(path.join(dir, 'build.sh'), 0o755);
    const after = await listSources(dir);
    assert.equal(after[0]?.executable, true);
    assert.equal(after[1]?.executable, false);
    assert.notEqual(sourcesDigest(after), sourcesDigest(before));
    // Only the owner's bit, as git: group/other bits and read/write bits do not count.
    await fs.chmod(path.join(dir, 'build.sh'), 0o700);
    await fs.chmod(path.join(dir, 'data.txt'), 0o615);
    assert.equal(sourcesDigest(await listSources(dir)), sourcesDigest(after));
  });

  test('the digest ignores mtimes and where the tree is; one byte changes it', async () => {
    const files = {
      'src/main.rs': 'fn main() { println!("hi"); }\n',
      'Cargo.toml': '[package]\nname = "app"\n',
      link: '-> src/main.rs',
      '.gitignore': 'target/\n',
      'target/junk': 'x',
    };
    const a = await tree('where-a', files);
    const digest = sourcesDigest(await listSources(a));

    await fs.utimes(path.join(a, 'src/main.rs'), new Date(0), new Date(0));
    await fs.utimes(path.join(a, 'Cargo.toml'), new Date(), new Date(2_000_000_000_000));
    assert.equal(sourcesDigest(await listSources(a)), digest, 'mtime changed the digest');

    const b = path.join(freshDir('elsewhere'), 'deeper', 'copy');
    await fs.cp(a, b, { recursive: true, verbatimSymlinks: true });
    assert.deepEqual(await listSources(b), await listSources(a));
    assert.equal(sourcesDigest(await listSources(b)), digest, 'the location changed the digest');

    // One byte: same size, different content.
    await fs.writeFile(path.join(b, 'src/main.rs'), files['src/main.rs'].replace('hi', 'ho'));
    assert.notEqual(sourcesDigest(await listSources(b)), digest);
    // And an ignored file changes nothing.
    await fs.writeFile(path.join(a, 'target/junk'), 'other');
    assert.equal(sourcesDigest(await listSources(a)), digest);
  });

  test('renaming a file changes the digest; an empty directory does not count', async () => {
    const a = await tree('rename-a', { 'x/a.txt': 'same' });
    const b = await tree('rename-b', { 'x/b.txt': 'same' });
    assert.notEqual(sourcesDigest(await listSources(a)), sourcesDigest(await listSources(b)));
    const before = sourcesDigest(await listSources(a));
    await fs.mkdir(path.join(a, 'empty'));
    assert.equal(sourcesDigest(await listSources(a)), before);
  });

  test('large files are hashed in full, with bounded concurrency', async () => {
    const dir = freshDir('large');
    const big = Buffer.alloc(6 * 1024 * 1024 + 7, 'abc');
    big[big.length - 1] = 0x21;
    await fs.writeFile(path.join(dir, 'big.bin'), big);
    for (let i = 0; i < 40; i++) await fs.writeFile(path.join(dir, `f${String(i).padStart(2, '0')}`), `${i}`);
    const files = await listSources(dir);
    assert.equal(files.length, 41);
    assert.deepEqual(files[0], {
      path: 'big.bin',
      type: 'file',
      executable: false,
      size: big.length,
      digest: sha(big),
    });
    assert.equal(files[40]?.digest, sha('39'));
  });

  test('a missing directory is E_NOT_FOUND, a file E_USAGE', async () => {
    await assert.rejects(listSources(path.join(work, 'nope')), (e) => isKilnError(e, 'E_NOT_FOUND'));
    const dir = await tree('file', { f: 'x' });
    await assert.rejects(listSources(path.join(dir, 'f')), (e) => isKilnError(e, 'E_USAGE'));
  });

  const hasGit = (() => {
    try {
      execFileSync('git', ['--version'], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  })();
  test('selects the files git would', { skip: !hasGit && 'no git' }, async () => {
    const dir = await tree('git', {
      '.gitignore': '*.o\nbuild/\n/dist\n**/logs/*.txt\n!logs/keep.txt\ndoc/**/*.pdf\n\\#hash\n',
      ...xs('a.o a.c build/x src/build/y dist/z src/dist/z logs/a.txt logs/keep.txt deep/logs/b.txt'),
      ...xs('doc/a/b/c.pdf doc/c.pdf doc/readme #hash'),
      'sub/.gitignore': '!a.o\n*.c\n/only-here\n',
      ...xs('sub/a.o sub/b.c sub/only-here sub/deeper/only-here'),
      'link.o': '-> a.c',
      'space ': 'x',
      'weird name.txt': 'x',
    });
    execFileSync('git', ['init', '-q', dir]);
    const git = execFileSync(
      'git',
      [
        '-c',
        'core.excludesFile=/dev/null',
        '-c',
        'core.quotePath=false',
        'ls-files',
        '-z',
        '--others',
        '--exclude-standard',
      ],
      { cwd: dir, encoding: 'utf8' },
    )
      .split('\0')
      .filter(Boolean)
      .sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    assert.deepEqual(paths(await listSources(dir)), git);
  });
});

describe('sourcesDigest', () => {
  const file = (p: string, digest = sha(p), extra: Partial<SourceFile> = {}): SourceFile => ({
    path: p,
    type: 'file',
    executable: false,
    size: 1,
    digest,
    ...extra,
  });

  test('is a sha256 digest, the same for any order of the list', () => {
    const files = [file('b'), file('a'), file('c/d')];
    const d = sourcesDigest(files);
    assert.match(d, /^sha256:[0-9a-f]{64}$/);
    assert.equal(sourcesDigest([...files].reverse()), d);
    assert.notEqual(sourcesDigest([]), d);
  });

  test('every field but size counts, and fields cannot run into each other', () => {
    const base = sourcesDigest([file('a', sha('x'))]);
    assert.notEqual(sourcesDigest([file('b', sha('x'))]), base);
    assert.notEqual(sourcesDigest([file('a', sha('y'))]), base);
    assert.notEqual(sourcesDigest([file('a', sha('x'), { type: 'symlink' })]), base);
    assert.notEqual(sourcesDigest([file('a', sha('x'), { executable: true })]), base);
    assert.equal(sourcesDigest([file('a', sha('x'), { size: 99 })]), base);
    // A path with a newline or quote in it is not another list of files.
    assert.notEqual(
      sourcesDigest([file('a"\n["b', sha('x'))]),
      sourcesDigest([file('a', sha('x')), file('b', sha('x'))]),
    );
  });

  test('property: distinct file sets give distinct digests', () => {
    const arbFile = fc.record({
      path: fc.string({ minLength: 1, maxLength: 6 }),
      type: fc.constantFrom('file' as const, 'symlink' as const),
      executable: fc.boolean(),
      size: fc.nat(),
      digest: fc.constantFrom(sha('1'), sha('2')),
    });
    const arbSet = fc.uniqueArray(arbFile, { selector: (f) => f.path, maxLength: 4 });
    const key = (fs: SourceFile[]) =>
      JSON.stringify(
        [...fs]
          .sort((a, b) => Buffer.compare(Buffer.from(a.path), Buffer.from(b.path)))
          .map((f) => [f.path, f.type, f.executable, f.digest]),
      );
    fc.assert(
      fc.property(arbSet, arbSet, (a, b) => {
        assert.equal(sourcesDigest(a) === sourcesDigest(b), key(a) === key(b));
      }),
    );
  });

  test('property: the digest of a tree does not depend on the order its files were created in', async () => {
    const name = fc.constantFrom('a', 'b', 'B', 'c.rs', 'é', 'x y');
    const arbTree = fc.uniqueArray(
      fc.record({
        path: fc.array(name, { minLength: 1, maxLength: 3 }).map((parts) => parts.join('/')),
        content: fc.string({ maxLength: 20 }),
        executable: fc.boolean(),
      }),
      { selector: (f) => f.path, minLength: 1, maxLength: 8 },
    );
    // Keep only trees where no file is also a directory of another.
    const valid = arbTree.filter((files) =>
      files.every((f) => !files.some((g) => g.path.startsWith(`${f.path}/`))),
    );
    let run = 0;
    await fc.assert(
      fc.asyncProperty(valid, fc.nat(), async (files, seed) => {
        const write = async (dir: string, order: typeof files) => {
          for (const f of order) {
            const abs = path.join(dir, f.path);
            await fs.mkdir(path.dirname(abs), { recursive: true });
            await fs.writeFile(abs, f.content, { mode: f.executable ? 0o755 : 0o644 });
            await fs.chmod(abs, f.executable ? 0o755 : 0o644);
          }
        };
        const shuffled = [...files].sort(
          (x, y) => ((hash32(x.path) ^ seed) >>> 0) - ((hash32(y.path) ^ seed) >>> 0),
        );
        const a = path.join(work, `order-a-${++run}`);
        const b = path.join(work, `order-b-${run}`);
        await write(a, files);
        await write(b, shuffled.reverse());
        const [la, lb] = [await listSources(a), await listSources(b)];
        assert.deepEqual(lb, la);
        assert.equal(sourcesDigest(lb), sourcesDigest(la));
        assert.equal(la.length, files.length);
        await fs.rm(a, { recursive: true });
        await fs.rm(b, { recursive: true });
      }),
      { numRuns: 40 },
    );
  });
});

function hash32(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}
