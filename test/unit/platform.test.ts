import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  formatPlatform,
  hostPlatform,
  isWasmPlatform,
  normalizePlatform,
  type Platform,
  parsePlatform,
  platformMatches,
} from '../../src/oci/platform.js';
import { assertRefusal, thrown } from '../support/errors.js';

const valid: [string, Platform][] = [
  ['linux/amd64', { os: 'linux', architecture: 'amd64' }],
  ['linux/arm64', { os: 'linux', architecture: 'arm64' }],
  ['linux/arm64/v8', { os: 'linux', architecture: 'arm64', variant: 'v8' }],
  ['linux/arm/v6', { os: 'linux', architecture: 'arm', variant: 'v6' }],
  ['linux/amd64/v3', { os: 'linux', architecture: 'amd64', variant: 'v3' }],
  ['linux/aarch64', { os: 'linux', architecture: 'aarch64' }],
  ['linux/x86_64', { os: 'linux', architecture: 'x86_64' }],
  ['Linux/AMD64', { os: 'linux', architecture: 'amd64' }],
  ['windows/amd64', { os: 'windows', architecture: 'amd64' }],
  ['darwin/arm64', { os: 'darwin', architecture: 'arm64' }],
  ['linux/s390x', { os: 'linux', architecture: 's390x' }],
  ['linux/ppc64le', { os: 'linux', architecture: 'ppc64le' }],
  ['linux/riscv64', { os: 'linux', architecture: 'riscv64' }],
  ['wasip1/wasm', { os: 'wasip1', architecture: 'wasm' }],
  ['wasip2/wasm', { os: 'wasip2', architecture: 'wasm' }],
  ['wasi/wasm', { os: 'wasi', architecture: 'wasm' }],
  ['js/wasm', { os: 'js', architecture: 'wasm' }],
];

const invalid: [string, string][] = [
  ['', 'the platform is empty'],
  [' ', 'the platform is empty'],
  ['linux', 'expected os/arch[/variant]'],
  ['linux/arm/v7/extra', 'expected os/arch[/variant]'],
  ['/amd64', 'the operating system is empty'],
  ['linux/', 'the architecture is empty'],
  ['linux/arm/', 'the variant is empty'],
  ['linux/amd 64', 'the architecture "amd 64" may only contain'],
  ['lin*ux/amd64', 'the operating system "lin*ux" may only contain'],
  ['linux/arm/v7+', 'the variant "v7+" may only contain'],
  ['wasm/wasip1', 'the operating system comes first'],
  ['wasip1/amd64', 'wasip1 runs only on the wasm architecture'],
  ['wasi/arm64', 'wasi runs only on the wasm architecture'],
];

const caught = thrown;

describe('parsePlatform', () => {
  for (const [input, want] of valid) {
    test(`parses ${JSON.stringify(input)}`, () => {
      const p = parsePlatform(input);
      assert.deepEqual(p, want);
      assert.equal(formatPlatform(p), input.toLowerCase());
    });
  }
  for (const [input, fragment] of invalid) {
    test(`rejects ${JSON.stringify(input)}`, () => {
      assertRefusal(() => parsePlatform(input), 'E_BAD_PLATFORM', input, fragment);
    });
  }
  test('hints at the fix for wasm mistakes', () => {
    assert.equal(caught(() => parsePlatform('wasm/wasip2')).hint, 'try "wasip2/wasm"');
    assert.equal(caught(() => parsePlatform('wasip1/amd64')).hint, 'try "wasip1/wasm"');
  });
  test('round-trips generated platforms', () => {
    const part = fc.stringMatching(/^[a-z0-9_.-]{1,10}$/);
    fc.assert(
      fc.property(part, part, fc.option(part, { nil: undefined }), (os, architecture, variant) => {
        fc.pre(!['wasi', 'wasip1', 'wasip2', 'wasm'].includes(os));
        const p: Platform = variant === undefined ? { os, architecture } : { os, architecture, variant };
        assert.deepEqual(parsePlatform(formatPlatform(p)), p);
      }),
    );
  });
});

describe('formatPlatform', () => {
  test('leaves out os.version and os.features', () => {
    const p: Platform = {
      os: 'windows',
      architecture: 'amd64',
      'os.version': '10.0.17763.1',
      'os.features': ['win32k'],
    };
    assert.equal(formatPlatform(p), 'windows/amd64');
  });
  test('leaves out an empty variant', () => {
    assert.equal(formatPlatform({ os: 'linux', architecture: 'arm', variant: '' }), 'linux/arm');
  });
});

describe('normalizePlatform', () => {
  const cases: [string, string][] = [
    ['linux/amd64', 'linux/amd64'],
    ['linux/x86_64', 'linux/amd64'],
    ['linux/x86-64', 'linux/amd64'],
    ['linux/amd64/v1', 'linux/amd64'],
    ['linux/amd64/v3', 'linux/amd64/v3'],
    ['linux/i386', 'linux/386'],
    ['linux/aarch64', 'linux/arm64'],
    ['linux/arm64/v8', 'linux/arm64'],
    ['linux/aarch64/8', 'linux/arm64'],
    ['linux/arm64/v9', 'linux/arm64/v9'],
    ['linux/arm', 'linux/arm/v7'],
    ['linux/arm/7', 'linux/arm/v7'],
    ['linux/arm/6', 'linux/arm/v6'],
    ['linux/arm/v5', 'linux/arm/v5'],
    ['linux/armhf', 'linux/arm/v7'],
    ['linux/armel', 'linux/arm/v6'],
    ['macos/arm64', 'darwin/arm64'],
    ['wasip1/wasm', 'wasip1/wasm'],
    ['linux/riscv64', 'linux/riscv64'],
  ];
  for (const [input, want] of cases) {
    test(`${input} -> ${want}`, () => {
      assert.equal(formatPlatform(normalizePlatform(parsePlatform(input))), want);
    });
  }
  test('keeps os.version and os.features, drops an empty variant, does not mutate', () => {
    const p: Platform = {
      os: 'Windows',
      architecture: 'AMD64',
      variant: '',
      'os.version': '10.0',
      'os.features': ['x'],
    };
    const n = normalizePlatform(p);
    assert.deepEqual(n, { os: 'windows', architecture: 'amd64', 'os.version': '10.0', 'os.features': ['x'] });
    assert.notEqual(n['os.features'], p['os.features']);
    assert.equal(p.os, 'Windows');
  });
  test('is idempotent', () => {
    for (const [input] of cases) {
      const once = normalizePlatform(parsePlatform(input));
      assert.deepEqual(normalizePlatform(once), once);
    }
  });
});

describe('platformMatches', () => {
  const cases: [string, string, boolean][] = [
    ['linux/amd64', 'linux/amd64', true],
    ['linux/amd64', 'linux/x86_64', true],
    ['linux/x86_64', 'linux/amd64', true],
    ['linux/amd64', 'linux/amd64/v3', true],
    ['linux/amd64/v3', 'linux/amd64', false],
    ['linux/amd64/v1', 'linux/amd64', true],
    ['linux/arm64', 'linux/arm64/v8', true],
    ['linux/arm64/v8', 'linux/aarch64', true],
    ['linux/arm64', 'linux/amd64', false],
    ['linux/amd64', 'windows/amd64', false],
    ['linux/arm', 'linux/arm/v7', true],
    ['linux/arm/v7', 'linux/arm', true],
    ['linux/arm/v6', 'linux/arm/v7', false],
    ['linux/arm', 'linux/arm/v6', false],
    ['linux/arm/v6', 'linux/armel', true],
    ['wasip1/wasm', 'wasip1/wasm', true],
    ['wasip1/wasm', 'wasip2/wasm', false],
    ['wasi/wasm', 'wasip1/wasm', false],
  ];
  for (const [want, have, expected] of cases) {
    test(`${want} ${expected ? 'matches' : 'does not match'} ${have}`, () => {
      assert.equal(platformMatches(parsePlatform(want), parsePlatform(have)), expected);
    });
  }
});

describe('hostPlatform', () => {
  test('uses Go names and is normalised', () => {
    const p = hostPlatform();
    assert.deepEqual(normalizePlatform(p), p);
    assert.ok(!['win32', 'sunos'].includes(p.os), p.os);
    assert.ok(!['x64', 'ia32', 'mipsel'].includes(p.architecture), p.architecture);
    assert.deepEqual(parsePlatform(formatPlatform(p)), p);
  });
  test('maps this machine', { skip: process.platform !== 'linux' || process.arch !== 'x64' }, () => {
    assert.deepEqual(hostPlatform(), { os: 'linux', architecture: 'amd64' });
  });
});

describe('isWasmPlatform', () => {
  const cases: [string, boolean][] = [
    ['wasip1/wasm', true],
    ['wasip2/wasm', true],
    ['wasi/wasm', true],
    ['js/wasm', true],
    ['linux/amd64', false],
    ['linux/arm64', false],
  ];
  for (const [input, expected] of cases) {
    test(`${input} is ${expected ? '' : 'not '}wasm`, () => {
      assert.equal(isWasmPlatform(parsePlatform(input)), expected);
    });
  }
});
