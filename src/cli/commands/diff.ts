import type { Command } from 'commander';
import { KilnError } from '../../errors.js';
import { action } from '../action.js';
import { examples } from '../common.js';
import { reportIssues } from '../issues.js';
import { plural } from '../output.js';

export function register(program: Command): void {
  program
    .command('diff')
    .description('one layer holding what UPPER adds or changes over LOWER, with whiteouts for deletions')
    .argument('<lower>', 'the image diffed against (any source transport)')
    .argument('<upper>', 'the image whose changes the layer holds')
    .option(
      '--to <dest>',
      "write an image: UPPER's config over the diff layer (REGISTRY/REPO[:TAG], oci:DIR[:TAG], oci-archive:, docker-archive:, docker-daemon:)",
    )
    .option('--output <file>', 'write the layer itself: gzip tar, or plain tar when FILE ends in .tar')
    .option('--platform <os/arch>', 'the image to use from index sources (default: LOWER follows UPPER)')
    .option('--created <rfc3339>', 'time of the history entry (default: SOURCE_DATE_EPOCH, else the epoch)')
    .addHelpText(
      'after',
      `${examples([
        'kiln diff oci:./out:base oci:./out:app --output app-layer.tar.gz',
        'kiln diff oci:./out:base oci:./out:app --to oci:./out:app-diff',
        'kiln diff registry.example/base:1 registry.example/app:1 --platform linux/amd64 --output layer.tar',
      ])}
Give exactly one of --to and --output. LOWER's layers followed by the diff give UPPER's filesystem:
new and changed paths (type, mode, owners, mtime, xattrs, content, hard links) are in the layer, sorted,
and deleted ones are whiteouts (.wh.NAME; .wh..wh..opq for a directory that lost all it had).
Identical images give an empty layer. When LOWER's layers are a prefix of UPPER's, the diff is UPPER's
remaining layers, reused as they are ("reused": true); --output then needs exactly one such layer,
else the remaining layers are squashed into one.
`,
    )
    .action(
      action(async ({ out, context, flags: opts, platform }, lower, upper) => {
        if ((opts.to === undefined) === (opts.output === undefined))
          throw new KilnError('E_USAGE', 'give exactly one of --to DST and --output FILE');
        const { diffImages } = await import('../../api/image.js');
        const result = await diffImages({
          context,
          lower,
          upper,
          to: opts.to,
          output: opts.output,
          platform: await platform(),
          created: opts.created,
          onLayer: (i, layer) => out.debug(`reading layer ${i} ${layer.digest}`),
        });
        const c = result.counts;
        return {
          json: result,
          error: reportIssues(out, result.issues),
          human: () => {
            out.info(
              result.reused
                ? `reused ${plural(result.layers.length, 'layer')} of ${upper} (${lower} is a prefix of it)`
                : `diff: ${c?.added ?? 0} added, ${c?.changed ?? 0} changed, ${plural(c?.deleted ?? 0, 'whiteout')}, ${c?.opaque ?? 0} opaque (${plural(result.entries ?? 0, 'entry', 'entries')})`,
            );
            out.info(`wrote ${result.output ?? result.destination}`);
          },
          data: result.output !== undefined ? result.layers[0]!.descriptor.digest : result.descriptor!.digest,
        };
      }),
    );
}
