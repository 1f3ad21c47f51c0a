/**
 * `kiln package spin.toml --format spin`: a Spin application as `spin registry push` writes it
 * (docs/formats.md, "spin"; the rules in src/wasm/spin.ts cite Spin's source). The locked app is
 * compared byte for byte with JSON built here in the key order of Spin's serde structs and maps, the
 * config with the exact bytes oci-client's ConfigFile serialises to, and the layers with the files.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  type ImageManifest,
  layoutBlob,
  layoutJson,
  OCI_CONFIG,
  OCI_MANIFEST,
  seededBytes,
  sha256,
  tagged,
} from '../support/images.js';
import { kiln, kilnDigest, kilnFails, kilnJson } from '../support/kiln.js';
import { sharedRegistry } from '../support/registry.js';
import { freshPaths, workDir, writeTree } from '../support/temp.js';
import { ok, requireTool, run } from '../support/tools.js';

const FIXTURES = fileURLToPath(new URL('../fixtures/wasm/', import.meta.url));
const API_WASM = readFileSync(join(FIXTURES, 'component-command.wasm'));
const WEB_WASM = readFileSync(join(FIXTURES, 'component-nested.wasm'));
const TINY_WASM = readFileSync(join(FIXTURES, 'core-reactor.wasm')); // 100 bytes: inlined
const BIG = seededBytes('spin-big', 300);
const SMALL = Buffer.from('hello, spin\n');

const WASM_LAYER = 'application/vnd.wasm.content.layer.v1+wasm';
const DATA_LAYER = 'application/vnd.wasm.content.layer.v1+data';
const LOCKED_LAYER = 'application/vnd.fermyon.spin.application.v1+config';

const work = workDir('kiln-spin');
const fresh = freshPaths(work);

/** kiln package's arguments for the Spin app in `dir` to `to`, `extra` before --to. */
const spinPackage = (dir: string, to: string, extra: string[] = []) => [
  'package',
  join(dir, 'spin.toml'),
  '--format',
  'spin',
  ...extra,
  '--to',
  to,
];

const SPIN_TOML = `spin_manifest_version = 2

[application]
name = "kiln-spin-sample"
version = "1.2.3"
description = "Two components, some files"
authors = ["Ada <ada@example.com>", "Bob"]

[variables]
api_key = { required = true, secret = true }
greeting = { default = "hi", description = "what to say" }

[[trigger.http]]
route = "/api/..."
component = "api"

[[trigger.http]]
route = "/..."
component = "web"
executor = { type = "spin" }

[component.api]
source = "wasm/api.wasm"
allowed_outbound_hosts = ["https://example.com", "redis://cache:6379"]
environment = { LOG = "debug", A_FIRST = "1" }
[component.api.variables]
key = "{{ api_key }}"

[component.web]
description = "static files"
source = "wasm/web.wasm"
files = ["static/**/*", { source = "static/sub/small.txt", destination = "/etc/small.txt" }]
exclude_files = ["static/sub/skip*"]
[component.web.build]
command = "make web"
`;

/** A Spin app directory: spin.toml (or `toml`) and the files it names. */
function app(toml = SPIN_TOML, extra: Record<string, string | Buffer> = {}): string {
  return writeTree(fresh('app'), {
    'spin.toml': toml,
    'wasm/api.wasm': API_WASM,
    'wasm/web.wasm': WEB_WASM,
    'static/big.txt': BIG,
    'static/sub/small.txt': SMALL,
    'static/sub/skip.txt': 'left out by exclude_files\n',
    ...extra,
  });
}

/** Base64 without padding, as spin_serde writes `inline`. */
const b64 = (b: Buffer) => b.toString('base64').replace(/=+$/, '');

/** The locked app the sample must give: keys in the order of Spin's structs, BTreeMaps sorted. */
function expectedLocked(): string {
  return JSON.stringify({
    spin_lock_version: 0,
    metadata: {
      authors: ['Ada <ada@example.com>', 'Bob'],
      description: 'Two components, some files',
      name: 'kiln-spin-sample',
      trigger: { type: 'http' },
      triggers: {},
      version: '1.2.3',
    },
    variables: {
      api_key: { secret: true },
      greeting: { description: 'what to say', default: 'hi' },
    },
    triggers: [
      {
        id: 'api-http-trigger',
        trigger_type: 'http',
        trigger_config: { component: 'api', route: '/api/...' },
      },
      {
        id: 'web-http-trigger',
        trigger_type: 'http',
        trigger_config: { component: 'web', executor: { type: 'spin' }, route: '/...' },
      },
    ],
    components: [
      {
        id: 'api',
        metadata: { allowed_outbound_hosts: ['https://example.com', 'redis://cache:6379'] },
        source: { content_type: 'application/wasm', digest: sha256(API_WASM) },
        env: { A_FIRST: '1', LOG: 'debug' },
        config: { key: '{{ api_key }}' },
      },
      {
        id: 'web',
        metadata: { build: { command: 'make web' }, description: 'static files' },
        source: { content_type: 'application/wasm', digest: sha256(WEB_WASM) },
        files: [
          { inline: b64(SMALL), digest: sha256(SMALL), path: 'etc/small.txt' },
          { digest: sha256(BIG), path: 'static/big.txt' },
          { inline: b64(SMALL), digest: sha256(SMALL), path: 'static/sub/small.txt' },
        ],
      },
    ],
  });
}

function expectedConfig(lockedDigest: string): string {
  return `{"architecture":"wasm","os":"Wasip1","config":{"Labels":{"com.fermyon.spin.lockedAppDigest":"${lockedDigest}"}},"rootfs":{"type":"layers","diff_ids":[]}}`;
}

describe('kiln package --format spin', () => {
  let sample: string;
  let out: string;
  let digest: string;
  before(async () => {
    sample = app();
    out = fresh('out');
    digest = await kilnDigest(spinPackage(sample, `oci:${out}:app`));
  });

  test('layers in Spin order: each component, then its files over 128 bytes, the locked app last', () => {
    const desc = tagged(out, 'app');
    assert.equal(desc.digest, digest);
    assert.equal(desc.mediaType, OCI_MANIFEST);
    const manifest = layoutJson<ImageManifest>(out, digest);
    assert.deepEqual(
      manifest.layers.map((l) => [l.mediaType, l.digest, l.size]),
      [
        [WASM_LAYER, sha256(API_WASM), API_WASM.length],
        [WASM_LAYER, sha256(WEB_WASM), WEB_WASM.length],
        [DATA_LAYER, sha256(BIG), BIG.length], // SMALL is inlined, and listed twice but pushed never
        [LOCKED_LAYER, manifest.layers[3]!.digest, manifest.layers[3]!.size],
      ],
    );
    assert.ok(
      manifest.layers.every((l) => l.annotations === undefined),
      'Spin writes no layer annotations',
    );
    assert.deepEqual(layoutBlob(out, manifest.layers[0]!.digest), API_WASM, 'the wasm as it is');
    assert.deepEqual(layoutBlob(out, manifest.layers[2]!.digest), BIG);
    assert.deepEqual(manifest.annotations, {
      'org.opencontainers.image.authors': 'Ada <ada@example.com>, Bob',
      'org.opencontainers.image.description': 'Two components, some files',
      'org.opencontainers.image.title': 'kiln-spin-sample',
      'org.opencontainers.image.version': '1.2.3',
    });
  });

  test('the locked app: compact, in serde key order, digests of the layers, the small file inline, no origin', () => {
    const manifest = layoutJson<ImageManifest>(out, digest);
    const locked = layoutBlob(out, manifest.layers[3]!.digest).toString('utf8');
    assert.equal(locked, expectedLocked());
    assert.doesNotMatch(locked, /origin|file:\/\//);
  });

  test('the config: oci-client ConfigFile bytes, os Wasip1, the label is the locked app layer digest', () => {
    const manifest = layoutJson<ImageManifest>(out, digest);
    assert.equal(manifest.config.mediaType, OCI_CONFIG);
    const config = layoutBlob(out, manifest.config.digest).toString('utf8');
    const lockedDigest = manifest.layers[3]!.digest;
    assert.equal(lockedDigest, sha256(layoutBlob(out, lockedDigest)));
    assert.equal(config, expectedConfig(lockedDigest));
    assert.equal(JSON.parse(config).os, 'Wasip1');
  });

  test('deterministic: the same app elsewhere, later, gives the same digest; a time given is the created annotation', async () => {
    const again = app();
    const out2 = fresh('out');
    assert.equal(await kilnDigest(spinPackage(again, `oci:${out2}:app`)), digest);
    const out3 = fresh('out');
    const dated = await kilnDigest(spinPackage(again, `oci:${out3}:app`), {
      env: { SOURCE_DATE_EPOCH: '1700000000' },
    });
    assert.notEqual(dated, digest);
    const annotations = layoutJson<ImageManifest>(out3, dated).annotations ?? {};
    assert.equal(annotations['org.opencontainers.image.created'], '2023-11-14T22:13:20Z');
    const out4 = fresh('out');
    const named = await kilnDigest(
      spinPackage(again, `oci:${out4}:app`, ['--annotation', 'org.opencontainers.image.title=renamed']),
    );
    assert.equal(
      layoutJson<ImageManifest>(out4, named).annotations?.['org.opencontainers.image.title'],
      'renamed',
    );
  });

  test('kiln check: the image and the spin.toml itself pass the spin consumer', async () => {
    interface Verdicts {
      ok: boolean;
      verdicts: { consumer: string; ok: boolean; findings: unknown[] }[];
    }
    const image = await kilnJson<Verdicts>(['check', `oci:${out}:app`, '--for', 'spin']);
    assert.ok(image.ok, JSON.stringify(image.verdicts));
    assert.deepEqual(image.verdicts[0]!.findings, []);
    const file = await kilnJson<Verdicts & { format: string }>([
      'check',
      join(sample, 'spin.toml'),
      '--format',
      'spin',
      '--for',
      'spin',
    ]);
    assert.ok(file.ok, JSON.stringify(file.verdicts));
    assert.equal(file.format, 'spin');
  });

  test('pushed to a registry: skopeo reads the same manifest, and the blobs are the same bytes', async () => {
    const registry = await sharedRegistry('none');
    const ref = `${registry.host}/spin/sample:1`;
    const pushed = await kilnDigest(spinPackage(sample, ref));
    assert.equal(pushed, digest);
    const r = await run(
      requireTool('skopeo')!,
      ['inspect', '--raw', '--tls-verify=false', `docker://${ref}`],
      {
        timeoutMs: 120_000,
      },
    );
    const raw = ok(r, `skopeo inspect --raw ${ref}`);
    assert.equal(sha256(raw), digest);
    const manifest = JSON.parse(raw) as ImageManifest;
    assert.equal(manifest.layers[3]!.mediaType, LOCKED_LAYER);
    const blob = async (d: string) => {
      const res = await fetch(`${registry.url}/v2/spin/sample/blobs/${d}`);
      assert.equal(res.status, 200, `GET ${d}`);
      return Buffer.from(await res.arrayBuffer()).toString('utf8');
    };
    assert.equal(await blob(manifest.layers[3]!.digest), expectedLocked());
    assert.equal(await blob(manifest.config.digest), expectedConfig(manifest.layers[3]!.digest));
  });
});

describe('the loader rules kiln replays', () => {
  test('trigger ids, an inline component, numbers as serde_json prints them, an inlined source, service chaining', async () => {
    const dir = writeTree(fresh('edge'), {
      'tiny.wasm': TINY_WASM,
      'spin.toml': `spin_manifest_version = 2
[application]
name = "edge"
[application.trigger.redis]
address = "redis://localhost:6379"

[[trigger.redis]]
channel = "orders"
retries = 3
weight = 1.0
ratio = 0.00001
big = 1e300
component = { source = "tiny.wasm", allowed_outbound_hosts = ["http://*.spin.internal"] }

[[trigger.http]]
route = "/..."
component = "tiny"

[component.tiny]
source = "tiny.wasm"
`,
    });
    const out = fresh('out');
    const digest = await kilnDigest(spinPackage(dir, `oci:${out}:edge`));
    const manifest = layoutJson<ImageManifest>(out, digest);
    // One wasm layer: both components are the same bytes.
    assert.deepEqual(
      manifest.layers.map((l) => l.mediaType),
      [WASM_LAYER, LOCKED_LAYER],
    );
    const source = { content_type: 'application/wasm', inline: b64(TINY_WASM), digest: sha256(TINY_WASM) };
    const head = JSON.stringify({
      spin_lock_version: 1,
      must_understand: ['component_host_requirements'],
      metadata: { name: 'edge', triggers: { redis: { address: 'redis://localhost:6379' } } },
    }).slice(0, -1);
    const triggers =
      '"triggers":[{"id":"redis-trigger1","trigger_type":"redis","trigger_config":{"big":1e300,"channel":"orders","component":"redis-trigger1-component","ratio":0.00001,"retries":3,"weight":1.0}},' +
      '{"id":"tiny-http-trigger","trigger_type":"http","trigger_config":{"component":"tiny","route":"/..."}}]';
    const components = JSON.stringify([
      { id: 'tiny', source },
      {
        id: 'redis-trigger1-component',
        metadata: { allowed_outbound_hosts: ['http://*.spin.internal'] },
        source,
        host_requirements: { local_service_chaining: 'required' },
      },
    ]);
    assert.equal(
      layoutBlob(out, manifest.layers[1]!.digest).toString('utf8'),
      `${head},${triggers},"components":${components}}`,
    );
  });

  test('files: a directory by { source, destination }, later mounts replacing earlier ones; a bare directory is refused', async () => {
    const toml = (files: string) => `spin_manifest_version = 2
[application]
name = "files"
[[trigger.http]]
route = "/..."
component = "web"
[component.web]
source = "wasm/web.wasm"
files = ${files}
`;
    const dir = app(
      toml(
        '[{ source = "static", destination = "/" }, { source = "static/big.txt", destination = "sub/small.txt" }]',
      ),
    );
    const out = fresh('out');
    const digest = await kilnDigest(spinPackage(dir, `oci:${out}:files`));
    const manifest = layoutJson<ImageManifest>(out, digest);
    const locked = JSON.parse(layoutBlob(out, manifest.layers.at(-1)!.digest).toString('utf8'));
    assert.deepEqual(locked.components[0].files, [
      { digest: sha256(BIG), path: 'big.txt' },
      {
        inline: b64(Buffer.from('left out by exclude_files\n')),
        digest: sha256('left out by exclude_files\n'),
        path: 'sub/skip.txt',
      },
      { digest: sha256(BIG), path: 'sub/small.txt' },
    ]);
    assert.deepEqual(
      manifest.layers.map((l) => l.mediaType),
      [WASM_LAYER, DATA_LAYER, LOCKED_LAYER],
      'big.txt twice is one layer',
    );
    const bare = app(toml('["static"]'));
    const e = await kilnFails(spinPackage(bare, `oci:${fresh('out')}:x`), 'E_UNSUPPORTED');
    assert.match(e.message, /"static" is a directory/);
    assert.match(e.hint ?? '', /destination = "\/static"/);
  });
});

describe('errors', () => {
  const pkg = (dir: string, code: string, extra: string[] = []) =>
    kilnFails(spinPackage(dir, `oci:${fresh('out')}:x`, extra), code);

  test('a component file that is missing: E_NOT_FOUND, naming the component', async () => {
    const dir = app(SPIN_TOML.replace('wasm/web.wasm', 'wasm/gone.wasm'));
    const e = await pkg(dir, 'E_NOT_FOUND');
    assert.match(e.message, /component web source .*gone\.wasm: no such file/);
  });

  test("a component that is not WebAssembly: E_NOT_WASM, in Spin's words", async () => {
    const dir = app(SPIN_TOML, { 'wasm/web.wasm': 'not wasm at all' });
    const e = await pkg(dir, 'E_NOT_WASM');
    assert.equal(e.message, 'Component web source is not a valid .wasm file');
  });

  test('a version 1 manifest: E_UNSUPPORTED, pointing at spin doctor', async () => {
    const dir = app('spin_manifest_version = "1"\nname = "old"\ntrigger = { type = "http" }\n');
    const e = await pkg(dir, 'E_UNSUPPORTED');
    assert.match(e.message, /version 1 Spin manifest/);
    assert.match(e.hint ?? '', /spin doctor/);
  });

  test('what Spin composes and kiln does not, and unknown fields', async () => {
    const deps = app(
      SPIN_TOML.replace(
        '[component.api.variables]',
        '[component.api.dependencies]\n"a:b/c" = { path = "wasm/web.wasm" }\n[component.api.variables]',
      ),
    );
    assert.match((await pkg(deps, 'E_UNSUPPORTED')).message, /component\.api has dependencies/);
    const typo = app(SPIN_TOML.replace('environment =', 'enviroment ='));
    assert.match((await pkg(typo, 'E_BAD_PROJECT')).message, /component\.api: unknown field `enviroment`/);
  });

  test('usage: a .wasm with --format spin, a spin.toml without it, flags Spin fixes', async () => {
    const dir = app();
    const wasm = await kilnFails(
      ['package', join(dir, 'wasm/api.wasm'), '--format', 'spin', '--to', `oci:${fresh('out')}:x`],
      'E_USAGE',
    );
    assert.match(wasm.hint ?? '', /spin\.toml --format spin/);
    const toml = await kilnFails(
      ['package', join(dir, 'spin.toml'), '--to', `oci:${fresh('out')}:x`],
      'E_USAGE',
    );
    assert.match(toml.hint ?? '', /--format spin/);
    const platform = await pkg(dir, 'E_USAGE', ['--platform', 'wasip2/wasm']);
    assert.match(platform.message, /--platform is not for the spin format/);
    const r = await kiln(['build', dir, '--format', 'spin', '--to', `oci:${fresh('out')}:x`, '--json']);
    assert.equal(JSON.parse(r.stdout).error.code, 'E_USAGE');
  });
});
