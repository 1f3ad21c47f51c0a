import type { Command } from 'commander';
import { KilnError } from '../../errors.js';
import { action } from '../action.js';
import { collect, compressionOption, examples } from '../common.js';
import { plural } from '../output.js';

/** `SRC[:DEST]`: DEST is an absolute path, so the split is at the last ':/' and SRC may hold colons. */
export function parseLayerSpec(spec: string): { source: string; dest?: string } {
  const m = /^(.+):(\/.*)$/s.exec(spec);
  return m ? { source: m[1]!, dest: m[2]! } : { source: spec };
}

export function register(program: Command): void {
  program
    .command('append')
    .description('add layers to an image (or to scratch) and write the new image')
    .argument('<base>', 'the base image (any source transport), or the word scratch for an empty image')
    .requiredOption(
      '--layer <src[:dest]>',
      "a layer per flag, in order (repeatable): a directory's contents go under DEST (default /), a file " +
        'becomes DEST/<name>, a .tar/.tar.gz/.tgz is the layer as it is (a plain tar is gzipped)',
      collect,
    )
    .requiredOption(
      '--to <dest>',
      'destination: REGISTRY/REPO[:TAG], oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:NAME:TAG], docker-daemon:NAME:TAG',
    )
    .option(
      '--platform <os/arch>',
      'the image to use from an index base; for scratch, the platform of the new image (default: this host)',
    )
    .option(
      '--devices <mode>',
      "a directory's device nodes and fifos: keep (written as tar writes them), skip, or refuse",
      'keep',
    )
    .option('--created <rfc3339>', 'time of the history entries (default: SOURCE_DATE_EPOCH, else the epoch)')
    .addOption(compressionOption())
    .addHelpText(
      'after',
      `${examples([
        'kiln append scratch --platform linux/amd64 --layer ./rootfs --to oci:./out:base',
        'kiln append oci:./out:base --layer ./app:/opt/app --layer ./tool:/usr/local/bin --to oci:./out:app',
        'kiln append oci-archive:./base.tar --layer ./extra.tar.gz --to docker-archive:./app.tar:app:1',
      ])}
Layers are deterministic (sorted entries, mtime from SOURCE_DATE_EPOCH, normalised owners and modes);
a .tar.gz is kept byte for byte. Media types follow the base: a Docker v2 base gets Docker layer types.
The base's config is kept; its rootfs gets the new diff_ids and its history one "kiln append" entry
per layer. An index base with several images needs --platform.
Device nodes and fifos are written as GNU tar writes them (root-owned, their permission bits kept),
so a debootstrap rootfs appends as it is; --devices skip leaves them out, each named on stderr, and
--devices refuse fails on the first. Sockets are always left out with a note, as tar does.
`,
    )
    .action(
      action(async ({ out, context, flags: opts, platform }, base) => {
        const devices = String(opts.devices);
        if (devices !== 'keep' && devices !== 'skip' && devices !== 'refuse')
          throw new KilnError(
            'E_USAGE',
            `--devices takes keep, skip or refuse, got '${devices.slice(0, 40)}'`,
            {
              hint: 'keep writes device nodes and fifos into the layer, skip leaves them out, refuse fails',
            },
          );
        const kiln = { ...(await import('../../api/image.js')), ...(await import('../../api/oci.js')) };
        const result = await kiln.appendLayers({
          context,
          base,
          layers: (opts.layer as string[]).map(parseLayerSpec),
          to: opts.to,
          platform: await platform(),
          created: opts.created,
          devices,
          compression: opts.compression,
        });
        return {
          json: result,
          human: () => {
            for (const layer of result.layers)
              for (const s of layer.skipped)
                out.info(`skipped: ${s.path} (from ${layer.source}): ${s.reason}`);
            out.info(
              `appended ${plural(result.layers.length, 'layer')} to ${base} ` +
                `(${kiln.formatPlatform(result.platform)}), wrote ${result.destination}`,
            );
          },
          data: result.descriptor.digest,
        };
      }),
    );
}
