import type { Command } from 'commander';
import { KilnError } from '../../errors.js';
import { action } from '../action.js';
import { examples } from '../common.js';

export function register(program: Command): void {
  program
    .command('inspect')
    .description('show the manifest, config, platform and layers of an image')
    .argument(
      '<image>',
      'REGISTRY/REPO[:TAG][@DIGEST], oci:DIR[:TAG], oci-archive:FILE[:TAG] or docker-archive:FILE[:NAME:TAG]',
    )
    .option('--raw', 'print the manifest (or index) exactly as stored')
    .option('--config', 'print the config')
    .option('--platform <os/arch>', 'choose this platform from an index')
    .addHelpText(
      'after',
      examples([
        'kiln inspect oci:./out:hello',
        'kiln inspect registry.example.com/team/app:1 --platform linux/arm64',
        'kiln inspect oci:./out:hello --json',
        'kiln inspect oci-archive:./app.tar --platform wasip1/wasm --config',
      ]),
    )
    .action(
      action(async ({ out, context, flags: opts, platform }, image) => {
        const { inspect } = await import('../../api/transport.js');
        const result = await inspect(image, { platform: await platform(), context });
        if (opts.raw) return void process.stdout.write(result.raw);
        if (opts.config) {
          if (!result.rawConfig)
            throw new KilnError(
              'E_USAGE',
              `${image} is an index; choose an image with --platform to see its config`,
            );
          return void out.json(JSON.parse(result.rawConfig.toString('utf8')));
        }
        const { raw: _raw, rawConfig: _rc, ...data } = result;
        if (out.flags.json) return { json: data };
        const { renderInspect } = await import('../render-inspect.js');
        return { json: data, data: renderInspect(result) };
      }),
    );
}
