import type { Command } from 'commander';
import { action } from '../action.js';
import { examples } from '../common.js';
import { reportIssues } from '../issues.js';
import { plural } from '../output.js';

export function register(program: Command): void {
  program
    .command('flatten')
    .description("squash an image's layers into one and write the new image")
    .argument('<src>', 'the image or index (any source transport)')
    .requiredOption(
      '--to <dest>',
      'destination: REGISTRY/REPO[:TAG], oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:NAME:TAG], docker-daemon:NAME:TAG',
    )
    .option('--platform <os/arch>', 'from an index: flatten only this image and write it alone')
    .option('--created <rfc3339>', 'time of the history entry (default: SOURCE_DATE_EPOCH, else the epoch)')
    .addHelpText(
      'after',
      `${examples([
        'kiln flatten oci:./out:app --to oci:./out:app-flat',
        'kiln flatten oci:./out:multi --platform linux/arm64 --to docker-archive:./flat.tar:app:flat',
      ])}
The layer holds the filesystem the layers make (whiteouts applied), sorted, with modes, owners, mtimes,
xattrs and hard links kept: the same image gives the same digest. The config is kept, with one diff_id
and one "kiln flatten" history entry. Without --platform every image of an index is flattened.
`,
    )
    .action(
      action(async ({ out, context, flags: opts, platform }, src) => {
        const { flattenImage } = await import('../../api/image.js');
        const result = await flattenImage({
          context,
          source: src,
          to: opts.to,
          platform: await platform(),
          created: opts.created,
          onLayer: (i, layer) => out.debug(`reading layer ${i} ${layer.digest}`),
        });
        const { formatPlatform } = await import('../../api/oci.js');
        return {
          json: result,
          error: reportIssues(
            out,
            result.images.flatMap((i) => i.issues),
          ),
          human: () => {
            for (const image of result.images)
              out.info(
                `flattened ${plural(image.layersBefore, 'layer')} of ${image.from}` +
                  `${image.platform ? ` (${formatPlatform(image.platform)})` : ''} into one (${plural(image.entries, 'entry', 'entries')})`,
              );
            out.info(`wrote ${result.destination}`);
          },
          data: result.descriptor.digest,
        };
      }),
    );
}
