import { type Command, Option } from 'commander';
import type { CompileEvent, CompileOptions } from '../../api/build.js';
import type { RunnerName } from '../../api/toolchain.js';
import { action } from '../action.js';
import { collect, examples, keyValues } from '../common.js';
import { humanSize, type Output } from '../output.js';

/**
 * The runners, for `--runner`'s choices: spelled here (checked complete against RunnerName) so that
 * registering the command loads no library code (start-up time).
 */
const RUNNERS: Record<RunnerName, true> = { docker: true, podman: true, sandbox: true, local: true };
const RUNNER_NAMES = Object.keys(RUNNERS) as RunnerName[];

/** The options compile and build share. */
export function compileOptions(cmd: Command): Command {
  return cmd
    .argument('[dir]', 'the project directory', '.')
    .option('-f, --file <kiln.yaml>', 'the project file (default: DIR/kiln.yaml when there is one)')
    .addOption(
      new Option('--lang <lang>', 'the language preset (default: detected from the files)').choices([
        'rust',
        'tinygo',
        'go',
        'c',
        'dotnet',
        'assemblyscript',
      ]),
    )
    .option('--toolchain <image>', "the toolchain image (default: the preset's), pinned in kiln.lock")
    .option('--command <cmd>', "the build command, run by /bin/sh -c in /src (default: the preset's)")
    .option('--artifact <path>', 'the artifact under /out (default: app.wasm; app for a linux target)')
    .option('--env <k=v>', 'environment variable for the build (repeatable)', collect)
    .addOption(
      new Option('--runner <runner>', 'where the build runs')
        .choices(['auto', ...RUNNER_NAMES])
        .default('auto'),
    )
    .option('--offline', 'never touch the network (the toolchain image must be in the store)')
    .option('--no-cache', 'build even when the cache has the result, and do not store it')
    .option('--network', 'give the build a network (default: none, unless the preset fetches packages)')
    .option('--no-network', 'no network for the build, even for presets that fetch packages')
    .option('--cache-from <repo>', 'registry repository to fetch cached builds from (repeatable)', collect)
    .option('--cache-to <repo>', 'registry repository to push built artifacts to');
}

export function toCompileOptions(dir: string, opts: Record<string, unknown>, out: Output): CompileOptions {
  const o = opts as {
    file?: string;
    lang?: string;
    toolchain?: string;
    command?: string;
    artifact?: string;
    env?: string[];
    runner: CompileOptions['runner'];
    offline?: boolean;
    cache: boolean;
    network?: boolean;
    cacheFrom?: string[];
    cacheTo?: string;
    output?: string;
  };
  const result: CompileOptions = {
    dir,
    runner: o.runner,
    offline: !!o.offline,
    noCache: o.cache === false,
    env: keyValues(o.env, '--env'),
    onEvent: (e) => out.info(describe(e)),
  };
  if (o.file) result.file = o.file;
  if (o.lang) result.lang = o.lang;
  if (o.toolchain) result.toolchain = o.toolchain;
  if (o.command) result.command = o.command;
  if (o.artifact) result.artifact = o.artifact;
  if (o.network !== undefined) result.network = o.network; // unset unless --network or --no-network
  if (o.cacheFrom) result.cacheFrom = o.cacheFrom;
  if (o.cacheTo) result.cacheTo = o.cacheTo;
  if (o.output) result.output = o.output;
  return result;
}

function describe(e: CompileEvent): string {
  switch (e.type) {
    case 'pull':
      return `pulling toolchain ${e.ref}`;
    case 'runner':
      return `runner: ${e.runner} (${e.reason})`;
    case 'cache-hit':
      return `cached: nothing changed (${e.where} build cache ${e.key.slice(0, 12)})`;
    case 'cache-push':
      return `pushed the build to ${e.repo}:${e.key.slice(0, 12)}`;
  }
}

export function register(program: Command): void {
  compileOptions(
    program
      .command('compile')
      .description('compile a project to WebAssembly (or a linux binary) inside its toolchain image'),
  )
    .option(
      '-o, --output <file>',
      'where the artifact lands (default: DIR/<name>.wasm, DIR/<name>-<os>-<arch>)',
    )
    .option(
      '--platform <os/arch>',
      'the target: wasip1/wasm (default), or linux/amd64, linux/arm64, linux/arm/v7, linux/386, linux/ppc64le, linux/s390x, linux/riscv64, cross-compiled in the toolchain image',
    )
    .addHelpText(
      'after',
      examples([
        'kiln compile                                  # language detected, toolchain pulled and pinned',
        'kiln compile ./app -o app.wasm --runner sandbox',
        'kiln compile --toolchain localhost:5000/wasi-sdk:25 --command "clang -O2 main.c -o /out/app.wasm"',
        'kiln compile --offline                        # only what kiln toolchain pull fetched',
        'kiln compile --platform linux/arm64           # a native binary, DIR/<name>-linux-arm64',
      ]),
    )
    .action(
      action(async ({ out, context, flags: opts, platform }, dir) => {
        const { compile } = await import('../../api/build.js');
        const options = toCompileOptions(dir, opts, out);
        const target = await platform();
        if (target) options.target = target;
        const { project: _p, ...result } = await compile({ ...options, context });
        const { formatPlatform, isWasmPlatform } = await import('../../api/oci.js');
        const tags = [
          ...(result.lang ? [result.lang] : []),
          ...(isWasmPlatform(result.target) ? [] : [formatPlatform(result.target)]),
        ];
        return {
          json: result,
          human: () => {
            out.info(
              `${result.source === 'build' ? 'compiled' : 'restored'} ${result.output} (${humanSize(result.size)})${tags.length ? ` [${tags.join(', ')}]` : ''}`,
            );
            if (result.extras) out.info(`  and the other files the build wrote: ${result.extras}/`);
          },
          data: result.digest,
        };
      }),
    );
}
