/**
 * A tiny encoder of WebAssembly binaries for tests: just enough of the core format (types, imports of
 * functions, functions with empty bodies, memory, exports) and of the component format (raw sections
 * and import/export entries) to build small fixtures by hand.
 */

/** Unsigned LEB128. */
export function u32(n: number): number[] {
  const out: number[] = [];
  let v = n >>> 0;
  do {
    let byte = v & 0x7f;
    v >>>= 7;
    if (v !== 0) byte |= 0x80;
    out.push(byte);
  } while (v !== 0);
  return out;
}

/** A name: its UTF-8 length as u32, then the bytes. */
export function name(s: string): number[] {
  const b = new TextEncoder().encode(s);
  return [...u32(b.length), ...b];
}

/** A vector: its element count as u32, then the elements. */
export function vec(items: number[][]): number[] {
  return [...u32(items.length), ...items.flat()];
}

/** A section: id byte, u32 size, contents. */
export function section(id: number, contents: number[]): number[] {
  return [id, ...u32(contents.length), ...contents];
}

export const CORE_PREAMBLE = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
export const COMPONENT_PREAMBLE = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];

const I32 = 0x7f;

export interface CoreFuncType {
  params: number;
  results: number;
}

export interface CoreModuleSpec {
  /** Function imports, all of type `(func (param i32 x params) (result i32 x results))`. */
  imports?: Array<{ module: string; name: string; type?: CoreFuncType }>;
  /** Defined functions (empty bodies, no params, no results), exported under each given name. */
  funcExports?: string[];
  /** A memory of one page, exported under this name. */
  memoryExport?: string;
}

/** Encodes a valid core module from the spec. */
export function coreModule(spec: CoreModuleSpec): Uint8Array {
  const imports = spec.imports ?? [];
  const funcs = spec.funcExports ?? [];
  const types: CoreFuncType[] = [{ params: 0, results: 0 }];
  const typeIndex = (t: CoreFuncType): number => {
    const i = types.findIndex((x) => x.params === t.params && x.results === t.results);
    if (i >= 0) return i;
    types.push(t);
    return types.length - 1;
  };
  const importEntries = imports.map((imp) => [
    ...name(imp.module),
    ...name(imp.name),
    0x00,
    ...u32(typeIndex(imp.type ?? { params: 0, results: 0 })),
  ]);
  const bytes: number[] = [...CORE_PREAMBLE];
  bytes.push(
    ...section(
      1,
      vec(
        types.map((t) => [0x60, ...vec(Array(t.params).fill([I32])), ...vec(Array(t.results).fill([I32]))]),
      ),
    ),
  );
  if (importEntries.length > 0) bytes.push(...section(2, vec(importEntries)));
  if (funcs.length > 0) bytes.push(...section(3, vec(funcs.map(() => u32(0)))));
  if (spec.memoryExport !== undefined) bytes.push(...section(5, vec([[0x00, ...u32(1)]])));
  const exports = funcs.map((n, i) => [...name(n), 0x00, ...u32(imports.length + i)]);
  if (spec.memoryExport !== undefined) exports.push([...name(spec.memoryExport), 0x02, ...u32(0)]);
  if (exports.length > 0) bytes.push(...section(7, vec(exports)));
  // Each body: size 2, no locals, `end`.
  if (funcs.length > 0) bytes.push(...section(10, vec(funcs.map(() => [0x02, 0x00, 0x0b]))));
  return Uint8Array.from(bytes);
}

/** A component import entry: `importname'` (prefix 0x00) then an instance externdesc `0x05 typeidx`. */
export function componentImport(n: string, typeIdx = 0, prefix = 0x00): number[] {
  return [prefix, ...name(n), 0x05, ...u32(typeIdx)];
}

/**
 * A component export entry: `exportname'`, sortidx (instance sort 0x05, index) and an optional externdesc.
 */
export function componentExport(n: string, idx = 0, withDesc = false): number[] {
  return [0x00, ...name(n), 0x05, ...u32(idx), ...(withDesc ? [0x01, 0x05, ...u32(0)] : [0x00])];
}

/** A component: the preamble then the given raw sections. */
export function component(...sections: number[][]): Uint8Array {
  return Uint8Array.from([...COMPONENT_PREAMBLE, ...sections.flat()]);
}
