/**
 * SBOMs: the SPDX 2.3 document (complete, deterministic), the lock-file readers, and attaching a
 * referrer to a registry that has the referrers API (a small fake: the real registry here has none;
 * the fallback tag is tested against it in test/integration/sbom.test.ts).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { isKilnError } from '../../src/errors.js';
import type { Digest } from '../../src/oci/digest.js';
import { MediaType } from '../../src/oci/media-types.js';
import { type Descriptor, TITLE_ANNOTATION } from '../../src/oci/types.js';
import { encodeJson } from '../../src/oci/validate.js';
import { imageFiles } from '../../src/sbom/files.js';
import { lockfilePackages, npmPackages } from '../../src/sbom/lockfiles.js';
import {
  attachReferrer,
  attachSbom,
  EMPTY_DESCRIPTOR,
  findSbom,
  listReferrers,
  referrersTag,
  SPDX_MEDIA_TYPE,
} from '../../src/sbom/referrers.js';
import { ociPurl, type SbomInput, spdxDocument } from '../../src/sbom/spdx.js';
import { OciLayout } from '../../src/store/layout.js';
import { openSource } from '../../src/transport/open.js';
import { dir, file, link, symlink, writeImage } from '../support/hostile.js';
import { attachOctetReferrer } from '../support/images.js';

const hex = (s: string, alg = 'sha256') => createHash(alg).update(s).digest('hex');
const digestOf = (b: Buffer | string): Digest => `sha256:${hex(b.toString())}`;

function input(overrides: Partial<SbomInput> = {}): SbomInput {
  return {
    name: 'localhost:5000/team/app',
    subject: { mediaType: MediaType.OciManifest, digest: `sha256:${hex('manifest')}`, size: 512 },
    platform: { os: 'wasip1', architecture: 'wasm' },
    files: [
      { path: 'app.wasm', sha256: hex('wasm'), sha1: hex('wasm', 'sha1'), size: 4 },
      { path: 'etc/config.toml', sha256: hex('cfg'), sha1: hex('cfg', 'sha1'), size: 3 },
    ],
    toolchain: { image: 'docker.io/library/rust:1.84', digest: `sha256:${hex('rust')}` },
    packages: [
      { name: 'serde', version: '1.0.200', purl: 'pkg:cargo/serde@1.0.200', source: 'Cargo.lock' },
      {
        name: 'left-pad',
        version: '1.3.0',
        purl: 'pkg:npm/left-pad@1.3.0',
        source: 'package-lock.json',
        dev: true,
      },
    ],
    created: '1970-01-01T00:00:00Z',
    creatorTool: 'kiln-0.1.0',
    ...overrides,
  };
}

// ---------------------------------------------------------------------------------------------------
// An SPDX 2.3 checker, written from the spec's required fields (no network for the JSON schema here)

const ID = /^SPDXRef-[A-Za-z0-9.-]+$/;
const ALGORITHMS: Record<string, number> = { SHA1: 40, SHA256: 64, SHA512: 128 };
const RELATIONSHIPS = new Set([
  'DESCRIBES',
  'CONTAINS',
  'DEPENDS_ON',
  'DEV_DEPENDENCY_OF',
  'BUILD_TOOL_OF',
  'DESCENDANT_OF',
]);

function spdxProblems(doc: Record<string, unknown>): string[] {
  const problems: string[] = [];
  const need = (ok: boolean, what: string) => {
    if (!ok) problems.push(what);
  };
  const str = (v: unknown) => typeof v === 'string' && v !== '';
  need(doc.spdxVersion === 'SPDX-2.3', 'spdxVersion');
  need(doc.dataLicense === 'CC0-1.0', 'dataLicense');
  need(doc.SPDXID === 'SPDXRef-DOCUMENT', 'SPDXID');
  need(str(doc.name), 'name');
  const ns = doc.documentNamespace;
  need(typeof ns === 'string' && /^https?:\/\/[^\s#]+$/.test(ns), 'documentNamespace is a URI without #');
  const ci = doc.creationInfo as { created?: unknown; creators?: unknown } | undefined;
  need(typeof ci?.created === 'string' && /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/.test(ci.created), 'created');
  need(
    Array.isArray(ci?.creators) &&
      ci.creators.length > 0 &&
      ci.creators.every((c) => typeof c === 'string' && /^(Tool|Person|Organization): \S/.test(c)),
    'creators',
  );
  const ids = new Set<string>(['SPDXRef-DOCUMENT']);
  const addId = (id: unknown, what: string) => {
    need(typeof id === 'string' && ID.test(id) && !ids.has(id), `${what}: SPDXID valid and unique`);
    if (typeof id === 'string') ids.add(id);
  };
  const checksums = (sums: unknown, what: string) => {
    need(Array.isArray(sums) && sums.length > 0, `${what}: checksums`);
    for (const c of (sums as { algorithm?: string; checksumValue?: string }[]) ?? []) {
      const len = ALGORITHMS[c.algorithm ?? ''];
      need(
        len !== undefined && new RegExp(`^[0-9a-f]{${len}}$`).test(c.checksumValue ?? ''),
        `${what}: checksum`,
      );
    }
  };
  for (const [i, p] of ((doc.packages as Record<string, unknown>[]) ?? []).entries()) {
    const what = `packages[${i}]`;
    need(str(p.name), `${what}.name`);
    addId(p.SPDXID, what);
    need(str(p.downloadLocation), `${what}.downloadLocation`);
    if (p.filesAnalyzed === false)
      need(p.packageVerificationCode === undefined, `${what}: no verification code`);
    if (p.checksums !== undefined) checksums(p.checksums, what);
    for (const r of (p.externalRefs as Record<string, string>[]) ?? []) {
      need(
        str(r.referenceCategory) && str(r.referenceType) && str(r.referenceLocator),
        `${what}.externalRefs`,
      );
      if (r.referenceType === 'purl')
        need(/^pkg:[a-z]+\/[^\s]+$/.test(r.referenceLocator ?? ''), `${what}: purl`);
    }
  }
  for (const [i, f] of ((doc.files as Record<string, unknown>[]) ?? []).entries()) {
    const what = `files[${i}]`;
    need(typeof f.fileName === 'string' && f.fileName.startsWith('./'), `${what}.fileName`);
    addId(f.SPDXID, what);
    checksums(f.checksums, what);
    // SPDX 2.3 §8.4: a file's SHA1 must be given.
    need(
      (f.checksums as { algorithm: string }[]).some((c) => c.algorithm === 'SHA1'),
      `${what}: SHA1`,
    );
  }
  for (const [i, r] of ((doc.relationships as Record<string, string>[]) ?? []).entries()) {
    need(
      ids.has(r.spdxElementId ?? '') && ids.has(r.relatedSpdxElement ?? ''),
      `relationships[${i}] ids exist`,
    );
    need(RELATIONSHIPS.has(r.relationshipType ?? ''), `relationships[${i}].relationshipType`);
  }
  return problems;
}

test('spdx: the document has every field SPDX 2.3 requires, and the relationships kiln promises', () => {
  const doc = JSON.parse(spdxDocument(input()).toString('utf8'));
  assert.deepEqual(spdxProblems(doc), []);
  const rel = (a: string, t: string, b: string) =>
    doc.relationships.some(
      (r: Record<string, string>) =>
        r.spdxElementId === a && r.relationshipType === t && r.relatedSpdxElement === b,
    );
  assert.ok(rel('SPDXRef-DOCUMENT', 'DESCRIBES', 'SPDXRef-Image'));
  assert.ok(rel('SPDXRef-Toolchain', 'BUILD_TOOL_OF', 'SPDXRef-Image'));
  const byName = (n: string) => doc.packages.find((p: { name: string }) => p.name === n);
  assert.ok(rel('SPDXRef-Image', 'DEPENDS_ON', byName('serde').SPDXID));
  assert.ok(rel(byName('left-pad').SPDXID, 'DEV_DEPENDENCY_OF', 'SPDXRef-Image'));
  assert.deepEqual(
    doc.files.map((f: { fileName: string }) => f.fileName),
    ['./app.wasm', './etc/config.toml'],
  );
  for (const f of doc.files) assert.ok(rel('SPDXRef-Image', 'CONTAINS', f.SPDXID));
  const image = byName('localhost:5000/team/app');
  assert.equal(image.SPDXID, 'SPDXRef-Image');
  assert.deepEqual(image.checksums, [{ algorithm: 'SHA256', checksumValue: hex('manifest') }]);
  assert.equal(
    image.externalRefs[0].referenceLocator,
    `pkg:oci/app@sha256%3A${hex('manifest')}?arch=wasm&os=wasip1&repository_url=localhost:5000/team/app`,
  );
  // §7.9: SHA1 of the sorted, concatenated SHA1s of the files.
  const code = createHash('sha1')
    .update([hex('wasm', 'sha1'), hex('cfg', 'sha1')].sort().join(''))
    .digest('hex');
  assert.equal(image.packageVerificationCode.packageVerificationCodeValue, code);
  assert.equal(doc.documentNamespace, `https://kiln.dev/spdx/localhost%3A5000/team/app/${hex('manifest')}`);
  assert.deepEqual(doc.creationInfo, { created: '1970-01-01T00:00:00Z', creators: ['Tool: kiln-0.1.0'] });
  const base = JSON.parse(
    spdxDocument(input({ base: { name: 'debian:12', digest: `sha256:${hex('deb')}` } })).toString(),
  );
  assert.deepEqual(spdxProblems(base), []);
  assert.ok(
    base.relationships.some(
      (r: Record<string, string>) =>
        r.relationshipType === 'DESCENDANT_OF' && r.relatedSpdxElement === 'SPDXRef-Base',
    ),
  );
});

test('spdx: the checker catches broken documents (so the test above can fail)', () => {
  const good = JSON.parse(spdxDocument(input()).toString('utf8'));
  const broken = [
    { ...good, spdxVersion: 'SPDX-2.2' },
    { ...good, documentNamespace: 'not a uri' },
    { ...good, creationInfo: { created: 'yesterday', creators: ['kiln'] } },
    { ...good, packages: [{ ...good.packages[0], downloadLocation: undefined }] },
    { ...good, files: [{ ...good.files[0], checksums: [{ algorithm: 'SHA256', checksumValue: 'xyz' }] }] },
    {
      ...good,
      relationships: [
        { spdxElementId: 'SPDXRef-Nope', relationshipType: 'CONTAINS', relatedSpdxElement: 'SPDXRef-Image' },
      ],
    },
  ];
  for (const doc of broken) assert.notDeepEqual(spdxProblems(doc), [], JSON.stringify(doc).slice(0, 80));
});

test('spdx: byte-identical for the same input, whatever the order of files and packages', () => {
  const a = spdxDocument(input());
  const shuffled = input();
  shuffled.files = [...shuffled.files].reverse();
  shuffled.packages = [...(shuffled.packages ?? [])].reverse().concat(shuffled.packages ?? []);
  assert.ok(a.equals(spdxDocument(shuffled)));
  assert.ok(a.equals(spdxDocument(input())));
  const other = spdxDocument(
    input({ subject: { mediaType: MediaType.OciManifest, digest: `sha256:${hex('other')}`, size: 1 } }),
  );
  assert.notEqual(JSON.parse(a.toString()).documentNamespace, JSON.parse(other.toString()).documentNamespace);
  // No files: still valid (an artifact kiln did not unpack), and no verification code is claimed.
  const empty = JSON.parse(spdxDocument(input({ files: [], packages: [], toolchain: undefined })).toString());
  assert.deepEqual(spdxProblems(empty), []);
  assert.equal(empty.packages[0].filesAnalyzed, false);
});

test('spdx: purls of OCI images', () => {
  const d = `sha256:${hex('x')}`;
  assert.equal(ociPurl('hello', d), `pkg:oci/hello@sha256%3A${hex('x')}`);
  assert.equal(
    ociPurl('docker.io/library/rust:1.84', d),
    `pkg:oci/rust@sha256%3A${hex('x')}?repository_url=docker.io/library/rust&tag=1.84`,
  );
  assert.equal(
    ociPurl('ghcr.io/Org/App', d, { os: 'linux', architecture: 'arm', variant: 'v7' }),
    `pkg:oci/app@sha256%3A${hex('x')}?arch=arm&os=linux&repository_url=ghcr.io/org/app&variant=v7`,
  );
});

// ---------------------------------------------------------------------------------------------------
// Lock files

let work: string;
before(async () => {
  work = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-sbom-unit-'));
});
after(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

async function project(name: string, files: Record<string, string>): Promise<string> {
  const dir = path.join(work, name);
  for (const [rel, text] of Object.entries(files)) {
    await fs.mkdir(path.dirname(path.join(dir, rel)), { recursive: true });
    await fs.writeFile(path.join(dir, rel), text);
  }
  return dir;
}

test('lockfiles: Cargo.lock (registry, git and the workspace crate)', async () => {
  const dir = await project('cargo', {
    'Cargo.lock': `# This file is automatically @generated by Cargo.
version = 3

[[package]]
name = "app"
version = "0.1.0"
dependencies = [
 "serde",
]

[[package]]
name = "serde"
version = "1.0.200"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "ddc6f9cc94d67c0e21aaf7eda3a010fd3af78ebf6e096aa6e2e13c79749cce4f"

[[package]]
name = "wit-bindgen"
version = "0.24.0"
source = "git+https://github.com/bytecodealliance/wit-bindgen?rev=abc#abcdef0123"

[metadata]
"checksum x" = "y"
`,
  });
  assert.deepEqual(await lockfilePackages(dir), [
    { name: 'serde', version: '1.0.200', purl: 'pkg:cargo/serde@1.0.200', source: 'Cargo.lock' },
    {
      name: 'wit-bindgen',
      version: '0.24.0',
      purl: 'pkg:cargo/wit-bindgen@0.24.0?vcs_url=git%2Bhttps://github.com/bytecodealliance/wit-bindgen%40abcdef0123',
      source: 'Cargo.lock',
    },
  ]);
});

test('lockfiles: go.mod requires with replaces; go.sum alone', async () => {
  const dir = await project('go', {
    'go.mod': `module example.com/app

go 1.22

require github.com/BurntSushi/toml v1.3.2 // indirect

require (
	golang.org/x/text v0.14.0
	example.com/local v0.0.0
	example.com/old v1.0.0
)

replace example.com/local => ./local
replace (
	example.com/old => example.com/new v1.1.0
)
`,
    'go.sum': 'ignored.example/x v9.9.9 h1:abc=\n',
  });
  assert.deepEqual(await lockfilePackages(dir), [
    {
      name: 'example.com/new',
      version: 'v1.1.0',
      purl: 'pkg:golang/example.com/new@v1.1.0',
      source: 'go.mod',
    },
    {
      name: 'github.com/BurntSushi/toml',
      version: 'v1.3.2',
      purl: 'pkg:golang/github.com/burntsushi/toml@v1.3.2',
      source: 'go.mod',
    },
    {
      name: 'golang.org/x/text',
      version: 'v0.14.0',
      purl: 'pkg:golang/golang.org/x/text@v0.14.0',
      source: 'go.mod',
    },
  ]);
  const sumOnly = await project('gosum', {
    'go.sum': [
      'golang.org/x/text v0.14.0 h1:ScX5w1eTa3QqT8oi6+ziP7dTV1S2+ALU0bI+0zXKWiQ=',
      'golang.org/x/text v0.14.0/go.mod h1:18ZOQIKpY8NJVqYksKHtTdi31H5itFRjB5/qKTNYzSU=',
      'golang.org/x/mod v0.1.0/go.mod h1:xxx=',
    ].join('\n'),
  });
  assert.deepEqual(await lockfilePackages(sumOnly), [
    {
      name: 'golang.org/x/text',
      version: 'v0.14.0',
      purl: 'pkg:golang/golang.org/x/text@v0.14.0',
      source: 'go.sum',
    },
  ]);
});

test('lockfiles: package-lock.json v3 (nested, scoped, aliased, dev, links) and v1', async () => {
  const v3 = JSON.stringify({
    name: 'app',
    lockfileVersion: 3,
    packages: {
      '': { name: 'app', version: '1.0.0' },
      'node_modules/left-pad': { version: '1.3.0', dev: true },
      'node_modules/@types/node': { version: '20.1.0' },
      'node_modules/a/node_modules/left-pad': { version: '1.2.0' },
      'node_modules/lp': { name: 'left-pad', version: '1.1.0' },
      'node_modules/ws-pkg': { resolved: 'packages/ws-pkg', link: true },
      'packages/ws-pkg': { name: 'ws-pkg', version: '0.0.1' },
      'node_modules/a': { version: '2.0.0' },
    },
  });
  const dir = await project('npm', { 'package-lock.json': v3 });
  assert.deepEqual(await lockfilePackages(dir), [
    {
      name: '@types/node',
      version: '20.1.0',
      purl: 'pkg:npm/%40types/node@20.1.0',
      source: 'package-lock.json',
    },
    { name: 'a', version: '2.0.0', purl: 'pkg:npm/a@2.0.0', source: 'package-lock.json' },
    { name: 'left-pad', version: '1.1.0', purl: 'pkg:npm/left-pad@1.1.0', source: 'package-lock.json' },
    { name: 'left-pad', version: '1.2.0', purl: 'pkg:npm/left-pad@1.2.0', source: 'package-lock.json' },
    {
      name: 'left-pad',
      version: '1.3.0',
      purl: 'pkg:npm/left-pad@1.3.0',
      source: 'package-lock.json',
      dev: true,
    },
  ]);
  const v1 = npmPackages(
    JSON.stringify({
      lockfileVersion: 1,
      dependencies: { a: { version: '1.0.0', dependencies: { b: { version: '2.0.0', dev: true } } } },
    }),
  );
  assert.deepEqual(
    v1.map((p) => p.purl),
    ['pkg:npm/a@1.0.0', 'pkg:npm/b@2.0.0'],
  );
  const broken = await project('npm-broken', { 'package-lock.json': '{"lockfileVersion": 3,' });
  await assert.rejects(lockfilePackages(broken), (e) => isKilnError(e, 'E_BAD_PROJECT'));
});

test('lockfiles: .NET packages.lock.json beside a project, frameworks merged, projects left out', async () => {
  const lock = JSON.stringify({
    version: 1,
    dependencies: {
      'net8.0': {
        'Newtonsoft.Json': { type: 'Direct', requested: '[13.0.3, )', resolved: '13.0.3' },
        'System.Memory': { type: 'Transitive', resolved: '4.5.5' },
        Lib: { type: 'Project' },
      },
      'net8.0/wasi-wasm': { 'Newtonsoft.Json': { type: 'Direct', resolved: '13.0.3' } },
    },
  });
  const dir = await project('dotnet', { 'src/App/packages.lock.json': lock, 'bin/packages.lock.json': '{' });
  assert.deepEqual(await lockfilePackages(dir), [
    {
      name: 'Newtonsoft.Json',
      version: '13.0.3',
      purl: 'pkg:nuget/Newtonsoft.Json@13.0.3',
      source: 'src/App/packages.lock.json',
    },
    {
      name: 'System.Memory',
      version: '4.5.5',
      purl: 'pkg:nuget/System.Memory@4.5.5',
      source: 'src/App/packages.lock.json',
    },
  ]);
  assert.deepEqual(await lockfilePackages(await project('none', { 'README.md': 'hi' })), []);
});

// ---------------------------------------------------------------------------------------------------
// The referrers API branch, against a fake registry that has it

interface Fake {
  host: string;
  server: Server;
  blobs: Map<string, Buffer>;
  manifests: Map<string, { type: string; body: Buffer }>;
  puts: string[];
  /** Called after each manifest PUT is stored: plays a concurrent writer. */
  afterPut?: (ref: string) => void;
}

async function fakeRegistry(withReferrersApi: boolean): Promise<Fake> {
  const blobs = new Map<string, Buffer>();
  const manifests = new Map<string, { type: string; body: Buffer }>();
  const puts: string[] = [];
  let fake: Fake;
  const read = async (req: IncomingMessage) => {
    const parts: Buffer[] = [];
    for await (const c of req) parts.push(c as Buffer);
    return Buffer.concat(parts);
  };
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const p = url.pathname;
    const body = await read(req);
    const blobPath = /^\/v2\/(.+)\/blobs\/(.+)$/.exec(p);
    const manifestPath = /^\/v2\/(.+)\/manifests\/(.+)$/.exec(p);
    const referrersPath = /^\/v2\/(.+)\/referrers\/(.+)$/.exec(p);
    if (p === '/v2/') return res.writeHead(200).end('{}');
    if (/^\/v2\/(.+)\/blobs\/uploads\/$/.test(p) && req.method === 'POST')
      return res
        .writeHead(202, { location: `/upload/${Math.random().toString(16).slice(2)}`, 'content-length': 0 })
        .end();
    if (p.startsWith('/upload/') && req.method === 'PUT') {
      const digest = url.searchParams.get('digest')!;
      blobs.set(digest, body);
      return res.writeHead(201, { 'docker-content-digest': digest, 'content-length': 0 }).end();
    }
    if (blobPath) {
      const m = blobPath;
      const blob = blobs.get(m[2]!);
      if (!blob)
        return res
          .writeHead(404, { 'content-type': 'application/json' })
          .end('{"errors":[{"code":"BLOB_UNKNOWN"}]}');
      res.writeHead(200, { 'content-length': blob.length, 'docker-content-digest': m[2]! });
      return res.end(req.method === 'HEAD' ? undefined : blob);
    }
    if (manifestPath) {
      const m = manifestPath;
      const ref = m[2]!;
      if (req.method === 'PUT') {
        puts.push(ref);
        const digest = digestOf(body);
        const entry = { type: req.headers['content-type'] ?? '', body };
        manifests.set(ref, entry);
        manifests.set(digest, entry);
        const headers: Record<string, string | number> = {
          'docker-content-digest': digest,
          'content-length': 0,
        };
        const subject = JSON.parse(body.toString()).subject;
        if (withReferrersApi && subject) headers['oci-subject'] = subject.digest;
        fake.afterPut?.(ref);
        return res.writeHead(201, headers).end();
      }
      const found = manifests.get(ref);
      if (!found)
        return res
          .writeHead(404, { 'content-type': 'application/json' })
          .end('{"errors":[{"code":"MANIFEST_UNKNOWN"}]}');
      res.writeHead(200, {
        'content-type': found.type,
        'content-length': found.body.length,
        'docker-content-digest': digestOf(found.body),
      });
      return res.end(req.method === 'HEAD' ? undefined : found.body);
    }
    if (referrersPath && withReferrersApi) {
      const m = referrersPath;
      const list: Descriptor[] = [];
      const seen = new Set<string>();
      for (const [, { type, body: b }] of manifests) {
        const doc = JSON.parse(b.toString());
        const d = digestOf(b);
        if (doc.subject?.digest !== m[2] || seen.has(d)) continue;
        seen.add(d);
        list.push({
          mediaType: type,
          digest: d,
          size: b.length,
          artifactType: doc.artifactType,
          annotations: doc.annotations,
        });
      }
      const out = Buffer.from(
        JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: list }),
      );
      return res
        .writeHead(200, { 'content-type': MediaType.OciIndex, 'content-length': out.length })
        .end(out);
    }
    res.writeHead(404, { 'content-type': 'application/json' }).end('{"errors":[{"code":"NAME_UNKNOWN"}]}');
  };
  const server = createServer((req, res) => {
    handle(req, res).catch((err) => res.writeHead(500).end(String(err)));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  fake = { host, server, blobs, manifests, puts };
  return fake;
}

/** Puts a small image (its manifest only matters to referrers) under `tag`. */
function seedImage(fake: Fake, tag: string): Descriptor {
  const config = Buffer.from(
    '{"architecture":"wasm","os":"wasip1","rootfs":{"type":"layers","diff_ids":[]}}',
  );
  fake.blobs.set(digestOf(config), config);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.OciManifest,
      config: { mediaType: MediaType.OciConfig, digest: digestOf(config), size: config.length },
      layers: [],
    }),
  );
  const entry = { type: MediaType.OciManifest, body: manifest };
  fake.manifests.set(tag, entry);
  fake.manifests.set(digestOf(manifest), entry);
  return { mediaType: MediaType.OciManifest, digest: digestOf(manifest), size: manifest.length };
}

test('referrers: a registry with the referrers API indexes the artifact; no fallback tag is written', async (t) => {
  const fake = await fakeRegistry(true);
  t.after(() => new Promise<void>((r) => fake.server.close(() => r())));
  const subject = seedImage(fake, 'v1');
  const ref = `${fake.host}/team/app:v1`;
  const result = await attachSbom({ ...input({ subject, name: `${fake.host}/team/app` }), to: ref });
  assert.equal(result.via, 'referrers-api');
  assert.deepEqual(fake.puts, [result.descriptor.digest], 'only the artifact manifest, by digest');
  assert.ok(!fake.manifests.has(referrersTag(subject.digest)));
  // The manifest follows image-spec 1.1's artifact guidance.
  const stored = JSON.parse(fake.manifests.get(result.descriptor.digest)!.body.toString());
  assert.equal(stored.artifactType, SPDX_MEDIA_TYPE);
  assert.deepEqual(stored.config, EMPTY_DESCRIPTOR);
  assert.deepEqual(fake.blobs.get(EMPTY_DESCRIPTOR.digest), Buffer.from('{}'));
  assert.deepEqual(stored.subject, subject);
  assert.equal(stored.layers.length, 1);
  assert.equal(stored.layers[0].mediaType, SPDX_MEDIA_TYPE);
  assert.equal(stored.annotations['org.opencontainers.image.created'], '1970-01-01T00:00:00Z');
  const listed = await listReferrers(ref, undefined, SPDX_MEDIA_TYPE);
  assert.deepEqual(
    listed.map((d) => [d.digest, d.artifactType]),
    [[result.descriptor.digest, SPDX_MEDIA_TYPE]],
  );
  const found = await findSbom(ref);
  assert.equal(found.subject.digest, subject.digest);
  assert.ok(found.document.equals(spdxDocument(input({ subject, name: `${fake.host}/team/app` }))));
  // Another artifact type is listed apart.
  await attachOctetReferrer(ref, subject, 'application/vnd.example.sig', 'sig');
  assert.equal((await listReferrers(ref, subject)).length, 2);
  assert.equal((await listReferrers(ref, subject, SPDX_MEDIA_TYPE)).length, 1);
});

test('referrers: without the API, the fallback tag is read before writing and keeps other entries', async (t) => {
  const fake = await fakeRegistry(false);
  t.after(() => new Promise<void>((r) => fake.server.close(() => r())));
  const subject = seedImage(fake, 'v1');
  const ref = `${fake.host}/team/app:v1`;
  const tag = referrersTag(subject.digest);
  // Someone else's entry is there already.
  const foreign: Descriptor = {
    mediaType: MediaType.OciManifest,
    digest: `sha256:${hex('foreign')}`,
    size: 10,
    artifactType: 'application/vnd.example.sig',
  };
  const index = Buffer.from(
    JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [foreign] }),
  );
  fake.manifests.set(tag, { type: MediaType.OciIndex, body: index });
  const a = await attachSbom({ ...input({ subject }), to: ref });
  assert.equal(a.via, 'fallback-tag');
  const again = await attachSbom({ ...input({ subject }), to: ref });
  assert.deepEqual(again, a);
  const listed = JSON.parse(fake.manifests.get(tag)!.body.toString()).manifests as Descriptor[];
  assert.deepEqual(
    listed.map((d) => d.digest),
    [foreign.digest, a.descriptor.digest],
  );
  assert.equal(fake.puts.filter((p) => p === tag).length, 1, 'the second attach wrote nothing');
  // A tag that is not an index is not overwritten.
  fake.manifests.set(tag, fake.manifests.get('v1')!);
  await assert.rejects(
    attachReferrer({ to: ref, subject, artifactType: 'x/y', mediaType: 'x/y', data: Buffer.from('z') }),
    (e) => isKilnError(e, 'E_BAD_MANIFEST'),
  );
});

// ---------------------------------------------------------------------------------------------------
// Files of an image, and referrers in an OCI layout

test('files: the flattened files of the layers above the base, hashed; links share their target', async () => {
  const img = await writeImage(path.join(work, 'files-layout'), [
    { entries: [dir('etc'), file('etc/base.conf', 'base'), file('bin/sh', 'shell')], gzip: true },
    { entries: [file('app/app.wasm', 'wasm'), link('app/alias.wasm', 'app/app.wasm'), file('etc/old', 'x')] },
    {
      entries: [file('etc/.wh.old', ''), file('app/data.txt', 'v2'), symlink('app/current', 'app.wasm')],
      gzip: true,
    },
  ]);
  const source = await openSource(img.ref);
  const sums = (p: string, content: string) => ({
    path: p,
    sha256: hex(content),
    sha1: hex(content, 'sha1'),
    size: Buffer.byteLength(content),
  });
  assert.deepEqual(await imageFiles(source, img.manifest, { skipLayers: 1 }), [
    sums('app/alias.wasm', 'wasm'),
    sums('app/app.wasm', 'wasm'),
    sums('app/data.txt', 'v2'),
  ]);
  const all = await imageFiles(source, img.manifest);
  assert.deepEqual(
    all.map((f) => f.path),
    ['app/alias.wasm', 'app/app.wasm', 'app/data.txt', 'bin/sh', 'etc/base.conf'],
  );
  // A raw wasm layer (the artifact formats) is one file, named by its title.
  const layout = await OciLayout.open(path.join(work, 'files-layout'));
  const wasm = Buffer.from('\0asm\x01\0\0\0');
  const layer = {
    mediaType: MediaType.WasmLayer,
    ...(await layout.putBytes(wasm)),
    annotations: { [TITLE_ANNOTATION]: 'hello.wasm' },
  };
  const manifest = encodeJson({
    schemaVersion: 2,
    mediaType: MediaType.OciManifest,
    config: EMPTY_DESCRIPTOR,
    layers: [layer],
  });
  const written = await layout.putBytes(manifest);
  const files = await imageFiles(source, { mediaType: MediaType.OciManifest, ...written });
  assert.deepEqual(files, [
    {
      path: 'hello.wasm',
      sha256: hex(wasm.toString()),
      sha1: createHash('sha1').update(wasm).digest('hex'),
      size: 8,
    },
  ]);
});

test('referrers in an oci: layout: the fallback tag in index.json, idempotent, untagged layout still resolves', async () => {
  const dirPath = path.join(work, 'ref-layout');
  const img = await writeImage(dirPath, [{ entries: [file('app.wasm', 'wasm')] }]);
  const subject = img.manifest;
  const one = await attachSbom({ ...input({ subject }), to: `oci:${dirPath}` });
  const two = await attachOctetReferrer(`oci:${dirPath}`, subject, 'application/vnd.example.sig', 'sig');
  assert.deepEqual(await attachSbom({ ...input({ subject }), to: `oci:${dirPath}` }), one);
  const index = JSON.parse(await fs.readFile(path.join(dirPath, 'index.json'), 'utf8'));
  const tagged = index.manifests.filter(
    (m: Descriptor) => m.annotations?.['org.opencontainers.image.ref.name'] === referrersTag(subject.digest),
  );
  assert.equal(tagged.length, 1);
  assert.equal(tagged[0].mediaType, MediaType.OciIndex);
  const fallback = JSON.parse(
    await fs.readFile(path.join(dirPath, 'blobs', 'sha256', tagged[0].digest.slice(7)), 'utf8'),
  );
  assert.deepEqual(
    fallback.manifests.map((m: Descriptor) => [m.digest, m.artifactType]),
    [
      [one.descriptor.digest, SPDX_MEDIA_TYPE],
      [two.descriptor.digest, 'application/vnd.example.sig'],
    ],
  );
  // Every blob the artifacts name is in the layout.
  for (const d of [one.descriptor, one.document, two.descriptor, EMPTY_DESCRIPTOR])
    assert.ok(await fs.stat(path.join(dirPath, 'blobs', 'sha256', d.digest.slice(7))));
  assert.deepEqual(
    (await listReferrers(`oci:${dirPath}:test`, undefined, SPDX_MEDIA_TYPE)).map((d) => d.digest),
    [one.descriptor.digest],
  );
  const found = await findSbom(`oci:${dirPath}`);
  assert.ok(found.document.equals(spdxDocument(input({ subject }))));
  // Parallel attaches of distinct artifacts all land (the layout's lock makes the tag update atomic).
  const many = await Promise.all(
    Array.from({ length: 6 }, (_, i) =>
      attachOctetReferrer(`oci:${dirPath}`, subject, 'application/vnd.example.n', `n${i}`),
    ),
  );
  const listed = new Set((await listReferrers(`oci:${dirPath}`, subject)).map((d) => d.digest));
  for (const m of many) assert.ok(listed.has(m.descriptor.digest));
  assert.equal(listed.size, 8);
  await assert.rejects(findSbom(`oci:${dirPath}:nope`), (e) => isKilnError(e, 'E_NOT_FOUND'));
});

test('referrers: without the API, an entry a concurrent writer dropped is written again', async (t) => {
  const fake = await fakeRegistry(false);
  t.after(() => new Promise<void>((r) => fake.server.close(() => r())));
  const subject = seedImage(fake, 'v1');
  const tag = referrersTag(subject.digest);
  const other: Descriptor = { mediaType: MediaType.OciManifest, digest: `sha256:${hex('other')}`, size: 3 };
  const theirs = Buffer.from(
    JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [other] }),
  );
  let overwritten = 0;
  // Another writer, having read the tag before kiln wrote it, writes its own version just after.
  fake.afterPut = (ref) => {
    if (ref !== tag || overwritten >= 2) return;
    overwritten++;
    fake.manifests.set(tag, { type: MediaType.OciIndex, body: theirs });
  };
  const result = await attachSbom({ ...input({ subject }), to: `${fake.host}/team/app:v1` });
  const listed = JSON.parse(fake.manifests.get(tag)!.body.toString()).manifests as Descriptor[];
  assert.deepEqual(
    listed.map((d) => d.digest),
    [other.digest, result.descriptor.digest],
    "kiln merged the other writer's entry and its own",
  );
  assert.equal(fake.puts.filter((p) => p === tag).length, 3);
  // A writer that never stops dropping kiln's entry makes the attach fail, not succeed silently.
  overwritten = -100;
  await assert.rejects(
    attachReferrer({
      to: `${fake.host}/team/app:v1`,
      subject,
      artifactType: 'x/y',
      mediaType: 'x/y',
      data: Buffer.from('q'),
    }),
    (e) => isKilnError(e, 'E_REGISTRY'),
  );
});
