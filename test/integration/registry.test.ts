/**
 * kiln against a real registry (Debian's docker-registry, CNCF distribution 2.8) in its three test
 * configurations: open over HTTP, htpasswd Basic over TLS with a test CA, and Bearer tokens.
 * Cross-checked with skopeo. The kiln CLI must be built (`npm run build`).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { makeImage } from '../support/images.js';
import { kiln } from '../support/kiln.js';
import { registrySkipReason, sharedRegistry, startRegistry, startRequestLog } from '../support/registry.js';
import { requireTool, run, toolSkipReason } from '../support/tools.js';

const HELLO = join(import.meta.dirname, '../../examples/hello/hello.wasm');
const work = mkdtempSync(join(tmpdir(), 'kiln-registry-'));
after(() => rmSync(work, { recursive: true, force: true }));

const skip = registrySkipReason('none') ?? registrySkipReason('basic') ?? registrySkipReason('token');

function ok(r: { code: number; stdout: string; stderr: string }, what: string): string {
  assert.equal(r.code, 0, `${what} exited with ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r.stdout.trim();
}

function skopeoInspect(ref: string, extra: string[] = []): Promise<{ Digest: string; Layers: string[] }> {
  return run(requireTool('skopeo')!, ['inspect', ...extra, `docker://${ref}`], { timeoutMs: 60_000 }).then(
    (r) => {
      assert.equal(r.code, 0, r.stderr);
      return JSON.parse(r.stdout);
    },
  );
}

test('package straight to an open registry: skopeo, inspect, digest, tags and run agree', {
  skip,
}, async () => {
  const reg = await sharedRegistry('none');
  const ref = `${reg.host}/wasm/hello:v1`;
  const digest = ok(await kiln(['package', HELLO, '--to', ref]), 'package');
  assert.match(digest, /^sha256:[0-9a-f]{64}$/);
  if (!toolSkipReason('skopeo')) {
    const seen = await skopeoInspect(ref, ['--tls-verify=false']);
    assert.equal(seen.Digest, digest);
  }
  assert.equal(ok(await kiln(['digest', ref]), 'digest'), digest);
  const inspected = JSON.parse(ok(await kiln(['inspect', ref, '--json']), 'inspect'));
  assert.equal(inspected.digest, digest);
  assert.equal(ok(await kiln(['tags', `${reg.host}/wasm/hello`]), 'tags'), 'v1');
  const ran = await kiln(['run', ref, '--', 'from', 'registry']);
  assert.equal(ran.stdout, 'hello, from registry\n', ran.stderr);
});

test('a second push of the same image sends no blob', { skip }, async () => {
  const reg = await sharedRegistry('none');
  const log = await startRequestLog(reg.url);
  after(() => log.stop());
  const img = await makeImage(join(work, 'second-push'), 'x', { layers: 3, layerBytes: 64 * 1024 });
  ok(await kiln(['copy', `oci:${img.layout}:x`, `${log.host}/twice/app:1`]), 'first push');
  const firstUploads = log.requests.filter((r) => r.method === 'PUT' && r.path.includes('/blobs/uploads/'));
  assert.equal(firstUploads.length, 4, 'three layers and the config are uploaded once each');
  log.clear();
  const second = JSON.parse(
    ok(await kiln(['copy', `oci:${img.layout}:x`, `${log.host}/twice/app:1`, '--json']), 'second push'),
  );
  const sent = log.requests.filter((r) => r.path.includes('/blobs/') && r.method !== 'HEAD');
  assert.deepEqual(sent, [], `no blob requests but HEADs: ${JSON.stringify(log.requests)}`);
  assert.equal(second.blobsCopied, 0);
  assert.equal(second.descriptor.digest, img.descriptor.digest);
});

test('copy between two registries keeps every digest; same-registry copies mount', { skip }, async () => {
  const a = await sharedRegistry('none');
  const b = await startRegistry({ auth: 'none' });
  after(() => b.stop());
  const img = await makeImage(join(work, 'two-regs'), 'multi', { layers: 5, layerBytes: 300 * 1024 });
  const src = `${a.host}/team/app:1`;
  assert.equal(ok(await kiln(['copy', `oci:${img.layout}:multi`, src]), 'push'), img.descriptor.digest);
  const dst = `${b.host}/mirror/app:1`;
  assert.equal(ok(await kiln(['copy', src, dst]), 'copy across'), img.descriptor.digest);
  if (!toolSkipReason('skopeo')) {
    const seen = await skopeoInspect(dst, ['--tls-verify=false']);
    assert.equal(seen.Digest, img.descriptor.digest);
    assert.deepEqual(
      seen.Layers,
      img.layers.map((l) => l.digest),
    );
  }
  const mounted = JSON.parse(ok(await kiln(['copy', src, `${a.host}/other/app:1`, '--json']), 'mount'));
  assert.equal(mounted.blobsMounted, 6);
  assert.equal(mounted.blobsCopied, 0);
  // And back to a layout: same digest, blobs verified on the way.
  assert.equal(ok(await kiln(['copy', dst, `oci:${join(work, 'back')}:b`]), 'pull'), img.descriptor.digest);
});

test('large blobs go up in chunks and come back identical', { skip }, async () => {
  const reg = await sharedRegistry('none');
  const log = await startRequestLog(reg.url);
  after(() => log.stop());
  const img = await makeImage(join(work, 'big'), 'big', { layers: 1, layerBytes: 40 * 1024 * 1024 });
  ok(await kiln(['copy', `oci:${img.layout}:big`, `${log.host}/big/app:1`]), 'push');
  const patches = log.requests.filter((r) => r.method === 'PATCH');
  assert.ok(patches.length >= 1, 'a 40 MiB layer is uploaded with PATCH');
  assert.equal(
    ok(await kiln(['copy', `${reg.host}/big/app:1`, `oci:${join(work, 'big-back')}:b`]), 'pull'),
    img.descriptor.digest,
  );
});

test('blob downloads follow redirects to storage and are verified', { skip }, async () => {
  const reg = await sharedRegistry('none');
  const log = await startRequestLog(reg.url, { redirectBlobs: true });
  after(() => log.stop());
  const img = await makeImage(join(work, 'redir'), 'r', { layers: 2, layerBytes: 10_000 });
  ok(await kiln(['copy', `oci:${img.layout}:r`, `${reg.host}/redir/app:1`]), 'push');
  const out = join(work, 'redir-back');
  assert.equal(
    ok(await kiln(['copy', `${log.host}/redir/app:1`, `oci:${out}:r`]), 'pull'),
    img.descriptor.digest,
  );
  assert.ok(
    log.requests.some((r) => r.path.startsWith('/_storage/')),
    'blobs were fetched from the storage URL',
  );
});

test('Basic auth over TLS: CA and credentials needed, secrets never printed', { skip }, async () => {
  const reg = await sharedRegistry('basic');
  const ref = `${reg.host}/secure/hello:1`;
  const creds = `${reg.username}:${reg.password}`;

  const noCa = await kiln(['package', HELLO, '--to', ref, '--creds', creds]);
  assert.equal(noCa.code, 1);
  assert.match(noCa.stderr, /E_TLS/);
  assert.match(noCa.stderr, /--ca-cert/);

  const noCreds = await kiln(['package', HELLO, '--to', ref, '--ca-cert', reg.caFile], {
    env: { DOCKER_CONFIG: join(work, 'empty-docker') },
  });
  assert.equal(noCreds.code, 1);
  assert.match(noCreds.stderr, /requires authentication.*\(E_AUTH\)/);
  assert.match(noCreds.stderr, /kiln login/);

  const wrong = await kiln([
    'package',
    HELLO,
    '--to',
    ref,
    '--ca-cert',
    reg.caFile,
    '--creds',
    `${reg.username}:not-${reg.password}`,
    '--debug',
  ]);
  assert.equal(wrong.code, 1);
  assert.match(wrong.stderr, /refused the credentials from --creds/);
  assert.ok(
    !wrong.stderr.includes(`not-${reg.password}`) && !wrong.stdout.includes(reg.password),
    'no password in output',
  );

  const digest = ok(
    await kiln(['package', HELLO, '--to', ref, '--ca-cert', reg.caFile, '--creds', creds]),
    'push',
  );
  // KILN_AUTH and SSL_CERT_FILE work as well as the flags.
  const viaEnv = await kiln(['digest', ref], { env: { KILN_AUTH: creds, SSL_CERT_FILE: reg.caFile } });
  assert.equal(ok(viaEnv, 'digest via env'), digest);
  if (!toolSkipReason('skopeo')) {
    const seen = await skopeoInspect(ref, [
      '--cert-dir',
      join(work, 'no-certs'),
      '--tls-verify=false',
      '--creds',
      creds,
    ]);
    assert.equal(seen.Digest, digest);
  }
});

test('kiln login stores credentials that later commands use; logout removes them', { skip }, async () => {
  const reg = await sharedRegistry('basic');
  const dockerConfig = join(work, 'docker-login');
  const env = { DOCKER_CONFIG: dockerConfig, SSL_CERT_FILE: reg.caFile };
  ok(
    await kiln(['login', reg.host, '-u', reg.username, '--password-stdin'], {
      env,
      input: `${reg.password}\n`,
    }),
    'login',
  );
  const file = readFileSync(join(dockerConfig, 'config.json'), 'utf8');
  assert.ok(JSON.parse(file).auths[reg.host], 'config.json has the registry');
  ok(await kiln(['package', HELLO, '--to', `${reg.host}/login/hello:1`], { env }), 'push with stored login');
  ok(await kiln(['logout', reg.host], { env }), 'logout');
  const after = await kiln(['digest', `${reg.host}/login/hello:1`], { env });
  assert.match(after.stderr, /E_AUTH/);
});

test('kiln login refuses bad credentials and stores nothing', { skip }, async () => {
  const reg = await sharedRegistry('basic');
  const dockerConfig = join(work, 'docker-bad-login');
  const env = { DOCKER_CONFIG: dockerConfig, SSL_CERT_FILE: reg.caFile };
  const r = await kiln(['login', reg.host, '-u', reg.username, '--password-stdin'], {
    env,
    input: 'wrong\n',
  });
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /E_AUTH/);
  assert.throws(() => readFileSync(join(dockerConfig, 'config.json')), /ENOENT/);
});

test('Bearer tokens: push with credentials, anonymous pull of public repos, scopes per repository', {
  skip,
}, async () => {
  const reg = await sharedRegistry('token');
  const creds = `${reg.username}:${reg.password}`;
  const env = { DOCKER_CONFIG: join(work, 'empty-docker') };
  const digest = ok(
    await kiln(['package', HELLO, '--to', `${reg.host}/public/hello:1`, '--creds', creds], { env }),
    'push',
  );
  const pushTokens = reg.tokenRequests.filter((t) => t.scopes.includes('repository:public/hello:pull,push'));
  assert.ok(pushTokens.length >= 1 && pushTokens.every((t) => t.authenticated));

  // Anonymous pull of a public repo works; anonymous push is refused with a clear error.
  assert.equal(ok(await kiln(['digest', `${reg.host}/public/hello:1`], { env }), 'anonymous pull'), digest);
  const push = await kiln(['package', HELLO, '--to', `${reg.host}/public/hello:2`], { env });
  assert.equal(push.code, 1);
  assert.match(push.stderr, /E_AUTH/);

  // A mount across repositories asks one token for both scopes.
  reg.tokenRequests.length = 0;
  const mounted = JSON.parse(
    ok(
      await kiln(
        ['copy', `${reg.host}/public/hello:1`, `${reg.host}/private/hello:1`, '--creds', creds, '--json'],
        { env },
      ),
      'mount',
    ),
  );
  assert.equal(mounted.blobsMounted, 2);
  assert.ok(
    reg.tokenRequests.some(
      (t) =>
        t.scopes.includes('repository:private/hello:pull,push') &&
        t.scopes.includes('repository:public/hello:pull'),
    ),
    JSON.stringify(reg.tokenRequests.map((t) => t.scopes)),
  );
});

test('tokens in the access_token field, and a registry that is down', { skip }, async () => {
  const reg = await startRegistry({ auth: 'token', tokenField: 'access_token', expiresIn: 60 });
  after(() => reg.stop());
  const creds = `${reg.username}:${reg.password}`;
  ok(await kiln(['package', HELLO, '--to', `${reg.host}/x/hello:1`, '--creds', creds]), 'push');
  await reg.stop();
  const down = await kiln(['digest', `${reg.host}/x/hello:1`]);
  assert.equal(down.code, 1);
  assert.match(down.stderr, /cannot connect to 127\.0\.0\.1:\d+: connection refused \(E_NETWORK\)/);
});

test('errors name the missing thing: unknown repository, unknown tag', { skip }, async () => {
  const reg = await sharedRegistry('none');
  const noRepo = await kiln(['inspect', `${reg.host}/does/not-exist:1`]);
  assert.equal(noRepo.code, 1);
  assert.match(noRepo.stderr, /not found.*\(E_NOT_FOUND\)/);
  ok(await kiln(['package', HELLO, '--to', `${reg.host}/errs/hello:1`]), 'push');
  const noTag = await kiln(['digest', `${reg.host}/errs/hello:nope`]);
  assert.match(noTag.stderr, /manifest nope in .*errs\/hello: not found \(E_NOT_FOUND\)/);
  writeFileSync(join(work, 'unused'), '');
});

test('referrers: the fallback tag scheme where the registry has no referrers API', { skip }, async () => {
  const reg = await sharedRegistry('none');
  const { openRepository } = await import('../../src/transport/registry.js');
  const { parseReference } = await import('../../src/oci/reference.js');
  ok(await kiln(['package', HELLO, '--to', `${reg.host}/refs/hello:1`]), 'push');
  const repo = openRepository(parseReference(`${reg.host}/refs/hello`));
  const subject = (await repo.getManifest('1')).descriptor;
  assert.deepEqual(await repo.referrers(subject.digest), [], 'nothing refers to it yet');
  // The referrer must exist: distribution checks an index's children. An artifact stands in for an SBOM.
  ok(
    await kiln(['package', HELLO, '--format', 'artifact', '--to', `${reg.host}/refs/hello:sbom`]),
    'push artifact',
  );
  const sbom = { ...(await repo.getManifest('sbom')).descriptor, artifactType: 'application/spdx+json' };
  const index = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [sbom],
    }),
  );
  await repo.putManifest(subject.digest.replace(':', '-'), index, 'application/vnd.oci.image.index.v1+json');
  assert.deepEqual(await repo.referrers(subject.digest), [sbom]);
  assert.deepEqual(await repo.referrers(subject.digest, 'application/spdx+json'), [sbom]);
  assert.deepEqual(await repo.referrers(subject.digest, 'application/vnd.cyclonedx+json'), []);
});

test('a warm copy only asks the tag; progress shows each blob as a plain line off a TTY', {
  skip,
}, async () => {
  const reg = await sharedRegistry('none');
  const log = await startRequestLog(reg.url);
  after(() => log.stop());
  const img = await makeImage(join(work, 'warm'), 'w', { layers: 2, layerBytes: 4096 });
  const first = await kiln(['copy', `oci:${img.layout}:w`, `${log.host}/warm/app:1`]);
  ok(first, 'first push');
  // Not a TTY: one line per blob, no bars (no cursor movement).
  const lines = first.stderr.split('\n').filter((l) => / copied$/.test(l));
  assert.equal(lines.length, 3, first.stderr);
  assert.ok(!first.stderr.includes('\u001b['), 'no escape sequences off a TTY');
  log.clear();
  ok(await kiln(['copy', `oci:${img.layout}:w`, `${log.host}/warm/app:1`]), 'warm push');
  const asked = log.requests.filter((r) => r.path !== '/v2/').map((r) => `${r.method} ${r.path}`);
  assert.deepEqual(
    asked,
    ['HEAD /v2/warm/app/manifests/1'],
    'the tag already names the image: nothing is written',
  );
  const mounted = await kiln(['copy', `${reg.host}/warm/app:1`, `${reg.host}/warm/other:1`]);
  assert.equal(
    mounted.stderr.split('\n').filter((l) => /mounted from warm\/app$/.test(l)).length,
    3,
    mounted.stderr,
  );
});
