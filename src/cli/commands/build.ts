import { type Command, InvalidArgumentError, Option } from 'commander';
import type { BuildResult } from '../../api/build.js';
import type { KilnContext } from '../../api/context.js';
import type { Platform } from '../../api/oci.js';
import { KilnError } from '../../errors.js';
import { action } from '../action.js';
import { aliasesOf, aliasOptions, collect, commaList, compressionOption, examples, jobs } from '../common.js';
import { type Output, plural } from '../output.js';
import { compileOptions, toCompileOptions } from './compile.js';

/** `--sbom=false` as well as `--no-sbom`: commander hands `--sbom=VALUE` over as a string. */
function parseBool(value: string): boolean {
  if (/^(true|yes|1|on)$/i.test(value)) return true;
  if (/^(false|no|0|off)$/i.test(value)) return false;
  throw new InvalidArgumentError('expected true or false');
}

export function register(program: Command): void {
  aliasOptions(
    compileOptions(
      program
        .command('build')
        .description(
          'compile a project and write it as an image: wasm, native on a base image, or one index of several platforms (kiln.yaml)',
        ),
    ),
  )
    .option('--to <dest>', "destination (repeatable; default: kiln.yaml's to)", collect)
    .addOption(
      new Option(
        '--format <format>',
        "packaging convention of wasm images (default: kiln.yaml's image.format, else image)",
      ).choices(['image', 'artifact', 'runwasi', 'istio', 'istio-oci', 'wasm-to-oci', 'spin']),
    )
    .option(
      '--platform <os/arch,...>',
      "platforms to build, comma-separated or repeated; several make one index (default: kiln.yaml's image.platforms, else wasip1/wasm, wasip2/wasm for a component)",
      collect,
    )
    .option(
      '--base <ref>',
      "base image of native images, resolved per platform (default: kiln.yaml's image.base)",
    )
    .addOption(
      new Option('--sbom [bool]', 'attach an SPDX SBOM to each image (default: true)').argParser(parseBool),
    )
    .option('--no-sbom', 'do not attach SBOMs (also --sbom=false)')
    .option(
      '--check <consumer,...>',
      "refuse to write an image these consumers would not run (kiln check --for; default: kiln.yaml's check)",
      collect,
    )
    .option('-o, --output <file>', 'where the .wasm also lands (default: DIR/<name>.wasm)')
    .addOption(compressionOption())
    .option(
      '--sign-key <key>',
      'sign what is written and attach signed SLSA provenance to each image: FILE, env://VAR or - (password: KILN_PASSWORD)',
    )
    .option(
      '--fail-fast',
      'in a workspace (DIR/... or a kiln.yaml with workspace:), stop at the first project that fails; -j/--jobs N builds N projects at once (default: the number of CPUs)',
    )
    .addHelpText(
      'after',
      examples([
        'kiln build --to localhost:5000/apps/hello:1',
        'kiln build ./services/... --to oci:./out:{name} -j 4   # every project under services/',
        'kiln build ./app --to oci:./out:app --runner sandbox',
        'kiln build --platform linux/amd64,linux/arm64,wasip1/wasm --base localhost:5000/busybox:1 --to localhost:5000/apps/hello:2',
        'kiln build                                    # destinations from kiln.yaml',
      ]),
    )
    .action(
      action(async ({ out, context, flags: opts, cmd }, dir) => {
        const { build } = await import('../../api/build.js');
        // The key first: a wrong password fails before anything is compiled.
        const signSpec = await signKeySpec(dir, opts, context);
        const signKey = signSpec
          ? await (await (await import('../keys.js')).privateKey(signSpec)).key
          : undefined;
        const { formatPlatform, parsePlatform } = await import('../../api/oci.js');
        const platforms = commaList(opts.platform).map(parsePlatform);
        const aliases = aliasesOf(opts, parsePlatform);
        // How the result is packed and written: the same for one project and for a workspace's each.
        const packing = {
          ...(opts.to ? { to: opts.to as string[] } : {}),
          ...(opts.format ? { format: opts.format } : {}),
          ...(platforms.length ? { platforms } : {}),
          ...(opts.base ? { base: opts.base as string } : {}),
          ...(aliases?.wasi ? { wasiAlias: true } : {}),
          ...(aliases?.node ? { nodeAliases: aliases.node } : {}),
          ...(opts.check ? { check: commaList(opts.check) } : {}),
          // Unset unless --sbom[=bool] or --no-sbom: kiln.yaml's `sbom` decides then.
          ...(opts.sbom !== undefined ? { sbom: opts.sbom !== false } : {}),
          ...(signKey ? { signKey } : {}),
          ...(opts.compression === 'zstd' ? { compression: 'zstd' as const } : {}),
        };
        if (await isWorkspace(dir, opts.file, context)) {
          const { buildWorkspaceCommand, checkWorkspaceFlags } = await import('../workspace.js');
          checkWorkspaceFlags(opts);
          const { dir: _d, onEvent: _e, ...compile } = toCompileOptions(dir, opts, out);
          const explicitJobs = ['cli', 'env'].includes(cmd.getOptionValueSourceWithGlobals('jobs') ?? '');
          await buildWorkspaceCommand(
            {
              ...compile,
              dir,
              context,
              ...(explicitJobs ? { jobs: jobs(cmd) } : {}),
              ...(opts.failFast ? { failFast: true } : {}),
              ...packing,
            },
            out,
          );
          return undefined;
        }
        const result = await build({
          context,
          ...toCompileOptions(dir, opts, out),
          ...packing,
          onBuildEvent: (e) => {
            if (e.type === 'compile' && e.platform) out.info(`compiling for ${formatPlatform(e.platform)}`);
          },
        });
        const strip = ({ project: _p, ...rest }: typeof result.compile) => rest;
        return {
          json: {
            ...(result.index ? { index: result.index } : {}),
            images: result.images,
            ...(result.sboms ? { sboms: result.sboms } : {}),
            ...(result.signed ? { signed: result.signed, provenance: result.provenance } : {}),
            compile: strip(result.compile),
            compiles: result.compiles.map(strip),
          },
          human: () => report(result, out, formatPlatform),
        };
      }),
    );
}

/** `DIR/...`, or a directory whose kiln.yaml lists a workspace (read through the project memo). */
/**
 * The key that signs the build: --sign-key, else kiln.yaml's `sign.key` (a file relative to
 * kiln.yaml, or env://VAR); undefined for neither. A workspace is signed with --sign-key only: a
 * project of one whose kiln.yaml has `sign:` is refused rather than built unsigned.
 */
async function signKeySpec(
  dir: string,
  opts: { signKey?: string; file?: string },
  context: KilnContext,
): Promise<string | undefined> {
  if (opts.signKey) return opts.signKey;
  const { findProjects, loadProject } = await import('../../api/build.js');
  const path = await import('node:path');
  const store = await context.store();
  // A kiln.yaml that does not load is the build's to report, with its line and column.
  const load = (d: string, file?: string) =>
    loadProject(path.resolve(d), { ...(file !== undefined ? { file } : {}), store }).catch(() => undefined);
  const loaded = dir === '...' || dir.endsWith('/...') ? undefined : await load(dir, opts.file);
  if (!loaded || loaded.project.workspace) {
    const found = opts.file === undefined ? await findProjects(dir, store).catch(() => null) : null;
    for (const project of found?.projects ?? [])
      if ((await load(project))?.project.sign)
        throw new KilnError(
          'E_USAGE',
          `${project}: kiln.yaml's sign: is read when building that project alone`,
          {
            hint: 'sign a workspace with kiln build DIR/... --sign-key KEY, or build the project by itself',
          },
        );
    return undefined;
  }
  const key = loaded.project.sign?.key;
  if (!key) return undefined;
  return key.startsWith('env://') || path.isAbsolute(key) ? key : path.join(loaded.dir, key);
}

async function isWorkspace(dir: string, file: string | undefined, context: KilnContext): Promise<boolean> {
  if (dir === '...' || dir.endsWith('/...')) return true;
  if (file !== undefined) return false;
  const { loadProject } = await import('../../api/build.js');
  const path = await import('node:path');
  const loaded = await loadProject(path.resolve(dir), { store: await context.store() }).catch(
    () => undefined,
  );
  return loaded?.project.workspace !== undefined;
}

/** What a build wrote, for people: each image once, its SBOMs and provenance, then each destination. */
function report(result: BuildResult, out: Output, formatPlatform: (p: Platform) => string): void {
  // What every destination got alike is said once; the `wrote` lines name each destination.
  const seen = new Set<string>();
  for (const image of result.images) {
    const key = `${formatPlatform(image.platform)} ${image.descriptor.digest}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.info(
      `${formatPlatform(image.platform)}: ${image.descriptor.digest}${image.format ? ` (${image.format})` : ''}${image.base ? ` on ${image.base.name}` : ''}`,
    );
  }
  const destinations = new Set(result.images.map((i) => i.destination));
  const sboms = new Map<string, { subject: string; digest: string; in: string[] }>();
  for (const s of result.sboms ?? []) {
    const key = `${s.subject} ${s.descriptor.digest}`;
    const group = sboms.get(key) ?? { subject: s.subject, digest: s.descriptor.digest, in: [] };
    group.in.push(s.destination);
    sboms.set(key, group);
  }
  // Archives and the daemon have no place for referrers: then the line says where it went.
  for (const s of sboms.values())
    out.info(
      `sbom for ${s.subject.slice(0, 19)}: ${s.digest}${s.in.length < destinations.size ? ` (in ${s.in.join(', ')})` : ''}`,
    );
  for (const s of result.provenance ?? [])
    out.info(`signed; provenance for ${s.subject.slice(0, 19)}: ${s.referrer} (in ${s.destination})`);
  if (result.index) {
    for (const dest of [...new Set(result.images.map((i) => i.destination))]) {
      out.info(`wrote ${dest} (index of ${plural(seen.size, 'image')})`);
      out.data(`${dest}@${result.index.digest}`);
    }
    return;
  }
  for (const image of result.images) {
    out.info(`wrote ${image.destination} (${image.format ?? formatPlatform(image.platform)})`);
    out.data(`${image.destination}@${image.descriptor.digest}`);
  }
}
