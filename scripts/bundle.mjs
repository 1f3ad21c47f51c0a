// Bundles the CLI into dist/bin: the bin (kiln.js, src/cli/launch.ts) and the chunks it loads, the
// code of src/cli/bin.ts split so that a command loads only what it uses.
// Why: loading ~60 separate ES modules costs ~70 ms before kiln does anything; a bundle loads in a few.
// The chunks are CommonJS (esbuild splits ES modules only: each chunk is converted after the split) so
// that the bin can compile them with V8's code cache, which Node 20 offers for scripts only.
//
// The build goes to a temp dir and is moved into place so that kiln processes already running (in
// other terminals, or tests) keep working: chunk names carry content hashes, so new chunks are added
// beside the old ones, kiln.js is replaced by an atomic rename, and old chunks are removed only when
// nothing has used them for an hour.
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, join, relative } from 'node:path';
import { build, transform } from 'esbuild';

const OUT = 'dist/bin';
const STALE_MS = 60 * 60 * 1000;

mkdirSync('dist', { recursive: true });
const tmp = mkdtempSync('dist/.bin-');
try {
  const split = await build({
    entryPoints: { kiln: 'src/cli/bin.ts' },
    outdir: tmp,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    // jco (components: componentize, run) loads from node_modules: it is large and finds its
    // WebAssembly files beside its own modules.
    external: ['@bytecodealliance/*'],
    entryNames: 'chunks/[name]-[hash]',
    chunkNames: 'chunks/[name]-[hash]',
    legalComments: 'none',
    logLevel: 'warning',
    write: false,
    metafile: true,
  });
  const build_ = createHash('sha256');
  const chunks = [];
  for (const file of split.outputFiles) {
    const code = await commonJs(file.text);
    build_.update(`${basename(file.path)}\0${code}\0`);
    chunks.push({ name: basename(file.path), code });
  }
  const entry = Object.entries(split.metafile.outputs).find(
    ([, o]) => o.entryPoint === 'src/cli/bin.ts',
  )?.[0];
  if (!entry) throw new Error('bundle: no output for src/cli/bin.ts');
  mkdirSync(join(tmp, 'chunks'), { recursive: true });
  for (const { name, code } of chunks) writeFileSync(join(tmp, 'chunks', name), code);
  await build({
    entryPoints: { kiln: 'src/cli/launch.ts' },
    outdir: tmp,
    bundle: true,
    format: 'cjs',
    platform: 'node',
    target: 'node20',
    define: {
      KILN_ENTRY: JSON.stringify(`./${relative(tmp, entry)}`),
      KILN_BUILD: JSON.stringify(build_.digest('hex').slice(0, 16)),
    },
    banner: { js: '#!/usr/bin/env node' },
    legalComments: 'none',
    logLevel: 'warning',
  });

  mkdirSync(join(OUT, 'chunks'), { recursive: true });
  const fresh = new Set();
  for (const name of readdirSync(join(tmp, 'chunks'))) {
    fresh.add(name);
    renameSync(join(tmp, 'chunks', name), join(OUT, 'chunks', name));
  }
  // The package is "type": "module"; the bin and its chunks are CommonJS.
  writeFileSync(join(OUT, 'package.json'), '{ "type": "commonjs" }\n');
  renameSync(join(tmp, 'kiln.js'), join(OUT, 'kiln.js'));
  const now = Date.now();
  for (const name of readdirSync(join(OUT, 'chunks'))) {
    if (fresh.has(name)) continue;
    const file = join(OUT, 'chunks', name);
    if (now - statSync(file).atimeMs > STALE_MS && now - statSync(file).mtimeMs > STALE_MS) rmSync(file);
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}

/**
 * One chunk of the split as CommonJS for the bin's loader: `import()` of another chunk becomes a
 * require() (it is code of this bundle), of a package `__kilnImport()` (the loader's import(): jco is
 * an ES module only), and import.meta.url the chunk file's URL.
 */
async function commonJs(esm) {
  const rewritten = esm
    .replace(/^#!.*\n/, '')
    .replace(/\bimport\("(\.\.?\/[^"]+)"\)/g, 'Promise.resolve().then(() => require("$1"))')
    .replace(/\bimport\("([^".][^"]*)"\)/g, '__kilnImport("$1")');
  const url = rewritten.includes('import.meta.url');
  const { code } = await transform(rewritten, {
    format: 'cjs',
    platform: 'node',
    target: 'node20',
    ...(url
      ? {
          define: { 'import.meta.url': 'kilnModuleUrl' },
          banner: 'const kilnModuleUrl = require("node:url").pathToFileURL(__filename).href;',
        }
      : {}),
    legalComments: 'none',
    logLevel: 'warning',
  });
  if (/\bimport\("/.test(code)) throw new Error('bundle: a chunk still has an import() after its conversion');
  return code;
}
