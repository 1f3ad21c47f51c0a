/**
 * One command's action, without the preamble every command repeated: its Output (from the global
 * flags), its context and flags, and the end (JSON, or the human lines and the digest on stdout).
 */
import type { Command } from 'commander';
import type { KilnContext } from '../api/context.js';
import type { Platform } from '../api/oci.js';
import type { KilnError } from '../errors.js';
import { globals } from './common.js';
import { contextOf } from './context.js';
import { Output } from './output.js';

/** A command's flags as commander parses them: untyped, as in commander's own action signature. */
// biome-ignore lint/suspicious/noExplicitAny: commander gives options untyped; a command reads its own
export type Flags = Record<string, any>;

/** What an action runs with. */
export interface ActionScope<F> {
  out: Output;
  /** The run's context (built before any action; read only when used). */
  readonly context: KilnContext;
  /** The command's own flags, as commander parsed them. */
  flags: F;
  cmd: Command;
  /** The command's `--platform <os/arch>`, parsed; undefined when not given. */
  platform(): Promise<Platform | undefined>;
}

/**
 * What an action ends with: `json` is printed with --json; otherwise `human()` writes its lines
 * (stderr) and `data`, when given, is what goes to stdout (a digest, most often).
 */
export interface Reply {
  json: unknown;
  human?: () => void;
  data?: string;
  /**
   * A failure found once the output was written (unsafe entries left out): with --json it is the
   * reply's `error` and exit code 1; otherwise it is thrown after the human lines and the data.
   */
  error?: KilnError;
}

/**
 * A commander action: `program.command('x').argument('<src>').action(action(async ({ out, context,
 * flags }, src) => ({ json, human, data })))`. An action that returns nothing has written its
 * output itself.
 */
export function action<F = Flags, A extends unknown[] = string[]>(
  run: (scope: ActionScope<F>, ...args: A) => Promise<Reply | undefined>,
): (...params: unknown[]) => Promise<void> {
  return async (...params) => {
    const cmd = params[params.length - 1] as Command;
    const flags = params[params.length - 2] as F;
    const args = params.slice(0, -2) as A;
    const out = new Output(globals(cmd));
    const scope: ActionScope<F> = {
      out,
      flags,
      cmd,
      get context() {
        return contextOf(cmd);
      },
      async platform() {
        const value = (flags as { platform?: unknown }).platform;
        if (typeof value !== 'string' || value === '') return undefined;
        return (await import('../api/oci.js')).parsePlatform(value);
      },
    };
    const reply = await run(scope, ...args);
    if (!reply) return;
    const { error } = reply;
    if (out.flags.json) {
      out.json(error ? { ...(reply.json as object), error: error.toJSON() } : reply.json);
      if (error) process.exitCode = 1;
      return;
    }
    reply.human?.();
    if (reply.data !== undefined) out.data(reply.data);
    if (error) throw error;
  };
}
