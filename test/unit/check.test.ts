/**
 * `kiln check`'s rules, two ways:
 * - the compatibility matrix: every format kiln writes (and its index variants) against every
 *   consumer, computed here from real packaged images and compared with the table in
 *   docs/formats.md (KILN_UPDATE_DOCS=1 rewrites it);
 * - seeded mutations: for every rule of every consumer, an image the consumer takes, broken in
 *   exactly the way that rule describes, gets exactly that rule's finding and no other new one.
 * The real consumers that run here (containerd 1.6, crun 1.8, Docker 20.10) are checked against
 * these predictions in test/integration/consumers-real.test.ts and interop.test.ts.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { CONSUMER_CHECKS, checkSubject } from '../../src/check/check.js';
import { CONSUMERS, type ConsumerName, type Finding } from '../../src/check/consumer.js';
import { type CheckSubject, loadSubject, type SubjectImage } from '../../src/check/subject.js';
import { writeJsonBlob } from '../../src/image/write.js';
import { type PlatformAliases, withPlatformAliases } from '../../src/oci/aliases.js';
import { MediaType } from '../../src/oci/media-types.js';
import { parsePlatform } from '../../src/oci/platform.js';
import type { Descriptor } from '../../src/oci/types.js';
import { OciLayout } from '../../src/store/layout.js';
import { OciDirSource } from '../../src/transport/oci-dir.js';
import { packageWasm, type WasmFormat } from '../../src/wasm/package.js';
import { workDir } from '../support/temp.js';

const FIXTURES = fileURLToPath(new URL('../fixtures/wasm/', import.meta.url));
const MODULE = path.join(FIXTURES, 'core-command.wasm');
const COMPONENT = path.join(FIXTURES, 'component-command.wasm');
const DOC = fileURLToPath(new URL('../../docs/formats.md', import.meta.url));

const work = workDir('kiln-check-test');
const store = await OciLayout.open(path.join(work, 'store'), { create: true });

/** A one-component Spin app (an HTTP trigger) for the `spin` row. */
const SPIN_TOML = path.join(work, 'spin', 'spin.toml');
mkdirSync(path.dirname(SPIN_TOML), { recursive: true });
copyFileSync(COMPONENT, path.join(path.dirname(SPIN_TOML), 'app.wasm'));
writeFileSync(
  SPIN_TOML,
  'spin_manifest_version = 2\n[application]\nname = "matrix"\n[[trigger.http]]\nroute = "/..."\ncomponent = "app"\n[component.app]\nsource = "app.wasm"\n',
);

/** One row of the matrix: how the image is made. */
interface Row {
  label: string;
  format: WasmFormat;
  file: string;
  /** Written as an index of the image, with these aliases. */
  index?: PlatformAliases;
}

const ROWS: Row[] = [
  { label: '`image`', format: 'image', file: MODULE },
  { label: '`image`, component', format: 'image', file: COMPONENT },
  { label: '`image` in an index', format: 'image', file: MODULE, index: {} },
  { label: '`image` + `--wasi-alias`', format: 'image', file: MODULE, index: { wasi: true } },
  {
    label: '`image` + `--node-alias linux/amd64,linux/arm64`',
    format: 'image',
    file: MODULE,
    index: { node: [parsePlatform('linux/amd64'), parsePlatform('linux/arm64')] },
  },
  { label: '`artifact`', format: 'artifact', file: MODULE },
  { label: '`artifact`, component', format: 'artifact', file: COMPONENT },
  { label: '`runwasi`', format: 'runwasi', file: MODULE },
  {
    label: '`runwasi` + `--node-alias linux/amd64`',
    format: 'runwasi',
    file: MODULE,
    index: { node: [parsePlatform('linux/amd64')] },
  },
  { label: '`istio`', format: 'istio', file: MODULE },
  { label: '`istio-oci`', format: 'istio-oci', file: MODULE },
  { label: '`wasm-to-oci`', format: 'wasm-to-oci', file: MODULE },
  { label: '`spin`', format: 'spin', file: SPIN_TOML },
];

/** Packages the row's image into the store (as an index when asked) and reads it as a subject. */
async function subjectOf(row: Row): Promise<CheckSubject> {
  const packaged = await packageWasm(store, { file: row.file, format: row.format });
  let root: Descriptor = packaged.descriptor;
  if (row.index) {
    const manifests = withPlatformAliases(
      [{ ...packaged.descriptor, platform: packaged.platform }],
      row.index,
      row.label,
    );
    root = await writeJsonBlob(store, MediaType.OciIndex, {
      schemaVersion: 2,
      mediaType: MediaType.OciIndex,
      manifests,
    });
  }
  const source = OciDirSource.forDescriptor(store, root);
  try {
    return await loadSubject(source);
  } finally {
    await source.close();
  }
}

const subjects = new Map<string, CheckSubject>();
for (const row of ROWS) subjects.set(row.label, await subjectOf(row));

/** A cell: `ok`, `ok (gate)` when only version gates were found, else the failing rules. */
function cell(findings: Finding[]): string {
  const fails = findings.filter((f) => f.severity === 'fail').map((f) => f.rule.split('.')[1]);
  if (fails.length > 0) return `✗ ${[...new Set(fails)].join(', ')}`;
  return findings.length > 0 ? 'ok (gate)' : 'ok';
}

function matrix(): string {
  const header = `| format | ${CONSUMERS.join(' | ')} |`;
  const rule = `|---|${CONSUMERS.map(() => '---').join('|')}|`;
  const rows = ROWS.map((row) => {
    const result = checkSubject(subjects.get(row.label)!, CONSUMERS);
    return `| ${row.label} | ${result.verdicts.map((v) => cell(v.findings)).join(' | ')} |`;
  });
  return [header, rule, ...rows].join('\n');
}

describe('compatibility matrix', () => {
  test('docs/formats.md holds the matrix kiln check computes for every format and consumer', () => {
    const doc = readFileSync(DOC, 'utf8');
    const start = '<!-- check-matrix:start -->\n';
    const end = '\n<!-- check-matrix:end -->';
    const from = doc.indexOf(start);
    const to = doc.indexOf(end);
    assert.ok(from >= 0 && to > from, 'docs/formats.md has the check-matrix markers');
    const want = matrix();
    if (process.env.KILN_UPDATE_DOCS === '1')
      writeFileSync(DOC, doc.slice(0, from + start.length) + want + doc.slice(to));
    else
      assert.equal(
        doc.slice(from + start.length, to),
        want,
        'the matrix changed: check the verdicts, then rerun with KILN_UPDATE_DOCS=1 to write it',
      );
  });

  test('what each format is for passes its own consumer', () => {
    const verdict = (label: string, consumer: ConsumerName) =>
      checkSubject(subjects.get(label)!, [consumer]).verdicts[0]!;
    for (const [label, consumer] of [
      ['`image`', 'crun'],
      ['`image`', 'containerd'],
      ['`image`', 'k8s'],
      ['`image`', 'runwasi'],
      ['`image` + `--wasi-alias`', 'docker'],
      ['`image` + `--node-alias linux/amd64,linux/arm64`', 'k8s'],
      ['`runwasi`', 'runwasi'],
      ['`artifact`, component', 'wkg'],
      ['`artifact`, component', 'spin'],
      ['`istio`', 'istio'],
      ['`istio-oci`', 'istio'],
      ['`spin`', 'spin'],
    ] as const)
      assert.ok(
        verdict(label, consumer).ok,
        `${label} for ${consumer}: ${JSON.stringify(verdict(label, consumer).findings)}`,
      );
  });
});

// ---------------------------------------------------------------------------------------------
// Seeded mutations

const clone = (s: CheckSubject): CheckSubject => structuredClone(s);
const only = (s: CheckSubject): SubjectImage => s.images[0]!;

/** The subject's image listed in an index under the given platforms only. */
function inIndex(s: CheckSubject, ...platforms: string[]): CheckSubject {
  const image = only(s);
  const out = clone(s);
  out.index = {
    schemaVersion: 2,
    mediaType: MediaType.OciIndex,
    manifests: platforms.map((p) => ({
      mediaType: image.mediaType,
      digest: image.digest as `sha256:${string}`,
      size: 1,
      platform: parsePlatform(p),
    })),
  };
  out.root = { mediaType: MediaType.OciIndex, digest: 'sha256:index' };
  out.images = platforms.map((p) => ({ ...structuredClone(image), entryPlatform: parsePlatform(p) }));
  return out;
}

interface Mutation {
  rule: string;
  /** The matrix row the consumer takes. */
  base: string;
  /** Makes the base ready (optional), then the broken copy. */
  prepare?: (s: CheckSubject) => CheckSubject;
  mutate: (s: CheckSubject) => CheckSubject;
}

const withImage = (f: (i: SubjectImage, s: CheckSubject) => void) => (s: CheckSubject) => {
  const out = clone(s);
  for (const i of out.images) f(i, out);
  return out;
};

/** Each image's config lists no diff_ids. */
const noDiffIds = withImage((i) => ((i.config.json!.rootfs as { diff_ids: string[] }).diff_ids = []));
/** Each image gets a layer of a media type no runtime knows. */
const dataLayer = withImage((i) =>
  i.layers.push({ mediaType: 'application/vnd.example.data', digest: 'sha256:x', size: 1 }),
);

const MUTATIONS: Mutation[] = [
  { rule: 'containerd.platform', base: '`image`', mutate: (s) => inIndex(s, 'linux/amd64') },
  {
    rule: 'containerd.diff-ids',
    base: '`image`',
    mutate: noDiffIds,
  },
  {
    rule: 'containerd.layers',
    base: '`image`',
    mutate: dataLayer,
  },
  { rule: 'k8s.node-platform', base: '`image`', mutate: (s) => inIndex(s, 'wasip1/wasm', 'wasi/wasm') },
  {
    rule: 'k8s.diff-ids',
    base: '`image`',
    mutate: noDiffIds,
  },
  {
    rule: 'k8s.layers',
    base: '`image`',
    mutate: withImage((i) => i.layers.push({ mediaType: MediaType.WasmLayer, digest: 'sha256:x', size: 1 })),
  },
  {
    rule: 'runwasi.platform',
    base: '`runwasi`',
    mutate: withImage((i) => {
      delete i.config.json!.os;
      delete i.config.json!.architecture;
    }),
  },
  {
    rule: 'runwasi.one-module',
    base: '`runwasi`',
    mutate: withImage((i) => i.layers.push({ ...i.layers[0]!, digest: 'sha256:second' })),
  },
  {
    rule: 'runwasi.entrypoint',
    base: '`image`',
    mutate: withImage((i) => {
      delete (i.config.json!.config as Record<string, unknown>).Entrypoint;
    }),
  },
  { rule: 'runwasi.index', base: '`runwasi`', mutate: (s) => inIndex(s, 'wasip1/wasm') },
  {
    rule: 'runwasi.diff-ids',
    base: '`image`',
    mutate: noDiffIds,
  },
  {
    rule: 'runwasi.layers',
    base: '`image`',
    mutate: dataLayer,
  },
  {
    rule: 'crun.handler',
    base: '`image`',
    mutate: withImage((i) => {
      delete i.annotations['module.wasm.image/variant'];
    }),
  },
  {
    rule: 'crun.smart',
    base: '`image`',
    mutate: withImage((i) => {
      (i.config.json!.config as Record<string, unknown>).Entrypoint = ['/app'];
      i.layers[0]!.files = [{ path: 'app', wasm: 'module' }];
    }),
  },
  {
    rule: 'crun.module',
    base: '`image`',
    mutate: withImage((i) => (i.layers[0]!.files![0]!.wasm = 'component')),
  },
  {
    rule: 'crun.rootfs',
    base: '`image`',
    mutate: withImage(
      (i) => ((i.config.json!.config as Record<string, unknown>).Entrypoint = ['/missing.wasm']),
    ),
  },
  { rule: 'docker.platform', base: '`image` + `--wasi-alias`', mutate: (s) => inIndex(s, 'wasip1/wasm') },
  {
    rule: 'docker.classic-store',
    base: '`image` + `--wasi-alias`',
    prepare: withImage((i) => (i.config.json!.os = 'linux')),
    mutate: withImage((i) => (i.config.json!.os = 'wasip1')),
  },
  {
    rule: 'docker.zstd',
    base: '`image` + `--wasi-alias`',
    prepare: withImage((i) => (i.config.json!.os = 'linux')),
    mutate: withImage((i) => {
      for (const l of i.layers) l.mediaType = MediaType.OciLayerZstd;
    }),
  },
  { rule: 'istio.platform', base: '`istio`', mutate: (s) => inIndex(s, 'wasip1/wasm') },
  {
    rule: 'istio.layout',
    base: '`istio-oci`',
    mutate: withImage((i) => i.layers.push({ ...i.layers[1]!, digest: 'sha256:third' })),
  },
  {
    rule: 'istio.plugin',
    base: '`istio`',
    mutate: withImage((i) => (i.layers[0]!.files = [{ path: 'filter.wasm', wasm: 'module' }])),
  },
  { rule: 'istio.module', base: '`istio-oci`', mutate: withImage((i) => (i.layers[1]!.wasm = 'component')) },
  { rule: 'spin.platform', base: '`artifact`, component', mutate: (s) => inIndex(s, 'wasip2/wasm') },
  {
    rule: 'spin.application',
    base: '`artifact`, component',
    mutate: withImage((i) =>
      i.layers.push({ mediaType: MediaType.SpinDataLayer, digest: 'sha256:data', size: 1 }),
    ),
  },
  {
    rule: 'spin.components',
    base: '`artifact`, component',
    mutate: withImage((i) => (i.layers[0]!.wasm = 'module')),
  },
  {
    rule: 'wkg.manifest',
    base: '`artifact`, component',
    mutate: withImage((i) => {
      delete i.declaredMediaType;
    }),
  },
  {
    rule: 'wkg.config',
    base: '`artifact`, component',
    mutate: withImage((i) => {
      delete i.config.json!.layerDigests;
    }),
  },
  {
    rule: 'wkg.layer',
    base: '`artifact`, component',
    mutate: withImage((i) => (i.layers[0]!.mediaType = MediaType.WasmToOciLayer)),
  },
  { rule: 'wkg.platform', base: '`artifact`, component', mutate: (s) => inIndex(s, 'wasip2/wasm') },
];

describe('seeded mutations', () => {
  test('every rule of every consumer has a mutation, and every rule cites a source', () => {
    const rules = Object.values(CONSUMER_CHECKS).flatMap((c) => c.rules);
    assert.deepEqual(rules.map((r) => r.id).sort(), MUTATIONS.map((m) => m.rule).sort());
    for (const r of rules)
      assert.match(r.source, /^[\w.-]+\/[\w.-]+ /, `${r.id} cites owner/repo and a file`);
  });

  for (const m of MUTATIONS) {
    test(`${m.rule}: the image broken that way gets that finding, and only it`, () => {
      const consumer = m.rule.split('.')[0] as ConsumerName;
      const base = (m.prepare ?? clone)(subjects.get(m.base)!);
      const before = checkSubject(base, [consumer]).verdicts[0]!;
      const after = checkSubject(m.mutate(base), [consumer]).verdicts[0]!;
      const key = (f: Finding) => f.rule;
      const added = after.findings.map(key).filter((r) => !before.findings.map(key).includes(r));
      assert.deepEqual(
        added,
        [m.rule],
        `findings before ${JSON.stringify(before.findings)}, after ${JSON.stringify(after.findings)}`,
      );
      const severity = CONSUMER_CHECKS[consumer].rules.find((r) => r.id === m.rule)!.severity;
      assert.equal(after.ok, before.ok && severity !== 'fail');
    });
  }
});
