// `npm run sea`: dist/kiln, kiln as one executable file (Node's single executable applications).
//
// A single executable's main script must be one CommonJS file that requires nothing but Node's
// built-in modules, so this is a second esbuild bundle, unlike dist/bin/kiln.js (ESM, lazy chunks):
// everything in one file, and every import() turned into a require(). The bundle is made into a blob with
// `node --experimental-sea-config`, and the blob injected into a copy of this node binary with
// postject. Intermediate files live in a temp dir; dist/kiln is replaced by an atomic rename.
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from 'esbuild';

const OUT = 'dist/kiln';
// The fuse string Node's binary carries for single executable applications (Node's documentation).
const FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';

if (process.platform !== 'linux') {
  console.error(`npm run sea: made and tested on Linux only, not ${process.platform}`);
  process.exit(1);
}

const tmp = mkdtempSync(join(tmpdir(), 'kiln-sea-'));
try {
  const main = join(tmp, 'kiln.cjs');
  await build({
    entryPoints: ['src/cli/bin.ts'],
    outfile: main,
    bundle: true,
    format: 'cjs',
    platform: 'node',
    target: 'node20',
    // Native addons cannot be in the bundle; the packages that want one load it in a try/catch.
    // jco (components) is left out: the executable runs preview 1 modules in-process, refuses components.
    external: ['*.node', '@bytecodealliance/*'],
    // The main script of a single executable cannot import(): turn it into require().
    supported: { 'dynamic-import': false },
    // CommonJS has no import.meta: the executable's own path stands in for the module's URL.
    define: { 'import.meta.url': 'kilnModuleUrl' },
    banner: { js: "const kilnModuleUrl = require('node:url').pathToFileURL(__filename).href;" },
    legalComments: 'none',
    logLevel: 'warning',
  });

  const config = join(tmp, 'sea-config.json');
  const blob = join(tmp, 'kiln.blob');
  writeFileSync(
    config,
    JSON.stringify({ main, output: blob, disableExperimentalSEAWarning: true, useCodeCache: true }),
  );
  quiet('node --experimental-sea-config', process.execPath, ['--experimental-sea-config', config]);

  mkdirSync('dist', { recursive: true });
  const exe = join(tmp, 'kiln');
  copyFileSync(process.execPath, exe);
  chmodSync(exe, 0o755);
  // postject's ELF library warns about every note section it cannot name: its output shows on failure.
  quiet('postject', process.execPath, [
    createRequire(import.meta.url).resolve('postject/dist/cli.js'),
    exe,
    'NODE_SEA_BLOB',
    blob,
    '--sentinel-fuse',
    FUSE,
  ]);

  const version = execFileSync(exe, ['--version'], { encoding: 'utf8' }).trim();
  const staged = `${OUT}.${process.pid}.tmp`;
  copyFileSync(exe, staged);
  chmodSync(staged, 0o755);
  renameSync(staged, OUT);
  console.log(`wrote ${OUT} (kiln ${version}, node ${process.version}, ${process.platform}-${process.arch})`);
} finally {
  rmSync(tmp, { recursive: true, force: true });
}

/** Runs a step, printing its output only when it fails. */
function quiet(step, cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status === 0) return;
  process.stderr.write(`${r.stdout ?? ''}${r.stderr ?? ''}`);
  throw new Error(`${step} failed (exit ${r.status ?? r.signal})`);
}
