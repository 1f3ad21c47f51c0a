import type { Command } from 'commander';
import { action } from '../action.js';
import { examples } from '../common.js';
import { plural } from '../output.js';

export function register(program: Command): void {
  program
    .command('rebase')
    .description("put an image's own layers on a new base, like crane rebase")
    .argument('<src>', 'the image or index to rebase (any source transport)')
    .requiredOption('--old-base <image>', 'the base SRC was built on: its layers must be the first of SRC')
    .requiredOption('--new-base <image>', "the base to put under SRC's own layers")
    .requiredOption(
      '--to <dest>',
      'destination: REGISTRY/REPO[:TAG], oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:NAME:TAG], docker-daemon:NAME:TAG',
    )
    .option('--platform <os/arch>', 'from an index: rebase only this image and write it alone')
    .addHelpText(
      'after',
      `${examples([
        'kiln rebase oci:./out:app --old-base oci:./out:base-1 --new-base oci:./out:base-2 --to oci:./out:app-2',
        'kiln rebase registry.example.com/app:1 --old-base debian:12.5 --new-base debian:12.6 --to registry.example.com/app:1-r',
      ])}
SRC's diff_ids must begin with OLD's (else E_BASE_MISMATCH names the first layer that differs, and
nothing is written). The result has NEW's layers, then SRC's layers after OLD's, as they are (same
blobs); the config is SRC's with rootfs.diff_ids and history rebuilt (NEW's history, then SRC's after
OLD's) and org.opencontainers.image.base.* annotations naming NEW. OLD and NEW may be indexes: the
image for SRC's platform is taken from each. Without --platform every image of an index SRC is rebased.
`,
    )
    .action(
      action(async ({ out, context, flags: opts, platform }, src) => {
        const kiln = { ...(await import('../../api/image.js')), ...(await import('../../api/oci.js')) };
        const result = await kiln.rebaseImage({
          context,
          source: src,
          oldBase: opts.oldBase,
          newBase: opts.newBase,
          to: opts.to,
          platform: await platform(),
        });
        return {
          json: result,
          human: () => {
            for (const image of result.images)
              out.info(
                `rebased ${src} (${kiln.formatPlatform(image.platform)}): ${plural(image.removed, 'base layer')} replaced by ` +
                  `${image.added}, ${plural(image.kept, 'own layer')} kept`,
              );
            out.info(`wrote ${result.destination}`);
          },
          data: result.descriptor.digest,
        };
      }),
    );
}
