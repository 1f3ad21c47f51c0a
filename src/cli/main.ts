#!/usr/bin/env node
import { Command, CommanderError } from 'commander';
import { KilnError, redact } from '../errors.js';
import { register as registerAppend } from './commands/append.js';
import { register as registerAttest } from './commands/attest.js';
import { register as registerBuild } from './commands/build.js';
import { register as registerCheck } from './commands/check.js';
import { register as registerCompile } from './commands/compile.js';
import { register as registerComponentize } from './commands/componentize.js';
import { register as registerCopy } from './commands/copy.js';
import { register as registerDiff } from './commands/diff.js';
import { register as registerExport } from './commands/export.js';
import { register as registerFlatten } from './commands/flatten.js';
import { register as registerImage } from './commands/image.js';
import { register as registerIndexCreate } from './commands/index-create.js';
import { register as registerInspect } from './commands/inspect.js';
import { register as registerKeygen } from './commands/keygen.js';
import { register as registerLogin } from './commands/login.js';
import { register as registerMerge } from './commands/merge.js';
import { register as registerMutate } from './commands/mutate.js';
import { register as registerPackage } from './commands/package.js';
import { register as registerRebase } from './commands/rebase.js';
import { register as registerRun } from './commands/run.js';
import { register as registerSbom } from './commands/sbom.js';
import { register as registerSign } from './commands/sign.js';
import { register as registerToolchain } from './commands/toolchain.js';
import { register as registerUnpack } from './commands/unpack.js';
import { register as registerVerify } from './commands/verify.js';
import { collect } from './common.js';
import { CliRun } from './context.js';
import { type GlobalFlags, red } from './output.js';

const VERSION = '0.1.0';

/** Exit codes: 0 success, 1 failure, 2 usage error; `kiln run` exits with the module's code. */
export function buildProgram(run: CliRun = new CliRun()): Command {
  const program = new Command('kiln')
    .description('Daemonless builder of OCI images, WebAssembly first')
    .version(VERSION, '-V, --version', 'print the version')
    .option('--json', 'machine-readable output on stdout')
    .option('--debug', 'details on stderr (never secrets)')
    .option('-q, --quiet', 'no status lines')
    .option('--creds <user:password>', 'registry credentials (else KILN_AUTH, then docker config.json)')
    .option(
      '--insecure-registry <host>',
      'allow plain HTTP and unchecked TLS for this registry (repeatable)',
      collect,
    )
    .option('--ca-cert <file>', 'trust this CA certificate (PEM) for registries (repeatable)', collect)
    .option('-j, --jobs <n>', 'blobs in flight at once', '4')
    // Every subcommand's --help lists these global options too (commands inherit this setting).
    .configureHelp({ showGlobalOptions: true })
    .configureOutput({ outputError: () => {} })
    .exitOverride()
    // Every command runs with one context (registry settings, connections, the store, the signal),
    // built once from the global flags; commands take it with contextOf(cmd).
    .hook('preAction', (_program, action) => run.start(program, action));

  registerCompile(program);
  registerBuild(program);
  registerPackage(program);
  registerComponentize(program);
  registerInspect(program);
  registerCheck(program);
  registerRun(program);
  registerCopy(program);
  registerExport(program);
  registerUnpack(program);
  registerAppend(program);
  registerMutate(program);
  registerDiff(program);
  registerFlatten(program);
  registerMerge(program);
  registerRebase(program);
  registerIndexCreate(program);
  registerImage(program);
  registerSbom(program);
  registerKeygen(program);
  registerSign(program);
  registerAttest(program);
  registerVerify(program);
  registerToolchain(program);
  registerLogin(program);
  return program;
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
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  });
  const run = new CliRun();
  const program = buildProgram(run);
  try {
    await program.parseAsync(argv, { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    // Interrupted: the signal ends kiln (finish), as it would have without a handler; no message.
    if (run.interrupted) return 1;
    return reportError(err, flags);
  } finally {
    run.finish();
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
    // Commander appends its suggestion on a line of its own: "\n(Did you mean inspect?)".
    const [message = '', ...more] = err.message.replace(/^error: /, '').split('\n');
    const suggestion = more.join(' ').trim();
    if (flags.json)
      process.stdout.write(
        `${JSON.stringify({ error: { code: 'E_USAGE', message, ...(suggestion ? { hint: suggestion.replace(/^\((.*)\)$/, '$1') } : {}) } })}\n`,
      );
    // The same shape as every other error: one line ending in its code, the suggestion on a line
    // of its own, then a hint.
    else
      process.stderr.write(
        `${red('kiln:')} ${message} (E_USAGE)\n${suggestion ? `  ${suggestion}\n` : ''}  hint: run with --help for usage\n`,
      );
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
