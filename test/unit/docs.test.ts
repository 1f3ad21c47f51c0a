/**
 * The documentation names only files that are in the repository: README.md, docs/*.md and the
 * `--help` of every command (run from dist/bin/kiln.js, so `npm run build` first) are scanned for
 * paths, and each one that claims to be a file of this repository must be one `git ls-files` lists.
 * A path claims that when it is a Markdown link, when its first segment is a top-level entry of the
 * repository (`src/...`, `docs/...`, `README.md`), when it climbs out with `../`, or when it names a
 * `.md` file. Other paths (`/out`, `kiln.yaml`, `./out`) are examples, not claims about the repository.
 *
 * Also: docs/formats.md holds every WebAssembly media type and toolchain image the code writes.
 */
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { posix } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { MediaType } from '../../src/oci/media-types.js';
import { LANGUAGES, preset } from '../../src/toolchain/presets/index.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CLI = fileURLToPath(new URL('../../dist/bin/kiln.js', import.meta.url));

const FILES: readonly string[] = execFileSync('git', ['ls-files', '-z'], { cwd: ROOT, encoding: 'utf8' })
  .split('\0')
  .filter((f) => f !== '');
const TOP_LEVEL = new Set(FILES.map((f) => f.split('/')[0]!));

/** True when `path` (relative to the repository's root, normalised) is a tracked file or directory. */
function inRepo(path: string): boolean {
  if (path.includes('*') || /<[^>]*>/.test(path) || path.includes('{')) {
    const re = new RegExp(
      `^${path
        .replace(/[.+?^$()|[\]\\]/g, '\\$&')
        .replace(/<[^>]*>/g, '[^/]+')
        .replace(/\\?\{([^}]*)\}/g, (_m, alts: string) => `(?:${alts.split(',').join('|')})`)
        .replace(/\*/g, '[^/]*')}(?:/|$)`,
    );
    return FILES.some((f) => re.test(f));
  }
  return FILES.some((f) => f === path || f.startsWith(`${path}/`));
}

export interface BadPath {
  path: string;
  why: string;
}

/**
 * The paths in `text` (a document at `doc`, relative to the root, or a help text when undefined)
 * that claim to be files of the repository and are not.
 */
export function badPaths(text: string, doc?: string): BadPath[] {
  const dir = doc === undefined ? '' : posix.dirname(doc);
  const bad: BadPath[] = [];
  const check = (raw: string, base: string, always: boolean) => {
    const path = raw.replace(/#.*$/, '').replace(/[.,;:!?]+$/, '');
    if (path === '' || path.includes('$') || posix.isAbsolute(path)) return;
    const joined = posix.normalize(posix.join(base, path)).replace(/\/$/, '');
    if (joined === '..' || joined.startsWith('../')) {
      bad.push({ path: raw, why: 'outside the repository' });
      return;
    }
    const claims = always || TOP_LEVEL.has(joined.split('/')[0]!) || /\.md$/i.test(path);
    if (!claims) return;
    // A Markdown file may be named relative to the root or to the document's own folder.
    const fromDir = posix.normalize(posix.join(dir, path)).replace(/\/$/, '');
    if (inRepo(joined) || (/\.md$/i.test(path) && inRepo(fromDir))) return;
    bad.push({ path: raw, why: 'not a file in the repository' });
  };
  // Markdown links: relative to the document.
  for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
    const target = m[1]!;
    if (/^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith('#')) continue;
    check(target, dir, true);
  }
  // Every other word that looks like a path (URLs and link targets taken out first).
  const words = text
    .replace(/\]\([^)\s]+\)/g, ']')
    .replace(/\b[a-z][a-z0-9+.-]*:\/\/\S+/gi, ' ')
    .split(/[\s`'"(),;[\]|=]+/)
    .flatMap((w) => w.split(/:(?!\/)/))
    .map((w) => w.replace(/^\.\/(?=.)/, ''));
  for (const w of words) {
    if (w.includes('/') || /\.md[.,;:!?]*$/i.test(w)) check(w, w.startsWith('../') ? dir : '', false);
  }
  return bad;
}

const run = promisify(execFile);

/** `kiln [...cmd] --help` for every command and subcommand, keyed by the command line. */
async function helpTexts(): Promise<Map<string, string>> {
  const texts = new Map<string, string>();
  const visit = async (cmd: string[]): Promise<void> => {
    const { stdout } = await run(process.execPath, [CLI, ...cmd, '--help'], {
      env: { ...process.env, NO_COLOR: '1' },
    });
    texts.set(['kiln', ...cmd].join(' '), stdout);
    const section = /^Commands:\n([\s\S]*?)(?:\n\n|(?![\s\S]))/m.exec(stdout)?.[1] ?? '';
    const subs = [...section.matchAll(/^ {2}(\S+)/gm)].map((m) => m[1]!.split('|')[0]!);
    await Promise.all(subs.filter((s) => s !== 'help').map((s) => visit([...cmd, s])));
  };
  await visit([]);
  return texts;
}

describe('paths in the documentation', () => {
  it('the checker itself: flags paths outside the repository or missing from it, accepts real ones', () => {
    const flagged = (text: string, doc?: string) => badPaths(text, doc).map((b) => b.path);
    assert.deepEqual(flagged('see `shared/wasm-oci.md` and ../shared/DESIGN.md'), [
      'shared/wasm-oci.md',
      '../shared/DESIGN.md',
    ]);
    assert.deepEqual(
      flagged('`docs/nothing.md`, `src/cli/commands/nothing.ts`, [x](nothing.md)', 'docs/x.md'),
      ['nothing.md', 'docs/nothing.md', 'src/cli/commands/nothing.ts'],
    );
    assert.deepEqual(
      flagged(
        '`docs/formats.md`, `src/cli/commands/*.ts` and `examples/compact-runtime/`, ' +
          '[formats](formats.md), [readme](../README.md#use), `/out/app.wasm`, `kiln.yaml`, oci:./out:app, ' +
          'https://example.com/x/y.md',
        'docs/architecture.md',
      ),
      [],
    );
  });

  const docs = FILES.filter((f) => f === 'README.md' || /^docs\/[^/]+\.md$/.test(f));

  for (const doc of docs) {
    it(`${doc} names only files in the repository`, () => {
      const text = readFileSync(`${ROOT}/${doc}`, 'utf8');
      assert.deepEqual(badPaths(text, doc), []);
    });
  }

  it("every command's --help names only files in the repository", async () => {
    assert.ok(existsSync(CLI), `${CLI} not found: run 'npm run build' first`);
    const texts = await helpTexts();
    assert.ok(texts.size >= 20, `found only ${texts.size} commands: ${[...texts.keys()].join(', ')}`);
    for (const name of ['kiln package', 'kiln index create', 'kiln toolchain pull'])
      assert.ok(texts.has(name), `${name} --help was read`);
    const bad = [...texts].flatMap(([cmd, text]) => badPaths(text).map((b) => ({ cmd, ...b })));
    assert.deepEqual(bad, []);
  });
});

describe('docs/formats.md', () => {
  const text = readFileSync(`${ROOT}/docs/formats.md`, 'utf8');

  it('holds every WebAssembly media type kiln writes', () => {
    const wasm = Object.entries(MediaType).filter(([k]) => /^(Wasm|Istio)/.test(k));
    assert.ok(wasm.length >= 6);
    for (const [key, value] of wasm) assert.ok(text.includes(`\`${value}\``), `${key}: ${value}`);
    for (const s of ['module.wasm.image/variant: compat-smart', 'module.wasm.image/variant: compat`'])
      assert.ok(text.includes(s), s);
  });

  it("holds every preset's toolchain image", () => {
    for (const lang of LANGUAGES) assert.ok(text.includes(`\`${preset(lang).image}\``), lang);
  });
});
