import type { Command } from 'commander';
import { KilnError } from '../../errors.js';
import { action, type Flags } from '../action.js';
import { examples } from '../common.js';
import { plural } from '../output.js';

const CONFIG_FROM = ['auto', 'base', 'last'] as const;

export function register(program: Command): void {
  program
    .command('merge')
    .description("stack images: BASE's layers, then each SRC's, as they are (BuildKit's MergeOp)")
    .argument('<base>', 'the bottom image (any source transport)')
    .argument('<src...>', 'images whose layers go on top, in order')
    .requiredOption(
      '--to <dest>',
      'destination: REGISTRY/REPO[:TAG], oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:NAME:TAG], docker-daemon:NAME:TAG',
    )
    .option('--platform <os/arch>', 'the image to take out of each index input')
    .option(
      '--config-from <which>',
      'whose Entrypoint, Cmd, Env, WorkingDir, User and Labels: auto (the last input with an Entrypoint or Cmd), base, last',
      'auto',
    )
    .addHelpText(
      'after',
      `${examples([
        'kiln merge oci:./out:slim oci:./out:tools oci:./out:app --to oci:./out:merged',
        'kiln merge registry.example.com/base:1 oci:./out:app --to registry.example.com/app:1',
        'kiln merge oci:./out:base-multi oci:./out:app-multi --to oci:./out:merged-multi',
        'kiln merge oci:./out:base-multi oci:./out:app --platform linux/arm64 --to oci:./out:one',
      ])}
Nothing is repacked: the layer blobs are the inputs' own (gzip, zstd and plain tar may mix), so a
destination that has them is sent none, and later layers win where paths meet (a whiteout in a later
image deletes a file of an earlier one). diff_ids and history are concatenated. The rest of the
config (os, architecture, created) is BASE's; the container config comes from --config-from. The
manifest is annotated with org.opencontainers.image.base.digest (and base.name for a registry BASE).
All inputs must be for one platform; WebAssembly images are refused. When every input is an index of
the same platforms, each platform is merged and a new index written; otherwise --platform (or a single
image among the inputs) picks the image out of each index.
`,
    )
    .action(
      action<Flags, [string, string[]]>(async ({ out, context, flags: opts, platform }, base, sources) => {
        const kiln = { ...(await import('../../api/image.js')), ...(await import('../../api/oci.js')) };
        const configFrom = String(opts.configFrom);
        if (!(CONFIG_FROM as readonly string[]).includes(configFrom))
          throw new KilnError(
            'E_USAGE',
            `--config-from takes ${CONFIG_FROM.join(', ')}, got '${configFrom}'`,
          );
        const result = await kiln.mergeImages({
          context,
          base,
          sources,
          to: opts.to,
          platform: await platform(),
          configFrom: configFrom as (typeof CONFIG_FROM)[number],
        });
        return {
          json: result,
          human: () => {
            for (const image of result.images)
              out.info(
                `merged ${sources.length + 1} images (${kiln.formatPlatform(image.platform)}): ${plural(image.layers, 'layer')}, ` +
                  `config from ${image.configFrom}`,
              );
            out.info(
              `wrote ${result.destination} (${plural(result.blobsCopied, 'blob')} sent, ${result.blobsSkipped} there already)`,
            );
          },
          data: result.descriptor.digest,
        };
      }),
    );
}
