/**
 * KilnContext: what an operation runs with, passed explicitly instead of process-wide settings.
 *
 * - registry settings and credentials (`RegistryOptions`: --creds, --insecure-registry, --ca-cert,
 *   the retry policy, debug lines), which an operation may override per side (copy's source and
 *   destination credentials);
 * - the connection pool: the per-host Registry objects (pings, tokens) and the HTTP clients with
 *   their keep-alive sockets, closed by `close()`;
 * - the store: kiln's own OCI layout (KILN_HOME), opened on first use by `store()`;
 * - an AbortSignal that stops every operation run with it (the CLI aborts it on SIGINT/SIGTERM);
 * - an event sink: debug lines, and the events of operations not given an onEvent of their own;
 * - memos: what is worth asking once per context (the sandbox runner's probe of bwrap).
 *
 * Library operations take it as `{ context }`; without one they make a context for that call and
 * close it when the call is done. Two contexts share nothing: operations with different credentials
 * run side by side in one process.
 */
import { setMaxListeners } from 'node:events';
import { KilnError } from './errors.js';
import type { RegistryPool } from './registry/pool.js';
import type { Registry, RegistryOptions } from './registry/registry.js';
import type { Repository } from './registry/repository.js';
import { openStore } from './store/kiln-store.js';
import type { OciLayout } from './store/layout.js';

/**
 * What operations report to a context's sink: `{ type: 'debug', message }` lines, and an
 * operation's own events (copy progress, build steps) when it was given no onEvent.
 */
export interface KilnEvent {
  readonly type: string;
  readonly [key: string]: unknown;
}

/** Settings of a new context (`createContext`): registry options and credentials, the store, a signal, an event sink. */
export interface ContextOptions {
  /** How registries are reached: credentials, insecure hosts, CA files, retry policy, debug lines. */
  registry?: RegistryOptions;
  /** Stops every operation run with this context (requests in flight, builds, uploads). */
  signal?: AbortSignal;
  /** Receives debug lines and the events of operations given no onEvent of their own. */
  onEvent?: (event: KilnEvent) => void;
  /** kiln's store: an open layout, or its directory; default KILN_HOME, else the XDG cache dir. */
  store?: OciLayout | string;
  /** The environment credentials, insecure hosts, SSL_CERT_FILE and the store are read from; default process.env. */
  env?: NodeJS.ProcessEnv;
}

/** A reason to abort a context with when the process gets a signal: the signal's name goes with it. */
export class Interrupted extends KilnError {
  constructor(readonly signal: NodeJS.Signals) {
    super('E_ABORTED', `interrupted (${signal})`);
  }
}

/** What operations run with: registry settings, the connection pool, the store, an abort signal, an event sink. Close it when done. */
export class KilnContext {
  /** The registry settings every registry of this context is reached with (an operation may override some). */
  readonly registryOptions: RegistryOptions;
  readonly signal: AbortSignal;
  readonly env: NodeJS.ProcessEnv;
  /** True when no signal was given: this context's own never aborts. */
  private readonly quiet: boolean;
  private readonly sink: ((event: KilnEvent) => void) | undefined;
  private readonly storeOption: OciLayout | string | undefined;
  private opened: Promise<OciLayout> | undefined;
  private pool: RegistryPool | undefined;
  private readonly memos = new Map<string, unknown>();

  constructor(options: ContextOptions = {}) {
    this.env = options.env ?? process.env;
    this.sink = options.onEvent;
    const registry = { ...options.registry };
    registry.env ??= options.env;
    if (!registry.debug && this.sink) registry.debug = (message) => this.emit({ type: 'debug', message });
    this.registryOptions = registry;
    this.quiet = options.signal === undefined;
    this.signal = options.signal ?? unlimited(new AbortController().signal);
    this.storeOption = options.store;
  }

  /**
   * The Registry for `host`, from this context's pool; `overrides` on top of the context's settings.
   * (Async: the registry client loads only when a registry is used, for start-up time.)
   */
  async registry(host: string, overrides?: RegistryOptions): Promise<Registry> {
    const pool = await this.connections();
    if (!overrides) return pool.registry(host, this.registryOptions);
    // Only what the override sets: `{ creds: undefined }` keeps the context's credentials.
    const set = Object.entries(overrides).filter(([, v]) => v !== undefined);
    return pool.registry(host, { ...this.registryOptions, ...Object.fromEntries(set) });
  }

  /** A repository (`registry` host and `repository` name, as in a parsed reference) on this context's pool. */
  async repository(
    ref: { registry: string; repository: string },
    overrides?: RegistryOptions,
  ): Promise<Repository> {
    const [registry, { Repository }] = await Promise.all([
      this.registry(ref.registry, overrides),
      import('./registry/repository.js'),
    ]);
    return new Repository(registry, ref.repository);
  }

  /** kiln's store, opened (and created) on first use. */
  store(): Promise<OciLayout> {
    if (!this.opened) {
      const s = this.storeOption;
      this.opened =
        s === undefined
          ? openStore(this.env)
          : typeof s === 'string'
            ? openStore({ ...this.env, KILN_HOME: s })
            : Promise.resolve(s);
      this.opened.catch(() => {
        this.opened = undefined;
      });
    }
    return this.opened;
  }

  /** Tells the sink, if any. */
  emit(event: KilnEvent): void {
    this.sink?.(event);
  }

  /** The sink as an operation's onEvent, when it was given none of its own. */
  events<E extends KilnEvent>(own?: (event: E) => void): ((event: E) => void) | undefined {
    return own ?? (this.sink ? (event: E) => this.emit(event) : undefined);
  }

  /** This context's signal, and `signal` too when given: either aborts. */
  signalWith(signal?: AbortSignal): AbortSignal {
    if (!signal || signal === this.signal) return this.signal;
    if (this.quiet) return signal;
    return unlimited(AbortSignal.any([this.signal, signal]));
  }

  /** `make()` once per key for the life of this context. */
  memo<T>(key: string, make: () => T): T {
    if (!this.memos.has(key)) this.memos.set(key, make());
    return this.memos.get(key) as T;
  }

  /** Closes every pooled connection; a later use opens new ones. The store needs no closing. Idempotent. */
  close(): void {
    this.pool?.close();
    this.pool = undefined;
  }

  private async connections(): Promise<RegistryPool> {
    if (!this.pool) {
      const { RegistryPool } = await import('./registry/pool.js');
      this.pool ??= new RegistryPool();
    }
    return this.pool;
  }
}

/**
 * Every request, wait and runner of an operation listens on its signal while it is in flight: a
 * signal kiln makes may have any number of listeners (no MaxListenersExceededWarning).
 */
function unlimited(signal: AbortSignal): AbortSignal {
  setMaxListeners(0, signal);
  return signal;
}

/** A context with these options (see KilnContext). Close it when done with it. */
export function createContext(options: ContextOptions = {}): KilnContext {
  return new KilnContext(options);
}

/**
 * The context an operation runs with: the caller's, or one made for this call. `release()` closes
 * only the latter; call it when the operation is done.
 */
export function useContext(context: KilnContext | undefined): { ctx: KilnContext; release: () => void } {
  if (context) return { ctx: context, release: () => {} };
  const ctx = new KilnContext();
  return { ctx, release: () => ctx.close() };
}

/** Runs `fn` with the caller's context, or with one made for this call and closed after it. */
export async function withContext<T>(
  context: KilnContext | undefined,
  fn: (ctx: KilnContext) => Promise<T>,
): Promise<T> {
  const { ctx, release } = useContext(context);
  try {
    return await fn(ctx);
  } finally {
    release();
  }
}
