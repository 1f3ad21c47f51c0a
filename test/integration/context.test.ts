/**
 * KilnContext, for real: two registries that want different users (htpasswd Basic over TLS for
 * alice, a token service for bob), and operations run side by side in one process through the
 * library, each with its own context. Both succeed; neither context's credentials reach the other's
 * registry (the other fails with E_AUTH); an operation with no context has none of them.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isKilnError, type KilnError } from '../../src/errors.js';
import {
  appendLayers,
  copy,
  createContext,
  inspect,
  type KilnContext,
  listTags,
  RegistryError,
} from '../../src/index.js';
import { makeImage, type TestImage } from '../support/images.js';
import {
  type BasicRegistry,
  registrySkipReason,
  startRegistry,
  type TokenRegistry,
} from '../support/registry.js';

const skip = registrySkipReason('basic') ?? registrySkipReason('token');
const work = mkdtempSync(join(tmpdir(), 'kiln-context-'));
// No credentials from the user's docker config or KILN_AUTH, for any context (the default ones too).
const noDockerConfig = join(work, 'no-docker-config');
mkdirSync(noDockerConfig);
const savedEnv = { DOCKER_CONFIG: process.env.DOCKER_CONFIG, KILN_AUTH: process.env.KILN_AUTH };
process.env.DOCKER_CONFIG = noDockerConfig;
delete process.env.KILN_AUTH;
after(() => {
  for (const [k, v] of Object.entries(savedEnv)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  rmSync(work, { recursive: true, force: true });
});

/** An auth error from the registry: E_AUTH, as a RegistryError with the 401 it answered. */
function authError(host: string) {
  return (err: KilnError) => {
    assert.ok(isKilnError(err, 'E_AUTH'), `expected E_AUTH, got ${err.code}: ${err.message}`);
    assert.ok(err instanceof RegistryError, 'a RegistryError');
    assert.equal(err.status, 401);
    assert.match(err.message, new RegExp(host.replace(/[.]/g, '\\.')));
    return true;
  };
}

describe('KilnContext', { skip }, () => {
  let alice: BasicRegistry;
  let bob: TokenRegistry;
  let base: TestImage;
  let ctxA: KilnContext;
  let ctxB: KilnContext;

  before(async () => {
    [alice, bob] = await Promise.all([
      startRegistry({ auth: 'basic', username: 'alice' }),
      startRegistry({ auth: 'token', username: 'bob' }),
    ]);
    base = await makeImage(join(work, 'base'), 'base', { layers: 2, layerBytes: 64 * 1024 });
    // Both trust alice's CA: a refusal is then about credentials, never about TLS.
    ctxA = createContext({
      registry: { creds: `${alice.username}:${alice.password}`, caFiles: [alice.caFile] },
      store: join(work, 'store-a'),
    });
    ctxB = createContext({
      registry: { creds: `${bob.username}:${bob.password}`, caFiles: [alice.caFile] },
      store: join(work, 'store-b'),
    });
  });
  after(async () => {
    ctxA?.close();
    ctxB?.close();
    await Promise.all([alice?.stop(), bob?.stop()]);
  });

  test('two operations at once with different credentials both succeed', async () => {
    const layer = join(work, 'layer');
    mkdirSync(layer);
    writeFileSync(join(layer, 'hello.txt'), 'hello\n');
    const a = `${alice.host}/team/app`;
    const b = `${bob.host}/team/app`;
    // Pushes, then image operations that open their sources and destinations after other work.
    await Promise.all([
      copy(base.ref, `${a}:base`, { context: ctxA }),
      copy(base.ref, `${b}:base`, { context: ctxB }),
    ]);
    const [appendedA, appendedB] = await Promise.all([
      appendLayers({ base: `${a}:base`, layers: [{ source: layer }], to: `${a}:1`, context: ctxA }),
      appendLayers({ base: `${b}:base`, layers: [{ source: layer }], to: `${b}:1`, context: ctxB }),
    ]);
    assert.equal(appendedA.descriptor.digest, appendedB.descriptor.digest, 'the same image on both');
    const [tagsA, tagsB, seenA, seenB] = await Promise.all([
      listTags(a, { context: ctxA }),
      listTags(b, { context: ctxB }),
      inspect(`${a}:1`, { context: ctxA }),
      inspect(`${b}:1`, { context: ctxB }),
    ]);
    assert.deepEqual(tagsA.sort(), ['1', 'base']);
    assert.deepEqual(tagsB.sort(), ['1', 'base']);
    assert.equal(seenA.digest, appendedA.descriptor.digest);
    assert.equal(seenB.digest, appendedB.descriptor.digest);
  });

  test("a context's credentials never reach the other registry", async () => {
    const a = `${alice.host}/team/app`;
    const b = `${bob.host}/team/app`;
    // Interleaved with the owners' own operations, which still succeed.
    const [wrongA, wrongB, rightA, rightB] = await Promise.allSettled([
      inspect(`${b}:base`, { context: ctxA }),
      inspect(`${a}:base`, { context: ctxB }),
      inspect(`${a}:base`, { context: ctxA }),
      inspect(`${b}:base`, { context: ctxB }),
    ]);
    assert.equal(rightA.status, 'fulfilled');
    assert.equal(rightB.status, 'fulfilled');
    assert.equal(wrongA.status, 'rejected');
    assert.equal(wrongB.status, 'rejected');
    authError(bob.host)((wrongA as PromiseRejectedResult).reason);
    authError(alice.host)((wrongB as PromiseRejectedResult).reason);
    // Pushes too: alice may not write to bob's registry with her context, nor bob to alice's.
    await assert.rejects(copy(base.ref, `${b}:from-alice`, { context: ctxA }), authError(bob.host));
    await assert.rejects(copy(base.ref, `${a}:from-bob`, { context: ctxB }), authError(alice.host));
    // No context: no credentials at all, whatever the contexts above hold.
    await assert.rejects(
      listTags(b),
      (err: KilnError) => isKilnError(err, 'E_AUTH') && /requires authentication/.test(err.message),
    );
  });
});
