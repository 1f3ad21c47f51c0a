import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { isKilnError, type KilnError } from '../../src/errors.js';
import { defaultOs, inspectWasm, type WasmInfo } from '../../src/wasm/inspect.js';
import {
  COMPONENT_PREAMBLE,
  component,
  componentExport,
  componentImport,
  coreModule,
  name,
  section,
  u32,
  vec,
} from '../support/wasm-bytes.js';

const fixtures = new URL('../fixtures/wasm/', import.meta.url);
const fixture = (f: string): Uint8Array => readFileSync(new URL(f, fixtures));

interface JcoExpected {
  jco: string;
  files: Record<
    string,
    { print: { imports: string[]; exports: string[] }; wit: { imports: string[]; exports: string[] } | null }
  >;
}
const expected = JSON.parse(readFileSync(new URL('jco-expected.json', fixtures), 'utf8')) as JcoExpected;

/** Asserts that `fn` throws a KilnError E_NOT_WASM (never a RangeError or other plain error) and returns it. */
function notWasm(fn: () => unknown, message?: RegExp): KilnError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught !== undefined, 'expected an error');
  assert.ok(isKilnError(caught, 'E_NOT_WASM'), `expected E_NOT_WASM, got ${String(caught)}`);
  assert.doesNotMatch(caught.message, /\n/);
  if (message) assert.match(caught.message, message);
  return caught;
}

const fdWrite = { module: 'wasi_snapshot_preview1', name: 'fd_write', type: { params: 4, results: 1 } };
const procExit = { module: 'wasi_snapshot_preview1', name: 'proc_exit', type: { params: 1, results: 0 } };

describe('inspectWasm: core modules', () => {
  it('reads a WASI preview 1 command', () => {
    const bytes = coreModule({
      imports: [fdWrite, procExit, fdWrite],
      funcExports: ['_start'],
      memoryExport: 'memory',
    });
    const info = inspectWasm(bytes, 'app.wasm');
    assert.deepEqual(info, {
      kind: 'module',
      wasi: 'preview1',
      role: 'command',
      imports: ['wasi_snapshot_preview1#fd_write', 'wasi_snapshot_preview1#proc_exit'],
      exports: ['_start', 'memory'],
      size: bytes.length,
    } satisfies WasmInfo);
    assert.equal(defaultOs(info), 'wasip1');
  });

  it('reads a reactor, and counts wasi_unstable as preview 1', () => {
    const bytes = coreModule({
      imports: [{ module: 'wasi_unstable', name: 'fd_write', type: { params: 4, results: 1 } }],
      funcExports: ['_initialize', 'add'],
      memoryExport: 'memory',
    });
    const info = inspectWasm(bytes);
    assert.equal(info.kind, 'module');
    assert.equal(info.wasi, 'preview1');
    assert.equal(info.role, 'reactor');
    assert.deepEqual(info.imports, ['wasi_unstable#fd_write']);
    assert.deepEqual(info.exports, ['_initialize', 'add', 'memory']);
  });

  it('reads a module that uses no WASI as a library', () => {
    const bytes = coreModule({ imports: [{ module: 'env', name: 'log' }], funcExports: ['add', 'sub'] });
    const info = inspectWasm(bytes, 'lib.wasm');
    assert.equal(info.wasi, null);
    assert.equal(info.role, 'library');
    assert.deepEqual(info.imports, ['env#log']);
    assert.deepEqual(info.exports, ['add', 'sub']);
    assert.equal(defaultOs(info), 'wasip1');
  });

  it('reads the committed core fixtures', () => {
    assert.equal(inspectWasm(fixture('core-command.wasm')).role, 'command');
    assert.equal(inspectWasm(fixture('core-reactor.wasm')).role, 'reactor');
  });

  it('rejects a module that does not compile, naming the file', () => {
    const good = coreModule({ funcExports: ['_start'] });
    // Cut the last byte off: the code section now runs past the end of the file.
    const err = notWasm(() => inspectWasm(good.subarray(0, good.length - 1), 'cut.wasm'));
    assert.match(err.message, /^cut\.wasm is not a valid WebAssembly module: /);
    assert.doesNotMatch(err.message, /WebAssembly\.Module\(\)/);
  });

  it('rejects an unknown core version', () => {
    notWasm(
      () => inspectWasm(Uint8Array.from([0x00, 0x61, 0x73, 0x6d, 0x02, 0x00, 0x00, 0x00]), 'v2.wasm'),
      /version/,
    );
  });
});

describe('inspectWasm: not wasm at all', () => {
  it('names the file and what it starts with', () => {
    const err = notWasm(() => inspectWasm(new TextEncoder().encode('hello world\n'), 'hello.txt'));
    assert.equal(err.message, "hello.txt is not a WebAssembly file (starts with 'hell', expected '\\0asm')");
  });

  it('escapes bytes that are not printable', () => {
    notWasm(() => inspectWasm(Uint8Array.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0]), 'a.out'), /'\\x7fELF'/);
  });

  it('handles empty and tiny files', () => {
    notWasm(() => inspectWasm(new Uint8Array(0), 'empty.wasm'), /empty\.wasm .*empty/);
    notWasm(() => inspectWasm(Uint8Array.from([0x00, 0x61]), 'two.wasm'), /only 2 bytes: '\\0a'/);
    notWasm(() => inspectWasm(Uint8Array.from([0x00, 0x61, 0x73, 0x6d, 0x01]), 'five.wasm'), /header/);
    notWasm(() => inspectWasm(Uint8Array.from([0x00, 0x61, 0x73, 0x6d])), /^input /);
  });

  it('rejects an unknown layer', () => {
    notWasm(
      () => inspectWasm(Uint8Array.from([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x02, 0x00]), 'x.wasm'),
      /layer/,
    );
  });

  it('rejects a component of another pre-standard version', () => {
    notWasm(
      () => inspectWasm(Uint8Array.from([0x00, 0x61, 0x73, 0x6d, 0x0a, 0x00, 0x01, 0x00]), 'old.wasm'),
      /component of unsupported version 0a 00/,
    );
  });
});

describe('inspectWasm: components made by jco', () => {
  for (const [file, want] of Object.entries(expected.files)) {
    it(`${file}: top-level imports and exports match jco ${expected.jco}`, () => {
      const info = inspectWasm(fixture(file), file);
      assert.equal(info.kind, 'component');
      assert.deepEqual(info.imports, want.print.imports);
      assert.deepEqual(info.exports, want.print.exports);
      if (want.wit) {
        assert.deepEqual(info.imports, want.wit.imports);
        assert.deepEqual(info.exports, want.wit.exports);
      }
      assert.equal(defaultOs(info), 'wasip2');
    });
  }

  it('a --wasi-command component is a preview 2 command', () => {
    const bytes = fixture('component-command.wasm');
    const info = inspectWasm(bytes, 'component-command.wasm');
    assert.equal(info.wasi, 'preview2');
    assert.equal(info.role, 'command');
    assert.equal(info.size, bytes.length);
    // The adapter's core modules inside import wasi_snapshot_preview1; none of that leaks out.
    assert.ok(info.imports.every((n) => n.startsWith('wasi:')));
  });

  it('a --wasi-reactor component is a preview 2 library', () => {
    const info = inspectWasm(fixture('component-reactor.wasm'));
    assert.equal(info.wasi, 'preview2');
    assert.equal(info.role, 'library');
  });

  it('skips a nested component and its own imports and exports', () => {
    const info = inspectWasm(fixture('component-nested.wasm'));
    assert.ok(!info.imports.includes('inner-only-import'));
    assert.ok(!info.exports.includes('inner-only-export'));
    assert.equal(info.role, 'library');
  });

  it('every truncation of a real component is E_NOT_WASM, never a RangeError', () => {
    const bytes = fixture('component-command.wasm');
    // A cut exactly between two top-level sections leaves a well-formed (shorter) component: the format
    // has no overall length, so only cuts inside the header or a section can be caught.
    const boundaries = new Set<number>([8]);
    for (let pos = 8; pos < bytes.length; ) {
      pos++; // id
      let size = 0;
      for (let shift = 0; ; shift += 7) {
        const b = bytes[pos++]!;
        size += (b & 0x7f) * 2 ** shift;
        if (b < 0x80) break;
      }
      pos += size;
      boundaries.add(pos);
    }
    assert.ok(boundaries.has(bytes.length));
    let cuts = 0;
    for (let n = 0; n < bytes.length; n += n < 200 ? 1 : 7) {
      if (boundaries.has(n)) continue;
      notWasm(() => inspectWasm(bytes.subarray(0, n), 'cut.wasm'));
      cuts++;
    }
    assert.ok(cuts > 2000);
  });
});

describe('inspectWasm: hand-encoded components', () => {
  const instanceType = section(7, vec([[0x42, ...vec([])]]));

  it('reads one import and one export', () => {
    const bytes = component(
      instanceType,
      section(10, vec([componentImport('wasi:cli/environment@0.2.0')])),
      section(11, vec([componentExport('wasi:cli/run@0.2.0')])),
    );
    const info = inspectWasm(bytes, 'tiny.wasm');
    assert.deepEqual(info, {
      kind: 'component',
      wasi: 'preview2',
      role: 'command',
      imports: ['wasi:cli/environment@0.2.0'],
      exports: ['wasi:cli/run@0.2.0'],
      size: bytes.length,
    } satisfies WasmInfo);
  });

  it('reads every externdesc and sort, the 0x01 name prefix, an export type, and the 0x02 name options', () => {
    const imports = [
      [0x00, ...name('m'), 0x00, 0x11, ...u32(0)], // core module
      [0x00, ...name('f'), 0x01, ...u32(300)], // func, two-byte index
      [0x00, ...name('v'), 0x02, 0x73], // value string
      [0x00, ...name('t'), 0x03, 0x00, ...u32(1)], // type eq
      [0x00, ...name('r'), 0x03, 0x01], // type sub resource
      [0x00, ...name('c'), 0x04, ...u32(2)], // component
      componentImport('wasi:io/streams@0.2.0', 0, 0x01), // interface name with the 0x01 prefix
      [
        0x02,
        ...name('x:y/z'),
        ...vec([
          [0x00, ...name('x:y/w')],
          [0x01, ...name('-rc.1')],
        ]),
        0x05,
        0x00,
      ],
    ];
    const exports = [
      [0x00, ...name('core-mod'), 0x00, 0x11, ...u32(0), 0x00],
      [0x00, ...name('run'), 0x01, ...u32(0), 0x01, 0x01, ...u32(3)], // func with its type given
      componentExport('wasi:http/incoming-handler@0.2.0', 1, true),
    ];
    const bytes = component(
      section(0, [...name('producers'), 1, 2, 3]),
      instanceType,
      section(10, vec(imports)),
      section(11, vec(exports)),
      section(0, name('trailing-custom')),
    );
    const info = inspectWasm(bytes);
    assert.deepEqual(info.imports, ['m', 'f', 'v', 't', 'r', 'c', 'wasi:io/streams@0.2.0', 'x:y/z']);
    assert.deepEqual(info.exports, ['core-mod', 'run', 'wasi:http/incoming-handler@0.2.0']);
    assert.equal(info.wasi, 'preview2');
    assert.equal(info.role, 'library');
  });

  it('reads only the outermost component when a nested one has imports and exports', () => {
    const inner = [
      ...COMPONENT_PREAMBLE,
      ...section(10, vec([componentImport('wasi:inner/only@1.0.0')])),
      ...section(11, vec([componentExport('wasi:cli/run@0.2.0')])),
    ];
    const bytes = component(section(4, inner), section(11, vec([componentExport('outer')])));
    const info = inspectWasm(bytes);
    assert.deepEqual(info.imports, []);
    assert.deepEqual(info.exports, ['outer']);
    assert.equal(info.wasi, null);
    assert.equal(info.role, 'library');
  });

  it('a component with no sections has nothing', () => {
    const info = inspectWasm(component(), 'empty-component.wasm');
    assert.deepEqual(info, {
      kind: 'component',
      wasi: null,
      role: 'library',
      imports: [],
      exports: [],
      size: 8,
    });
  });

  it('rejects a component truncated mid-section', () => {
    const bytes = component(
      section(
        10,
        vec([componentImport('wasi:cli/environment@0.2.0'), componentImport('wasi:cli/exit@0.2.0')]),
      ),
    );
    notWasm(
      () => inspectWasm(bytes.subarray(0, bytes.length - 5), 'half.wasm'),
      /^half\.wasm is not a valid WebAssembly component: import section of \d+ bytes runs past the end of the file/,
    );
    // Cut inside the section header itself (the size LEB128 has its continuation bit set).
    notWasm(() => inspectWasm(Uint8Array.from([...COMPONENT_PREAMBLE, 10, 0x80]), 'h.wasm'), /section size/);
  });

  it('rejects malformed contents that fit their section', () => {
    const cases: Array<[string, number[], RegExp]> = [
      ['count larger than the entries', section(10, [...u32(2), ...componentImport('a')]), /unexpected end/],
      ['name longer than the section', section(10, [1, 0x00, ...u32(50), 0x61]), /runs past its section/],
      ['unknown name prefix', section(10, vec([[0x07, ...name('a'), 0x01, 0x00]])), /prefix 0x07/],
      ['unknown extern kind', section(10, vec([[0x00, ...name('a'), 0x09, 0x00]])), /extern kind 0x09/],
      [
        'core extern kind that is not a module',
        section(10, vec([[0x00, ...name('a'), 0x00, 0x00, 0x00]])),
        /core/,
      ],
      ['bad type bound', section(10, vec([[0x00, ...name('a'), 0x03, 0x05]])), /type bound/],
      ['bad export kind', section(11, vec([[0x00, ...name('a'), 0x09, 0x00, 0x00]])), /export kind/],
      ['bad export type flag', section(11, vec([[0x00, ...name('a'), 0x01, 0x00, 0x02]])), /type flag/],
      ['trailing bytes in the section', section(11, [...vec([componentExport('a')]), 0xff]), /unread bytes/],
      ['name that is not UTF-8', section(10, vec([[0x00, 2, 0xc3, 0x28, 0x01, 0x00]])), /UTF-8/],
      ['LEB128 over 32 bits', section(10, [0xff, 0xff, 0xff, 0xff, 0x7f]), /32 bits/],
      ['LEB128 over 5 bytes', section(10, [0x80, 0x80, 0x80, 0x80, 0x80, 0x00]), /32 bits|5 bytes/],
    ];
    for (const [what, sec, message] of cases) {
      const err = notWasm(() => inspectWasm(component(sec), 'bad.wasm'), message);
      assert.match(err.message, /^bad\.wasm is not a valid WebAssembly component: .* \(at byte \d+\)$/, what);
    }
  });

  it('never throws anything but E_NOT_WASM on damaged or random input', () => {
    const base = fixture('component-nested.wasm');
    const onlyNotWasm = (bytes: Uint8Array): void => {
      try {
        inspectWasm(bytes, 'fuzz.wasm');
      } catch (err) {
        if (!isKilnError(err, 'E_NOT_WASM')) throw err;
      }
    };
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(base.length - 9), fc.nat(255)), { minLength: 1, maxLength: 4 }),
        (edits) => {
          const bytes = Uint8Array.from(base);
          for (const [at, value] of edits) bytes[8 + at] = value;
          onlyNotWasm(bytes);
        },
      ),
      { numRuns: 2000 },
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (tail) => {
        onlyNotWasm(Uint8Array.from([...COMPONENT_PREAMBLE, ...tail]));
      }),
      { numRuns: 2000 },
    );
  });
});
