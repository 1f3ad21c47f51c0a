import type { Command } from 'commander';
import type { ExpansionLimits } from '../../api/image.js';
import { KilnError } from '../../errors.js';
import { action } from '../action.js';
import { examples } from '../common.js';
import { plural, red } from '../output.js';

function choice<T extends string>(flag: string, value: string, allowed: readonly T[]): T {
  if ((allowed as readonly string[]).includes(value)) return value as T;
  throw new KilnError(
    'E_USAGE',
    `${flag} takes ${allowed.join(', ')}, got '${value.length > 40 ? `${value.slice(0, 37)}...` : value}'`,
  );
}

export function register(program: Command): void {
  program
    .command('unpack')
    .description('extract the flattened filesystem of an image into a directory, safely')
    .argument('<src>', 'source image')
    .argument('<dir>', 'a directory that does not exist or is empty')
    .option('--platform <os/arch>', 'choose this platform from an index')
    .option('--force', 'extract into a directory that is not empty')
    .option('--setuid <mode>', 'setuid/setgid bits on files: keep, strip, or refuse the file', 'keep')
    .option('--devices <mode>', 'device nodes and fifos, never created: skip, or refuse', 'skip')
    .option(
      '--max-layer-size <size>',
      'refuse a layer whose tar is larger than SIZE uncompressed (default 32G, or KILN_MAX_LAYER_SIZE)',
    )
    .option(
      '--max-expansion <ratio>',
      'refuse a gzip layer that expands more than RATIO times once past 64 MiB (default 100, or KILN_MAX_EXPANSION; off for none)',
    )
    .addHelpText(
      'after',
      `${examples([
        'kiln unpack oci:./layout:app ./rootfs',
        'kiln unpack oci-archive:./app.tar --platform linux/amd64 ./rootfs --json',
        'kiln unpack untrusted.example.com/app:1 ./rootfs --setuid strip --devices refuse',
      ])}
Entries that would land outside DIR (.. in a path, a symlink among the parents, a hard link through
one) are refused: each is named on stderr, everything else is extracted, and kiln exits with 1
(E_UNSAFE_PATH). Absolute paths are taken relative to DIR, as tar does; symlinks are created as
they are and never followed. Device nodes and fifos are skipped with a note (--devices refuse: refused
like an escape). setuid/setgid bits are kept, as docker and umoci keep them; --setuid strip clears
them (each file is named), --setuid refuse refuses such files like an escape. Owners are kept only as
root. Names too long for the filesystem are skipped with a note.

Gzip bombs: a layer whose tar passes 32 GiB, or a gzip layer that expands more than 100 times once
past its first 64 MiB, fails the command (E_TOO_LARGE, naming the layer) and DIR is removed. Raise
the limits for genuine layers (a disk image of zeros can reach 1000:1) with the flags above or with
KILN_MAX_LAYER_SIZE / KILN_MAX_EXPANSION, which every command that reads layers honours.
`,
    )
    .action(
      action(async ({ out, context, flags: opts, platform }, src, dir) => {
        const { parseByteSize, parseExpansion, expansionLimits, unpackImage } = await import(
          '../../api/image.js'
        );
        const setuid = choice('--setuid', String(opts.setuid), ['keep', 'strip', 'refuse'] as const);
        const devices = choice('--devices', String(opts.devices), ['skip', 'refuse'] as const);
        const given: Partial<ExpansionLimits> = {};
        if (opts.maxLayerSize !== undefined)
          given.maxLayerSize = parseByteSize(String(opts.maxLayerSize), '--max-layer-size');
        if (opts.maxExpansion !== undefined)
          given.maxExpansion = parseExpansion(String(opts.maxExpansion), '--max-expansion');
        const limits = expansionLimits(given); // checks KILN_MAX_* too, before anything is read
        const result = await unpackImage(src, dir, {
          context,
          platform: await platform(),
          force: !!opts.force,
          setuid,
          devices,
          limits,
          onLayer: (i, layer) => out.debug(`reading layer ${i} ${layer.digest}`),
        });
        const n = result.refused.length;
        // Refusals are not silent: the exit status says the directory is not the whole image.
        const error =
          n > 0
            ? new KilnError(
                'E_UNSAFE_PATH',
                `refused ${plural(n, 'unsafe entry', 'unsafe entries')} (first: ${result.refused[0]!.path}); everything else was extracted to ${dir}`,
              )
            : undefined;
        return {
          json: result,
          error,
          human: () => {
            for (const r of result.refused)
              process.stderr.write(`${red('refused:')} ${r.path} (layer ${r.layer}): ${r.reason}\n`);
            for (const s of result.skipped) out.info(`skipped: ${s.path} (layer ${s.layer}): ${s.reason}`);
            for (const s of result.stripped) out.info(`stripped: ${s.path} (layer ${s.layer}): ${s.reason}`);
            if (!error)
              out.info(
                `unpacked ${plural(result.entries, 'entry', 'entries')} from ${plural(result.layers, 'layer')} of ${result.digest} into ${dir}`,
              );
          },
        };
      }),
    );
}
