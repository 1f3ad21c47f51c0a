import { createHash } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { ioError, KilnError } from '../errors.js';
import { checkCreated } from '../image/compose.js';
import { Image, type ImageLayer } from '../image/image.js';
import { sortKeys, type WrittenManifest, writeJsonBlob, writeManifest } from '../image/write.js';
import { writeLayer } from '../layer/write-layer.js';
import { MediaType } from '../oci/media-types.js';
import type { Platform } from '../oci/platform.js';
import { type Descriptor, type ImageConfig, TITLE_ANNOTATION } from '../oci/types.js';
import type { OciLayout } from '../store/layout.js';
import { defaultOs, inspectWasm, type WasmInfo } from './inspect.js';
import type { SpinPackaged } from './spin.js';

/**
 * The WebAssembly packaging conventions of docs/formats.md; kiln never invents another. `spin` takes a
 * Spin application's spin.toml rather than one .wasm.
 */
export const WASM_FORMATS = [
  'image',
  'artifact',
  'runwasi',
  'istio',
  'istio-oci',
  'wasm-to-oci',
  'spin',
] as const;
/** A packaging format of docs/formats.md. */
export type WasmFormat = (typeof WASM_FORMATS)[number];
/** The formats that carry an Istio runtime config; any other refuses one rather than drop it. */
export const RUNTIME_CONFIG_FORMATS: readonly WasmFormat[] = ['istio', 'istio-oci'];

export const VARIANT_ANNOTATION = 'module.wasm.image/variant';
/** runwasi's config label: sha256 (hex) of the layers' hex digests joined, so each module's config differs. */
export const RUNWASI_LAYERS_LABEL = 'containerd.runwasi.layers';
/** The largest module kiln will load into memory to inspect (a module is compiled whole anyway). */
export const MAX_MODULE_BYTES = 1 << 30;

export interface PackageOptions {
  /** The .wasm (for `spin`: the application's spin.toml). */
  file: string;
  format?: WasmFormat;
  /** `<name>` of `/<name>.wasm`; defaults to the file's base name without `.wasm`. */
  name?: string;
  platform?: Platform;
  annotations?: Record<string, string>;
  labels?: Record<string, string>;
  env?: string[];
  /** RFC 3339; defaults to SOURCE_DATE_EPOCH, else the epoch, so output is reproducible. */
  created?: string;
  /** Istio runtime config (JSON file) for `istio` and `istio-oci`. */
  runtimeConfig?: string;
  /** How the image and istio formats compress their tar layer (default gzip). */
  compression?: 'gzip' | 'zstd';
}

export interface PackagedWasm extends WrittenManifest {
  /** The module (for `spin`: the first component). */
  info: WasmInfo;
  platform: Platform;
  /** For `spin`: the components' ids and the locked app layer. */
  spin?: SpinPackaged;
}

/** Whether `value` names a packaging format. */
export function isWasmFormat(value: string): value is WasmFormat {
  return (WASM_FORMATS as readonly string[]).includes(value);
}

export async function packageWasm(store: OciLayout, options: PackageOptions): Promise<PackagedWasm> {
  const format = options.format ?? 'image';
  if (!isWasmFormat(format))
    throw new KilnError('E_UNKNOWN_FORMAT', `unknown format '${format}'`, {
      hint: `formats: ${WASM_FORMATS.join(', ')}`,
    });
  if (options.runtimeConfig !== undefined && !RUNTIME_CONFIG_FORMATS.includes(format))
    throw new KilnError(
      'E_USAGE',
      `--runtime-config is for the ${RUNTIME_CONFIG_FORMATS.join(' and ')} formats; the ${format} format has nowhere to put it`,
      { hint: `add --format ${RUNTIME_CONFIG_FORMATS.join(' or --format ')}, or leave --runtime-config out` },
    );
  if (format === 'spin') return packageSpinApp(store, options);
  if (isSpinManifest(options.file))
    throw new KilnError('E_USAGE', `${options.file} is a Spin application manifest, not a .wasm`, {
      hint: 'kiln package spin.toml --format spin packages the whole application as spin registry push does',
    });
  const bytes = await readModule(options.file);
  const info = inspectWasm(bytes, path.basename(options.file));
  const name = moduleName(options.name ?? path.basename(options.file));
  const platform: Platform = options.platform ?? { os: defaultOs(info), architecture: 'wasm' };
  const created = checkCreated(options.created);
  const runtimeConfig = options.runtimeConfig ? await readRuntimeConfig(options.runtimeConfig) : undefined;
  const ctx: Ctx = { store, options, bytes, info, name, platform, created, runtimeConfig };
  const written = await BUILDERS[format](ctx);
  return { ...written, info, platform };
}

function isSpinManifest(file: string): boolean {
  return file.endsWith('.toml');
}

/**
 * The spin format: the application of a spin.toml, with what Spin's push fixes (its platform, its
 * config) refused rather than overridden.
 */
async function packageSpinApp(store: OciLayout, options: PackageOptions): Promise<PackagedWasm> {
  if (options.file.endsWith('.wasm'))
    throw new KilnError(
      'E_USAGE',
      `the spin format packages a Spin application from its spin.toml, not ${options.file}`,
      {
        hint: 'kiln package spin.toml --format spin; for one component on its own, --format artifact (Spin runs it as a package)',
      },
    );
  const given = (
    [
      ['--name', options.name !== undefined],
      ['--platform', options.platform !== undefined],
      ['--label', Object.keys(options.labels ?? {}).length > 0],
      ['--env', (options.env ?? []).length > 0],
    ] as const
  ).filter(([, set]) => set);
  if (given.length)
    throw new KilnError(
      'E_USAGE',
      `${given.map(([flag]) => flag).join(', ')} ${given.length === 1 ? 'is' : 'are'} not for the spin format: Spin's push fixes the platform (Wasip1/wasm) and the config`,
      { hint: 'component environment and variables go in spin.toml; --annotation and --created apply' },
    );
  // The creation time is an annotation only when asked for (--created, SOURCE_DATE_EPOCH).
  const created =
    options.created !== undefined || process.env.SOURCE_DATE_EPOCH
      ? checkCreated(options.created)
      : undefined;
  const { packageSpin } = await import('./spin.js');
  return packageSpin(store, {
    file: options.file,
    ...(options.annotations ? { annotations: options.annotations } : {}),
    ...(created !== undefined ? { created } : {}),
  });
}

interface Ctx {
  store: OciLayout;
  options: PackageOptions;
  bytes: Buffer;
  info: WasmInfo;
  name: string;
  platform: Platform;
  created: string;
  runtimeConfig: { bytes: Buffer; json: Record<string, unknown> } | undefined;
}

const BUILDERS: Record<Exclude<WasmFormat, 'spin'>, (ctx: Ctx) => Promise<WrittenManifest>> = {
  image: async (ctx) => {
    const file = `${ctx.name}.wasm`;
    const layer = await writeLayer(
      ctx.store,
      [{ path: file, type: 'file', mode: 0o755, content: ctx.bytes }],
      {
        compression: ctx.options.compression,
      },
    );
    const config = imageConfig(ctx, layer, { Entrypoint: [`/${file}`] }, 'kiln package');
    return writeManifest(ctx.store, {
      config: await writeJsonBlob(ctx.store, MediaType.OciConfig, config),
      layers: [layer.descriptor],
      annotations: { [VARIANT_ANNOTATION]: 'compat-smart', ...ctx.options.annotations },
    });
  },

  artifact: async (ctx) => {
    const layer = await rawLayer(ctx, MediaType.WasmLayer, `${ctx.name}.wasm`);
    const component =
      ctx.info.kind === 'component' ? { exports: ctx.info.exports, imports: ctx.info.imports } : null;
    const config = {
      created: ctx.created,
      architecture: 'wasm',
      os: ctx.platform.os,
      layerDigests: [layer.digest],
      component,
    };
    return writeManifest(ctx.store, {
      config: await writeJsonBlob(ctx.store, MediaType.WasmConfigV0, config),
      layers: [layer],
      annotations: ctx.options.annotations,
    });
  },

  // runwasi's wasm-layer image as its oci-tar-builder writes it: the binary as a raw layer the shim
  // takes when the config's architecture is wasm, no rootfs (diff_ids empty), and a label making the
  // config unique per module, since no diff_id does.
  runwasi: async (ctx) => {
    const layer = await ctx.store.putBytes(ctx.bytes);
    const hex = layer.digest.slice('sha256:'.length);
    const labels = sortKeys({
      ...ctx.options.labels,
      [RUNWASI_LAYERS_LABEL]: createHash('sha256').update(hex).digest('hex'),
    });
    const config: ImageConfig = {
      created: ctx.created,
      architecture: 'wasm',
      os: ctx.platform.os,
      config: {
        Entrypoint: [`${ctx.name}.wasm`],
        ...(ctx.options.env?.length ? { Env: ctx.options.env } : {}),
        Labels: labels,
      },
      rootfs: { type: 'layers', diff_ids: [] },
    };
    return writeManifest(ctx.store, {
      config: await writeJsonBlob(ctx.store, MediaType.OciConfig, config),
      layers: [{ mediaType: MediaType.RunwasiLayer, ...layer }],
      annotations: ctx.options.annotations,
    });
  },

  istio: async (ctx) => {
    const entries = [{ path: 'plugin.wasm', type: 'file' as const, mode: 0o644, content: ctx.bytes }];
    if (ctx.runtimeConfig)
      entries.push({
        path: 'runtime-config.json',
        type: 'file',
        mode: 0o644,
        content: ctx.runtimeConfig.bytes,
      });
    entries.sort((a, b) => (a.path < b.path ? -1 : 1));
    const layer = await writeLayer(ctx.store, entries, { compression: ctx.options.compression });
    const config = imageConfig(ctx, layer, {}, 'kiln package --format istio');
    return writeManifest(ctx.store, {
      config: await writeJsonBlob(ctx.store, MediaType.OciConfig, config),
      layers: [layer.descriptor],
      annotations: { [VARIANT_ANNOTATION]: 'compat', ...ctx.options.annotations },
    });
  },

  'istio-oci': async (ctx) => {
    const rc = ctx.runtimeConfig ?? defaultRuntimeConfig();
    const config: Descriptor = {
      mediaType: MediaType.IstioOciConfig,
      ...(await ctx.store.putBytes(rc.bytes)),
    };
    const configLayer: Descriptor = { ...config, annotations: { [TITLE_ANNOTATION]: 'runtime-config.json' } };
    const content = await rawLayer(ctx, MediaType.IstioOciLayer, 'filter.wasm');
    // wasme writes both markers always: the runtime type, and every ABI version joined with commas
    const abiVersions = Array.isArray(rc.json.abiVersions)
      ? rc.json.abiVersions.filter((v) => typeof v === 'string')
      : [];
    const annotations: Record<string, string> = {
      'module.wasm.runtime/type': typeof rc.json.type === 'string' ? rc.json.type : 'envoy_proxy',
      'module.wasm.runtime/abi_version': abiVersions.join(','),
    };
    return writeManifest(ctx.store, {
      config,
      layers: [configLayer, content],
      annotations: { ...annotations, ...ctx.options.annotations },
    });
  },

  'wasm-to-oci': async (ctx) => {
    const layer = await rawLayer(ctx, MediaType.WasmToOciLayer, path.basename(ctx.options.file));
    return writeManifest(ctx.store, {
      config: await writeJsonBlob(ctx.store, MediaType.WasmToOciConfig, {}),
      layers: [layer],
      annotations: ctx.options.annotations,
    });
  },
};

/** The image config of a format with a filesystem layer: an image of the platform, made by `createdBy`. */
function imageConfig(
  ctx: Ctx,
  layer: ImageLayer,
  base: { Entrypoint?: string[] },
  createdBy: string,
): ImageConfig {
  const container: NonNullable<ImageConfig['config']> = { ...base };
  if (ctx.options.env?.length) container.Env = ctx.options.env;
  if (ctx.options.labels && Object.keys(ctx.options.labels).length)
    container.Labels = sortKeys(ctx.options.labels);
  return Image.scratch(ctx.platform, ctx.created)
    .withContainerConfig(container)
    .appendLayers([layer], [{ created: ctx.created, created_by: createdBy }]).config;
}

/** A layer that is the module's own bytes (artifact-style formats), titled with its file name. */
async function rawLayer(ctx: Ctx, mediaType: string, title: string): Promise<Descriptor> {
  const blob = await ctx.store.putBytes(ctx.bytes);
  return { mediaType, ...blob, annotations: { [TITLE_ANNOTATION]: title } };
}

function moduleName(raw: string): string {
  const name = raw.endsWith('.wasm') ? raw.slice(0, -5) : raw;
  if (name === '' || name.includes('/') || name === '.' || name === '..')
    throw new KilnError('E_USAGE', `--name must be a plain file name, got '${raw}'`);
  return name;
}

async function readModule(file: string): Promise<Buffer> {
  let st: import('node:fs').Stats;
  try {
    st = await fs.stat(file);
  } catch (err) {
    throw ioError(err, file);
  }
  if (!st.isFile()) throw new KilnError('E_NOT_WASM', `${file} is not a file`);
  if (st.size > MAX_MODULE_BYTES)
    throw new KilnError('E_TOO_LARGE', `${file} is over 1 GiB; not a module kiln will load`);
  return fs.readFile(file).catch((err) => {
    throw ioError(err, file);
  });
}

async function readRuntimeConfig(file: string): Promise<{ bytes: Buffer; json: Record<string, unknown> }> {
  const bytes = await fs.readFile(file).catch((err) => {
    throw ioError(err, file);
  });
  try {
    const json = JSON.parse(bytes.toString('utf8'));
    if (typeof json !== 'object' || json === null || Array.isArray(json))
      throw new Error('not a JSON object');
    return { bytes, json };
  } catch (err) {
    throw new KilnError('E_USAGE', `runtime config ${file} is not a JSON object: ${(err as Error).message}`);
  }
}

/** Istio's default for a proxy-wasm filter when the user gives no runtime config. */
function defaultRuntimeConfig(): { bytes: Buffer; json: Record<string, unknown> } {
  const json = { type: 'envoy_proxy', config: { rootIds: [] } };
  return { bytes: Buffer.from(JSON.stringify(json)), json };
}
