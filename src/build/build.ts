/**
 * `kiln build`: compile (or take from the cache), pack, and write to every destination.
 *
 * One platform (or none: the module's own) is today's single image: the .wasm packed in the format
 * kiln.yaml or the flags ask for. Several platforms give one OCI index: wasm platforms share one
 * compile, packed once per platform; each native platform is compiled for its target and put on
 * the base image for that platform (native-image.ts). Everything is written into kiln's store and
 * served from there (base blobs from the base), so a destination that has a blob is only asked
 * about it. Packaging is deterministic: an unchanged project writes the same digests.
 */
import type { KeyObject } from 'node:crypto';
import * as path from 'node:path';
import { type KilnContext, withContext } from '../context.js';
import { KilnError } from '../errors.js';
import { ComposedSource, defaultCreated, platformKey } from '../image/compose.js';
import { sortKeys } from '../image/write.js';
import { hasAliases, type PlatformAliases, withPlatformAliases } from '../oci/aliases.js';
import { MediaType } from '../oci/media-types.js';
import { formatPlatform, isWasmPlatform, type Platform, parsePlatform } from '../oci/platform.js';
import type { Descriptor, ImageIndex } from '../oci/types.js';
import { type LoadedProject, loadProject } from '../project/project.js';
import { provenanceAnnotations } from '../project/provenance.js';
import { copyImage } from '../transport/copy.js';
import { openDestination } from '../transport/open.js';
import { parseLocation } from '../transport/parse.js';
import type { ImageSource } from '../transport/types.js';
import type { WasmInfo } from '../wasm/inspect.js';
import type { PackResult } from '../wasm/pack.js';
import type { WasmFormat } from '../wasm/package.js';
import { type CompileOptions, type CompileResult, compile } from './compile.js';
import { buildNativeImage, type NativeBase, type NativeLayer, resolveBases } from './native-image.js';

/**
 * What `build` compiles (the options of `compile`) and how it packs and writes the result; each
 * field left out comes from kiln.yaml.
 */
export interface BuildOptions extends CompileOptions {
  /** Destinations; default kiln.yaml's `to`. */
  to?: string[];
  format?: WasmFormat;
  /** One platform (kept for the library's callers); `platforms` wins when both are given. */
  platform?: Platform;
  /** Platforms to build for; default kiln.yaml's `image.platforms`, else the module's own. */
  platforms?: Platform[];
  /** Base image of native images; default kiln.yaml's `image.base`, else none (scratch). */
  base?: string;
  /** Also list the wasm image under wasi/wasm in an index; default kiln.yaml's `image.wasiAlias`. */
  wasiAlias?: boolean;
  /** Consumers that must run the image (`kiln check --for`); default kiln.yaml's `check`. Nothing is written when one would not. */
  check?: string[];
  /** Also list the wasm image under these node platforms (Kubernetes); default kiln.yaml's `image.nodeAliases`. */
  nodeAliases?: Platform[];
  /** Attach an SPDX SBOM to every image; default kiln.yaml's `sbom`, else true. */
  sbom?: boolean;
  /** Sign what was written (the index and each image) and attach signed SLSA provenance to each image. */
  signKey?: KeyObject;
  /** How new tar layers are compressed (default gzip). */
  compression?: 'gzip' | 'zstd';
  onBuildEvent?: (e: BuildEvent) => void;
}

/**
 * What a build reports as it goes: a compile starting (for a platform; undefined for the project's
 * one wasm build), an image made for a platform, a destination written (the index's or the image's
 * digest).
 */
export type BuildEvent =
  | { type: 'compile'; platform: Platform | undefined }
  | { type: 'image'; platform: Platform; digest: string }
  | { type: 'written'; destination: string; digest: string };

/** One image written: for a multi-platform build, one per platform and destination. */
export interface BuiltImage {
  destination: string;
  descriptor: Descriptor;
  platform: Platform;
  /** Wasm images: the packaging format and what the module is. */
  format?: WasmFormat;
  wasm?: WasmInfo;
  /** Native images: the base (reference and the platform's manifest digest) and the layers kiln added. */
  base?: { name: string; digest: string };
  layers?: NativeLayer[];
}

/** An SPDX SBOM attached to an image written: at which destination, for which manifest digest. */
export interface BuiltSbom {
  destination: string;
  subject: string;
  descriptor: Descriptor;
}

/** What a build wrote: the compiles behind it, the index (several platforms), images, SBOMs, signatures. */
export interface BuildResult {
  /** The first compile (the wasm one when there is one): what `kiln build` returned before indexes. */
  compile: CompileResult;
  /** Every compile, in platform order (wasm platforms share one). */
  compiles: CompileResult[];
  /** The index written, for a multi-platform build. */
  index?: Descriptor;
  images: BuiltImage[];
  sboms?: BuiltSbom[];
  /** With signKey: the signed manifests and the provenance attestations, per destination. */
  signed?: { destination: string; subject: string; signature: string; bundle: string }[];
  provenance?: { destination: string; subject: string; referrer: string }[];
}

/**
 * `kiln build`: compiles a project for each platform (one compile serves every wasm platform),
 * packs a wasm image in its format or lays a native binary on its base image, writes the image (an
 * index for several platforms) to each destination, attaches an SBOM as a referrer and, with
 * `signKey`, signs what was written and attaches signed SLSA provenance. A workspace is refused:
 * `buildWorkspace` builds those.
 */
export async function build(options: BuildOptions = {}): Promise<BuildResult> {
  return withContext(options.context, (context) =>
    buildIn({
      ...options,
      context,
      onBuildEvent: context.events(options.onBuildEvent),
      startedOn: new Date().toISOString(),
    }),
  );
}

type InContext = BuildOptions & { context: KilnContext; startedOn?: string };

async function buildIn(options: InContext): Promise<BuildResult> {
  const project = await loadProject(path.resolve(options.dir ?? '.'), {
    ...(options.file ? { file: options.file } : {}),
    store: await options.context.store(),
  });
  const p = project.project;
  if (p.workspace)
    throw new KilnError('E_USAGE', `${project.file} is a workspace: it lists projects to build`, {
      hint: 'build them with `kiln build DIR` (buildWorkspace in the library), or one with `kiln build DIR/PROJECT`',
    });
  const to = options.to?.length ? options.to : (p.to ?? []);
  if (to.length === 0)
    throw new KilnError('E_USAGE', 'kiln build needs a destination', {
      hint: 'pass --to REGISTRY/REPO:TAG (or oci:DIR:TAG), or set `to:` in kiln.yaml; `kiln compile` only makes the .wasm',
    });
  for (const dest of to) parseLocation(dest); // a bad destination fails before any work
  if ((options.format ?? p.image?.format) === 'spin')
    throw new KilnError(
      'E_USAGE',
      'kiln build packages the module it compiles; the spin format packages a whole Spin application from its spin.toml',
      {
        hint: 'kiln compile -o app.wasm (spin.toml naming it as a source), then kiln package spin.toml --format spin --to ...',
      },
    );
  const platforms = options.platforms?.length
    ? options.platforms
    : options.platform
      ? [options.platform]
      : (p.image?.platforms ?? []);
  checkDistinct(platforms);
  const annotations = {
    ...(await provenanceAnnotations(project.dir)),
    ...(p.image?.annotations ?? {}),
  };
  const sbom = options.sbom ?? p.sbom ?? true;
  const aliases: PlatformAliases = {
    wasi: options.wasiAlias ?? p.image?.wasiAlias ?? false,
    node: options.nodeAliases ?? (p.image?.nodeAliases ?? []).map(parsePlatform),
  };
  // Aliases are index entries, so a single wasm image asked to have them is built as an index.
  if (platforms.length <= 1 && platforms.every(isWasmPlatform) && !hasAliases(aliases))
    return singleWasm(options, to, platforms[0], annotations, sbom);
  return multiPlatform(
    options,
    project,
    to,
    platforms.length ? platforms : [DEFAULT_WASM],
    annotations,
    sbom,
    aliases,
  );
}

/** The wasm platform when none is asked for: packaging picks wasip1 or wasip2 by the binary. */
const DEFAULT_WASM: Platform = { os: 'wasip1', architecture: 'wasm' };

function checkDistinct(platforms: Platform[]): void {
  const seen = new Set<string>();
  for (const platform of platforms) {
    const key = platformKey(platform);
    if (seen.has(key))
      throw new KilnError('E_USAGE', `${formatPlatform(platform)} is asked for twice`, {
        hint: 'list each platform once',
      });
    seen.add(key);
  }
}

/** Today's build: one wasm image, packed with `pack` and written to each destination. */
async function singleWasm(
  options: InContext,
  to: string[],
  platform: Platform | undefined,
  annotations: Record<string, string>,
  sbom: boolean,
): Promise<BuildResult> {
  options.onBuildEvent?.({ type: 'compile', platform });
  const compiled = await compile(options);
  const p = compiled.project.project;
  const { pack } = await import('../wasm/pack.js');
  const images: PackResult[] = [];
  for (const dest of to) {
    const image = await pack({
      file: compiled.output,
      to: dest,
      format: options.format ?? (p.image?.format as WasmFormat | undefined) ?? 'image',
      ...(p.image?.name ? { name: p.image.name } : {}),
      ...(platform ? { platform } : {}),
      annotations,
      labels: p.image?.labels ?? {},
      context: options.context,
      check: options.check ?? p.check ?? [],
      ...(options.compression ? { compression: options.compression } : {}),
    });
    images.push(image);
    options.onBuildEvent?.({ type: 'written', destination: dest, digest: image.descriptor.digest });
  }
  const result: BuildResult = { compile: compiled, compiles: [compiled], images };
  if (sbom && images[0]) {
    const { OciDirSource } = await import('../transport/oci-dir.js');
    const source = OciDirSource.forDescriptor(await options.context.store(), images[0].descriptor);
    try {
      const subjects = [
        { descriptor: images[0].descriptor, platform: images[0].platform, compile: compiled },
      ];
      result.sboms = await attachSboms(source, subjects, to, options.signal, options.context);
    } finally {
      await source.close();
    }
  }
  if (options.signKey && images[0])
    await signBuild(
      result,
      [{ descriptor: images[0].descriptor, platform: images[0].platform, compile: compiled }],
      to,
      annotations,
      options,
    );
  return result;
}

interface PlatformImage {
  platform: Platform;
  descriptor: Descriptor;
  annotations: Record<string, string> | undefined;
  compile: CompileResult;
  format?: WasmFormat;
  wasm?: WasmInfo;
  base?: { name: string; digest: string };
  layers?: NativeLayer[];
  /** How many layers at the bottom are the base's (left out of the SBOM's files). */
  baseLayers?: number;
}

async function multiPlatform(
  options: InContext,
  project: LoadedProject,
  to: string[],
  platforms: Platform[],
  annotations: Record<string, string>,
  sbom: boolean,
  aliases: PlatformAliases,
): Promise<BuildResult> {
  const { onBuildEvent: _e, platforms: _ps, platform: _p, output, ...compileBase } = options;
  const emit = options.onBuildEvent ?? (() => {});
  const store = await options.context.store();
  const composed = new ComposedSource('kiln build', store, options.context);
  try {
    const p = project.project;
    const native = platforms.filter((x) => !isWasmPlatform(x));
    const baseRef = options.base ?? p.image?.base;
    // Bases first: a base that lacks a platform fails before anything is compiled or written.
    const bases = new Map<Platform, NativeBase>();
    if (baseRef && native.length > 0) {
      const resolved = await resolveBases(composed, baseRef, native);
      for (const [i, platform] of native.entries()) bases.set(platform, resolved[i]!);
    }
    const created = defaultCreated();
    const name = p.image?.name ?? path.basename(project.dir);
    const built: PlatformImage[] = [];
    let wasmCompile: CompileResult | undefined;

    for (const platform of platforms) {
      if (isWasmPlatform(platform)) {
        if (!wasmCompile) {
          emit({ type: 'compile', platform });
          wasmCompile = await compile({ ...compileBase, ...(output ? { output } : {}) });
        }
        const { packageWasm } = await import('../wasm/package.js');
        const format = options.format ?? (p.image?.format as WasmFormat | undefined) ?? 'image';
        const packaged = await packageWasm(store, {
          file: wasmCompile.output,
          format,
          ...(p.image?.name ? { name: p.image.name } : {}),
          ...(platform === DEFAULT_WASM ? {} : { platform }),
          annotations,
          labels: p.image?.labels ?? {},
          ...(options.compression ? { compression: options.compression } : {}),
        });
        composed.addOwn(packaged.manifest.config);
        for (const layer of packaged.manifest.layers) composed.addOwn(layer);
        composed.addOwn(packaged.descriptor);
        built.push({
          platform: packaged.platform,
          descriptor: packaged.descriptor,
          annotations: packaged.manifest.annotations,
          compile: wasmCompile,
          format,
          wasm: packaged.info,
        });
        emit({ type: 'image', platform: packaged.platform, digest: packaged.descriptor.digest });
        continue;
      }
      emit({ type: 'compile', platform });
      // Lands at DIR/<name>-<os>-<arch>, which no target counts as a source.
      const compiled = await compile({ ...compileBase, target: platform });
      const base = bases.get(platform);
      const image = await buildNativeImage({
        composed,
        store,
        platform,
        ...(base ? { base } : {}),
        name,
        artifact: compiled.output,
        // The other files the build wrote: laid out under /usr/local in layers below the binary's.
        ...(compiled.extras ? { extraDir: compiled.extras } : {}),
        ...(p.image?.layers ? { layers: p.image.layers } : {}),
        ...(p.image?.entrypoint ? { entrypoint: p.image.entrypoint } : {}),
        ...(p.image?.cmd ? { cmd: p.image.cmd } : {}),
        ...(p.image?.user ? { user: p.image.user } : {}),
        ...(p.image?.workdir ? { workdir: p.image.workdir } : {}),
        ...(p.image?.env ? { env: p.image.env } : {}),
        ...(p.image?.labels ? { labels: p.image.labels } : {}),
        annotations,
        created,
        ...(options.compression ? { compression: options.compression } : {}),
      });
      built.push({
        platform: image.platform,
        descriptor: image.descriptor,
        annotations: image.manifest.annotations,
        compile: compiled,
        ...(base ? { base: { name: base.name, digest: base.image.descriptor.digest } } : {}),
        layers: image.layers,
        baseLayers: base?.image.manifest.layers.length ?? 0,
      });
      emit({ type: 'image', platform: image.platform, digest: image.descriptor.digest });
    }

    let root: Descriptor;
    let index: Descriptor | undefined;
    // One platform is one manifest, unless aliases were asked for: those are index entries.
    if (built.length === 1 && !hasAliases(aliases)) {
      root = built[0]!.descriptor;
    } else {
      index = await composed.putJson(MediaType.OciIndex, indexOf(built, annotations, aliases));
      root = index;
    }
    composed.setRoot(root);
    const check = options.check ?? p.check ?? [];
    if (check.length > 0) {
      const { assertChecked, checkSource, consumersOf } = await import('../check/check.js');
      assertChecked(await checkSource(composed, consumersOf(check)));
    }

    const images: BuiltImage[] = [];
    for (const dest of to) {
      await copyImage(composed, await openDestination(dest, { context: options.context }), {
        signal: options.context.signalWith(options.signal),
      });
      emit({ type: 'written', destination: dest, digest: root.digest });
      for (const b of built) {
        const { compile: _c, annotations: _a, baseLayers: _b, ...rest } = b;
        images.push({ destination: dest, ...rest });
      }
    }
    const compiles = [...new Set(built.map((b) => b.compile))];
    const result: BuildResult = {
      compile: wasmCompile ?? compiles[0]!,
      compiles,
      ...(index ? { index } : {}),
      images,
    };
    if (sbom) result.sboms = await attachSboms(composed, built, to, options.signal, options.context);
    if (options.signKey) await signBuild(result, built, to, annotations, options);
    return result;
  } finally {
    await composed.close();
  }
}

/**
 * The index of every platform's manifest, in the order asked, each entry carrying its manifest's
 * annotations, plus the platform aliases asked for (`oci/aliases.ts`: wasi/wasm for Docker, node
 * platforms for Kubernetes) right after the wasm image.
 */
export function indexOf(
  built: Array<{
    platform: Platform;
    descriptor: Descriptor;
    annotations?: Record<string, string> | undefined;
  }>,
  annotations: Record<string, string>,
  aliases: PlatformAliases,
): ImageIndex {
  const entries: Descriptor[] = built.map((b) => ({
    mediaType: b.descriptor.mediaType,
    digest: b.descriptor.digest,
    size: b.descriptor.size,
    platform: b.platform,
    ...(b.annotations && Object.keys(b.annotations).length ? { annotations: sortKeys(b.annotations) } : {}),
  }));
  const manifests = withPlatformAliases(entries, aliases, 'the build');
  const index: ImageIndex = { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests };
  if (Object.keys(annotations).length > 0) index.annotations = sortKeys(annotations);
  return index;
}

interface SbomSubject {
  descriptor: Descriptor;
  platform: Platform;
  compile: CompileResult;
  base?: { name: string; digest: string };
  baseLayers?: number;
}

/**
 * Attaches an SPDX SBOM to every image manifest written (once per manifest and destination; the
 * wasi/wasm alias shares its manifest). The files are those kiln added (not the base's), read from
 * `source`, where the images were composed. Registry and oci: destinations hold referrers; the
 * archive and daemon transports have no place for them and are skipped.
 */
async function attachSboms(
  source: ImageSource,
  subjects: SbomSubject[],
  to: string[],
  signal: AbortSignal | undefined,
  context: KilnContext,
): Promise<BuiltSbom[]> {
  const targets = to.filter((dest) => {
    const t = parseLocation(dest).transport;
    return t === 'registry' || t === 'oci';
  });
  if (targets.length === 0) return [];
  const [{ attachSbom }, { imageFiles }, { lockfilePackages }] = await Promise.all([
    import('../sbom/referrers.js'),
    import('../sbom/files.js'),
    import('../sbom/lockfiles.js'),
  ]);
  const project = subjects[0]!.compile.project;
  const name = project.project.image?.name ?? path.basename(project.dir);
  const packages = await lockfilePackages(project.sourceDir);
  const created = defaultCreated();
  const out: BuiltSbom[] = [];
  const seen = new Set<string>();
  for (const subject of subjects) {
    if (seen.has(subject.descriptor.digest)) continue;
    seen.add(subject.descriptor.digest);
    const files = await imageFiles(source, subject.descriptor, { skipLayers: subject.baseLayers ?? 0 });
    const toolchain = subject.compile.toolchain;
    for (const dest of targets) {
      const attached = await attachSbom({
        to: dest,
        name,
        subject: subject.descriptor,
        platform: subject.platform,
        files,
        ...(toolchain ? { toolchain: { image: toolchain.name, digest: toolchain.pinned } } : {}),
        ...(subject.base ? { base: subject.base } : {}),
        packages,
        created,
        ...(signal ? { signal } : {}),
        context,
      });
      out.push({ destination: dest, subject: subject.descriptor.digest, descriptor: attached.descriptor });
    }
  }
  return out;
}

/**
 * With a signing key: signs what each registry and oci: destination got (the index, and each image:
 * --recursive) and attaches SLSA provenance, signed, to each image manifest (docs/signing.md).
 */
async function signBuild(
  result: BuildResult,
  subjects: SbomSubject[],
  to: string[],
  annotations: Record<string, string>,
  options: InContext,
): Promise<void> {
  const key = options.signKey!;
  const targets = to.filter((dest) => ['registry', 'oci'].includes(parseLocation(dest).transport));
  if (targets.length === 0) return;
  const [{ signImage, attestImage }, { provenancePredicate, SLSA_PROVENANCE_V1 }, { createdFromEpoch }] =
    await Promise.all([
      import('../sign/sign.js'),
      import('../sign/slsa.js'),
      import('../project/provenance.js'),
    ]);
  const reproducible = createdFromEpoch() !== undefined;
  const finishedOn = new Date().toISOString();
  const scope = { context: options.context, ...(options.signal ? { signal: options.signal } : {}) };
  result.signed = [];
  result.provenance = [];
  for (const dest of targets) {
    const signed = await signImage(dest, { key, recursive: true, ...scope });
    for (const s of signed.signed)
      result.signed.push({
        destination: dest,
        subject: s.subject.digest,
        signature: s.signature.descriptor.digest,
        bundle: s.bundle.digest,
      });
    const seen = new Set<string>();
    for (const subject of subjects) {
      if (seen.has(subject.descriptor.digest)) continue;
      seen.add(subject.descriptor.digest);
      const c = subject.compile;
      const revision = annotations['org.opencontainers.image.revision'];
      const source = annotations['org.opencontainers.image.source'];
      const predicate = provenancePredicate({
        platform: formatPlatform(subject.platform),
        ...(c.inputs ? { command: c.inputs.command, env: c.inputs.env, sources: c.inputs.sources } : {}),
        ...(revision || source
          ? { git: { ...(revision ? { revision } : {}), ...(source ? { source } : {}) } }
          : {}),
        ...(c.toolchain ? { toolchain: { name: c.toolchain.name, digest: c.toolchain.pinned } } : {}),
        ...(subject.base ? { base: subject.base } : {}),
        ...(reproducible
          ? {}
          : { ...(options.startedOn ? { startedOn: options.startedOn } : {}), finishedOn }),
      });
      const attested = await attestImage(dest, {
        key,
        predicateType: SLSA_PROVENANCE_V1,
        predicate,
        subjects: [subject.descriptor],
        ...scope,
      });
      for (const a of attested)
        result.provenance.push({ destination: dest, subject: a.subject.digest, referrer: a.referrer.digest });
    }
  }
}
