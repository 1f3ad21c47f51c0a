import * as assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { renderSchema, SCHEMA_FILE, SCHEMA_ID } from '../../scripts/kiln-schema.js';
import { isKilnError, type KilnError } from '../../src/errors.js';
import { editDistance, loadProject, type Project, parseProject } from '../../src/project/project-schema.js';
import { rejected, thrown } from '../support/errors.js';

const work = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-project-'));
after(() => fs.rm(work, { recursive: true, force: true }));
let counter = 0;
const fresh = async (name: string) => {
  const dir = path.join(work, `${name}-${++counter}`);
  await fs.mkdir(dir, { recursive: true });
  return dir;
};

const FULL = `# a kiln project
source: .
include: ["src/**", "Cargo.toml"]
exclude: ["docs/"]
lang: rust
toolchain:
  image: registry.example/rust:1.83
  command: cargo build --release --target wasm32-wasip1
  artifact: /out/app.wasm
  network: false
env: { RUSTFLAGS: "-C opt-level=s" }
image:
  format: image
  name: myapp
  annotations: { org.opencontainers.image.source: "https://example.com/app" }
  labels: { team: wasm }
  platforms: [wasip1/wasm]
to: registry.example/app:1
cache:
  to: registry.example/cache
  from: [registry.example/cache, ghcr.io/other/cache]
`;

const FULL_PARSED: Project = {
  source: '.',
  include: ['src/**', 'Cargo.toml'],
  exclude: ['docs/'],
  lang: 'rust',
  toolchain: {
    image: 'registry.example/rust:1.83',
    command: 'cargo build --release --target wasm32-wasip1',
    artifact: 'app.wasm',
    network: false,
  },
  env: { RUSTFLAGS: '-C opt-level=s' },
  image: {
    format: 'image',
    name: 'myapp',
    annotations: { 'org.opencontainers.image.source': 'https://example.com/app' },
    labels: { team: 'wasm' },
    platforms: [{ os: 'wasip1', architecture: 'wasm' }],
  },
  to: ['registry.example/app:1'],
  cache: { to: 'registry.example/cache', from: ['registry.example/cache', 'ghcr.io/other/cache'] },
};

function assertOneLine(err: KilnError): void {
  assert.ok(!err.message.includes('\n'), err.message);
  assert.ok(!/\bat .*\.(ts|js):\d+/.test(err.message), `stack in message: ${err.message}`);
}

describe('parseProject', () => {
  test('the full example parses and normalises', () => {
    assert.deepEqual(parseProject(FULL, 'kiln.yaml'), FULL_PARSED);
  });

  test('an empty file, or one with only comments, is an empty project', () => {
    for (const text of ['', '\n', '# nothing yet\n', '---\n']) {
      assert.deepEqual(parseProject(text, 'kiln.yaml'), { to: [] }, JSON.stringify(text));
    }
  });

  test('to and cache.from: a string and a list of one mean the same', () => {
    const one = parseProject('to: ghcr.io/a/b:1\ncache:\n  from: ghcr.io/a/cache\n', 'k.yaml');
    const list = parseProject('to: [ghcr.io/a/b:1]\ncache:\n  from:\n    - ghcr.io/a/cache\n', 'k.yaml');
    assert.deepEqual(one, list);
    assert.deepEqual(one.to, ['ghcr.io/a/b:1']);
    assert.deepEqual(one.cache, { from: ['ghcr.io/a/cache'] });
    assert.deepEqual(parseProject('to: [oci:out:app, docker-daemon:app:1]\n', 'k').to, [
      'oci:out:app',
      'docker-daemon:app:1',
    ]);
  });

  test('the artifact is kept relative to /out', () => {
    const artifact = (a: string) => parseProject(`toolchain:\n  artifact: ${a}\n`, 'k').toolchain?.artifact;
    assert.equal(artifact('app.wasm'), 'app.wasm');
    assert.equal(artifact('/out/app.wasm'), 'app.wasm');
    assert.equal(artifact('./target/../app.wasm'), 'app.wasm');
    assert.equal(artifact('/out/sub/app.wasm'), 'sub/app.wasm');
  });

  test('platforms are parsed', () => {
    const p = parseProject('image:\n  platforms: [wasip1/wasm, WASIP2/wasm, linux/arm64/v8]\n', 'k');
    assert.deepEqual(p.image?.platforms, [
      { os: 'wasip1', architecture: 'wasm' },
      { os: 'wasip2', architecture: 'wasm' },
      { os: 'linux', architecture: 'arm64', variant: 'v8' },
    ]);
  });

  test('native image keys: entrypoint and cmd as one or a list, env, layers, wasiAlias, sbom', () => {
    const p = parseProject(
      'sbom: false\nimage:\n  base: localhost:5000/busybox:1\n  entrypoint: /usr/local/bin/app\n  cmd: [--port, "8080"]\n  user: "1000:1000"\n  workdir: /data\n  env: { MODE: prod }\n  layers: 2\n  wasiAlias: true\n',
      'k',
    );
    assert.equal(p.sbom, false);
    assert.deepEqual(p.image, {
      base: 'localhost:5000/busybox:1',
      entrypoint: ['/usr/local/bin/app'],
      cmd: ['--port', '8080'],
      user: '1000:1000',
      workdir: '/data',
      env: { MODE: 'prod' },
      layers: 2,
      wasiAlias: true,
    });
  });

  test('a byte order mark and YAML 1.2 scalars: `no` and `on` stay strings', () => {
    const p = parseProject('\ufeffenv:\n  A: no\n  B: on\n', 'k');
    assert.deepEqual(p.env, { A: 'no', B: 'on' });
  });

  // Each case: the file, then the exact message (file:line:col: field: what).
  const BAD: [string, string, string][] = [
    [
      'unknown key, with a suggestion',
      'lang: go\nenviroment:\n  A: b\n',
      "kiln.yaml:2:1: unknown key 'enviroment' (did you mean 'env'?)",
    ],
    ['misspelt key', 'sorce: src\n', "kiln.yaml:1:1: unknown key 'sorce' (did you mean 'source'?)"],
    ['unknown key without a near one', 'colour: red\n', "kiln.yaml:1:1: unknown key 'colour'"],
    [
      'nested unknown key',
      'lang: c\ntoolchain:\n  image: gcc:14\n  comand: make\n',
      "kiln.yaml:4:3: toolchain: unknown key 'comand' (did you mean 'command'?)",
    ],
    [
      'nested key at the top',
      'command: make\n',
      "kiln.yaml:1:1: unknown key 'command' (did you mean 'toolchain.command'?)",
    ],
    [
      'wrong type: env as a list',
      'lang: go\nenv: [a]\n',
      'kiln.yaml:2:1: env: expected a mapping (got a list)',
    ],
    [
      'wrong type: env value a number',
      'env:\n  LEVEL: 1.10\n',
      'kiln.yaml:2:3: env.LEVEL: expected a string (got 1.10; quote it: "1.10")',
    ],
    [
      'wrong type: a boolean',
      'toolchain:\n  network: "yes"\n',
      "kiln.yaml:2:3: toolchain.network: expected true or false (got 'yes')",
    ],
    ['empty value', 'image:\n', 'kiln.yaml:1:1: image: expected a mapping (got nothing)'],
    ['not a mapping', '- lang: rust\n', 'kiln.yaml:1:1: expected a mapping (got a list)'],
    [
      'bad env name',
      'env:\n  2FAST: x\n',
      'kiln.yaml:2:3: env["2FAST"]: variable names are letters, digits and \'_\', not starting with a digit',
    ],
    [
      'bad enum',
      'lang: rust\n\n\nimage:\n  name: app\n\n  format: imag\n',
      "kiln.yaml:7:3: image.format: expected one of image, artifact, runwasi, istio, istio-oci, wasm-to-oci, spin (got 'imag')",
    ],
    [
      'bad language',
      'lang: rsut\n',
      "kiln.yaml:1:1: lang: expected one of rust, tinygo, go, c, dotnet, assemblyscript (got 'rsut')",
    ],
    [
      'bad platform',
      'image:\n  platforms:\n    - wasip1/wasm\n    - wasip1/x86\n',
      'kiln.yaml:4:7: image.platforms[1]: invalid platform "wasip1/x86": wasip1 runs only on the wasm architecture',
    ],
    [
      'platform twice',
      'image:\n  platforms: [wasip1/wasm, WASIP1/wasm]\n',
      "kiln.yaml:2:28: image.platforms[1]: 'WASIP1/wasm' is listed twice",
    ],
    [
      'no platforms',
      'image:\n  platforms: []\n',
      'kiln.yaml:2:3: image.platforms: list at least one platform, or leave the key out for the default',
    ],
    [
      'YAML syntax: unclosed flow',
      'lang: rust\nto: [a\nenv: {}\n',
      'kiln.yaml:3:1: invalid YAML: Flow sequence in block collection must be sufficiently indented and end with a ]',
    ],
    [
      'YAML syntax: bad indentation',
      'image:\n  name: a\n format: image\n',
      'kiln.yaml:3:1: invalid YAML: All mapping items must start at the same column',
    ],
    ['YAML: duplicate key', 'lang: go\nlang: rust\n', 'kiln.yaml:2:1: invalid YAML: Map keys must be unique'],
    [
      'YAML: two documents',
      'lang: go\n---\nlang: c\n',
      'kiln.yaml:2:1: invalid YAML: Source contains multiple documents; please use YAML.parseAllDocuments()',
    ],
    ['to: a number', 'to: 3\n', 'kiln.yaml:1:1: to: expected a string or a list (got 3; quote it: "3")'],
    [
      'to: a list with a number',
      'to: [ghcr.io/a/b, 7]\n',
      'kiln.yaml:1:19: to[1]: expected a string (got 7; quote it: "7")',
    ],
    [
      'to: a bad reference',
      'to: ghcr.io/Bad Name\n',
      'kiln.yaml:1:1: to: invalid image reference "ghcr.io/Bad Name": references cannot contain whitespace',
    ],
    ['to: a bad item', 'to:\n  - ghcr.io/a/b\n  - "oci:"\n', 'kiln.yaml:3:5: to[1]: no path in oci:'],
    ['to: unquoted colon', 'to:\n  - oci:\n', 'kiln.yaml:2:5: to[0]: expected a string (got a mapping)'],
    [
      'cache with a tag',
      'cache:\n  to: ghcr.io/a/cache:v1\n',
      "kiln.yaml:2:3: cache.to: 'ghcr.io/a/cache:v1' names a tag or digest; give only the repository (registry/name)",
    ],
    [
      'toolchain image',
      'toolchain:\n  image: "rust:"\n',
      "kiln.yaml:2:3: toolchain.image: invalid image reference \"rust:\": invalid tag \"\": tags are 1-128 letters, digits, '_', '.' or '-' and cannot start with '.' or '-'",
    ],
    [
      'artifact outside /out',
      'toolchain:\n  artifact: /tmp/app.wasm\n',
      "kiln.yaml:2:3: toolchain.artifact: '/tmp/app.wasm' is outside /out; give a path relative to /out or starting with /out/",
    ],
    [
      'artifact escaping /out',
      'toolchain:\n  artifact: ../app.wasm\n',
      "kiln.yaml:2:3: toolchain.artifact: '../app.wasm' does not name a file under /out",
    ],
    [
      'empty include',
      'include: []\n',
      'kiln.yaml:1:1: include: list at least one pattern, or leave the key out to include every file',
    ],
    ['empty source', 'source: ""\n', 'kiln.yaml:1:1: source: the source directory cannot be empty'],
    [
      'image.layers: not a whole number',
      'image:\n  layers: 1.5\n',
      'kiln.yaml:2:3: image.layers: the layer budget is a whole number',
    ],
    [
      'image.layers: zero',
      'image:\n  layers: 0\n',
      'kiln.yaml:2:3: image.layers: the layer budget is at least 1',
    ],
    [
      'image.workdir: relative',
      'image:\n  workdir: app\n',
      'kiln.yaml:2:3: image.workdir: the working directory must be an absolute path',
    ],
    [
      'image.base: a bad reference',
      'image:\n  base: "Bad Base"\n',
      'kiln.yaml:2:3: image.base: invalid image reference "Bad Base": references cannot contain whitespace',
    ],
    [
      'image: from for base',
      'image:\n  from: busybox\n',
      "kiln.yaml:2:3: image: unknown key 'from' (did you mean 'base'?)",
    ],
    ['sbom: a string', 'sbom: "no"\n', "kiln.yaml:1:1: sbom: expected true or false (got 'no')"],
    [
      'several problems: the first in the file, and a count',
      'env: {A: 1}\nlang: x\ncolour: red\n',
      'kiln.yaml:1:7: env.A: expected a string (got 1; quote it: "1") (and 2 more)',
    ],
  ];
  for (const [name, text, message] of BAD) {
    test(`bad: ${name}`, () => {
      const err = thrown(() => parseProject(text, 'kiln.yaml'));
      assert.equal(err.code, 'E_BAD_PROJECT');
      assert.equal(err.message, message);
      assertOneLine(err);
    });
  }

  test('hints: the allowed keys, the nearest value, quoting', () => {
    assert.equal(
      thrown(() => parseProject('toolchain:\n  x: 1\n', 'k')).hint,
      'allowed here: image, command, artifact, network',
    );
    assert.equal(thrown(() => parseProject('image:\n  format: imag\n', 'k')).hint, "did you mean 'image'?");
    assert.match(thrown(() => parseProject('to:\n  - oci:\n', 'k')).hint ?? '', /quote it/);
  });

  test('the file name is the one given', () => {
    const err = thrown(() => parseProject('lang: x\n', 'sub/dir/kiln.yml'));
    assert.match(err.message, /^sub\/dir\/kiln\.yml:1:1: lang: /);
  });

  test('an alias bomb is refused, not expanded', () => {
    const lines = ['a: &a [x, x, x, x, x, x, x, x, x, x]'];
    for (let i = 0; i < 12; i++) {
      const refs = Array.from({ length: 10 }, () => `*${String.fromCharCode(97 + i)}`).join(', ');
      lines.push(`${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [${refs}]`);
    }
    const err = thrown(() => parseProject(`${lines.join('\n')}\n`, 'kiln.yaml'));
    assert.equal(err.code, 'E_BAD_PROJECT');
    assertOneLine(err);
  });

  test('edit distance', () => {
    assert.equal(editDistance('', ''), 0);
    assert.equal(editDistance('env', 'env'), 0);
    assert.equal(editDistance('comand', 'command'), 1);
    assert.equal(editDistance('lnag', 'lang'), 1);
    assert.equal(editDistance('kitten', 'sitting'), 3);
  });
});

describe('loadProject', () => {
  test('no kiln.yaml: an empty project over the directory', async () => {
    const dir = await fresh('none');
    const loaded = await loadProject(dir);
    assert.deepEqual(loaded, { file: undefined, dir, sourceDir: dir, project: { to: [] } });
  });

  test('kiln.yaml is read, and kiln.yml too', async () => {
    for (const name of ['kiln.yaml', 'kiln.yml']) {
      const dir = await fresh('found');
      await fs.writeFile(path.join(dir, name), 'lang: go\n');
      const loaded = await loadProject(dir);
      assert.equal(loaded.file, path.join(dir, name));
      assert.equal(loaded.dir, dir);
      assert.equal(loaded.sourceDir, dir);
      assert.equal(loaded.project.lang, 'go');
    }
  });

  test('both kiln.yaml and kiln.yml: refused', async () => {
    const dir = await fresh('both');
    await fs.writeFile(path.join(dir, 'kiln.yaml'), 'lang: go\n');
    await fs.writeFile(path.join(dir, 'kiln.yml'), 'lang: c\n');
    const err = await rejected(loadProject(dir));
    assert.equal(err.code, 'E_BAD_PROJECT');
    assert.match(err.message, /both kiln\.yaml and kiln\.yml/);
  });

  test('a missing directory is E_NOT_FOUND', async () => {
    const err = await rejected(loadProject(path.join(work, 'no-such-dir')));
    assert.equal(err.code, 'E_NOT_FOUND');
  });

  test('an explicit file must exist', async () => {
    const dir = await fresh('explicit-missing');
    const err = await rejected(loadProject(dir, { file: path.join(dir, 'kiln.yaml') }));
    assert.equal(err.code, 'E_NOT_FOUND');
    assert.match(err.message, /kiln\.yaml/);
    const isDir = await rejected(loadProject(dir, { file: dir }));
    assert.equal(isDir.code, 'E_IO');
  });

  test('source resolves against the file, wherever the file is', async () => {
    const dir = await fresh('explicit');
    await fs.mkdir(path.join(dir, 'conf'));
    await fs.mkdir(path.join(dir, 'code'));
    await fs.writeFile(
      path.join(dir, 'conf', 'build.yaml'),
      'source: ../code\nto: [oci:../out:app, ghcr.io/a/b]\n',
    );
    const loaded = await loadProject(work, { file: path.join(dir, 'conf', 'build.yaml') });
    assert.equal(loaded.file, path.join(dir, 'conf', 'build.yaml'));
    assert.equal(loaded.dir, path.join(dir, 'conf'));
    assert.equal(loaded.sourceDir, path.join(dir, 'code'));
    assert.deepEqual(loaded.project.to, [`oci:${path.join(dir, 'out')}:app`, 'ghcr.io/a/b']);
  });

  test('a source that is not a directory points at the key', async () => {
    const dir = await fresh('bad-source');
    await fs.writeFile(path.join(dir, 'kiln.yaml'), 'lang: go\nsource: ./nope\n');
    const err = await rejected(loadProject(dir));
    assert.equal(err.code, 'E_BAD_PROJECT');
    assert.equal(err.message, `${path.join(dir, 'kiln.yaml')}:2:1: source: './nope' does not exist`);
  });

  test('errors name the file as found', async () => {
    const dir = await fresh('bad');
    await fs.writeFile(path.join(dir, 'kiln.yml'), 'lang: go\nimage:\n  formt: image\n');
    const err = await rejected(loadProject(dir));
    assert.equal(err.code, 'E_BAD_PROJECT');
    assert.equal(
      err.message,
      `${path.join(dir, 'kiln.yml')}:3:3: image: unknown key 'formt' (did you mean 'format'?)`,
    );
  });

  test('a file that is not UTF-8 is refused', async () => {
    const dir = await fresh('binary');
    await fs.writeFile(
      path.join(dir, 'kiln.yaml'),
      Buffer.from([0x6c, 0x61, 0x6e, 0x67, 0x3a, 0x20, 0xff, 0xfe, 0x0a]),
    );
    const err = await rejected(loadProject(dir));
    assert.equal(err.code, 'E_BAD_PROJECT');
    assert.match(err.message, /not UTF-8/);
  });
});

describe('schema/kiln.schema.json', () => {
  const committed = readFileSync(SCHEMA_FILE, 'utf8');
  const schema = JSON.parse(committed) as JsonSchema;

  test('is what scripts/kiln-schema.ts writes now', () => {
    assert.equal(committed, renderSchema(), 'stale: run node --import tsx scripts/kiln-schema.ts');
    assert.ok(committed.endsWith('}\n'));
    assert.equal(schema.$id, SCHEMA_ID);
    assert.equal(schema.$schema, 'http://json-schema.org/draft-07/schema#');
    assert.equal(typeof schema.title, 'string');
    assert.equal(typeof schema.description, 'string');
  });

  test('every key is described (editor completion)', () => {
    const walk = (s: JsonSchema, at: string): void => {
      for (const [key, sub] of Object.entries(s.properties ?? {})) {
        assert.equal(typeof sub.description, 'string', `${at}${key} has no description`);
        if (sub.properties) walk(sub, `${at}${key}.`);
      }
    };
    walk(schema, '');
  });

  test('accepts the full example and an empty file', () => {
    assert.deepEqual(check(schema, parseYaml(FULL)), []);
    assert.deepEqual(check(schema, {}), []);
    assert.deepEqual(check(schema, { to: ['a', 'b'], cache: { from: 'x' } }), []);
  });

  test('rejects unknown keys at every level, wrong types and bad enums', () => {
    assert.equal(schema.additionalProperties, false);
    assert.notDeepEqual(check(schema, { enviroment: {} }), []);
    assert.notDeepEqual(check(schema, { toolchain: { comand: 'x' } }), []);
    assert.notDeepEqual(check(schema, { image: { formt: 'image' } }), []);
    assert.notDeepEqual(check(schema, { cache: { form: [] } }), []);
    assert.notDeepEqual(check(schema, { env: ['a'] }), []);
    assert.notDeepEqual(check(schema, { env: { A: 1 } }), []);
    assert.notDeepEqual(check(schema, { env: { '1A': 'x' } }), []);
    assert.notDeepEqual(check(schema, { image: { format: 'imag' } }), []);
    assert.notDeepEqual(check(schema, { to: 3 }), []);
  });
});

// A checker for the part of JSON Schema kiln's schema uses; a keyword it does not know fails the
// test, so the schema cannot grow past what this checks.
interface JsonSchema {
  $schema?: string;
  $id?: string;
  title?: string;
  description?: string;
  type?: 'object' | 'array' | 'string' | 'boolean';
  properties?: Record<string, JsonSchema>;
  additionalProperties?: boolean | JsonSchema;
  propertyNames?: JsonSchema;
  items?: JsonSchema;
  enum?: unknown[];
  anyOf?: JsonSchema[];
  minLength?: number;
  minItems?: number;
  pattern?: string;
  default?: unknown;
}
const KNOWN = new Set([
  '$schema',
  '$id',
  'title',
  'description',
  'type',
  'properties',
  'additionalProperties',
  'propertyNames',
  'items',
  'enum',
  'anyOf',
  'minLength',
  'minItems',
  'pattern',
  'default',
]);

function check(s: JsonSchema, v: unknown, at = '$'): string[] {
  for (const key of Object.keys(s)) assert.ok(KNOWN.has(key), `the test's checker does not know '${key}'`);
  const errors: string[] = [];
  if (s.anyOf && !s.anyOf.some((sub) => check(sub, v, at).length === 0))
    errors.push(`${at}: no anyOf matches`);
  if (s.enum && !s.enum.includes(v)) errors.push(`${at}: not in enum`);
  switch (s.type) {
    case 'object': {
      if (typeof v !== 'object' || v === null || Array.isArray(v)) return [...errors, `${at}: not an object`];
      for (const [k, val] of Object.entries(v)) {
        if (s.propertyNames) errors.push(...check(s.propertyNames, k, `${at}[key ${k}]`));
        const sub = s.properties?.[k];
        if (sub) errors.push(...check(sub, val, `${at}.${k}`));
        else if (s.additionalProperties === false) errors.push(`${at}: unknown key ${k}`);
        else if (typeof s.additionalProperties === 'object')
          errors.push(...check(s.additionalProperties, val, `${at}.${k}`));
      }
      break;
    }
    case 'array':
      if (!Array.isArray(v)) return [...errors, `${at}: not an array`];
      if (s.minItems !== undefined && v.length < s.minItems) errors.push(`${at}: too few items`);
      v.forEach((item, i) => {
        if (s.items) errors.push(...check(s.items, item, `${at}[${i}]`));
      });
      break;
    case 'string':
      if (typeof v !== 'string') return [...errors, `${at}: not a string`];
      if (s.minLength !== undefined && v.length < s.minLength) errors.push(`${at}: too short`);
      if (s.pattern !== undefined && !new RegExp(s.pattern).test(v)) errors.push(`${at}: does not match`);
      break;
    case 'boolean':
      if (typeof v !== 'boolean') errors.push(`${at}: not a boolean`);
      break;
  }
  return errors;
}

describe('loadProject through the memo (src/project/project.ts)', () => {
  test('a validated file is remembered; an edit is validated again', async () => {
    const { loadProject: load } = await import('../../src/project/project.js');
    const dir = await fs.mkdtemp(path.join(work, 'memo-'));
    const home = await fs.mkdtemp(path.join(work, 'memo-home-'));
    const saved = process.env.KILN_HOME;
    process.env.KILN_HOME = home;
    try {
      await fs.writeFile(path.join(dir, 'kiln.yaml'), 'lang: c\n');
      const first = await load(dir);
      assert.equal(first.project.lang, 'c');
      const memos = await fs.readdir(path.join(home, 'projects'));
      assert.equal(memos.length, 1, 'the validated file is remembered');
      assert.deepEqual(await load(dir), first, 'the memo gives what the validator gave');

      await fs.writeFile(path.join(dir, 'kiln.yaml'), 'lang: cobol\n');
      await assert.rejects(load(dir), (e) => isKilnError(e, 'E_BAD_PROJECT'));
      await fs.writeFile(path.join(dir, 'kiln.yaml'), 'lang: rust\n');
      assert.equal((await load(dir)).project.lang, 'rust');
      assert.equal((await fs.readdir(path.join(home, 'projects'))).length, 2);
    } finally {
      if (saved === undefined) delete process.env.KILN_HOME;
      else process.env.KILN_HOME = saved;
    }
  });
});
