/**
 * The layering of src/, checked: a module may import only from its own folder or from a folder of a
 * lower layer (docs/architecture.md lists them and says why). Type-only and dynamic imports count too:
 * a cycle through types still ties two layers together. Also: no import cycles between files.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const SRC = fileURLToPath(new URL('../../src', import.meta.url));

/**
 * Bottom to top. A folder (or top-level file) may import from any name earlier in this list, never
 * from a later one. Names on the same line are peers: they may not import each other.
 */
export const LAYERS: readonly (readonly string[])[] = [
  ['errors'],
  ['oci'],
  ['store'],
  ['layer'],
  ['registry'],
  ['context'],
  ['engine'],
  ['transport'],
  ['image'],
  ['check'],
  ['wasm'],
  ['component'],
  ['sbom', 'run', 'toolchain'],
  ['sign'],
  ['debian'],
  ['project'],
  ['build'],
  ['operations'],
  ['api'],
  ['index'],
  ['cli'],
];

function rankOf(unit: string): number {
  const i = LAYERS.findIndex((names) => names.includes(unit));
  return i;
}

/** `image/append.ts` → `image`; `errors.ts` → `errors`. */
function unitOf(file: string): string {
  const rel = relative(SRC, file);
  const parts = rel.split('/');
  return parts.length > 1 ? parts[0]! : rel.replace(/\.ts$/, '');
}

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...sourceFiles(p));
    else if (p.endsWith('.ts') && !p.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

interface Import {
  from: string;
  to: string;
}

/** Every relative import of a file: static, type-only, re-exports and dynamic import(). */
export function importsOf(file: string, text: string): Import[] {
  const out: Import[] = [];
  const patterns = [
    /\bfrom\s+'(\.{1,2}\/[^']+)'/g,
    /\bimport\(\s*'(\.{1,2}\/[^']+)'\s*\)/g,
    /^import\s+'(\.{1,2}\/[^']+)'/gm,
  ];
  for (const re of patterns)
    for (const m of text.matchAll(re))
      out.push({ from: file, to: resolve(dirname(file), m[1]!).replace(/\.js$/, '.ts') });
  return out;
}

/** Imports that go up the layering (or sideways between peers), as `from -> to` lines. */
export function upwardImports(files: { file: string; text: string }[]): string[] {
  const bad: string[] = [];
  for (const { file, text } of files)
    for (const imp of importsOf(file, text)) {
      const a = unitOf(imp.from);
      const b = unitOf(imp.to);
      if (a === b) continue;
      const ra = rankOf(a);
      const rb = rankOf(b);
      if (ra === -1 || rb === -1 || rb >= ra)
        bad.push(`${relative(SRC, imp.from)} -> ${relative(SRC, imp.to)} (${a} may not import ${b})`);
    }
  return bad;
}

/** What the CLI may import besides its own folder: the public API, and errors. */
export const CLI_MAY_IMPORT: readonly string[] = ['api', 'index', 'errors'];

/** CLI imports of library code not through the public API, as `from -> to` lines. */
export function privateImportsOfCli(files: { file: string; text: string }[]): string[] {
  const bad: string[] = [];
  for (const { file, text } of files) {
    if (unitOf(file) !== 'cli') continue;
    for (const imp of importsOf(file, text)) {
      const b = unitOf(imp.to);
      if (b !== 'cli' && !CLI_MAY_IMPORT.includes(b))
        bad.push(`${relative(SRC, imp.from)} -> ${relative(SRC, imp.to)} (use src/api)`);
    }
  }
  return bad;
}

/** File-level import cycles, each as `a -> b -> a`. */
export function cycles(files: { file: string; text: string }[]): string[] {
  const graph = new Map(files.map(({ file, text }) => [file, importsOf(file, text).map((i) => i.to)]));
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const found: string[] = [];
  const visit = (n: string): void => {
    state.set(n, 'open');
    stack.push(n);
    for (const m of graph.get(n) ?? []) {
      if (!graph.has(m)) continue;
      if (state.get(m) === 'open')
        found.push([...stack.slice(stack.indexOf(m)), m].map((f) => relative(SRC, f)).join(' -> '));
      else if (!state.has(m)) visit(m);
    }
    stack.pop();
    state.set(n, 'done');
  };
  for (const f of graph.keys()) if (!state.has(f)) visit(f);
  return found;
}

const files = sourceFiles(SRC).map((file) => ({ file, text: readFileSync(file, 'utf8') }));

describe('architecture', () => {
  it('every folder and top-level module of src/ has a place in the layering', () => {
    const units = [...new Set(files.map((f) => unitOf(f.file)))];
    assert.deepEqual(
      units.filter((u) => rankOf(u) === -1),
      [],
      'add new folders to LAYERS here and in docs/architecture.md',
    );
  });

  it('no module imports from a layer above its own', () => {
    assert.deepEqual(upwardImports(files), []);
  });

  it('the CLI imports library code only through the public API (src/api, src/index.ts)', () => {
    assert.deepEqual(privateImportsOfCli(files), []);
  });

  it('no import cycles between files', () => {
    assert.deepEqual(cycles(files), []);
  });

  it('the check catches an upward import, a type-only one and a dynamic one', () => {
    const fake = (rel: string, text: string) => ({ file: join(SRC, rel), text });
    const bad = upwardImports([
      fake('registry/x.ts', "import { verified } from '../transport/verify.js';"),
      fake('build/y.ts', "import type { PackResult } from '../operations.js';"),
      fake('oci/z.ts', "const m = await import('../image/resolve.js');"),
      fake('sbom/w.ts', "import { run } from '../run/run.js';"),
      fake('image/ok.ts', "import { x } from '../oci/types.js';\nimport { y } from './resolve.js';"),
    ]);
    assert.equal(bad.length, 4, bad.join('\n'));
    assert.equal(
      privateImportsOfCli([
        fake('cli/commands/a.ts', "const { pack } = await import('../../wasm/pack.js');"),
        fake(
          'cli/commands/b.ts',
          "import type { Platform } from '../../api/oci.js';\nimport { Output } from '../output.js';",
        ),
      ]).length,
      1,
    );
    assert.equal(
      cycles([fake('a/a.ts', "import './b.js';"), fake('a/b.ts', "import type { A } from './a.js';")]).length,
      1,
    );
  });

  it('docs/architecture.md lists the same layers', () => {
    const doc = readFileSync(new URL('../../docs/architecture.md', import.meta.url), 'utf8');
    for (const names of LAYERS) for (const name of names) assert.match(doc, new RegExp(`\`${name}\``), name);
  });
});
