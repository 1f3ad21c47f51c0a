/**
 * The bin, dist/bin/kiln.js: loads the CLI's bundle (CommonJS chunks that scripts/bundle.mjs makes from
 * bin.ts) through vm.Script with V8's code cache, kept in kiln's store per build of kiln and version of
 * Node. Why: Node 20 keeps no compiled code for a program's own modules, and its ES module loader takes
 * no cache at all; loading and compiling kiln's chunks was most of every command's start-up.
 *
 * Each chunk's cache is written at exit by the first run that loaded it without one (or had it
 * rejected: another V8, other flags), with the functions that run compiled. Any failure to read or
 * write a cache only costs the compile: the chunk still loads.
 */
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import * as vm from 'node:vm';
import { storeDir } from '../api/context.js';
import { VERSION } from './version.js';

/** Set by scripts/bundle.mjs: the entry chunk, and a hash of every chunk's text (the cache's key). */
declare const KILN_ENTRY: string;
declare const KILN_BUILD: string;

/** What a chunk's code runs in: CommonJS's wrapper, and an import() for packages that are ES modules only. */
const WRAPPER = ['(function (exports, require, module, __filename, __dirname, __kilnImport) {', '\n})'];

interface Loaded {
  exports: unknown;
}

/** Loads chunks by absolute path, once each, and keeps what needs a cache written. */
class ChunkLoader {
  private readonly loaded = new Map<string, Loaded>();
  private readonly fresh: { file: string; script: vm.Script }[] = [];
  private readonly nodeRequire: NodeJS.Require;

  constructor(
    dir: string,
    private readonly cacheDir: string | undefined,
    private readonly importer: (specifier: string) => Promise<unknown>,
  ) {
    this.nodeRequire = createRequire(path.join(dir, 'kiln.js'));
  }

  load(file: string): unknown {
    const done = this.loaded.get(file);
    if (done) return done.exports;
    const module: Loaded = { exports: {} };
    this.loaded.set(file, module);
    const source = readFileSync(file, 'utf8');
    const cacheFile = this.cacheDir && path.join(this.cacheDir, `${path.basename(file)}.v8`);
    const cachedData = cacheFile ? readOrNothing(cacheFile) : undefined;
    const script = new vm.Script(WRAPPER[0] + source + WRAPPER[1], { filename: file, cachedData });
    if (cacheFile && (!cachedData || script.cachedDataRejected)) this.fresh.push({ file: cacheFile, script });
    const dir = path.dirname(file);
    const require = Object.assign(
      (specifier: string) =>
        specifier.startsWith('.') ? this.load(path.resolve(dir, specifier)) : this.nodeRequire(specifier),
      { resolve: this.nodeRequire.resolve },
    );
    script.runInThisContext()(module.exports, require, module, file, dir, this.importer);
    return module.exports;
  }

  /** Writes the caches this run made (at exit: with every function the run compiled). */
  save(): void {
    if (!this.cacheDir || this.fresh.length === 0) return;
    try {
      const parent = path.dirname(this.cacheDir);
      mkdirSync(this.cacheDir, { recursive: true });
      // Caches of other builds or Node versions are of no more use.
      for (const name of readdirSync(parent))
        if (name !== path.basename(this.cacheDir))
          rmSync(path.join(parent, name), { recursive: true, force: true });
      for (const { file, script } of this.fresh) {
        const tmp = `${file}.${process.pid}.tmp`;
        writeFileSync(tmp, script.createCachedData());
        renameSync(tmp, file);
      }
    } catch {
      // A store kiln cannot write: the next run compiles again.
    }
  }
}

function readOrNothing(file: string): Buffer | undefined {
  try {
    return readFileSync(file);
  } catch {
    return undefined;
  }
}

/** Where this build's caches are, for this Node; none when kiln's store can't be named. */
function cacheDirOf(): string | undefined {
  try {
    const key = `${VERSION}-${KILN_BUILD}-node${process.versions.node}-${process.arch}`;
    return path.join(storeDir(), '.code-cache', key);
  } catch {
    return undefined;
  }
}

const argv = process.argv.slice(2);
if (argv.length === 1 && (argv[0] === '--version' || argv[0] === '-V')) process.stdout.write(`${VERSION}\n`);
else {
  const loader = new ChunkLoader(__dirname, cacheDirOf(), (specifier) => import(specifier));
  process.once('exit', () => loader.save());
  loader.load(path.join(__dirname, KILN_ENTRY));
}
