/**
 * Property tests (fast-check) for the parsers and codecs that meet untrusted input:
 *
 * - references: parsing never throws anything but KilnError, whatever the string; what parses prints
 *   to a form that parses to the same thing (the generated round trip of valid references is in
 *   reference.test.ts). The same for image locations (`oci:…`, `docker://…`).
 * - tar: entries written by tarStream (and by writeLayer, gzip or not, into a store) read back with
 *   readTar as the same entries: paths (long, unicode, ustar prefix, PAX), types, modes, ids, sizes,
 *   mtimes, link targets, contents.
 * - manifests and configs: parseManifest and parseConfig never throw anything but KilnError, on
 *   arbitrary bytes, arbitrary JSON, and near-valid documents with fields swapped for arbitrary
 *   values; what they accept is well formed.
 *
 * FC_SEED / FC_RUNS (env) replay a failure or run longer.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import fc from 'fast-check';
import { KilnError } from '../../src/errors.js';
import type { LayerEntry } from '../../src/layer/entries.js';
import { readTar, type TarEntryInfo } from '../../src/layer/tar-reader.js';
import { normalMode, tarStream } from '../../src/layer/tar-writer.js';
import { writeLayer } from '../../src/layer/write-layer.js';
import { parseDigest } from '../../src/oci/digest.js';
import { MediaType } from '../../src/oci/media-types.js';
import { formatReference, parseReference } from '../../src/oci/reference.js';
import { parseConfig, parseManifest } from '../../src/oci/validate.js';
import { OciLayout } from '../../src/store/layout.js';
import { parseLocation } from '../../src/transport/parse.js';
import { sha256 } from '../support/images.js';

const seed = process.env['FC_SEED'] === undefined ? undefined : Number(process.env['FC_SEED']);
const runs = (n: number) => Number(process.env['FC_RUNS'] ?? n);
const params = (numRuns: number): fc.Parameters<unknown> => ({
  numRuns: runs(numRuns),
  ...(seed === undefined ? {} : { seed }),
});

/** Runs `fn`; passes if it returns or throws a KilnError, fails on anything else thrown. */
function onlyKilnErrors<T>(fn: () => T): T | KilnError {
  try {
    return fn();
  } catch (err) {
    if (err instanceof KilnError) {
      assert.ok(err.message.length > 0 && !err.message.includes('\n'), 'a KilnError message is one line');
      return err;
    }
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------------
// References

/** Strings made mostly of the characters references are made of, so the parser gets past its first checks. */
const referenceish = fc
  .array(
    fc.oneof(
      { weight: 6, arbitrary: fc.constantFrom(...'abcxyz019./:@_-'.split('')) },
      {
        weight: 2,
        arbitrary: fc.constantFrom(
          'sha256:',
          'sha512:',
          'localhost',
          'docker.io/',
          'index.docker.io/',
          '[::1]',
          ':5000/',
          'a'.repeat(64),
          '0'.repeat(128),
        ),
      },
      {
        weight: 1,
        arbitrary: fc.constantFrom(
          'A',
          'Z',
          ' ',
          '\t',
          '\n',
          '\0',
          '%',
          '\\',
          '//',
          '..',
          'é',
          '\u{1F600}',
          '\uD800',
        ),
      },
      { weight: 1, arbitrary: fc.string({ maxLength: 3 }) },
    ),
    { maxLength: 40 },
  )
  .map((parts) => parts.join(''));

describe('references', () => {
  test('parseReference throws nothing but KilnError (E_BAD_REFERENCE), whatever the string', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: 'binary', maxLength: 300 }), referenceish), (input) => {
        const r = onlyKilnErrors(() => parseReference(input));
        if (r instanceof KilnError) assert.equal(r.code, 'E_BAD_REFERENCE');
      }),
      params(3000),
    );
  });

  test('what parses prints to a reference that parses to the same thing', () => {
    fc.assert(
      fc.property(referenceish, (input) => {
        const ref = onlyKilnErrors(() => parseReference(input));
        if (ref instanceof KilnError) return;
        const text = formatReference(ref);
        assert.deepEqual(parseReference(text), ref, `${JSON.stringify(input)} → ${text}`);
        assert.equal(formatReference(parseReference(text)), text);
      }),
      params(3000),
    );
  });

  test('parseLocation throws nothing but KilnError, whatever the string', () => {
    const prefixed = fc
      .tuple(
        fc.constantFrom(
          '',
          'oci:',
          'oci-archive:',
          'docker-archive:',
          'docker-daemon:',
          'docker://',
          'dir:',
          'http:',
        ),
        fc.oneof(referenceish, fc.string({ unit: 'binary', maxLength: 80 })),
      )
      .map(([p, rest]) => p + rest);
    fc.assert(
      fc.property(prefixed, (input) => {
        onlyKilnErrors(() => parseLocation(input));
      }),
      params(3000),
    );
  });
});

// ---------------------------------------------------------------------------------------------------
// Tar

const MAX_USTAR_ID = 0o7777777;

/** One path segment: short or long, ASCII or not; never '', '.', '..', or with '/' or NUL. */
const segment = fc
  .oneof(
    { weight: 5, arbitrary: fc.stringMatching(/^[a-z0-9_.-]{1,12}$/) },
    { weight: 1, arbitrary: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 8 }) },
    { weight: 1, arbitrary: fc.integer({ min: 40, max: 120 }).map((n) => 'x'.repeat(n)) },
    { weight: 1, arbitrary: fc.integer({ min: 10, max: 40 }).map((n) => 'é'.repeat(n)) },
  )
  .filter((s) => s !== '.' && s !== '..' && !/[/\0]/.test(s) && !s.startsWith('./'));

const entryPath = fc.array(segment, { minLength: 1, maxLength: 5 }).map((parts) => parts.join('/'));

interface GenEntry {
  path: string;
  type: 'file' | 'dir' | 'symlink' | 'hardlink';
  mode: number;
  uid: number;
  gid: number;
  content: Uint8Array;
  target: string;
}

const genEntry = (maxId: number) =>
  fc.record({
    path: entryPath,
    type: fc.constantFrom('file', 'file', 'dir', 'symlink', 'hardlink'),
    mode: fc.integer({ min: 0, max: 0o7777 }),
    uid: fc.oneof(fc.constantFrom(0, 1000, 65534), fc.integer({ min: 0, max: maxId })),
    gid: fc.oneof(fc.constantFrom(0, 1000, 65534), fc.integer({ min: 0, max: maxId })),
    content: fc.oneof(
      { weight: 4, arbitrary: fc.uint8Array({ maxLength: 1500 }) },
      {
        weight: 1,
        arbitrary: fc.integer({ min: 0, max: 70_000 }).map((n) => new Uint8Array(n).fill(n % 251)),
      },
    ),
    target: fc.oneof(
      entryPath,
      fc.string({ unit: 'grapheme', minLength: 1, maxLength: 150 }).filter((s) => !s.includes('\0')),
    ),
  });

/** Unique paths; hard links point at a file listed before them, else become files. */
function toLayerEntries(gen: GenEntry[]): LayerEntry[] {
  const files: string[] = [];
  return gen.map((g): LayerEntry => {
    const base = { path: g.path, mode: g.mode, uid: g.uid, gid: g.gid };
    if (g.type === 'hardlink' && files.length > 0)
      return { ...base, type: 'hardlink', linkname: files[g.content.length % files.length]! };
    if (g.type === 'symlink') return { ...base, type: 'symlink', linkname: g.target };
    if (g.type === 'dir') return { ...base, type: 'dir' };
    files.push(g.path);
    return { ...base, type: 'file', content: g.content, size: g.content.byteLength };
  });
}

const layerCase = (maxId: number) =>
  fc.record({
    entries: fc
      .uniqueArray(genEntry(maxId), { selector: (e) => e.path, minLength: 1, maxLength: 12 })
      .map(toLayerEntries),
    keepModes: fc.boolean(),
    mtime: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 0o77777777777 })),
  });

interface ReadEntry {
  info: TarEntryInfo;
  content: Buffer;
}

async function readAll(source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): Promise<ReadEntry[]> {
  const out: ReadEntry[] = [];
  await readTar(source, async (info, content) => {
    const parts: Buffer[] = [];
    for await (const c of content) parts.push(c);
    out.push({ info, content: Buffer.concat(parts) });
  });
  return out;
}

/** What reading back must give for each written entry. */
function expected(entries: LayerEntry[], keepModes: boolean, mtime: number) {
  return entries.map((e) => ({
    path: e.path,
    type: e.type,
    mode: normalMode(e, keepModes),
    uid: e.uid ?? 0,
    gid: e.gid ?? 0,
    size: e.type === 'file' ? (e.content?.byteLength ?? 0) : 0,
    mtime,
    linkname: e.linkname,
    content: Buffer.from(e.type === 'file' ? (e.content ?? new Uint8Array()) : new Uint8Array()),
  }));
}

function actual(read: ReadEntry[]) {
  return read.map(({ info, content }) => ({
    path: info.path,
    type: info.type,
    mode: info.mode,
    uid: info.uid,
    gid: info.gid,
    size: info.size,
    mtime: info.mtime,
    linkname: info.linkname,
    content,
  }));
}

async function collect(it: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of it) parts.push(Buffer.from(c));
  return Buffer.concat(parts);
}

describe('tar', () => {
  const dirs: string[] = [];
  after(async () => {
    for (const d of dirs) await fs.rm(d, { recursive: true, force: true });
  });

  test('tarStream then readTar gives back the same entries', async () => {
    await fc.assert(
      fc.asyncProperty(layerCase(MAX_USTAR_ID), async ({ entries, keepModes, mtime }) => {
        const tar = await collect(tarStream(entries, { keepModes, mtime }));
        assert.equal(tar.length % 512, 0, 'whole blocks');
        assert.deepEqual(actual(await readAll([tar])), expected(entries, keepModes, mtime));
      }),
      params(300),
    );
  });

  test('writeLayer (gzip or not) stores a blob that reads back as the same entries, with its diff_id', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-prop-'));
    dirs.push(dir);
    const store = await OciLayout.open(path.join(dir, 'store'), { create: true });
    await fc.assert(
      fc.asyncProperty(
        layerCase(MAX_USTAR_ID),
        fc.constantFrom('gzip' as const, 'none' as const),
        async ({ entries, keepModes, mtime }, compression) => {
          const layer = await writeLayer(store, entries, { keepModes, mtime, compression });
          const blob = await fs.readFile(store.blobPath(layer.descriptor.digest));
          assert.equal(blob.length, layer.descriptor.size);
          assert.equal(sha256(blob), layer.descriptor.digest);
          assert.equal(
            layer.descriptor.mediaType,
            compression === 'gzip' ? MediaType.OciLayerGzip : MediaType.OciLayer,
          );
          const tar = await collect(tarStream(entries, { keepModes, mtime }));
          assert.equal(layer.diffId, sha256(tar));
          assert.equal(layer.uncompressedSize, tar.length);
          assert.deepEqual(
            actual(await readAll(store.openBlob(layer.descriptor.digest))),
            expected(entries, keepModes, mtime),
          );
        },
      ),
      params(100),
    );
  });

  // tarStream writes ids over 2^21 - 1 as PAX uid/gid records, which readTar must read back.
  test('ids too large for ustar round-trip through PAX', async () => {
    await fc.assert(
      fc.asyncProperty(layerCase(2 ** 32 - 2), async ({ entries, keepModes, mtime }) => {
        const tar = await collect(tarStream(entries, { keepModes, mtime }));
        assert.deepEqual(actual(await readAll([tar])), expected(entries, keepModes, mtime));
      }),
      params(100),
    );
  });

  test('readTar throws nothing but KilnError on arbitrary or damaged archives', async () => {
    const base = await collect(
      tarStream(
        [
          { path: 'a', type: 'dir' },
          { path: 'a/b', type: 'file', content: Buffer.from('hello'), size: 5 },
          { path: 'a/c', type: 'symlink', linkname: 'b' },
        ],
        { mtime: 0 },
      ),
    );
    const damaged = fc
      .array(fc.tuple(fc.nat(base.length - 1), fc.integer({ min: 0, max: 255 })), {
        minLength: 1,
        maxLength: 8,
      })
      .map((edits) => {
        const b = Buffer.from(base);
        for (const [i, v] of edits) b[i] = v;
        return b;
      });
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          damaged,
          fc.uint8Array({ maxLength: 2048 }).map((a) => Buffer.from(a)),
        ),
        async (bytes) => {
          try {
            await readAll([bytes]);
          } catch (err) {
            if (!(err instanceof KilnError)) throw err;
          }
        },
      ),
      params(300),
    );
  });
});

// ---------------------------------------------------------------------------------------------------
// Manifests and configs

const hex = (n: number) => fc.stringMatching(new RegExp(`^[0-9a-f]{${n}}$`));
const digest = fc.oneof(
  hex(64).map((h) => `sha256:${h}`),
  hex(128).map((h) => `sha512:${h}`),
);
/** A value that is usually right for its place and sometimes anything JSON can hold. */
const sometimes = <T>(valid: fc.Arbitrary<T>) =>
  fc.oneof({ weight: 4, arbitrary: valid }, { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }) });
const maybe = <T>(a: fc.Arbitrary<T>) => fc.option(a, { nil: undefined, freq: 3 });

const descriptor = fc.record(
  {
    mediaType: sometimes(
      fc.constantFrom(MediaType.OciLayerGzip, MediaType.OciConfig, MediaType.OciManifest, ''),
    ),
    digest: sometimes(fc.oneof(digest, fc.constantFrom('sha256:abc', 'md5:00', 'sha256:' + 'A'.repeat(64)))),
    size: sometimes(fc.oneof(fc.nat(), fc.constantFrom(-1, 1.5, 2 ** 53, Number.MAX_VALUE))),
    annotations: maybe(
      sometimes(fc.dictionary(fc.string({ maxLength: 5 }), fc.string({ maxLength: 5 }), { maxKeys: 3 })),
    ),
    platform: maybe(
      sometimes(
        fc.record({
          os: sometimes(fc.constantFrom('linux', 'wasip1')),
          architecture: sometimes(fc.constantFrom('amd64', 'wasm')),
        }),
      ),
    ),
  },
  { requiredKeys: [] },
);

const manifestish = fc.record(
  {
    schemaVersion: sometimes(fc.constantFrom(2, 1, '2')),
    mediaType: maybe(
      sometimes(
        fc.constantFrom(MediaType.OciManifest, MediaType.OciIndex, MediaType.DockerManifest, 'text/plain'),
      ),
    ),
    config: sometimes(descriptor),
    layers: sometimes(fc.array(sometimes(descriptor), { maxLength: 3 })),
    manifests: maybe(sometimes(fc.array(sometimes(descriptor), { maxLength: 3 }))),
    subject: maybe(sometimes(descriptor)),
    annotations: maybe(
      sometimes(fc.dictionary(fc.string({ maxLength: 5 }), fc.string({ maxLength: 5 }), { maxKeys: 3 })),
    ),
    artifactType: maybe(fc.string({ maxLength: 10 })),
  },
  { requiredKeys: [] },
);

const configish = fc.record(
  {
    architecture: sometimes(fc.constantFrom('amd64', 'wasm')),
    os: sometimes(fc.constantFrom('linux', 'wasip1')),
    config: sometimes(
      fc.record(
        { Cmd: sometimes(fc.array(fc.string({ maxLength: 5 }), { maxLength: 2 })) },
        { requiredKeys: [] },
      ),
    ),
    rootfs: sometimes(
      fc.record(
        { type: sometimes(fc.constant('layers')), diff_ids: sometimes(fc.array(digest, { maxLength: 2 })) },
        { requiredKeys: [] },
      ),
    ),
    history: maybe(fc.jsonValue({ maxDepth: 2 })),
  },
  { requiredKeys: [] },
);

const encode = (v: unknown) => Buffer.from(JSON.stringify(v) ?? 'null');
/** Arbitrary bytes, arbitrary JSON, and JSON shaped like the real thing. */
const documents = (shaped: fc.Arbitrary<unknown>) =>
  fc.oneof(
    fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a)),
    fc.jsonValue({ maxDepth: 3 }).map(encode),
    shaped.map(encode),
    shaped.map((v) => encode(v).subarray(0, Math.max(0, encode(v).length - 3))), // truncated
  );
const expectedType = fc.option(
  fc.constantFrom(
    MediaType.OciManifest,
    MediaType.OciIndex,
    MediaType.DockerManifestList,
    'application/json',
    '',
  ),
  { nil: undefined },
);

function wellFormed(d: { mediaType: unknown; digest: unknown; size: unknown }): void {
  assert.equal(typeof d.mediaType, 'string');
  parseDigest(d.digest as string);
  assert.ok(Number.isSafeInteger(d.size) && (d.size as number) >= 0);
}

describe('manifest and config validation', () => {
  test('parseManifest throws nothing but KilnError; what it accepts is well formed', () => {
    fc.assert(
      fc.property(documents(manifestish), expectedType, (bytes, type) => {
        const parsed = onlyKilnErrors(() => parseManifest(bytes, 'manifest', type));
        if (parsed instanceof KilnError) return;
        if (parsed.kind === 'index') for (const m of parsed.index.manifests) wellFormed(m);
        else {
          wellFormed(parsed.manifest.config);
          for (const l of parsed.manifest.layers) wellFormed(l);
        }
      }),
      params(3000),
    );
  });

  test('parseConfig throws nothing but KilnError on arbitrary bytes and JSON', () => {
    fc.assert(
      fc.property(documents(configish), (bytes) => {
        onlyKilnErrors(() => parseConfig(bytes));
      }),
      params(3000),
    );
  });

  // null passes `typeof rootfs === 'object'`: it once reached rootfs.diff_ids as a TypeError.
  test('parseConfig refuses a null rootfs with a KilnError', () => {
    assert.throws(() => parseConfig(Buffer.from('{"rootfs":null}')), KilnError);
  });
});
