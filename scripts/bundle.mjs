// Bundles the CLI into dist/bin: one file for start-up plus chunks for what commands load lazily.
// Why: loading ~60 separate ES modules costs ~70 ms before kiln does anything; a bundle loads in a few.
//
// The build goes to a temp dir and is moved into place so that kiln processes already running (in
// other terminals, or tests) keep working: chunk names carry content hashes, so new chunks are added
// beside the old ones, kiln.js is replaced by an atomic rename, and old chunks are removed only when
// nothing has used them for an hour.
import { mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { build } from 'esbuild';

const OUT = 'dist/bin';
const STALE_MS = 60 * 60 * 1000;

mkdirSync('dist', { recursive: true });
const tmp = mkdtempSync('dist/.bin-');
try {
  await build({
    entryPoints: { kiln: 'src/cli/main.ts' },
    outdir: tmp,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    // commander and tar-stream are CommonJS: give the ESM bundle a require() for them.
    banner: {
      js: "import { createRequire as kilnCreateRequire } from 'node:module'; const require = kilnCreateRequire(import.meta.url);",
    },
    // jco (components: componentize, run) loads from node_modules: it is large and finds its
    // WebAssembly files beside its own modules.
    external: ['@bytecodealliance/*'],
    chunkNames: 'chunks/[name]-[hash]',
    legalComments: 'none',
    logLevel: 'warning',
  });
  mkdirSync(join(OUT, 'chunks'), { recursive: true });
  const fresh = new Set();
  for (const name of readdirSync(join(tmp, 'chunks'))) {
    fresh.add(name);
    renameSync(join(tmp, 'chunks', name), join(OUT, 'chunks', name));
  }
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
