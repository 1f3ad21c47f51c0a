/**
 * The `spin` format: a Spin application as `spin registry push` writes it, made from its spin.toml.
 *
 * Every rule here is Spin's (spinframework/spin): the manifest schema (crates/manifest, version 2),
 * the loader that turns it into a locked app (crates/loader/src/local.rs: trigger ids, inline
 * components, metadata, files), the locked app's JSON (crates/locked-app/src/locked.rs) and the push
 * (crates/oci/src/client.rs: push_locked_core, assemble_layers, push_file_layers,
 * content_ref_for_layer). The config is oci-client's ConfigFile as Spin fills it. kiln copies the
 * facts (names, strings, orders), not the code.
 *
 * What kiln writes and Spin's push does not: the manifest's `mediaType` (Spin's oci-client omits it;
 * kiln writes every manifest through writeManifest), and no `org.opencontainers.image.created`
 * unless a time is given (Spin stamps the time of the push; kiln keeps the same input giving the same
 * digest). What kiln refuses rather than guess: component dependencies and trigger middleware (Spin
 * composes them with wac), sources from a URL or a registry, the deprecated `allowed_http_hosts`, a
 * bare directory in `files`, and more layers than Spin's limit (it then switches to tar.gz archives).
 */
import { createReadStream } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { parse as parseToml, TomlDate } from 'smol-toml';
import { ioError, KilnError } from '../errors.js';
import { type WrittenManifest, writeManifest } from '../image/write.js';
import { type Digest, sha256 } from '../oci/digest.js';
import { MediaType } from '../oci/media-types.js';
import type { Platform } from '../oci/platform.js';
import type { Descriptor } from '../oci/types.js';
import type { OciLayout } from '../store/layout.js';
import { inspectWasm, type WasmInfo } from './inspect.js';

/** The config label Spin writes: the digest of the locked app layer (Spin writes it; nothing reads it). */
export const SPIN_LOCKED_APP_LABEL = 'com.fermyon.spin.lockedAppDigest';
/** Spin's config platform: `Os::Other("Wasip1")` serialises as written, capital W. */
export const SPIN_PLATFORM: Platform = { os: 'Wasip1', architecture: 'wasm' };
/** Content this small is inlined in the locked app (base64); files this small are not pushed as layers. */
const INLINE_MAX = 128;
/** Spin's MAX_LAYER_COUNT (500) less the locked app layer: past it, Spin pushes archive layers. */
const MAX_LAYERS = 499;
/** The largest component kiln reads (Spin reads each one whole, as kiln does). */
const MAX_COMPONENT_BYTES = 1 << 30;

export interface PackageSpinOptions {
  /** The application's manifest, spin.toml; paths in it are relative to its directory. */
  file: string;
  /** Manifest annotations; they win over those inferred from `[application]`, as `--annotation` does for Spin. */
  annotations?: Record<string, string>;
  /** RFC 3339: written as `org.opencontainers.image.created` only when given. */
  created?: string;
}

export interface PackagedSpin extends WrittenManifest {
  /** The first component (what `pack` reports as the module). */
  info: WasmInfo;
  platform: Platform;
  spin: SpinPackaged;
}

/** What the spin format wrote besides the image: the component ids and the locked app layer. */
export interface SpinPackaged {
  components: string[];
  lockedApp: Descriptor;
}

/** Packages the Spin application `options.file` (a spin.toml) into `store` as `spin registry push` would. */
export async function packageSpin(store: OciLayout, options: PackageSpinOptions): Promise<PackagedSpin> {
  const file = options.file;
  const text = await fs.readFile(file, 'utf8').catch((err) => {
    throw ioError(err, file);
  });
  const doc = parseManifest(text, file);
  const app = new Loader(file, path.resolve(path.dirname(file)));
  const model = app.load(doc);
  if (model.components.length === 0)
    throw new KilnError('E_BAD_PROJECT', `${file} has no components: nothing for Spin to run`, {
      hint: 'add a [component.<id>] with a source, and a trigger naming it',
    });
  await app.resolveFiles(model.components);

  // Layers in Spin's order: each component's wasm, then its files; duplicates keep the first.
  const layers: Descriptor[] = [];
  const seen = new Set<string>();
  const addLayer = (layer: Descriptor) => {
    const key = `${layer.mediaType} ${layer.digest}`;
    if (seen.has(key)) return;
    seen.add(key);
    layers.push(layer);
  };
  let info: WasmInfo | undefined;
  const components: Json[] = [];
  for (const c of model.components) {
    const bytes = await readComponent(c.id, c.source);
    info ??= describe(bytes, c.source);
    const blob = await store.putBytes(bytes);
    // Spin's WASM_LAYER_MEDIA_TYPE, application/vnd.wasm.content.layer.v1+wasm: wasm-to-oci's string.
    addLayer({ mediaType: MediaType.WasmToOciLayer, ...blob });
    const source: JsonMap = new Map<string, Json>([['content_type', 'application/wasm']]);
    if (bytes.length <= INLINE_MAX) source.set('inline', base64(bytes));
    source.set('digest', blob.digest);
    const files: Json[] = [];
    for (const [dest, src] of c.files) {
      const content = await fileContent(store, src);
      const entry: JsonMap = new Map();
      if (content.inline !== undefined) entry.set('inline', content.inline);
      else addLayer({ mediaType: MediaType.SpinDataLayer, digest: content.digest, size: content.size });
      entry.set('digest', content.digest);
      entry.set('path', dest);
      files.push(entry);
    }
    components.push(lockedComponent(c, source, files));
  }
  if (layers.length > MAX_LAYERS)
    throw new KilnError(
      'E_UNSUPPORTED',
      `${file} makes ${layers.length} layers; Spin pushes more than ${MAX_LAYERS} as tar.gz archives, which kiln does not write`,
      { hint: 'mount fewer files, or push this app with spin registry push' },
    );

  const lockedBytes = Buffer.from(toJson(lockedApp(model, components)), 'utf8');
  const locked: Descriptor = { mediaType: MediaType.SpinLockedApp, ...(await store.putBytes(lockedBytes)) };
  layers.push(locked);

  // oci-client's ConfigFile as Spin fills it, in its field order: no created, author or history.
  const config = {
    architecture: SPIN_PLATFORM.architecture,
    os: SPIN_PLATFORM.os,
    config: { Labels: { [SPIN_LOCKED_APP_LABEL]: locked.digest } },
    rootfs: { type: 'layers', diff_ids: [] },
  };
  const configBlob = await store.putBytes(Buffer.from(JSON.stringify(config), 'utf8'));
  // Spin's oci-client writes no manifest mediaType; kiln's writeManifest always does (an OCI image
  // manifest, which is what oci-client's Content-Type says it is anyway).
  const written = await writeManifest(store, {
    config: { mediaType: MediaType.OciConfig, ...configBlob },
    layers,
    annotations: annotations(model.application, options),
  });
  return {
    ...written,
    info: info as WasmInfo, // set by the first of at least one component
    platform: { ...SPIN_PLATFORM },
    spin: { components: model.components.map((c) => c.id), lockedApp: locked },
  };
}

// ---------------------------------------------------------------------------------------------------
// JSON as serde_json writes it

/** A JSON value; objects are Maps so that their key order is exactly the one given. */
type Json = string | number | bigint | boolean | null | Json[] | JsonMap;
type JsonMap = Map<string, Json>;

/** Compact JSON as serde_json::to_vec writes it: no spaces, floats as Rust prints them, integers as bigint. */
function toJson(value: Json): string {
  if (value === null) return 'null';
  if (typeof value === 'string') return JSON.stringify(value); // same escapes as serde_json
  if (typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  if (typeof value === 'number') return rustFloat(value);
  if (Array.isArray(value)) return `[${value.map(toJson).join(',')}]`;
  return `{${[...value].map(([k, v]) => `${JSON.stringify(k)}:${toJson(v)}`).join(',')}}`;
}

/** An f64 as serde_json prints it (ryu): `1.0`, `0.001`, `1e16`, `1.5e-7`; not finite: null. */
function rustFloat(n: number): string {
  if (!Number.isFinite(n)) return 'null';
  if (n === 0) return Object.is(n, -0) ? '-0.0' : '0.0';
  const sign = n < 0 ? '-' : '';
  const [mantissa, exp] = Math.abs(n).toExponential().split('e') as [string, string];
  const digits = mantissa.replace('.', '');
  const length = digits.length;
  const kk = Number(exp) + 1; // 10^(kk-1) <= |n| < 10^kk
  const k = kk - length;
  let out: string;
  if (k >= 0 && kk <= 16) out = `${digits}${'0'.repeat(k)}.0`;
  else if (kk > 0 && kk <= 16) out = `${digits.slice(0, kk)}.${digits.slice(kk)}`;
  else if (kk > -5 && kk <= 0) out = `0.${'0'.repeat(-kk)}${digits}`;
  else if (length === 1) out = `${digits}e${kk - 1}`;
  else out = `${digits[0]}.${digits.slice(1)}e${kk - 1}`;
  return sign + out;
}

/** Rust's BTreeMap<String, _> order: by the keys' UTF-8 bytes. */
function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

function sortedMap(entries: Iterable<[string, Json]>): JsonMap {
  return new Map([...entries].sort(([a], [b]) => byteOrder(a, b)));
}

/** Standard base64 without padding (spin_serde::base64). */
function base64(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('base64').replace(/=+$/, '');
}

// ---------------------------------------------------------------------------------------------------
// spin.toml (manifest version 2) into Spin's locked app model

type Toml = Record<string, unknown>;

interface Component {
  id: string;
  source: string;
  description: string;
  variables: [string, string][];
  environment: [string, string][];
  allowedOutboundHosts: string[];
  keyValueStores: string[];
  sqliteDatabases: string[];
  aiModels: string[];
  build: JsonMap | undefined;
  /** `files` as written, and `exclude_files` compiled; resolved into `files` by Loader.resolveFiles. */
  mounts: unknown[];
  excludes: Token[][];
  /** destination (relative to the component's mount root) → the file's absolute path, in Spin's walk order. */
  files: [string, string][];
  serviceChaining: boolean;
}

interface Trigger {
  id: string;
  type: string;
  config: JsonMap;
}

interface Application {
  name: string;
  version: string;
  description: string;
  authors: string[];
  triggerGlobals: Toml;
}

interface AppModel {
  application: Application;
  variables: [string, JsonMap][];
  triggerTypes: string[];
  triggers: Trigger[];
  components: Component[];
}

function parseManifest(text: string, file: string): Toml {
  let doc: Toml;
  try {
    doc = parseToml(text, { integersAsBigInt: true }) as Toml;
  } catch (err) {
    throw new KilnError('E_BAD_PROJECT', `${file} is not valid TOML: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const version = doc.spin_manifest_version ?? doc.spin_version;
  if (version === '1')
    throw new KilnError('E_UNSUPPORTED', `${file} is a version 1 Spin manifest; kiln reads version 2`, {
      hint: 'spin doctor upgrades it to version 2 (spin_manifest_version = 2)',
    });
  if (version !== 2n)
    throw new KilnError(
      'E_BAD_PROJECT',
      `${file}: invalid manifest version: ${version === undefined ? 'spin_manifest_version is missing' : String(version)}`,
      { hint: 'a Spin application manifest starts with spin_manifest_version = 2' },
    );
  return doc;
}

const APP_KEYS = ['spin_manifest_version', 'application', 'variables', 'trigger', 'component'];
const DETAILS_KEYS = ['name', 'version', 'description', 'authors', 'targets', 'trigger', 'tool'];
const VARIABLE_KEYS = ['description', 'required', 'default', 'secret'];
const COMPONENT_KEYS = [
  'source',
  'description',
  'variables',
  'environment',
  'files',
  'exclude_files',
  'allowed_http_hosts',
  'allowed_outbound_hosts',
  'key_value_stores',
  'sqlite_databases',
  'ai_models',
  'targets',
  'build',
  'tool',
  'dependencies_inherit_configuration',
  'dependencies',
  'profile',
];
const BUILD_KEYS = ['command', 'workdir', 'watch'];

class Loader {
  constructor(
    private readonly file: string,
    private readonly root: string,
  ) {}

  private bad(where: string, why: string): KilnError {
    return new KilnError('E_BAD_PROJECT', `${this.file}: ${where}: ${why}`);
  }

  load(doc: Toml): AppModel {
    this.known(doc, APP_KEYS, 'the manifest');
    const details = this.table(doc.application, 'application', true);
    this.known(details, DETAILS_KEYS, 'application');
    const application: Application = {
      name: this.string(details.name, 'application.name', true),
      version: this.string(details.version, 'application.version'),
      description: this.string(details.description, 'application.description'),
      authors: this.strings(details.authors, 'application.authors'),
      triggerGlobals: this.table(details.trigger, 'application.trigger'),
    };
    for (const [type, config] of Object.entries(application.triggerGlobals))
      this.table(config, `application.trigger.${type}`);

    const variables: [string, JsonMap][] = [];
    for (const [name, raw] of Object.entries(this.table(doc.variables, 'variables'))) {
      this.id(name, '_', true, `variables.${name}`);
      const v = this.table(raw, `variables.${name}`);
      this.known(v, VARIABLE_KEYS, `variables.${name}`);
      const description =
        v.description === undefined ? undefined : this.string(v.description, `variables.${name}.description`);
      const fallback =
        v.default === undefined ? undefined : this.string(v.default, `variables.${name}.default`);
      const required = this.bool(v.required, `variables.${name}.required`);
      const secret = this.bool(v.secret, `variables.${name}.secret`);
      if (required === (fallback !== undefined))
        throw this.bad(`variables.${name}`, 'must be `required` OR have a `default`');
      const locked: JsonMap = new Map();
      if (description !== undefined) locked.set('description', description);
      if (fallback !== undefined) locked.set('default', fallback);
      if (secret) locked.set('secret', true);
      variables.push([name, locked]);
    }
    variables.sort(([a], [b]) => byteOrder(a, b));

    // Components in the manifest's order (Spin's IndexMap), inline ones appended as they are found.
    const specs = new Map<string, Toml>();
    for (const [id, raw] of Object.entries(this.table(doc.component, 'component'))) {
      this.id(id, '-', false, `component.${id}`);
      specs.set(id, this.table(raw, `component.${id}`));
    }

    if (doc.trigger === undefined) throw this.bad('the manifest', 'missing field `trigger`');
    const triggerTables = this.table(doc.trigger, 'trigger');
    const raw: {
      type: string;
      t: Toml;
      id: string;
      component?: string | Toml;
      inlines: Toml[];
      specs: number;
    }[] = [];
    const triggerTypes = Object.keys(triggerTables);
    for (const type of triggerTypes) {
      const list = triggerTables[type];
      if (!Array.isArray(list))
        throw this.bad(`trigger.${type}`, 'expected an array of tables ([[trigger.' + type + ']])');
      list.forEach((entry, i) => {
        const where = `trigger.${type}[${i}]`;
        const t = this.table(entry, where);
        const deps = t.dependencies === undefined ? {} : this.table(t.dependencies, `${where}.dependencies`);
        if (Object.keys(deps).length)
          throw new KilnError(
            'E_UNSUPPORTED',
            `${this.file}: ${where} has dependencies (middleware), which Spin composes when it pushes; kiln does not compose components`,
            {
              hint: 'push this app with spin registry push',
            },
          );
        const component =
          t.component === undefined ? undefined : this.componentSpec(t.component, `${where}.component`);
        const inlines: Toml[] = [];
        let count = component === undefined ? 0 : 1;
        for (const [role, specsOf] of Object.entries(
          t.components === undefined ? {} : this.table(t.components, `${where}.components`),
        ))
          for (const spec of Array.isArray(specsOf) ? specsOf : [specsOf]) {
            const s = this.componentSpec(spec, `${where}.components.${role}`);
            count++;
            if (typeof s !== 'string') inlines.push(s);
          }
        const id = t.id === undefined ? '' : this.string(t.id, `${where}.id`);
        raw.push({ type, t, id, ...(component !== undefined ? { component } : {}), inlines, specs: count });
      });
    }

    // normalize_trigger_ids: a trigger without an id is `<component>-<type>-trigger`, else `<type>-trigger<n>`.
    const taken = new Set(raw.map((r) => r.id));
    const counters = new Map<string, number>();
    for (const r of raw) {
      if (r.id !== '') continue;
      if (typeof r.component === 'string') {
        const candidate = `${r.component}-${r.type}-trigger`;
        if (!taken.has(candidate)) {
          r.id = candidate;
          taken.add(candidate);
          continue;
        }
      }
      let n = counters.get(r.type) ?? 1;
      while (taken.has(`${r.type}-trigger${n}`)) n++;
      r.id = `${r.type}-trigger${n}`;
      taken.add(r.id);
      counters.set(r.type, n);
    }

    // normalize_inline_components: an inline component becomes `<trigger id>-component`, else `inline-component<n>`.
    const triggers: Trigger[] = [];
    for (const r of raw) {
      const multiple = r.specs > 1;
      let counter = 1;
      const place = (spec: Toml): string => {
        let id = `${r.id}-component`;
        if (multiple || !isId(id, '-', false) || specs.has(id)) {
          while (specs.has(`inline-component${counter}`)) counter++;
          id = `inline-component${counter}`;
        }
        specs.set(id, spec);
        return id;
      };
      let componentId: string | undefined;
      if (typeof r.component === 'string') componentId = r.component;
      else if (r.component !== undefined) componentId = place(r.component);
      for (const inline of r.inlines) place(inline);
      const config = new Map<string, Json>();
      for (const [key, value] of Object.entries(r.t))
        if (!['id', 'component', 'components', 'dependencies'].includes(key))
          config.set(key, this.tomlJson(value, `trigger.${r.type} ${r.id}: ${key}`));
      if (componentId !== undefined) config.set('component', componentId);
      triggers.push({ id: r.id, type: r.type, config: sortedMap(config) });
    }

    const components = [...specs].map(([id, spec]) => this.component(id, spec));
    return { application, variables, triggerTypes, triggers, components };
  }

  private componentSpec(value: unknown, where: string): string | Toml {
    if (typeof value === 'string') {
      this.id(value, '-', false, where);
      return value;
    }
    return this.table(value, where);
  }

  private component(id: string, c: Toml): Component {
    const where = `component.${id}`;
    this.known(c, COMPONENT_KEYS, where);
    if (c.source === undefined) throw this.bad(where, 'missing field `source`');
    if (typeof c.source !== 'string')
      throw new KilnError(
        'E_UNSUPPORTED',
        `${this.file}: ${where}.source is a URL or a registry package; kiln packages local files only`,
        { hint: 'download the component and give its path as source' },
      );
    const httpHosts = this.strings(c.allowed_http_hosts, `${where}.allowed_http_hosts`);
    if (httpHosts.length)
      throw new KilnError('E_UNSUPPORTED', `${this.file}: ${where} uses the deprecated allowed_http_hosts`, {
        hint: `write allowed_outbound_hosts instead (spin doctor does; e.g. "https://${httpHosts[0]}")`,
      });
    const deps = c.dependencies === undefined ? {} : this.table(c.dependencies, `${where}.dependencies`);
    if (Object.keys(deps).length)
      throw new KilnError(
        'E_UNSUPPORTED',
        `${this.file}: ${where} has dependencies, which Spin composes into the component when it pushes; kiln does not compose components`,
        {
          hint: 'compose them first (wac plug) and give the composed component as source, or push with spin registry push',
        },
      );
    this.table(c.tool, `${where}.tool`);
    this.table(c.profile, `${where}.profile`);
    if (c.dependencies_inherit_configuration !== undefined)
      this.bool(c.dependencies_inherit_configuration, `${where}.dependencies_inherit_configuration`);
    if (c.targets !== undefined && !Array.isArray(c.targets))
      throw this.bad(`${where}.targets`, 'expected an array');

    const variables = Object.entries(this.table(c.variables, `${where}.variables`)).map(
      ([k, v]): [string, string] => {
        this.id(k, '_', true, `${where}.variables.${k}`);
        return [k, this.string(v, `${where}.variables.${k}`, true)];
      },
    );
    const environment = Object.entries(this.table(c.environment, `${where}.environment`)).map(
      ([k, v]): [string, string] => [k, this.string(v, `${where}.environment.${k}`, true)],
    );
    const allowedOutboundHosts = this.strings(c.allowed_outbound_hosts, `${where}.allowed_outbound_hosts`);
    if (allowedOutboundHosts.length === 1 && allowedOutboundHosts[0] === 'insecure:allow-all')
      throw this.bad(
        `${where}.allowed_outbound_hosts`,
        "'insecure:allow-all' is not allowed - use '*://*:*' instead if you really want to allow all outbound traffic",
      );
    for (const host of allowedOutboundHosts) this.allowedHost(host, `${where}.allowed_outbound_hosts`);
    const storeIds = (key: string) => {
      const list = this.strings(c[key], `${where}.${key}`);
      for (const s of list)
        if (!isId(s, '-', false) && !isId(s, '_', false))
          throw this.bad(`${where}.${key}`, `"${s}": expected kebab-case or snake_case`);
      return list;
    };
    return {
      id,
      source: path.resolve(this.root, c.source),
      description: this.string(c.description, `${where}.description`),
      variables: variables.sort(([a], [b]) => byteOrder(a, b)),
      environment: environment.sort(([a], [b]) => byteOrder(a, b)),
      allowedOutboundHosts,
      keyValueStores: storeIds('key_value_stores'),
      sqliteDatabases: storeIds('sqlite_databases'),
      aiModels: this.strings(c.ai_models, `${where}.ai_models`),
      build: c.build === undefined ? undefined : this.build(c.build, `${where}.build`),
      ...this.fileSpecs(c, where),
      files: [],
      serviceChaining: allowedOutboundHosts.some(isServiceChainingHost),
    };
  }

  /** ComponentBuildConfig as serde_json::to_value makes it: keys sorted, watch only when not empty. */
  private build(value: unknown, where: string): JsonMap {
    const b = this.table(value, where);
    this.known(b, BUILD_KEYS, where);
    const out: JsonMap = new Map();
    if (typeof b.command === 'string') out.set('command', b.command);
    else if (Array.isArray(b.command)) out.set('command', this.strings(b.command, `${where}.command`));
    else throw this.bad(`${where}.command`, 'expected a string or an array of strings');
    const watch = this.strings(b.watch, `${where}.watch`);
    if (watch.length) out.set('watch', watch);
    if (b.workdir !== undefined) out.set('workdir', this.string(b.workdir, `${where}.workdir`));
    return out;
  }

  /** The literal checks of Spin's AllowedHostConfig::parse that a push trips over; templates are left to Spin. */
  private allowedHost(host: string, where: string): void {
    if (host.includes('{{')) return;
    const url = host.trim();
    const at = url.indexOf('://');
    if (at < 0) throw this.bad(where, `"${url}" does not contain a scheme (e.g., 'http://' or '*://')`);
    const scheme = url.slice(0, at);
    if (scheme !== '*' && !/^\p{L}+$/u.test(scheme))
      throw this.bad(where, `"${url}": invalid allowed host scheme "${scheme}"`);
  }

  // ---- files: what the loader copies into the component's mount root, then push walks ----

  private fileSpecs(c: Toml, where: string): { mounts: unknown[]; excludes: Token[][] } {
    const mounts = c.files === undefined ? [] : c.files;
    if (!Array.isArray(mounts)) throw this.bad(`${where}.files`, 'expected an array');
    const excludes = this.strings(c.exclude_files, `${where}.exclude_files`).map((p) =>
      this.pattern(p, `${where}.exclude_files`),
    );
    return { mounts, excludes };
  }

  private pattern(p: string, where: string): Token[] {
    try {
      return compilePattern(p);
    } catch (err) {
      throw this.bad(where, `invalid glob pattern "${p}": ${(err as Error).message}`);
    }
  }

  // ---- TOML values ----

  private known(t: Toml, keys: readonly string[], where: string): void {
    for (const key of Object.keys(t))
      if (!keys.includes(key))
        throw this.bad(
          where,
          `unknown field \`${key}\`, expected one of ${keys.map((k) => `\`${k}\``).join(', ')}`,
        );
  }

  private table(value: unknown, where: string, required = false): Toml {
    if (value === undefined) {
      if (required) throw this.bad(where, 'missing');
      return {};
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof TomlDate)
      throw this.bad(where, 'expected a table');
    return value as Toml;
  }

  private string(value: unknown, where: string, required = false): string {
    if (value === undefined) {
      if (required) throw this.bad(where, 'missing');
      return '';
    }
    if (typeof value !== 'string') throw this.bad(where, 'expected a string');
    return value;
  }

  private strings(value: unknown, where: string): string[] {
    if (value === undefined) return [];
    if (!Array.isArray(value) || value.some((v) => typeof v !== 'string'))
      throw this.bad(where, 'expected an array of strings');
    return value as string[];
  }

  private bool(value: unknown, where: string): boolean {
    if (value === undefined) return false;
    if (typeof value !== 'boolean') throw this.bad(where, 'expected true or false');
    return value;
  }

  private id(value: string, delim: '-' | '_', lower: boolean, where: string): void {
    if (!isId(value, delim, lower))
      throw this.bad(
        where,
        `invalid ID \`${value}\`: ${delim === '-' ? 'kebab-case' : 'snake_case'} words of ASCII letters and digits, each starting with a letter${lower ? ', all lowercase' : ''}`,
      );
  }

  /** A trigger config value as serde_json holds it: tables with sorted keys, integers exact. */
  private tomlJson(value: unknown, where: string): Json {
    if (
      typeof value === 'string' ||
      typeof value === 'bigint' ||
      typeof value === 'number' ||
      typeof value === 'boolean'
    )
      return value;
    if (value instanceof TomlDate)
      throw new KilnError('E_UNSUPPORTED', `${this.file}: ${where}: a TOML date-time in a trigger config`, {
        hint: 'quote it as a string',
      });
    if (Array.isArray(value)) return value.map((v) => this.tomlJson(v, where));
    if (typeof value === 'object' && value !== null)
      return sortedMap(Object.entries(value).map(([k, v]): [string, Json] => [k, this.tomlJson(v, where)]));
    throw this.bad(where, `unexpected value ${String(value)}`);
  }

  /**
   * Resolves each component's `files` as the loader copies them into the component's mount root
   * (FilesMountStrategy::Copy): in the order written, a later file replacing an earlier one at the
   * same path (Spin copies them concurrently, so there the last copy to finish wins).
   */
  async resolveFiles(components: Component[]): Promise<void> {
    for (const c of components) {
      const into = new Placement(this.root, c.excludes);
      for (const [i, mount] of c.mounts.entries())
        await this.mount(mount, `component.${c.id}.files[${i}]`, into);
      c.files = walkOrder(into.placed, `${this.file}: component.${c.id}.files`);
    }
  }

  private async mount(mount: unknown, where: string, into: Placement): Promise<void> {
    if (typeof mount === 'string') return this.mountPattern(mount, where, into);
    const m = this.table(mount, where);
    this.known(m, ['source', 'destination'], where);
    const source = this.string(m.source, `${where}.source`, true);
    const destination = this.string(m.destination, `${where}.destination`, true);
    const src = path.resolve(this.root, source);
    // The loader takes a source by its path from the app root, which an absolute path elsewhere has not.
    if (path.isAbsolute(source) && !`${src}${path.sep}`.startsWith(`${this.root}${path.sep}`))
      throw new KilnError(
        'E_UNSAFE_PATH',
        `${this.file}: ${where}: "${source}" is outside the application directory`,
        { hint: 'files must be within the application directory' },
      );
    const st = await fs.stat(src).catch((err) => {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT')
        throw new KilnError(
          'E_NOT_FOUND',
          `${this.file}: ${where}: file or directory "${source}" does not exist`,
        );
      throw ioError(err, src);
    });
    const dest = destination.replace(/^\/+/, '');
    if (st.isDirectory()) {
      // { source = "host/dir", destination = "guest/dir" }: every file under it, by its path in it.
      const base = normalDest(dest, where);
      for await (const abs of walkFiles(src)) into.found(joinDest(base, path.relative(src, abs)), abs);
      return;
    }
    // { source = "host/file.txt", destination = "guest/file.txt" }
    const last = dest.split('/').pop();
    if (dest === '' || destination.endsWith('/') || last === '.' || last === '..')
      throw this.bad(where, `"${destination}" is not a valid destination file name`);
    into.named(normalDest(dest, where), src);
  }

  private async mountPattern(pattern: string, where: string, into: Placement): Promise<void> {
    if (pattern === '..' || pattern.endsWith('/..') || pattern === '.' || pattern.endsWith('/.'))
      throw this.bad(
        where,
        `"${pattern}": a file pattern can't end in a directory path (. or ..); use the { source, destination } form, or a glob pattern ending in **/*`,
      );
    if (path.isAbsolute(pattern) || pattern.split('/').includes('..'))
      throw new KilnError(
        'E_UNSAFE_PATH',
        `${this.file}: ${where}: "${pattern}" reaches outside the application directory`,
        { hint: 'use the { source, destination } form for files outside it' },
      );
    const abs = path.join(this.root, pattern);
    const st = await fs.stat(abs).catch(() => undefined);
    if (st?.isDirectory())
      // Spin's loader copies a bare directory to <dir>/<dir>/… (its glob's paths are relative to the
      // app root, then joined under the directory's own name); kiln does not reproduce that.
      throw new KilnError('E_UNSUPPORTED', `${this.file}: ${where}: "${pattern}" is a directory`, {
        hint: `write { source = "${pattern}", destination = "/${normalDest(pattern, where)}" } or "${pattern.replace(/\/$/, '')}/**/*"`,
      });
    if (st) {
      // "single/file.txt": at the same path in the guest
      into.named(normalDest(pattern, where), abs);
      return;
    }
    if (!/[*?[\]]/.test(pattern))
      throw new KilnError(
        'E_NOT_FOUND',
        `${this.file}: ${where}: "${pattern}" does not exist and doesn't appear to be a glob pattern`,
      );
    this.pattern(pattern, where); // its errors, as written
    const parts = pattern.split('/').filter((p) => p !== '' && p !== '.');
    // glob's walk: a last component `**` matches directories only, so no files.
    if (parts[parts.length - 1] === '**') return;
    const literal: string[] = [];
    for (const part of parts.slice(0, -1)) {
      if (/[*?[\]]/.test(part)) break;
      literal.push(part);
    }
    const normal = compilePattern(parts.join('/'));
    for await (const file of walkFiles(path.join(this.root, ...literal))) {
      const rel = path.relative(this.root, file).split(path.sep).join('/');
      if (matches(normal, rel, true)) into.found(rel, file);
    }
  }
}

function lockedApp(model: AppModel, components: Json[]): JsonMap {
  const chaining = model.components.some((c) => c.serviceChaining);
  const app: JsonMap = new Map<string, Json>([['spin_lock_version', chaining ? 1n : 0n]]);
  if (chaining) app.set('must_understand', ['component_host_requirements']);
  app.set('metadata', metadata(model));
  if (model.variables.length) app.set('variables', new Map(model.variables));
  app.set(
    'triggers',
    model.triggers.map(
      (t) =>
        new Map<string, Json>([
          ['id', t.id],
          ['trigger_type', t.type],
          ['trigger_config', t.config],
        ]),
    ),
  );
  app.set('components', components);
  return app;
}

/** The loader's locked_metadata: a serde_json Map, so its keys are sorted; `origin` is removed on push. */
function metadata(model: AppModel): JsonMap {
  const a = model.application;
  const m = new Map<string, Json>();
  if (a.name) m.set('name', a.name);
  if (a.version) m.set('version', a.version);
  if (a.description) m.set('description', a.description);
  if (a.authors.length) m.set('authors', a.authors);
  const globals = (type: string): JsonMap =>
    sortedMap(
      Object.entries(a.triggerGlobals[type] ?? {}).map(([k, v]): [string, Json] => [k, tomlValue(v)]),
    );
  m.set(
    'triggers',
    sortedMap(Object.keys(a.triggerGlobals).map((type): [string, Json] => [type, globals(type)])),
  );
  if (model.triggerTypes.length === 1) {
    const type = model.triggerTypes[0]!;
    const single = globals(type);
    single.set('type', type);
    m.set('trigger', sortedMap(single));
  }
  return sortedMap(m);
}

function tomlValue(value: unknown): Json {
  if (Array.isArray(value)) return value.map(tomlValue);
  if (value instanceof TomlDate)
    throw new KilnError('E_UNSUPPORTED', 'a TOML date-time in [application.trigger]', {
      hint: 'quote it as a string',
    });
  if (typeof value === 'object' && value !== null)
    return sortedMap(Object.entries(value).map(([k, v]): [string, Json] => [k, tomlValue(v)]));
  return value as Json;
}

/** A LockedComponent in its serde field order: id, metadata, source, env, files, config, host_requirements. */
function lockedComponent(c: Component, source: JsonMap, files: Json[]): JsonMap {
  const metadata: [string, Json][] = [];
  if (c.description) metadata.push(['description', c.description]);
  if (c.allowedOutboundHosts.length) metadata.push(['allowed_outbound_hosts', c.allowedOutboundHosts]);
  if (c.keyValueStores.length) metadata.push(['key_value_stores', c.keyValueStores]);
  if (c.sqliteDatabases.length) metadata.push(['databases', c.sqliteDatabases]);
  if (c.aiModels.length) metadata.push(['ai_models', c.aiModels]);
  if (c.build) metadata.push(['build', c.build]);
  const out: JsonMap = new Map<string, Json>([['id', c.id]]);
  if (metadata.length) out.set('metadata', sortedMap(metadata));
  out.set('source', source);
  if (c.environment.length) out.set('env', new Map(c.environment));
  if (files.length) out.set('files', files);
  if (c.variables.length) out.set('config', new Map(c.variables));
  if (c.serviceChaining) out.set('host_requirements', new Map([['local_service_chaining', 'required']]));
  return out;
}

/** Spin's all_annotations: explicit ones first, then authors, title, description, version (and created when given). */
function annotations(a: Application, options: PackageSpinOptions): Record<string, string> {
  const out: Record<string, string> = { ...options.annotations };
  const infer = (key: string, value: string | undefined) => {
    if (value && !(key in out)) out[key] = value;
  };
  if (a.authors.length) infer('org.opencontainers.image.authors', a.authors.join(', '));
  infer('org.opencontainers.image.title', a.name);
  infer('org.opencontainers.image.description', a.description);
  infer('org.opencontainers.image.version', a.version);
  // Spin stamps the time of the push; kiln only a time it is given, so that one app has one digest.
  infer('org.opencontainers.image.created', options.created);
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Reading components and files

async function readComponent(id: string, file: string): Promise<Buffer> {
  const what = `component ${id} source ${file}`;
  const st = await fs.stat(file).catch((err) => {
    throw ioError(err, what);
  });
  if (!st.isFile())
    throw new KilnError(
      'E_NOT_WASM',
      `Component ${id} source is not a valid .wasm file: ${file} is not a file`,
    );
  if (st.size > MAX_COMPONENT_BYTES)
    throw new KilnError('E_TOO_LARGE', `${what} is over 1 GiB; not a component kiln will load`);
  const bytes = await fs.readFile(file).catch((err) => {
    throw ioError(err, what);
  });
  // validate::ensure_wasms: a component or a core module (kiln does not take WAT text, which Spin also takes).
  const magic = bytes.length >= 8 && bytes.readUInt32BE(0) === 0x0061736d;
  const version = magic ? bytes.readUInt32BE(4) : 0;
  if (version !== 0x01000000 && version !== 0x0d000100)
    throw new KilnError('E_NOT_WASM', `Component ${id} source is not a valid .wasm file`, {
      hint: `${file} is not a WebAssembly binary (it does not start with \\0asm and a module or component version)`,
    });
  return bytes;
}

/**
 * What `pack` reports of the first component. Spin takes any binary its header calls a module or a
 * component, so one kiln's reader cannot read in full is described by its header alone.
 */
function describe(bytes: Buffer, file: string): WasmInfo {
  try {
    return inspectWasm(bytes, path.basename(file));
  } catch {
    const kind = bytes.readUInt32BE(4) === 0x01000000 ? 'module' : 'component';
    return { kind, wasi: null, role: 'library', imports: [], exports: [], size: bytes.length };
  }
}

/** A file's content ref: inlined when small (and then no layer), else streamed into the store. */
async function fileContent(
  store: OciLayout,
  file: string,
): Promise<{ digest: Digest; size: number; inline?: string }> {
  const st = await fs.stat(file).catch((err) => {
    throw ioError(err, file);
  });
  if (st.size <= INLINE_MAX) {
    const bytes = await fs.readFile(file).catch((err) => {
      throw ioError(err, file);
    });
    if (bytes.length <= INLINE_MAX)
      return { digest: sha256(bytes), size: bytes.length, inline: base64(bytes) };
    return store.putBytes(bytes);
  }
  return store.writeBlob(createReadStream(file));
}

/** Every regular file under `dir` (symlinks followed, as glob and fs::copy do; each directory once). */
async function* walkFiles(dir: string, seen = new Set<string>()): AsyncGenerator<string> {
  const real = await fs.realpath(dir).catch(() => undefined);
  if (real === undefined || seen.has(real)) return;
  seen.add(real);
  let entries: import('node:fs').Dirent[];
  try {
    entries = await fs.readdir(dir, { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOTDIR' || (err as NodeJS.ErrnoException).code === 'ENOENT')
      return;
    throw ioError(err, dir);
  }
  entries.sort((a, b) => byteOrder(a.name, b.name));
  for (const entry of entries) {
    const p = path.join(dir, entry.name);
    const st = entry.isSymbolicLink() ? await fs.stat(p).catch(() => undefined) : entry;
    if (!st) continue;
    if (st.isDirectory()) yield* walkFiles(p, seen);
    else if (st.isFile()) yield p;
  }
}

/** Whether a file is left out by `exclude_files` (glob::Pattern::matches_path on its path from the app root). */
/** A component's files as they are placed: guest path to host file, less what its exclude_files match. */
class Placement {
  readonly placed = new Map<string, string>();
  constructor(
    private readonly root: string,
    private readonly excludes: Token[][],
  ) {}

  /** A file named on its own (a file mount, a pattern without wildcards): placed as it is. */
  named(dest: string, file: string): void {
    this.placed.set(dest, file);
  }

  /** A file found by walking a directory or a glob: placed unless excluded. */
  found(dest: string, file: string): void {
    if (!excluded(this.root, file, this.excludes)) this.placed.set(dest, file);
  }
}

function excluded(root: string, file: string, excludes: Token[][]): boolean {
  if (excludes.length === 0) return false;
  const rel = path.relative(root, file).split(path.sep).join('/');
  return excludes.some((tokens) => matches(tokens, rel, false));
}

function normalDest(dest: string, where: string): string {
  const parts = dest.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..'))
    throw new KilnError('E_UNSAFE_PATH', `${where}: "${dest}" reaches outside the component's files`);
  return parts.join('/');
}

function joinDest(base: string, rel: string): string {
  const r = rel.split(path.sep).join('/');
  return base === '' ? r : `${base}/${r}`;
}

/**
 * The files in the order push_file_layers walks the copied tree (WalkDir: depth first; kiln sorts each
 * directory by name, where Spin takes the file system's order). A path that is both a file and a
 * directory cannot be copied.
 */
function walkOrder(placed: Map<string, string>, where: string): [string, string][] {
  const dirs = new Set<string>();
  for (const dest of placed.keys()) {
    const parts = dest.split('/');
    for (let i = 1; i < parts.length; i++) dirs.add(parts.slice(0, i).join('/'));
  }
  for (const dest of placed.keys())
    if (dirs.has(dest))
      throw new KilnError(
        'E_BAD_PROJECT',
        `${where}: "${dest}" is mounted both as a file and as a directory`,
      );
  const compare = (a: string, b: string): number => {
    const pa = a.split('/');
    const pb = b.split('/');
    for (let i = 0; i < Math.min(pa.length, pb.length); i++) {
      const c = byteOrder(pa[i]!, pb[i]!);
      if (c !== 0) return c;
    }
    return pa.length - pb.length;
  };
  return [...placed].sort(([a], [b]) => compare(a, b));
}

// ---------------------------------------------------------------------------------------------------
// Glob patterns as the glob crate reads them (MatchOptions::new(): case sensitive, dots not special)

type Token =
  | { t: 'char'; c: string }
  | { t: 'any' }
  | { t: 'seq' }
  | { t: 'rec' }
  | { t: 'within' | 'except'; set: ([string] | [string, string])[] };

function compilePattern(pattern: string): Token[] {
  const chars = Array.from(pattern);
  const tokens: Token[] = [];
  let i = 0;
  while (i < chars.length) {
    const c = chars[i]!;
    if (c === '?') {
      tokens.push({ t: 'any' });
      i++;
    } else if (c === '*') {
      const start = i;
      while (i < chars.length && chars[i] === '*') i++;
      const count = i - start;
      if (count > 2) throw new Error('wildcards are either regular `*` or recursive `**`');
      if (count === 1) tokens.push({ t: 'seq' });
      else {
        const afterSep = start === 0 || chars[start - 1] === '/';
        if (!afterSep) throw new Error('recursive wildcards must form a single path component');
        if (i < chars.length && chars[i] === '/') i++;
        else if (i !== chars.length) throw new Error('recursive wildcards must form a single path component');
        if (tokens[tokens.length - 1]?.t !== 'rec') tokens.push({ t: 'rec' });
      }
    } else if (c === '[') {
      const negate = chars[i + 1] === '!';
      const from = negate ? i + 2 : i + 1;
      // the first character of a class may be `]`
      const close = chars.indexOf(']', from + 1);
      if (close < 0 || (negate ? i + 4 > chars.length : i + 3 > chars.length))
        throw new Error('invalid range pattern');
      const body = chars.slice(from, close);
      const set: ([string] | [string, string])[] = [];
      for (let j = 0; j < body.length; ) {
        if (j + 2 < body.length && body[j + 1] === '-') {
          set.push([body[j]!, body[j + 2]!]);
          j += 3;
        } else {
          set.push([body[j]!]);
          j++;
        }
      }
      tokens.push({ t: negate ? 'except' : 'within', set });
      i = close + 1;
    } else {
      tokens.push({ t: 'char', c });
      i++;
    }
  }
  return tokens;
}

/** glob's Pattern::matches_from; `literalSeparator`: wildcards do not match `/` (glob's walk), else they do (exclude_files). */
function matches(tokens: Token[], text: string, literalSeparator: boolean): boolean {
  const chars = Array.from(text);
  const from = (ti: number, ci: number): boolean => {
    for (; ti < tokens.length; ti++) {
      const token = tokens[ti]!;
      if (token.t === 'seq' || token.t === 'rec') {
        if (from(ti + 1, ci)) return true;
        for (let k = ci; k < chars.length; k++) {
          const sep = chars[k] === '/';
          if (token.t === 'rec' && !sep) continue;
          if (token.t === 'seq' && literalSeparator && sep) return false;
          if (from(ti + 1, k + 1)) return true;
        }
        return false;
      }
      const c = chars[ci];
      if (c === undefined) return false;
      if (literalSeparator && c === '/' && token.t !== 'char') return false;
      const inSet = (set: ([string] | [string, string])[]) =>
        set.some((s) => (s.length === 1 ? s[0] === c : s[0] <= c && c <= s[1]));
      const ok =
        token.t === 'any' ||
        (token.t === 'char' && token.c === c) ||
        (token.t === 'within' && inSet(token.set)) ||
        (token.t === 'except' && !inSet(token.set));
      if (!ok) return false;
      ci++;
    }
    return ci === chars.length;
  };
  return from(0, 0);
}

/** spin_serde's Id: words split by `delim`, each an ASCII letter then letters and digits, one case per word. */
function isId(value: string, delim: '-' | '_', lower: boolean): boolean {
  if (value === '') return false;
  return value.split(delim).every((word) => {
    if (!/^[A-Za-z][A-Za-z0-9]*$/.test(word)) return false;
    const upper = /^[A-Z]/.test(word);
    if (lower && upper) return false;
    return upper ? !/[a-z]/.test(word) : !/[A-Z]/.test(word);
  });
}

/** A host Spin's service chaining serves (`*.spin.internal` or `<component>.spin.internal`): the component then needs it. */
function isServiceChainingHost(host: string): boolean {
  const url = host.trim();
  const at = url.indexOf('://');
  if (at < 0 || url.includes('{')) return false;
  let rest = url.slice(at + 3);
  const colon = rest.lastIndexOf(':');
  if (colon >= 0) rest = rest.slice(0, colon);
  rest = rest.replace(/\/$/, '').toLowerCase();
  if (rest.includes('/')) return false;
  if (rest.startsWith('*.')) return rest === '*.spin.internal';
  return !rest.includes('*') && rest.endsWith('.spin.internal');
}
