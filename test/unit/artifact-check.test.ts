import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import {
  artifactMismatch,
  checkArtifact,
  describeHeader,
  resolveTarget,
  WASM_TARGET,
} from '../../src/build/artifact-check.js';
import { defaultOutputName, targetEnv } from '../../src/build/compile.js';
import { isKilnError } from '../../src/errors.js';
import { hostPlatform, parsePlatform } from '../../src/oci/platform.js';

/** The first 20 bytes of an ELF header: class, byte order and e_machine are what the check reads. */
function elf(machine: number, bits: 32 | 64 = 64, littleEndian = true): Buffer {
  const b = Buffer.alloc(64);
  b.writeUInt32BE(0x7f454c46, 0);
  b[4] = bits === 64 ? 2 : 1;
  b[5] = littleEndian ? 1 : 2;
  b[6] = 1;
  if (littleEndian) {
    b.writeUInt16LE(2, 16);
    b.writeUInt16LE(machine, 18);
  } else {
    b.writeUInt16BE(2, 16);
    b.writeUInt16BE(machine, 18);
  }
  return b;
}

const WASM_MODULE = Buffer.from([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]);
const WASM_COMPONENT = Buffer.from([0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00]);

const target = (p: string) => resolveTarget(parsePlatform(p));

describe('artifact check', () => {
  const work = mkdtempSync(join(tmpdir(), 'kiln-artifact-check-'));
  after(() => rmSync(work, { recursive: true, force: true }));

  // [platform, triple, the ELF that fits]
  const table: [string, string, Buffer][] = [
    ['linux/amd64', 'x86_64-linux-gnu', elf(62)],
    ['linux/amd64/v3', 'x86_64-linux-gnu', elf(62)],
    ['linux/arm64', 'aarch64-linux-gnu', elf(183)],
    ['linux/arm64/v8', 'aarch64-linux-gnu', elf(183)],
    ['linux/aarch64', 'aarch64-linux-gnu', elf(183)],
    ['linux/arm/v7', 'arm-linux-gnueabihf', elf(40, 32)],
    ['linux/arm', 'arm-linux-gnueabihf', elf(40, 32)],
    ['linux/arm/v6', 'arm-linux-gnueabi', elf(40, 32)],
    ['linux/386', 'i686-linux-gnu', elf(3, 32)],
    ['linux/ppc64le', 'powerpc64le-linux-gnu', elf(21)],
    ['linux/s390x', 's390x-linux-gnu', elf(22, 64, false)],
    ['linux/riscv64', 'riscv64-linux-gnu', elf(243)],
  ];
  const others = [elf(62), elf(183), elf(40, 32), elf(3, 32), elf(21), elf(22, 64, false), elf(243)];

  for (const [platform, triple, fits] of table) {
    test(`${platform}: triple ${triple}; only its own ELF passes`, () => {
      const t = target(platform);
      assert.equal(t.wasm, false);
      assert.equal(t.triple, triple);
      assert.equal(artifactMismatch(fits, t), undefined);
      for (const other of others) {
        if (other.equals(fits)) continue;
        assert.match(artifactMismatch(other, t) ?? '', /ELF for/, `${describeHeader(other)} refused`);
      }
      assert.equal(artifactMismatch(WASM_MODULE, t), 'a WebAssembly module');
      assert.equal(artifactMismatch(Buffer.from('#!/bin/sh\necho hi\n'), t), 'a script (#!)');
      assert.equal(artifactMismatch(Buffer.alloc(0), t), 'an empty file');
      assert.equal(artifactMismatch(fits.subarray(0, 19), t), 'neither an ELF binary nor WebAssembly');
    });
  }

  test('byte order and class count, not only the machine', () => {
    assert.match(artifactMismatch(elf(21, 64, false), target('linux/ppc64le')) ?? '', /big-endian/);
    assert.match(artifactMismatch(elf(183, 32), target('linux/arm64')) ?? '', /32-bit/);
  });

  test('wasm targets take modules and components, and no ELF', () => {
    for (const p of ['wasip1/wasm', 'wasip2/wasm', 'wasi/wasm']) {
      const t = target(p);
      assert.equal(t.wasm, true);
      assert.equal(artifactMismatch(WASM_MODULE, t), undefined);
      assert.equal(artifactMismatch(WASM_COMPONENT, t), undefined);
      assert.match(artifactMismatch(elf(62), t) ?? '', /64-bit little-endian ELF for x86-64 \(EM_X86_64\)/);
    }
    assert.equal(resolveTarget().triple, 'wasm32-wasip1');
    assert.deepEqual(resolveTarget().platform, WASM_TARGET);
  });

  test('platforms kiln cannot build for are E_UNSUPPORTED', () => {
    for (const p of ['darwin/arm64', 'windows/amd64', 'linux/mips64le', 'linux/arm/v8', 'js/wasm']) {
      assert.throws(
        () => target(p),
        (e) => isKilnError(e, 'E_UNSUPPORTED') && /linux\/arm64/.test(e.hint ?? ''),
        p,
      );
    }
  });

  test('checkArtifact reads the header: the node binary fits the host platform and not the other', async () => {
    const host = hostPlatform();
    await checkArtifact(process.execPath, resolveTarget(host));
    const other = host.architecture === 'arm64' ? 'linux/amd64' : 'linux/arm64';
    await assert.rejects(
      checkArtifact(process.execPath, target(other), '/out/app'),
      (e) =>
        isKilnError(e, 'E_WRONG_PLATFORM') &&
        e.message.includes(`the build for ${other} wrote a 64-bit little-endian ELF`) &&
        e.message.endsWith('/out/app') &&
        (e.hint ?? '').includes('KILN_TARGET_TRIPLE'),
    );
    const text = join(work, 'app.wasm');
    writeFileSync(text, 'not wasm at all');
    await assert.rejects(checkArtifact(text, resolveTarget()), (e) => isKilnError(e, 'E_WRONG_PLATFORM'));
    writeFileSync(text, WASM_MODULE);
    await checkArtifact(text, resolveTarget());
  });

  test('the build env names the target; default outputs per target', () => {
    assert.deepEqual(targetEnv(target('linux/arm/v7')), {
      KILN_TARGET_OS: 'linux',
      KILN_TARGET_ARCH: 'arm',
      KILN_TARGET_VARIANT: 'v7',
      KILN_TARGET_PLATFORM: 'linux/arm/v7',
      KILN_TARGET_TRIPLE: 'arm-linux-gnueabihf',
    });
    assert.deepEqual(targetEnv(target('linux/aarch64')), {
      KILN_TARGET_OS: 'linux',
      KILN_TARGET_ARCH: 'arm64',
      KILN_TARGET_VARIANT: '',
      KILN_TARGET_PLATFORM: 'linux/arm64',
      KILN_TARGET_TRIPLE: 'aarch64-linux-gnu',
    });
    assert.equal(targetEnv(resolveTarget()).KILN_TARGET_TRIPLE, 'wasm32-wasip1');
    assert.equal(defaultOutputName('hello', WASM_TARGET), 'hello.wasm');
    assert.equal(defaultOutputName('hello', target('linux/arm64').platform), 'hello-linux-arm64');
    assert.equal(defaultOutputName('hello', target('linux/arm').platform), 'hello-linux-arm-v7');
  });
});
