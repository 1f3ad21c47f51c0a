/**
 * The CLI's side of KilnContext: one context per run, built from the global flags before the
 * command's action and passed to every operation; SIGINT and SIGTERM turned into its abort signal.
 */
import { setMaxListeners } from 'node:events';
import type { Command } from 'commander';
import type { KilnContext } from '../api/context.js';
import { registryOptions } from './common.js';

/** Where the root command keeps the run's context (a value, not a flag). */
const CONTEXT_KEY = 'kilnContext';

/**
 * How long a SIGINT/SIGTERM waits for the command to stop (a build's container removed, an upload
 * cancelled) before the signal goes through anyway. A second signal goes through at once.
 */
const SIGNAL_CLEANUP_MS = 10_000;

/** The context the command runs with (built by CliRun.start before any action). */
export function contextOf(cmd: Command): KilnContext {
  let root = cmd;
  while (root.parent) root = root.parent;
  const context = root.getOptionValue(CONTEXT_KEY) as KilnContext | undefined;
  if (!context) throw new Error('internal: the command has no context');
  return context;
}

/** One run of the CLI: its context, and what a signal does meanwhile. */
export class CliRun {
  private readonly controller = new AbortController();
  private context: KilnContext | undefined;
  private signalled: NodeJS.Signals | undefined;
  private listening = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly onSignal = (sig: NodeJS.Signals): void => {
    if (this.signalled) {
      this.raise();
      return;
    }
    this.signalled = sig;
    void import('../api/context.js').then(({ Interrupted }) => this.controller.abort(new Interrupted(sig)));
    this.timer = setTimeout(() => this.raise(), SIGNAL_CLEANUP_MS);
    this.timer.unref();
  };

  /** The signal that interrupted this run, if one did. */
  get interrupted(): NodeJS.Signals | undefined {
    return this.signalled;
  }

  /** Builds the context from `action`'s global flags (the preAction hook), and listens for signals. */
  async start(program: Command, action: Command): Promise<void> {
    const { createContext } = await import('../api/context.js');
    // Every request in flight listens on it: any number may (no MaxListenersExceededWarning).
    setMaxListeners(0, this.controller.signal);
    this.context = createContext({ registry: registryOptions(action), signal: this.controller.signal });
    program.setOptionValue(CONTEXT_KEY, this.context);
    // `kiln run` may run the module on this thread (node:wasi in the single executable): a handler
    // could not run before the module ends, so there the signals keep their default action.
    if (action.name() === 'run') return;
    process.on('SIGINT', this.onSignal);
    process.on('SIGTERM', this.onSignal);
    this.listening = true;
  }

  /**
   * The command is done: closes the context's connections; after a signal, lets it take its
   * default action now (kiln ends as if it had not been listening).
   */
  finish(): void {
    this.context?.close();
    if (this.signalled) this.raise();
    else this.stopListening();
  }

  private stopListening(): void {
    if (!this.listening) return;
    this.listening = false;
    process.off('SIGINT', this.onSignal);
    process.off('SIGTERM', this.onSignal);
  }

  private raise(): void {
    clearTimeout(this.timer);
    this.stopListening();
    process.kill(process.pid, this.signalled!);
  }
}
