/**
 * Running a guest (a component, or a preview 1 module made into one) in a child Node process under
 * Node's permission model:
 *
 * - `--experimental-permission`, reading allowed only in the transpiled code's directory and the
 *   preopens, writing only in writable preopens; no `--allow-child-process`, no `--allow-worker`,
 *   no `--allow-addons`;
 * - its environment empty (the guest sees only the env it is given, through WASI);
 * - no network: Node 20's permission model does not restrict sockets, so the host in the child
 *   (`guest.ts`) has none to give: wasi:sockets calls fail with `access-denied`, and components
 *   importing wasi:http are refused before they start;
 * - `--max-memory`: V8's heap (`--max-old-space-size`) and every wasm memory (`--wasm-max-mem-pages`);
 * - `--timeout`: the child is killed.
 *
 * The transpiled component (jco `transpile`, instantiation mode) is cached in kiln's store under
 * `components/<sha256 of the guest>-<runtime>/`, so only the first run of a guest pays for it.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { ioError, KilnError } from '../errors.js';
import { storeDir as kilnStoreDir } from '../store/kiln-store.js';
import type { WasmInfo } from '../wasm/inspect.js';
import { componentize } from './componentize.js';
import { type GuestConfig, type GuestResult, guestMain } from './guest.js';
import { jcoVersion, loadJco } from './jco.js';

export interface GuestOptions {
  args?: string[];
  /** K=V pairs; later ones win. */
  env?: string[];
  /** Host directories the guest may open: `HOST`, `HOST:GUEST`, `HOST:GUEST:ro` (read-only) or `...:rw`. */
  dirs?: string[];
  stdin?: number;
  stdout?: number;
  stderr?: number;
  /** MiB for the child's JS heap and for each wasm memory. */
  maxMemoryMiB?: number;
  /** Milliseconds the guest may run before it is killed (E_TIMEOUT). */
  timeoutMs?: number;
  /** Allow network: not provided by kiln's guest host yet; refused rather than ignored. */
  allowNet?: boolean;
  /** kiln's store directory (KILN_HOME); default from the environment. */
  storeDir?: string;
  signal?: AbortSignal;
}

/** The WASI 0.2 interfaces the guest host gives (any 0.2.x version). */
export const PROVIDED_INTERFACES: readonly string[] = [
  'wasi:cli/environment',
  'wasi:cli/exit',
  'wasi:cli/stdin',
  'wasi:cli/stdout',
  'wasi:cli/stderr',
  'wasi:cli/terminal-input',
  'wasi:cli/terminal-output',
  'wasi:cli/terminal-stdin',
  'wasi:cli/terminal-stdout',
  'wasi:cli/terminal-stderr',
  'wasi:clocks/monotonic-clock',
  'wasi:clocks/wall-clock',
  'wasi:filesystem/types',
  'wasi:filesystem/preopens',
  'wasi:io/error',
  'wasi:io/poll',
  'wasi:io/streams',
  'wasi:random/random',
  'wasi:random/insecure',
  'wasi:random/insecure-seed',
  'wasi:sockets/network',
  'wasi:sockets/instance-network',
  'wasi:sockets/tcp',
  'wasi:sockets/tcp-create-socket',
  'wasi:sockets/udp',
  'wasi:sockets/udp-create-socket',
  'wasi:sockets/ip-name-lookup',
];

/** Parses `--dir HOST[:GUEST[:ro|rw]]`; the guest path defaults to the host path as written. */
export function parsePreopen(spec: string): { host: string; guest: string; writable: boolean } {
  let rest = spec;
  let writable = true;
  const mode = /:(ro|rw)$/.exec(rest);
  if (mode && rest.indexOf(':') !== mode.index) {
    writable = mode[1] === 'rw';
    rest = rest.slice(0, mode.index);
  }
  const i = rest.indexOf(':');
  const host = i === -1 ? rest : rest.slice(0, i);
  const guest = i === -1 ? rest : rest.slice(i + 1);
  if (host === '' || guest === '')
    throw new KilnError('E_USAGE', `--dir takes HOST[:GUEST[:ro]], got '${spec}'`, {
      hint: 'for example --dir ./data:/data or --dir ./data:/data:ro',
    });
  return { host: path.resolve(host), guest, writable };
}

function envPairs(pairs: string[]): [string, string][] {
  const env = new Map<string, string>();
  for (const pair of pairs) {
    const i = pair.indexOf('=');
    if (i <= 0) throw new KilnError('E_USAGE', `environment entries are K=V, got '${pair}'`);
    env.delete(pair.slice(0, i));
    env.set(pair.slice(0, i), pair.slice(i + 1));
  }
  return [...env];
}

const sha256 = (data: Uint8Array | string) => createHash('sha256').update(data).digest('hex');

/**
 * What makes a cache entry: the transpiler and the host. A new jco or a changed host gets a new entry
 * (old ones stay until `components/` is removed; each is a few hundred KiB).
 */
let runtimeTag: string | undefined;
function runtimeOf(jcoVersion: string): string {
  runtimeTag ??= sha256(
    `jco ${jcoVersion}\n${JSON.stringify(TRANSPILE_OPTIONS)}\n${guestMain.toString()}`,
  ).slice(0, 16);
  return runtimeTag;
}

const TRANSPILE_OPTIONS = {
  name: 'component',
  instantiation: 'async',
  noTypescript: true,
  nodejsCompat: false,
  tlaCompat: false,
  base64Cutoff: 0,
  quiet: true,
};

/** The child's entry module: the host's source, given its dependencies. */
function runScript(): string {
  return [
    "// Written by kiln: runs the transpiled component in component.js with kiln's guest host.",
    "import * as fs from 'node:fs';",
    "import { randomBytes } from 'node:crypto';",
    "import { instantiate } from './component.js';",
    `const guestMain = ${guestMain.toString()};`,
    'await guestMain({ fs, randomBytes, instantiate, dir: new URL(".", import.meta.url).pathname.replace(/\\/$/, "") });',
    '',
  ].join('\n');
}

export interface PreparedGuest {
  /** The cache entry: component.js, its core modules, run.mjs. */
  dir: string;
  /** Whether this call transpiled (false: the entry was already in the store). */
  transpiled: boolean;
  preview1: boolean;
}

/**
 * The transpiled guest in the store, made on first use. A preview 1 module is made into a component
 * first (command adapter); the entry is keyed by the digest of what was given.
 */
export async function prepareGuest(
  bytes: Uint8Array,
  label: string,
  info: WasmInfo,
  storeDir: string = kilnStoreDir(),
): Promise<PreparedGuest> {
  const preview1 = info.kind === 'module';
  const root = path.join(storeDir, 'components');
  const dir = path.join(root, `${sha256(bytes)}-${runtimeOf(jcoVersion())}`);
  if (await exists(path.join(dir, 'run.mjs'))) return { dir, transpiled: false, preview1 };
  const jco = await loadJco();
  const component = preview1 ? (await componentize(bytes, label, info)).bytes : bytes;
  let out: Awaited<ReturnType<typeof jco.transpile>>;
  try {
    out = await jco.transpile(component, TRANSPILE_OPTIONS);
  } catch (err) {
    throw new KilnError(
      'E_NOT_RUNNABLE',
      `${label} could not be transpiled: ${String((err as Error)?.message ?? err).split('\n')[0]}`,
      { cause: err },
    );
  }
  const tmp = path.join(root, `.tmp-${randomBytes(6).toString('hex')}`);
  try {
    await fs.mkdir(tmp, { recursive: true });
    for (const [name, data] of Object.entries(out.files)) {
      if (!name.endsWith('.js') && !name.endsWith('.wasm')) continue;
      if (name.includes('/')) continue;
      await fs.writeFile(path.join(tmp, name), data);
    }
    await fs.writeFile(path.join(tmp, 'run.mjs'), runScript());
    await fs.rename(tmp, dir).catch(async (err) => {
      // Another kiln made the same entry first: use theirs.
      if (!['EEXIST', 'ENOTEMPTY'].includes((err as NodeJS.ErrnoException).code ?? '')) throw err;
    });
  } catch (err) {
    throw ioError(err, dir);
  } finally {
    await fs.rm(tmp, { recursive: true, force: true });
  }
  return { dir, transpiled: true, preview1 };
}

async function exists(p: string): Promise<boolean> {
  return fs.stat(p).then(
    () => true,
    () => false,
  );
}

/** Refuses, before anything starts, a guest the host cannot run: no wasi:cli/run, or imports it lacks. */
export function checkRunnable(info: WasmInfo, label: string): void {
  if (info.kind === 'module') {
    if (info.role !== 'command')
      throw new KilnError(
        'E_NOT_RUNNABLE',
        `${label} is a ${info.role} module with no _start export; there is nothing to run`,
      );
    const foreign = info.imports.filter((i) => !i.startsWith('wasi_snapshot_preview1#'));
    if (foreign.length)
      throw new KilnError(
        'E_NOT_RUNNABLE',
        `${label} imports ${foreign.slice(0, 3).join(', ')}${foreign.length > 3 ? ', ...' : ''}, which WASI preview 1 does not provide`,
      );
    return;
  }
  if (info.role !== 'command') {
    const exported = info.exports.length ? info.exports.join(', ') : 'nothing';
    throw new KilnError('E_NOT_RUNNABLE', `${label} exports no wasi:cli/run (it exports ${exported})`, {
      hint: 'kiln run runs commands: components that export wasi:cli/run',
    });
  }
  const unknown = info.imports.filter((name) => !PROVIDED_INTERFACES.includes(name.replace(/@.*$/, '')));
  if (unknown.length)
    throw new KilnError(
      'E_NOT_RUNNABLE',
      `${label} imports ${unknown.slice(0, 3).join(', ')}${unknown.length > 3 ? ', ...' : ''}, which kiln run does not provide`,
      {
        hint: 'kiln run gives wasi:cli, wasi:clocks, wasi:filesystem, wasi:io, wasi:random (and refuses sockets)',
      },
    );
}

/** Node 20 splits --allow-fs-* values at commas. */
function grantable(p: string, what: string): string {
  if (p.includes(','))
    throw new KilnError(
      'E_USAGE',
      `${what} ${p} has a comma in its path, which Node's permission model cannot allow`,
      {
        hint: 'use a directory whose path has no comma',
      },
    );
  return p;
}

/**
 * Runs a prepared guest in the sandbox and returns its exit code. A trap is E_TRAP, a timeout
 * E_TIMEOUT; the guest's stdio are the given fds.
 */
export async function runGuest(
  prepared: PreparedGuest,
  argv0: string,
  options: GuestOptions = {},
): Promise<number> {
  if (options.allowNet)
    throw new KilnError('E_UNSUPPORTED', '--allow-net: kiln run has no network for guests yet', {
      hint: 'leave out --allow-net; wasi:sockets calls fail with access-denied',
    });
  const preopens: GuestConfig['preopens'] = [];
  for (const spec of options.dirs ?? []) {
    const { host, guest, writable } = parsePreopen(spec);
    let real: string;
    try {
      real = await fs.realpath(host);
      if (!(await fs.stat(real)).isDirectory())
        throw new KilnError('E_USAGE', `--dir ${spec}: ${host} is not a directory`);
    } catch (err) {
      if (err instanceof KilnError) throw err;
      throw ioError(err, host);
    }
    preopens.push({ host: grantable(real, '--dir'), guest, writable });
  }
  const config: GuestConfig = {
    args: [argv0, ...(options.args ?? [])],
    env: envPairs(options.env ?? []),
    preopens,
    preview1: prepared.preview1,
  };
  const flags = [
    '--experimental-permission',
    `--allow-fs-read=${grantable(prepared.dir, 'kiln store')}`,
    ...preopens.map((p) => `--allow-fs-read=${p.host}`),
    ...preopens.filter((p) => p.writable).map((p) => `--allow-fs-write=${p.host}`),
    '--no-warnings',
    '--disable-proto=throw',
  ];
  if (options.maxMemoryMiB !== undefined) {
    const mib = Math.floor(options.maxMemoryMiB);
    if (!(mib >= 1))
      throw new KilnError('E_USAGE', `--max-memory takes a size in MiB, got ${options.maxMemoryMiB}`);
    flags.push(`--max-old-space-size=${Math.max(mib, 16)}`, `--wasm-max-mem-pages=${mib * 16}`);
  }
  const child = spawn(process.execPath, [...flags, path.join(prepared.dir, 'run.mjs')], {
    cwd: prepared.dir,
    env: {},
    stdio: [options.stdin ?? 0, options.stdout ?? 1, options.stderr ?? 2, 'pipe'],
  });
  const control = child.stdio[3] as import('node:net').Socket;
  let reply = '';
  control.setEncoding('utf8');
  control.on('data', (d: string) => {
    reply += d;
  });
  control.on('error', () => {});
  control.write(`${JSON.stringify(config)}\n`);

  let timedOut = false;
  const timer =
    options.timeoutMs !== undefined
      ? setTimeout(() => {
          timedOut = true;
          child.kill('SIGKILL');
        }, options.timeoutMs)
      : undefined;
  const onAbort = () => child.kill('SIGKILL');
  options.signal?.addEventListener('abort', onAbort, { once: true });
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (c, s) => resolve([c, s]));
  }).finally(() => {
    clearTimeout(timer);
    options.signal?.removeEventListener('abort', onAbort);
  });

  if (timedOut)
    throw new KilnError(
      'E_TIMEOUT',
      `${argv0} ran longer than --timeout ${options.timeoutMs! / 1000}s and was stopped`,
    );
  if (options.signal?.aborted) throw options.signal.reason;
  const line = reply.trim().split('\n').pop();
  let result: GuestResult | undefined;
  try {
    result = line ? (JSON.parse(line) as GuestResult) : undefined;
  } catch {}
  if (result && 'exit' in result) return result.exit;
  if (result && 'trap' in result) throw new KilnError('E_TRAP', `${argv0} trapped: ${result.trap}`);
  if (result && 'error' in result)
    throw new KilnError('E_ENGINE', `${argv0} could not run: ${result.error.split('\n')[0]}`);
  const how = signal ? `was killed by ${signal}` : `exited with ${code}`;
  throw new KilnError('E_TRAP', `${argv0}: the sandbox process ${how} before the guest finished`, {
    hint:
      options.maxMemoryMiB !== undefined
        ? `it may have run out of memory (--max-memory ${options.maxMemoryMiB})`
        : 'its stderr above says why',
  });
}
