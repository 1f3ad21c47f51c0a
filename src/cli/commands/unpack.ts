import type { Command } from 'commander';
import { KilnError } from '../../errors.js';
import { examples, globals } from '../common.js';
import { Output, red } from '../output.js';

export function register(program: Command): void {
  program
    .command('unpack')
    .description('extract the flattened filesystem of an image into a directory, safely')
    .argument('<src>', 'source image')
    .argument('<dir>', 'a directory that does not exist or is empty')
    .option('--platform <os/arch>', 'choose this platform from an index')
    .option('--force', 'extract into a directory that is not empty')
    .addHelpText(
      'after',
      `${examples([
        'kiln unpack oci:./layout:app ./rootfs',
        'kiln unpack oci-archive:./app.tar --platform linux/amd64 ./rootfs --json',
      ])}
Entries that would land outside DIR (.. in a path, a symlink among the parents, a hard link through
one) are refused: each is named on stderr, everything else is extracted, and kiln exits with 1
(E_UNSAFE_PATH). Device nodes and fifos are skipped with a warning. Owners are kept only as root.
`,
    )
    .action(async (src: string, dir: string, opts, cmd: Command) => {
      const out = new Output(globals(cmd));
      const kiln = await import('../../index.js');
      const platform = opts.platform ? kiln.parsePlatform(opts.platform) : undefined;
      const result = await kiln.unpackImage(src, dir, {
        platform,
        force: !!opts.force,
        onLayer: (i, layer) => out.debug(`reading layer ${i} ${layer.digest}`),
      });
      const n = result.refused.length;
      // Refusals are not silent: the exit status says the directory is not the whole image.
      const error =
        n > 0
          ? new KilnError(
              'E_UNSAFE_PATH',
              `refused ${n} unsafe ${n === 1 ? 'entry' : 'entries'} (first: ${result.refused[0]!.path}); everything else was extracted to ${dir}`,
            )
          : undefined;
      if (out.flags.json) {
        out.json(error ? { ...result, error: error.toJSON() } : result);
        if (error) process.exitCode = 1;
        return;
      }
      for (const r of result.refused)
        process.stderr.write(`${red('refused:')} ${r.path} (layer ${r.layer}): ${r.reason}\n`);
      for (const s of result.skipped) out.info(`skipped: ${s.path} (layer ${s.layer}): ${s.reason}`);
      if (error) throw error;
      out.info(
        `unpacked ${result.entries} entries from ${result.layers} layers of ${result.digest} into ${dir}`,
      );
    });
}
