import type { Command } from 'commander';
import type { FromPackagesEvent } from '../../api/debian.js';
import { KilnError } from '../../errors.js';
import { action } from '../action.js';
import { collect, commaList, examples, jobs } from '../common.js';
import { humanSize, plural } from '../output.js';
import { parseChanges, parseCommand } from './mutate.js';

export function register(program: Command): void {
  const image = program.command('image').description('make images from other sources than a base image');
  image
    .command('from-packages')
    .description('make an image of Debian packages: resolved, locked, verified; no daemon, no root')
    .requiredOption(
      '--to <dest>',
      'destination: REGISTRY/REPO[:TAG], oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:NAME:TAG], docker-daemon:NAME:TAG',
    )
    .option(
      '--package <name[=version]>',
      "a package to install (repeatable, or comma-separated; default: the lock file's)",
      collect,
    )
    .option('--suite <suite>', "the suite, e.g. bookworm (default: the lock file's)")
    .option(
      '--arch <arch>',
      "the Debian architecture: amd64, arm64, armhf... (default: the lock's, else this machine's)",
    )
    .option(
      '--mirror <url>',
      "the archive (default: the lock's, else the apt sources' mirror for the suite, else http://deb.debian.org/debian)",
    )
    .option('--component <name>', 'an archive component to resolve from (repeatable; default main)', collect)
    .option(
      '--keyring <file>',
      'OpenPGP keyring to verify InRelease with (default: the Debian archive keyring)',
    )
    .option(
      '--lock <file>',
      'the lock file: used when it exists, written when not (default kiln.packages.lock)',
    )
    .option('--no-lock', 'neither read nor write a lock file')
    .option('--update-lock', 'resolve again and rewrite the lock file')
    .option('--entrypoint <cmd>', 'entrypoint: a JSON array, or one word')
    .option('--cmd <cmd>', 'command: a JSON array, or one word')
    .option('--env <k=v>', 'an environment variable, on top of PATH (repeatable)', collect)
    .option('--label <k=v>', 'a config label (repeatable)', collect)
    .option('--workdir <dir>', 'working directory')
    .option('--user <user>', 'user (name, uid or uid:gid)')
    .option('--layers <n>', 'most layers, the top one included: one per package, the rest grouped', '16')
    .option('--no-sbom', 'attach no SPDX SBOM')
    .option(
      '--created <rfc3339>',
      'time of the config and history (default: SOURCE_DATE_EPOCH, else the epoch)',
    )
    .option('--format <format>', 'manifest format: oci (default) or docker')
    .addHelpText(
      'after',
      `${examples([
        'kiln image from-packages --suite bookworm --package busybox-static --entrypoint \'["/bin/busybox"]\' --to oci:./out:busybox',
        'kiln image from-packages --to registry.example.com/team/busybox:1   # again: the packages of kiln.packages.lock',
        'kiln image from-packages --suite bookworm --arch arm64 --package python3 --lock py.lock --to oci:./out:py',
      ])}
Resolution reads the suite's InRelease, verified with gpgv and the distribution's keyring, and its
Packages index (checked against the SHA-256 InRelease lists), then follows Pre-Depends and Depends:
alternatives (the first that can be had), virtual packages (Provides) and versioned relations;
Recommends are not installed. The result is written to the lock file, which later runs use as it is:
they fetch exactly those .debs (no index), and fail if the mirror no longer has one (E_NOT_FOUND) or
serves other bytes (E_DIGEST_MISMATCH).
Each package's files go into its own layer (up to --layers; the rest share one), the top layer holds
every directory, the merged-/usr links (/bin -> usr/bin, as debootstrap makes them) and
/var/lib/dpkg/status. Maintainer scripts do not run: the packages that have them are listed.
Needs gpgv and xz (zstd for packages compressed with it). Details: docs/packages.md.
`,
    )
    .action(
      action(async ({ out, context, flags: opts, cmd }) => {
        const packages = commaList(opts.package);
        const layers = Number(opts.layers);
        if (!Number.isInteger(layers))
          throw new KilnError(
            'E_USAGE',
            `--layers takes a whole number, got '${String(opts.layers).slice(0, 40)}'`,
            { hint: 'for example --layers 8: seven package layers and the top one' },
          );
        if (opts.format !== undefined && opts.format !== 'oci' && opts.format !== 'docker')
          throw new KilnError(
            'E_USAGE',
            `--format takes oci or docker, got '${String(opts.format).slice(0, 40)}'`,
            { hint: 'oci (the default) or docker (Docker v2 schema 2)' },
          );
        const env = parseChanges(opts.env, '--env');
        const labels = parseChanges(opts.label, '--label');
        const kiln = await import('../../api/debian.js');
        const onEvent = (e: FromPackagesEvent) => {
          if (e.type === 'index') out.info(`fetching ${e.suite} ${e.file} (${humanSize(e.size)})`);
          else if (e.type === 'resolved') out.info(`resolved ${plural(e.packages, 'package')}`);
          else if (e.type === 'download')
            out.info(`downloaded ${plural(e.packages, 'package')} (${humanSize(e.bytes)})`);
        };
        const result = await kiln.imageFromPackages({
          context,
          packages,
          to: opts.to,
          suite: opts.suite,
          architecture: opts.arch,
          mirror: opts.mirror,
          components: opts.component ? commaList(opts.component) : undefined,
          keyring: opts.keyring,
          lock: opts.lock === false ? false : opts.lock,
          updateLock: opts.updateLock === true,
          layers,
          entrypoint:
            opts.entrypoint === undefined ? undefined : parseCommand(opts.entrypoint, '--entrypoint'),
          cmd: opts.cmd === undefined ? undefined : parseCommand(opts.cmd, '--cmd'),
          env: Object.keys(env).length ? env : undefined,
          labels: Object.keys(labels).length ? labels : undefined,
          workdir: opts.workdir,
          user: opts.user,
          sbom: opts.sbom !== false,
          created: opts.created,
          format: opts.format,
          jobs: jobs(cmd),
          onEvent,
        });
        return {
          json: result,
          human: () => {
            for (const p of result.packages) out.info(`  ${p.name} ${p.version} (${p.architecture})`);
            if (result.skippedScripts.length > 0)
              out.info(
                `not run (no maintainer scripts in kiln): ${result.skippedScripts
                  .map((s) => `${s.package} (${s.scripts.join(', ')})`)
                  .join(', ')}`,
              );
            for (const e of result.effects) out.info(`made ${e.path} for ${e.package} (${e.as})`);
            const lock = result.lock
              ? `; ${result.lock.used ? 'from' : 'locked in'} ${result.lock.file}`
              : '';
            out.info(
              `${plural(result.packages.length, 'package')} of ${result.suite} (${result.architecture}) in ` +
                `${plural(result.layers.length, 'layer')}${lock}; wrote ${result.destination}` +
                (result.sbom ? ' with an SBOM' : ''),
            );
          },
          data: result.descriptor.digest,
        };
      }),
    );
}
