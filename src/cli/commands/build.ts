import { type Command, Option } from 'commander';
import { collect, examples, globals } from '../common.js';
import { Output } from '../output.js';
import { compileOptions, toCompileOptions } from './compile.js';

export function register(program: Command): void {
  compileOptions(
    program
      .command('build')
      .description('compile a project, package the .wasm as an image, and write it (kiln.yaml)'),
  )
    .option('--to <dest>', "destination (repeatable; default: kiln.yaml's to)", collect)
    .addOption(
      new Option(
        '--format <format>',
        "packaging convention (default: kiln.yaml's image.format, else image)",
      ).choices(['image', 'artifact', 'istio', 'istio-oci', 'wasm-to-oci']),
    )
    .option(
      '--platform <os/arch>',
      'platform of the image (default: wasip1/wasm, wasip2/wasm for a component)',
    )
    .option('-o, --output <file>', 'where the .wasm also lands (default: DIR/<name>.wasm)')
    .addHelpText(
      'after',
      examples([
        'kiln build --to localhost:5000/apps/hello:1',
        'kiln build ./app --to oci:./out:app --runner sandbox',
        'kiln build                                    # destinations from kiln.yaml',
      ]),
    )
    .action(async (dir: string, opts, cmd: Command) => {
      const out = new Output(globals(cmd));
      const { build } = await import('../../build/build.js');
      const { parsePlatform } = await import('../../oci/platform.js');
      const result = await build({
        ...toCompileOptions(dir, opts, out),
        ...(opts.to ? { to: opts.to as string[] } : {}),
        ...(opts.format ? { format: opts.format } : {}),
        ...(opts.platform ? { platform: parsePlatform(opts.platform) } : {}),
      });
      if (out.flags.json) {
        const { project: _p, ...compiled } = result.compile;
        return out.json({ compile: compiled, images: result.images });
      }
      for (const image of result.images) {
        out.info(`wrote ${image.destination} (${image.format})`);
        out.data(`${image.destination}@${image.descriptor.digest}`);
      }
    });
}
