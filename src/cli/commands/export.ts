import type { Command } from 'commander';
import { KilnError } from '../../errors.js';
import { action } from '../action.js';
import { examples } from '../common.js';
import { reportIssues } from '../issues.js';
import { plural } from '../output.js';

export function register(program: Command): void {
  program
    .command('export')
    .description('write the flattened filesystem of an image (layers applied, whiteouts done) as one tar')
    .argument('<src>', 'source image')
    .requiredOption('-o, --output <file>', 'the tar to write; - for stdout')
    .option('--platform <os/arch>', 'choose this platform from an index')
    .addHelpText(
      'after',
      examples([
        'kiln export oci:./layout:app -o rootfs.tar',
        'kiln export oci-archive:./app.tar --platform linux/arm64 -o - | tar -t',
      ]),
    )
    .action(
      action(async ({ out, context, flags: opts, platform }, src) => {
        const toStdout = opts.output === '-';
        if (toStdout && out.flags.json)
          throw new KilnError('E_USAGE', '--json and -o - both want stdout; write the tar to a file');
        if (toStdout && process.stdout.isTTY)
          throw new KilnError('E_USAGE', 'refusing to write a tar to a terminal', {
            hint: 'redirect stdout, or use -o FILE',
          });
        const { exportImage } = await import('../../api/image.js');
        const result = await exportImage(src, toStdout ? process.stdout : opts.output, {
          context,
          platform: await platform(),
          onLayer: (i, layer) => out.debug(`reading layer ${i} ${layer.digest}`),
        });
        // Left out because an extractor would refuse them too; the tar written is complete without them.
        const error = reportIssues(out, result.issues, 'exported');
        return {
          json: result,
          error,
          human: () => {
            if (!error)
              out.info(
                `exported ${plural(result.entries, 'entry', 'entries')} from ${plural(result.layers, 'layer')} of ${result.digest} to ${toStdout ? 'stdout' : opts.output}`,
              );
          },
        };
      }),
    );
}
