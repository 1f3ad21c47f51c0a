/**
 * The CLI: the program, its global options and the commands, and how a run ends (exit code, error
 * lines). src/cli/bin.ts is the bin's entry and loads this module for everything but --version.
 */
import { Command, CommanderError } from 'commander';
import { KilnError, redact } from '../errors.js';
import { collect } from './common.js';
import { CliRun } from './context.js';
import { type GlobalFlags, red } from './output.js';
import { VERSION } from './version.js';

/** What a command module exports: it adds its command(s) to the program. */
interface CommandModule {
  register(program: Command): void;
}

/**
 * Every command module, in the order `kiln --help` lists them, with the top-level command names it
 * registers. A run that names one of them loads only that module (the others' code, and commander's
 * work of setting up ~25 commands, are start-up time the run does not need); --help, a mistyped
 * name or no command at all get every one (the command list, "did you mean").
 */
const COMMANDS: [names: string[], load: () => Promise<CommandModule>][] = [
  [['compile'], () => import('./commands/compile.js')],
  [['build'], () => import('./commands/build.js')],
  [['package'], () => import('./commands/package.js')],
  [['componentize'], () => import('./commands/componentize.js')],
  [['inspect'], () => import('./commands/inspect.js')],
  [['check'], () => import('./commands/check.js')],
  [['run'], () => import('./commands/run.js')],
  [['copy', 'digest', 'tags'], () => import('./commands/copy.js')],
  [['export'], () => import('./commands/export.js')],
  [['unpack'], () => import('./commands/unpack.js')],
  [['append'], () => import('./commands/append.js')],
  [['mutate'], () => import('./commands/mutate.js')],
  [['diff'], () => import('./commands/diff.js')],
  [['flatten'], () => import('./commands/flatten.js')],
  [['merge'], () => import('./commands/merge.js')],
  [['rebase'], () => import('./commands/rebase.js')],
  [['index'], () => import('./commands/index-create.js')],
  [['image'], () => import('./commands/image.js')],
  [['sbom'], () => import('./commands/sbom.js')],
  [['keygen'], () => import('./commands/keygen.js')],
  [['sign'], () => import('./commands/sign.js')],
  [['attest'], () => import('./commands/attest.js')],
  [['verify'], () => import('./commands/verify.js')],
  [['toolchain'], () => import('./commands/toolchain.js')],
  [['login', 'logout'], () => import('./commands/login.js')],
];

/** The global options that take a value (as separate words): the command name is not one. */
const VALUED = new Set(['--creds', '--insecure-registry', '--ca-cert', '-j', '--jobs']);

/** The command a command line names (its first word that is neither an option nor a global option's value). */
export function commandNamed(argv: string[]): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const word = argv[i]!;
    if (word === '--') return undefined;
    if (!word.startsWith('-')) return word;
    if (VALUED.has(word)) i++;
  }
  return undefined;
}

/** The command modules a run needs: the one its command line names, else all of them. */
function modulesFor(argv: string[]): Promise<CommandModule[]> {
  const name = commandNamed(argv);
  const named = name === undefined ? undefined : COMMANDS.find(([names]) => names.includes(name));
  return Promise.all((named ? [named] : COMMANDS).map(([, load]) => load()));
}

/**
 * The program, with the commands `argv` needs (all of them without `argv`).
 * Exit codes: 0 success, 1 failure, 2 usage error; `kiln run` exits with the module's code.
 */
export async function buildProgram(run: CliRun = new CliRun(), argv?: string[]): Promise<Command> {
  const modules = modulesFor(argv ?? []);
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

  for (const m of await modules) m.register(program);
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
  try {
    const program = await buildProgram(run, argv);
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

/** Runs kiln with `argv` (the words after `kiln`) and sets the exit code. */
export function runCli(argv: string[]): Promise<void> {
  return main(argv).then(
    (code) => {
      process.exitCode = code;
    },
    (err) => {
      process.stderr.write(`kiln: ${redact(String(err))}\n`);
      process.exitCode = 1;
    },
  );
}
