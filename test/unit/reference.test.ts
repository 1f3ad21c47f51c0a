import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  familiarReference,
  formatReference,
  parseReference,
  type Reference,
} from '../../src/oci/reference.js';
import { assertRefusal, thrown } from '../support/errors.js';

const SHA256 = `sha256:${'a'.repeat(64)}`;
const SHA512 = `sha512:${'0123456789abcdef'.repeat(8)}`;

// input, expected parse, canonical form, familiar form
const valid: [string, Reference, string, string][] = [
  [
    'ubuntu',
    { registry: 'docker.io', repository: 'library/ubuntu', tag: 'latest' },
    'docker.io/library/ubuntu:latest',
    'ubuntu:latest',
  ],
  [
    'ubuntu:22.04',
    { registry: 'docker.io', repository: 'library/ubuntu', tag: '22.04' },
    'docker.io/library/ubuntu:22.04',
    'ubuntu:22.04',
  ],
  [
    'myuser/app',
    { registry: 'docker.io', repository: 'myuser/app', tag: 'latest' },
    'docker.io/myuser/app:latest',
    'myuser/app:latest',
  ],
  [
    'docker.io/library/alpine:3',
    { registry: 'docker.io', repository: 'library/alpine', tag: '3' },
    'docker.io/library/alpine:3',
    'alpine:3',
  ],
  [
    'docker.io/alpine',
    { registry: 'docker.io', repository: 'library/alpine', tag: 'latest' },
    'docker.io/library/alpine:latest',
    'alpine:latest',
  ],
  [
    'index.docker.io/alpine',
    { registry: 'docker.io', repository: 'library/alpine', tag: 'latest' },
    'docker.io/library/alpine:latest',
    'alpine:latest',
  ],
  [
    'index.docker.io/foo/bar:x',
    { registry: 'docker.io', repository: 'foo/bar', tag: 'x' },
    'docker.io/foo/bar:x',
    'foo/bar:x',
  ],
  [
    'library/x/y',
    { registry: 'docker.io', repository: 'library/x/y', tag: 'latest' },
    'docker.io/library/x/y:latest',
    'library/x/y:latest',
  ],
  [
    'ghcr.io/owner/repo:v1.2.3',
    { registry: 'ghcr.io', repository: 'owner/repo', tag: 'v1.2.3' },
    'ghcr.io/owner/repo:v1.2.3',
    'ghcr.io/owner/repo:v1.2.3',
  ],
  [
    'ghcr.io/app',
    { registry: 'ghcr.io', repository: 'app', tag: 'latest' },
    'ghcr.io/app:latest',
    'ghcr.io/app:latest',
  ],
  [
    'localhost/app',
    { registry: 'localhost', repository: 'app', tag: 'latest' },
    'localhost/app:latest',
    'localhost/app:latest',
  ],
  [
    'localhost:5000/a/b/c:dev',
    { registry: 'localhost:5000', repository: 'a/b/c', tag: 'dev' },
    'localhost:5000/a/b/c:dev',
    'localhost:5000/a/b/c:dev',
  ],
  [
    '[::1]:5000/app:1',
    { registry: '[::1]:5000', repository: 'app', tag: '1' },
    '[::1]:5000/app:1',
    '[::1]:5000/app:1',
  ],
  [
    '[fe80::1]/app',
    { registry: '[fe80::1]', repository: 'app', tag: 'latest' },
    '[fe80::1]/app:latest',
    '[fe80::1]/app:latest',
  ],
  [
    '192.168.1.10:443/team/app',
    { registry: '192.168.1.10:443', repository: 'team/app', tag: 'latest' },
    '192.168.1.10:443/team/app:latest',
    '192.168.1.10:443/team/app:latest',
  ],
  [
    'My-Registry.example.com/app',
    { registry: 'My-Registry.example.com', repository: 'app', tag: 'latest' },
    'My-Registry.example.com/app:latest',
    'My-Registry.example.com/app:latest',
  ],
  // `localhost:5000` without a path is the Hub image `localhost` with tag `5000`, as in docker.
  [
    'localhost:5000',
    { registry: 'docker.io', repository: 'library/localhost', tag: '5000' },
    'docker.io/library/localhost:5000',
    'localhost:5000',
  ],
  [
    `alpine@${SHA256}`,
    { registry: 'docker.io', repository: 'library/alpine', digest: SHA256 },
    `docker.io/library/alpine@${SHA256}`,
    `alpine@${SHA256}`,
  ],
  [
    `alpine:3.19@${SHA256}`,
    { registry: 'docker.io', repository: 'library/alpine', tag: '3.19', digest: SHA256 },
    `docker.io/library/alpine:3.19@${SHA256}`,
    `alpine:3.19@${SHA256}`,
  ],
  [
    `quay.io/a/b@${SHA512}`,
    { registry: 'quay.io', repository: 'a/b', digest: SHA512 },
    `quay.io/a/b@${SHA512}`,
    `quay.io/a/b@${SHA512}`,
  ],
  [
    `example.com/a@blake3:${'F'.repeat(64)}`,
    { registry: 'example.com', repository: 'a', digest: `blake3:${'F'.repeat(64)}` },
    `example.com/a@blake3:${'F'.repeat(64)}`,
    `example.com/a@blake3:${'F'.repeat(64)}`,
  ],
  [
    'a.b/c_d/e__f/g-h/i---j/k.l:TAG_1.x-Y',
    { registry: 'a.b', repository: 'c_d/e__f/g-h/i---j/k.l', tag: 'TAG_1.x-Y' },
    'a.b/c_d/e__f/g-h/i---j/k.l:TAG_1.x-Y',
    'a.b/c_d/e__f/g-h/i---j/k.l:TAG_1.x-Y',
  ],
  ['x:_', { registry: 'docker.io', repository: 'library/x', tag: '_' }, 'docker.io/library/x:_', 'x:_'],
  [
    `x:${'t'.repeat(128)}`,
    { registry: 'docker.io', repository: 'library/x', tag: 't'.repeat(128) },
    `docker.io/library/x:${'t'.repeat(128)}`,
    `x:${'t'.repeat(128)}`,
  ],
  ['0/1:2', { registry: 'docker.io', repository: '0/1', tag: '2' }, 'docker.io/0/1:2', '0/1:2'],
  // A Hub path whose first component looks like a host keeps `docker.io/` in its short form.
  [
    'docker.io/foo.bar/baz',
    { registry: 'docker.io', repository: 'foo.bar/baz', tag: 'latest' },
    'docker.io/foo.bar/baz:latest',
    'docker.io/foo.bar/baz:latest',
  ],
  [
    'docker.io/localhost/x',
    { registry: 'docker.io', repository: 'localhost/x', tag: 'latest' },
    'docker.io/localhost/x:latest',
    'docker.io/localhost/x:latest',
  ],
  [
    `reg.io/${'a'.repeat(248)}`,
    { registry: 'reg.io', repository: 'a'.repeat(248), tag: 'latest' },
    `reg.io/${'a'.repeat(248)}:latest`,
    `reg.io/${'a'.repeat(248)}:latest`,
  ],
];

// input, message fragment
const invalid: [string, string][] = [
  ['', 'the reference is empty'],
  ['   ', 'the reference is empty'],
  ['ubuntu latest', 'whitespace'],
  ['ubuntu\n', 'whitespace'],
  ['ubuntu:', 'invalid tag ""'],
  ['ubuntu:.hidden', 'invalid tag ".hidden"'],
  ['ubuntu:-x', 'invalid tag "-x"'],
  ['ubuntu:a+b', 'invalid tag "a+b"'],
  [`ubuntu:${'t'.repeat(129)}`, 'invalid tag'],
  ['ubuntu:a:b', 'invalid tag "a:b"'],
  ['ubuntu@', 'is not of the form algorithm:hex'],
  ['ubuntu@sha256', 'is not of the form algorithm:hex'],
  ['ubuntu@sha256:', 'is not of the form algorithm:hex'],
  ['ubuntu@:abc', 'is not of the form algorithm:hex'],
  ['ubuntu@sha256:abc', 'sha256 digest "sha256:abc" must be 64 lowercase hex characters'],
  [`ubuntu@sha256:${'A'.repeat(64)}`, 'must be 64 lowercase hex characters'],
  [`ubuntu@sha256:${'g'.repeat(64)}`, 'must be 64 lowercase hex characters'],
  [`ubuntu@sha256:${'a'.repeat(65)}`, 'must be 64 lowercase hex characters'],
  [`ubuntu@sha512:${'a'.repeat(64)}`, 'sha512 digest'],
  [`ubuntu@SHA256:${'a'.repeat(64)}`, 'is not of the form algorithm:hex'],
  [`a@b@${SHA256}`, 'is not of the form algorithm:hex'],
  ['Ubuntu', 'repository names must be lowercase'],
  ['ghcr.io/Owner/repo:Tag', 'repository names must be lowercase'],
  ['MyUser/app', 'repository names must be lowercase'],
  ['ubuntu!', 'invalid character "!"'],
  ['ghcr.io/a/b#c', 'invalid character "#"'],
  ['caf\u00e9', 'invalid character "\u00e9"'],
  ['-ubuntu', 'invalid repository path component "-ubuntu"'],
  ['ubuntu-', 'invalid repository path component "ubuntu-"'],
  ['a..b', 'invalid repository path component "a..b"'],
  ['a___b', 'invalid repository path component "a___b"'],
  ['a._b', 'invalid repository path component "a._b"'],
  ['ghcr.io/.a', 'invalid repository path component ".a"'],
  ['/ubuntu', "cannot start with '/'"],
  ['ubuntu/', "cannot end with '/'"],
  ['ghcr.io/', "cannot end with '/'"],
  ['ghcr.io/a/:tag', "cannot end with '/'"],
  ['a//b', "cannot contain '//'"],
  ['ghcr.io//a', "cannot contain '//'"],
  [':latest', 'the repository name is missing'],
  [`@${SHA256}`, 'the repository name is missing'],
  ['-bad.io/app', 'invalid registry host "-bad.io"'],
  ['bad_host.io/app', 'invalid registry host "bad_host.io"'],
  ['host.io:port/app', 'invalid registry host "host.io:port"'],
  ['[::1/app', 'invalid registry host'],
  [`reg.io/${'a'.repeat(249)}`, 'the name is 256 characters long, more than the 255 allowed'],
  [`${'a'.repeat(250)}`, 'more than the 255 allowed'],
];

const caught = thrown;

describe('parseReference', () => {
  for (const [input, want, canonical, familiar] of valid) {
    test(`parses ${JSON.stringify(input.length > 60 ? `${input.slice(0, 60)}...` : input)}`, () => {
      const ref = parseReference(input);
      assert.deepEqual(ref, want);
      assert.equal(formatReference(ref), canonical);
      assert.equal(familiarReference(ref), familiar);
      // Both printed forms must name the same image again.
      assert.deepEqual(parseReference(canonical), want);
      assert.deepEqual(parseReference(familiar), want);
    });
  }

  for (const [input, fragment] of invalid) {
    test(`rejects ${JSON.stringify(input.length > 60 ? `${input.slice(0, 60)}...` : input)}`, () => {
      assertRefusal(() => parseReference(input), 'E_BAD_REFERENCE', input, fragment);
    });
  }

  test('the uppercase hint lowercases only the repository', () => {
    assert.equal(caught(() => parseReference('Reg.IO/Owner/App:Tag')).hint, 'try "Reg.IO/owner/app:Tag"');
    assert.equal(caught(() => parseReference('Ubuntu')).hint, 'try "ubuntu"');
  });

  test('different failures get different messages', () => {
    const messages = invalid.map(([input]) =>
      caught(() => parseReference(input)).message.replace(/^invalid image reference ".*?": /s, ''),
    );
    // One representative per kind named in the brief; each must be told apart.
    const kinds = [
      'empty',
      'invalid tag',
      'digest',
      'lowercase',
      'invalid character',
      'characters long',
      "'/'",
    ];
    for (const kind of kinds)
      assert.ok(
        messages.some((m) => m.includes(kind)),
        kind,
      );
  });
});

describe('formatReference round-trip', () => {
  const alnum = fc.stringMatching(/^[a-z0-9]{1,8}$/);
  const separator = fc.constantFrom('.', '_', '__', '-', '--');
  const component = fc
    .tuple(alnum, fc.array(fc.tuple(separator, alnum), { maxLength: 2 }))
    .map(([head, rest]) => head + rest.map(([s, a]) => s + a).join(''));
  const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?$/);
  const host = fc.oneof(
    fc.tuple(label, fc.array(label, { minLength: 1, maxLength: 3 })).map(([h, t]) => [h, ...t].join('.')),
    fc.constantFrom('localhost', '[::1]', 'docker.io'),
  );
  const registry = fc
    .tuple(host, fc.option(fc.integer({ min: 1, max: 65535 }), { nil: undefined }))
    .map(([h, port]) => (port === undefined ? h : `${h}:${port}`))
    .filter((r) => r !== 'index.docker.io');
  const tag = fc.stringMatching(/^\w[\w.-]{0,20}$/);
  const digest = fc.oneof(
    fc.stringMatching(/^[0-9a-f]{64}$/).map((h) => `sha256:${h}`),
    fc.stringMatching(/^[0-9a-f]{128}$/).map((h) => `sha512:${h}`),
  );
  const reference = fc
    .record({
      registry,
      repository: fc.array(component, { minLength: 1, maxLength: 4 }).map((c) => c.join('/')),
      tag: fc.option(tag, { nil: undefined }),
      digest: fc.option(digest, { nil: undefined }),
    })
    .map((r): Reference => {
      const ref: Reference = { registry: r.registry, repository: r.repository };
      if (r.tag !== undefined) ref.tag = r.tag;
      else if (r.digest === undefined) ref.tag = 'latest';
      if (r.digest !== undefined) ref.digest = r.digest;
      return ref;
    })
    .filter((r) => r.registry !== 'docker.io' || r.repository.includes('/'));

  test('formatReference(parseReference(x)) === x for canonical references', () => {
    fc.assert(
      fc.property(reference, (ref) => {
        const text = formatReference(ref);
        assert.deepEqual(parseReference(text), ref);
        assert.equal(formatReference(parseReference(text)), text);
      }),
      { numRuns: 500 },
    );
  });

  test('familiarReference names the same image', () => {
    fc.assert(
      fc.property(reference, (ref) => {
        assert.deepEqual(parseReference(familiarReference(ref)), ref);
      }),
      { numRuns: 500 },
    );
  });
});
