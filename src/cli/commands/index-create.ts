import type { Command } from 'commander';
import { action, type Flags } from '../action.js';
import { aliasesOf, aliasOptions, collect, examples, keyValues } from '../common.js';
import { plural } from '../output.js';

export function register(program: Command): void {
  const index = program.command('index').description('make image indexes (multi-platform images)');
  aliasOptions(index.command('create'))
    .description('make one OCI image index of several images')
    .argument('<sources...>', 'images or indexes (any source transport); an index adds its entries')
    .requiredOption(
      '--to <dest>',
      'destination: REGISTRY/REPO[:TAG], oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:NAME:TAG], docker-daemon:NAME:TAG',
    )
    .option('--annotation <k=v>', 'index annotation (repeatable)', collect)
    .addHelpText(
      'after',
      `${examples([
        'kiln index create --to oci:./out:multi oci:./out:hello-wasm oci:./out:hello-amd64',
        'kiln index create --to oci-archive:./multi.tar oci:./out:multi oci:./out:hello-arm64',
      ])}
Each image is listed with the platform of its config (os, architecture, variant, os.version,
os.features): a wasm image as wasip1/wasm or wasip2/wasm, so kiln run picks it and Docker the
native one. Two different images for one platform are refused; the same image twice is listed once.
`,
    )
    .action(
      action<Flags, [string[]]>(async ({ out, context, flags: opts }, sources) => {
        const kiln = { ...(await import('../../api/image.js')), ...(await import('../../api/oci.js')) };
        const result = await kiln.createIndex({
          context,
          sources,
          to: opts.to,
          annotations: keyValues(opts.annotation, '--annotation'),
          aliases: aliasesOf(opts, kiln.parsePlatform),
        });
        return {
          json: result,
          human: () => {
            const platforms = result.manifests.map((m) =>
              m.platform ? kiln.formatPlatform(m.platform) : 'unknown',
            );
            out.info(
              `indexed ${plural(result.manifests.length, 'image')} (${platforms.join(', ')}) to ${result.destination}`,
            );
          },
          data: result.descriptor.digest,
        };
      }),
    );
}
