#!/usr/bin/env node
import { Command, CommanderError, Option } from 'commander';
import { KilnError, redact } from '../errors.js';
import { type GlobalFlags, Output, red } from './output.js';

const VERSION = '0.1.0';

/** Exit codes: 0 success, 1 failure, 2 usage error; `kiln run` exits with the module's code. */
function globals(cmd: Command): GlobalFlags {
  const o = cmd.optsWithGlobals() as Partial<GlobalFlags>;
  return { json: !!o.json, debug: !!o.debug, quiet: !!o.quiet };
}

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

function keyValues(pairs: string[] | undefined, flag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const p of pairs ?? []) {
    const i = p.indexOf('=');
    if (i <= 0) throw new KilnError('E_USAGE', `${flag} takes KEY=VALUE, got '${p}'`);
    out[p.slice(0, i)] = p.slice(i + 1);
  }
  return out;
}

function examples(lines: string[]): string {
  return `\nExamples:\n${lines.map((l) => `  $ ${l}`).join('\n')}\n`;
}

export function buildProgram(): Command {
  const program = new Command('kiln')
    .description('Daemonless builder of OCI images, WebAssembly first')
    .version(VERSION, '-V, --version', 'print the version')
    .option('--json', 'machine-readable output on stdout')
    .option('--debug', 'details on stderr (never secrets)')
    .option('-q, --quiet', 'no status lines')
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({ outputError: () => {} })
    .exitOverride();

  program
    .command('package')
    .description('package a .wasm file as an OCI image or artifact')
    .argument('<file>', 'the WebAssembly module or component')
    .requiredOption('--to <dest>', 'oci:DIR[:TAG], oci-archive:FILE[:TAG] or docker-archive:FILE[:NAME:TAG]')
    .addOption(
      new Option('--format <format>', 'packaging convention (shared/wasm-oci.md)')
        .choices(['image', 'artifact', 'istio', 'istio-oci', 'wasm-to-oci'])
        .default('image'),
    )
    .option('--name <name>', "the module's name in the image: /<name>.wasm (default: the file's base name)")
    .option('--platform <os/arch>', 'platform to record (default: wasip1/wasm, wasip2/wasm for a component)')
    .option('--annotation <k=v>', 'manifest annotation (repeatable)', collect)
    .option('--label <k=v>', 'config label (repeatable)', collect)
    .option('--env <k=v>', 'environment variable in the config (repeatable)', collect)
    .option('--created <rfc3339>', 'creation time (default: SOURCE_DATE_EPOCH, else the epoch)')
    .option('--runtime-config <file>', 'Istio runtime config JSON (istio, istio-oci)')
    .addHelpText(
      'after',
      examples([
        'kiln package hello.wasm --to oci:./out:hello',
        'kiln package hello.wasm --format artifact --to oci-archive:./hello.tar',
        'kiln package hello.wasm --platform linux/amd64 --to docker-archive:./hello.tar:hello:1',
      ]),
    )
    .action(async (file: string, opts, cmd: Command) => {
      const out = new Output(globals(cmd));
      const kiln = await import('../index.js');
      keyValues(opts.env, '--env'); // checked here; the config keeps the K=V list as given
      const result = await kiln.pack({
        file,
        to: opts.to,
        format: opts.format,
        name: opts.name,
        platform: opts.platform ? kiln.parsePlatform(opts.platform) : undefined,
        annotations: keyValues(opts.annotation, '--annotation'),
        labels: keyValues(opts.label, '--label'),
        env: opts.env,
        created: opts.created,
        runtimeConfig: opts.runtimeConfig,
      });
      if (out.flags.json) return out.json({ ...result });
      out.info(
        `packaged ${file} (${result.wasm.kind}, ${kiln.formatPlatform(result.platform)}) as ${result.format} to ${result.destination}`,
      );
      out.data(result.descriptor.digest);
    });

  program
    .command('inspect')
    .description('show the manifest, config, platform and layers of an image')
    .argument('<image>', 'oci:DIR[:TAG], oci-archive:FILE[:TAG] or docker-archive:FILE[:NAME:TAG]')
    .option('--raw', 'print the manifest (or index) exactly as stored')
    .option('--config', 'print the config')
    .option('--platform <os/arch>', 'choose this platform from an index')
    .addHelpText(
      'after',
      examples([
        'kiln inspect oci:./out:hello',
        'kiln inspect oci:./out:hello --json',
        'kiln inspect oci-archive:./app.tar --platform wasip1/wasm --config',
      ]),
    )
    .action(async (image: string, opts, cmd: Command) => {
      const out = new Output(globals(cmd));
      const kiln = await import('../index.js');
      const platform = opts.platform ? kiln.parsePlatform(opts.platform) : undefined;
      const result = await kiln.inspect(image, { platform });
      if (opts.raw) return void process.stdout.write(result.raw);
      if (opts.config) {
        if (!result.rawConfig)
          throw new KilnError(
            'E_USAGE',
            `${image} is an index; choose an image with --platform to see its config`,
          );
        return out.json(JSON.parse(result.rawConfig.toString('utf8')));
      }
      const { raw: _raw, rawConfig: _rc, ...data } = result;
      if (out.flags.json) return out.json(data);
      const { renderInspect } = await import('./render-inspect.js');
      out.data(renderInspect(result));
    });

  program
    .command('run')
    .description('run a WebAssembly image or .wasm file with WASI (preview 1)')
    .argument('<image>', 'an image (oci:..., oci-archive:..., docker-archive:...) or a .wasm file')
    .argument('[args...]', 'arguments for the module (after --)')
    .option('--dir <host[:guest]>', 'give the module a host directory (repeatable)', collect)
    .option('--env <k=v>', 'environment variable (repeatable)', collect)
    .option('--platform <os/arch>', 'choose this platform from an index (default: the wasm one)')
    .addHelpText(
      'after',
      examples([
        'kiln run oci:./out:hello -- a b',
        'kiln run hello.wasm --env GREETING=hi -- world',
        'kiln run oci:./out:hello --dir ./data:/data -- /data/input.txt',
      ]),
    )
    .action(async (image: string, args: string[], opts) => {
      const kiln = await import('../index.js');
      const platform = opts.platform ? kiln.parsePlatform(opts.platform) : undefined;
      process.exitCode = await kiln.runWasm(image, { args, env: opts.env, dirs: opts.dir, platform });
    });

  program
    .command('copy')
    .description('copy an image or index between transports')
    .argument('<src>', 'source image')
    .argument('<dst>', 'destination')
    .option('--platform <os/arch>', 'copy only this platform out of an index')
    .addHelpText(
      'after',
      examples([
        'kiln copy oci:./out:hello oci-archive:./hello.tar',
        'kiln copy oci-archive:./app.tar oci:./layout:app',
      ]),
    )
    .action(async (src: string, dst: string, opts, cmd: Command) => {
      const out = new Output(globals(cmd));
      const kiln = await import('../index.js');
      const platform = opts.platform ? kiln.parsePlatform(opts.platform) : undefined;
      const result = await kiln.copy(src, dst, { platform });
      if (out.flags.json) return out.json(result);
      out.info(`copied ${result.blobsCopied} blobs (${result.blobsSkipped} already there) to ${dst}`);
      out.data(result.descriptor.digest);
    });

  return program;
}

function silenceExperimentalWasi(debug: boolean): void {
  // Node 20 prints an ExperimentalWarning for WASI on every `kiln run`; users did not ask for it.
  process.removeAllListeners('warning');
  process.on('warning', (w) => {
    if (w.name === 'ExperimentalWarning' && !debug) return;
    process.stderr.write(`${w.name}: ${w.message}\n`);
  });
}

export async function main(argv: string[]): Promise<number> {
  // Read before parsing, so errors from the parser itself honour them; the module's own
  // arguments after `--` are not kiln's.
  const own = argv.includes('--') ? argv.slice(0, argv.indexOf('--')) : argv;
  const flags: GlobalFlags = {
    json: own.includes('--json'),
    debug: own.includes('--debug'),
    quiet: own.includes('--quiet') || own.includes('-q'),
  };
  silenceExperimentalWasi(flags.debug);
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  });
  const program = buildProgram();
  try {
    await program.parseAsync(argv, { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    return reportError(err, flags);
  }
}

function reportError(err: unknown, flags: GlobalFlags): number {
  if (err instanceof CommanderError) {
    if (
      err.code === 'commander.helpDisplayed' ||
      err.code === 'commander.version' ||
      err.code === 'commander.help'
    )
      return 0;
    const message = err.message.replace(/^error: /, '');
    if (flags.json) process.stdout.write(`${JSON.stringify({ error: { code: 'E_USAGE', message } })}\n`);
    else process.stderr.write(`${red('kiln:')} ${message}\n(run with --help for usage)\n`);
    return 2;
  }
  if (err instanceof KilnError) {
    if (flags.json) process.stdout.write(`${JSON.stringify({ error: err.toJSON() })}\n`);
    else {
      process.stderr.write(
        `${red('kiln:')} ${err.message} ${flags.debug ? '' : `(${err.code})`}\n`.replace(' \n', '\n'),
      );
      if (err.hint) process.stderr.write(`  hint: ${err.hint}\n`);
    }
    if (flags.debug) process.stderr.write(`${redact(describeCause(err))}\n`);
    return err.code === 'E_USAGE' ? 2 : 1;
  }
  // Not a KilnError: a bug in kiln. Say so, and show the stack only with --debug.
  const e = err as Error;
  if (flags.json)
    process.stdout.write(
      `${JSON.stringify({ error: { code: 'E_INTERNAL', message: redact(String(e?.message ?? e)) } })}\n`,
    );
  else process.stderr.write(`${red('kiln: internal error:')} ${redact(String(e?.message ?? e))}\n`);
  if (flags.debug) process.stderr.write(`${redact(String(e?.stack ?? ''))}\n`);
  else if (!flags.json)
    process.stderr.write('  (run with --debug for details; this is a bug in kiln, please report it)\n');
  return 1;
}

function describeCause(err: Error): string {
  const lines = [
    `${err.name} [${(err as KilnError).code}]: ${err.message}`,
    err.stack?.split('\n').slice(1).join('\n') ?? '',
  ];
  let cause = err.cause as Error | undefined;
  while (cause) {
    lines.push(`caused by: ${cause.stack ?? String(cause)}`);
    cause = cause.cause as Error | undefined;
  }
  return lines.join('\n');
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`kiln: ${redact(String(err))}\n`);
    process.exitCode = 1;
  },
);
