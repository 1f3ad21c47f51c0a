/**
 * Tells a WebAssembly core module from a component and reads what kiln needs to package it: WASI
 * flavour, command/reactor role, imports and exports (see docs/formats.md, "Module or component, and the
 * platform"). Core modules are read by the engine (`WebAssembly.Module`); components by a minimal
 * reader of the component-model binary format that looks only at the outermost component's import
 * (id 10) and export (id 11) sections and skips every other section by its size.
 */
import { KilnError } from '../errors.js';

export type WasmKind = 'module' | 'component';

/** What a `.wasm` is: module or component, its imports and exports. */
export interface WasmInfo {
  kind: WasmKind;
  /** preview1: core module importing wasi_snapshot_preview1 (or wasi_unstable); preview2: component importing any `wasi:` interface. */
  wasi: 'preview1' | 'preview2' | null;
  /** core: `_start` export -> command, `_initialize` -> reactor; component: exports `wasi:cli/run@...` -> command. */
  role: 'command' | 'reactor' | 'library';
  /** core: "module#name", de-duplicated; component: the names of top-level imports (e.g. "wasi:cli/environment@0.2.0"). */
  imports: string[];
  /** core: export names; component: the names of top-level exports. */
  exports: string[];
  size: number;
}

const MAGIC = [0x00, 0x61, 0x73, 0x6d];
const PREVIEW1_MODULES = new Set(['wasi_snapshot_preview1', 'wasi_unstable']);

/** Inspects a .wasm file's bytes. Throws `KilnError` `E_NOT_WASM` for anything that is not a readable module or component. */
export function inspectWasm(bytes: Uint8Array, fileName?: string): WasmInfo {
  const label = fileName ?? 'input';
  checkMagic(bytes, label);
  const b4 = bytes[4]!;
  const b5 = bytes[5]!;
  const b6 = bytes[6]!;
  const b7 = bytes[7]!;
  if (b6 === 0x00 && b7 === 0x00) {
    if (b4 !== 0x01 || b5 !== 0x00) {
      throw notWasm(
        `${label} is a WebAssembly module of unsupported version ${hex([b4, b5, b6, b7])}, expected 01 00 00 00`,
      );
    }
    return inspectCore(bytes, label);
  }
  if (b6 === 0x01 && b7 === 0x00) {
    if (b4 !== 0x0d || b5 !== 0x00) {
      throw notWasm(
        `${label} is a WebAssembly component of unsupported version ${hex([b4, b5])}, expected 0d 00`,
      );
    }
    return inspectComponent(bytes, label);
  }
  throw notWasm(`${label} has an unknown WebAssembly layer (bytes 4-7 are ${hex([b4, b5, b6, b7])})`);
}

/** The OCI `os` for an inspected file: components are wasip2, core modules wasip1. */
export function defaultOs(info: WasmInfo): 'wasip1' | 'wasip2' {
  return info.kind === 'component' ? 'wasip2' : 'wasip1';
}

function notWasm(message: string, cause?: unknown): KilnError {
  return new KilnError('E_NOT_WASM', message, {
    hint: 'give a .wasm file built for WASI (a core module or a component)',
    cause,
  });
}

function checkMagic(bytes: Uint8Array, label: string): void {
  if (bytes.length === 0) throw notWasm(`${label} is not a WebAssembly file (it is empty)`);
  const head = bytes.subarray(0, 4);
  if (head.length < 4 || !MAGIC.every((m, i) => head[i] === m)) {
    const what = head.length < 4 ? `only ${head.length} byte${head.length === 1 ? '' : 's'}:` : 'starts with';
    throw notWasm(`${label} is not a WebAssembly file (${what} '${show(head)}', expected '\\0asm')`);
  }
  if (bytes.length < 8) {
    throw notWasm(
      `${label} is not a valid WebAssembly file: it ends inside the 8-byte header (${bytes.length} bytes)`,
    );
  }
}

/** Shows bytes as text the way a user would recognise them: printable ASCII as is, the rest escaped. */
function show(bytes: Uint8Array): string {
  let s = '';
  for (const c of bytes) {
    if (c === 0) s += '\\0';
    else if (c === 0x5c) s += '\\\\';
    else if (c === 0x27) s += "\\'";
    else if (c >= 0x20 && c < 0x7f) s += String.fromCharCode(c);
    else s += `\\x${c.toString(16).padStart(2, '0')}`;
  }
  return s;
}

function hex(bytes: number[]): string {
  return bytes.map((b) => b.toString(16).padStart(2, '0')).join(' ');
}

// ---------------------------------------------------------------------------------------------------
// Core modules

function inspectCore(bytes: Uint8Array, label: string): WasmInfo {
  let mod: WebAssembly.Module;
  try {
    mod = new WebAssembly.Module(bytes);
  } catch (err) {
    const reason = (err instanceof Error ? err.message : String(err)).replace(
      /^WebAssembly\.Module\(\):\s*/,
      '',
    );
    throw notWasm(`${label} is not a valid WebAssembly module: ${reason}`, err);
  }
  const imports: string[] = [];
  const seen = new Set<string>();
  let preview1 = false;
  for (const imp of WebAssembly.Module.imports(mod)) {
    if (PREVIEW1_MODULES.has(imp.module)) preview1 = true;
    const key = `${imp.module}#${imp.name}`;
    if (!seen.has(key)) {
      seen.add(key);
      imports.push(key);
    }
  }
  const exports = WebAssembly.Module.exports(mod).map((e) => e.name);
  const role = exports.includes('_start')
    ? 'command'
    : exports.includes('_initialize')
      ? 'reactor'
      : 'library';
  return { kind: 'module', wasi: preview1 ? 'preview1' : null, role, imports, exports, size: bytes.length };
}

// ---------------------------------------------------------------------------------------------------
// Components

/** A structural error inside the binary; turned into a KilnError naming the file. */
class Malformed extends Error {
  constructor(
    message: string,
    readonly offset: number,
  ) {
    super(message);
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Reads the component binary format within [pos, end); every read is bounds-checked. */
class Reader {
  constructor(
    private readonly bytes: Uint8Array,
    public pos: number,
    readonly end: number,
  ) {}

  byte(what: string): number {
    if (this.pos >= this.end) throw new Malformed(`unexpected end while reading ${what}`, this.pos);
    return this.bytes[this.pos++]!;
  }

  /** Unsigned LEB128, at most 5 bytes and 32 bits. */
  u32(what: string): number {
    const start = this.pos;
    let result = 0;
    for (let i = 0; i < 5; i++) {
      const b = this.byte(what);
      if (i === 4 && b > 0x0f) throw new Malformed(`${what} does not fit in 32 bits`, start);
      result += (b & 0x7f) * 2 ** (7 * i);
      if ((b & 0x80) === 0) return result;
    }
    throw new Malformed(`${what} is longer than 5 bytes`, start);
  }

  name(what: string): string {
    const len = this.u32(`length of ${what}`);
    const start = this.pos;
    if (len > this.end - start) throw new Malformed(`${what} of ${len} bytes runs past its section`, start);
    this.pos += len;
    try {
      return utf8.decode(this.bytes.subarray(start, start + len));
    } catch {
      throw new Malformed(`${what} is not valid UTF-8`, start);
    }
  }
}

const SECTION_NAMES = [
  'custom',
  'core module',
  'core instance',
  'core type',
  'component',
  'instance',
  'alias',
  'type',
  'canon',
  'start',
  'import',
  'export',
  'value',
];

function inspectComponent(bytes: Uint8Array, label: string): WasmInfo {
  const imports: string[] = [];
  const exports: string[] = [];
  try {
    const top = new Reader(bytes, 8, bytes.length);
    while (top.pos < top.end) {
      const id = top.byte('section id');
      const size = top.u32('section size');
      const start = top.pos;
      const sectionName = SECTION_NAMES[id] ?? `unknown (id ${id})`;
      if (size > top.end - start) {
        throw new Malformed(`${sectionName} section of ${size} bytes runs past the end of the file`, start);
      }
      const end = start + size;
      if (id === 10 || id === 11) {
        const r = new Reader(bytes, start, end);
        const count = r.u32(`${sectionName} count`);
        for (let i = 0; i < count; i++) {
          if (id === 10) {
            imports.push(externName(r, 'import name'));
            externDesc(r);
          } else {
            exports.push(externName(r, 'export name'));
            sortIdx(r);
            const hasDesc = r.byte('export type flag');
            if (hasDesc === 0x01) externDesc(r);
            else if (hasDesc !== 0x00)
              throw new Malformed(`bad export type flag 0x${hex([hasDesc])}`, r.pos - 1);
          }
        }
        if (r.pos !== end)
          throw new Malformed(`${sectionName} section has ${end - r.pos} unread bytes`, r.pos);
      }
      // Every other section, nested components (id 4) and core modules (id 1) included, is skipped whole.
      top.pos = end;
    }
  } catch (err) {
    if (err instanceof Malformed) {
      throw notWasm(
        `${label} is not a valid WebAssembly component: ${err.message} (at byte ${err.offset})`,
        err,
      );
    }
    throw err;
  }
  const wasi = imports.some((n) => n.startsWith('wasi:')) ? 'preview2' : null;
  const role = exports.some((n) => n === 'wasi:cli/run' || n.startsWith('wasi:cli/run@'))
    ? 'command'
    : 'library';
  return { kind: 'component', wasi, role, imports, exports, size: bytes.length };
}

/**
 * importname' / exportname': a prefix byte then the name. 0x00 and 0x01 carry just the name (0x01 is
 * what older encoders wrote for interface names); 0x02 adds a vector of options (implements,
 * version suffix), which are read and left out of the returned name.
 */
function externName(r: Reader, what: string): string {
  const at = r.pos;
  const prefix = r.byte(what);
  if (prefix > 0x02) throw new Malformed(`unknown ${what} prefix 0x${hex([prefix])}`, at);
  const n = r.name(what);
  if (prefix === 0x02) {
    const count = r.u32(`${what} option count`);
    for (let i = 0; i < count; i++) {
      const opt = r.byte(`${what} option`);
      if (opt > 0x01) throw new Malformed(`unknown ${what} option 0x${hex([opt])}`, r.pos - 1);
      r.name(`${what} option`);
    }
  }
  return n;
}

/** externdesc: a sort byte and what that sort carries. */
function externDesc(r: Reader): void {
  const at = r.pos;
  const sort = r.byte('extern kind');
  switch (sort) {
    case 0x00: // core module: 0x11 then a core type index
      if (r.byte('core sort') !== 0x11) throw new Malformed('extern kind core is not a core module', at);
      r.u32('core type index');
      return;
    case 0x01: // func
    case 0x04: // component
    case 0x05: // instance
      r.u32('type index');
      return;
    case 0x02:
      // value (a gated 🪙 feature): Binary.md now writes a valuebound here, but wasm-tools (jco) writes a bare
      // valtype, one byte or a type index; both fit one LEB128 read, so read the form tools emit.
      r.u32('value type');
      return;
    case 0x03: {
      // type: typebound (0x00 eq typeidx | 0x01 sub resource)
      const bound = r.byte('type bound');
      if (bound === 0x00) r.u32('type index');
      else if (bound !== 0x01) throw new Malformed(`bad type bound 0x${hex([bound])}`, r.pos - 1);
      return;
    }
    default:
      throw new Malformed(`unknown extern kind 0x${hex([sort])}`, at);
  }
}

/** sortidx: a sort (0x00 then a core sort byte, or 0x01-0x05) then an index. */
function sortIdx(r: Reader): void {
  const at = r.pos;
  const sort = r.byte('export kind');
  if (sort === 0x00) r.byte('core sort');
  else if (sort > 0x05) throw new Malformed(`unknown export kind 0x${hex([sort])}`, at);
  r.u32('export index');
}
