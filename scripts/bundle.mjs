// Bundles the CLI into dist/bin: one file for start-up plus chunks for what commands load lazily.
// Why: loading ~60 separate ES modules costs ~70 ms before kiln does anything; a bundle loads in a few.
import { rmSync } from 'node:fs';
import { build } from 'esbuild';

// Chunk names carry hashes: clear the old ones so dist/bin holds one build.
rmSync('dist/bin', { recursive: true, force: true });

await build({
  entryPoints: { kiln: 'src/cli/main.ts' },
  outdir: 'dist/bin',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  // commander and tar-stream are CommonJS: give the ESM bundle a require() for them.
  banner: {
    js: "import { createRequire as kilnCreateRequire } from 'node:module'; const require = kilnCreateRequire(import.meta.url);",
  },
  // dockerode (and ssh2, grpc under it) loads only for the docker runner, from node_modules: it has
  // optional native parts a bundle cannot hold.
  external: ['dockerode'],
  chunkNames: 'chunks/[name]-[hash]',
  legalComments: 'none',
  logLevel: 'warning',
});
