import type { Command } from 'commander';
import { collect, examples } from '../common.js';
import { contextOf } from '../context.js';

export function register(program: Command): void {
  program
    .command('run')
    .description('run a WebAssembly image or .wasm file with WASI (preview 1)')
    .argument(
      '<image>',
      'an image (REGISTRY/REPO:TAG, oci:..., oci-archive:..., docker-archive:...) or a .wasm file',
    )
    .argument('[args...]', 'arguments for the module (after --)')
    .option('--dir <host[:guest]>', 'give the module a host directory (repeatable)', collect)
    .option('--env <k=v>', 'environment variable (repeatable)', collect)
    .option('--platform <os/arch>', 'choose this platform from an index (default: the wasm one)')
    .addHelpText(
      'after',
      examples([
        'kiln run oci:./out:hello -- a b',
        'kiln run hello.wasm --env GREETING=hi -- world',
        'kiln run oci:./out:hello --dir ./data:/data -- /data/input.txt',
      ]),
    )
    .action(async (image: string, args: string[], opts, cmd: Command) => {
      const kiln = { ...(await import('../../run/run.js')), ...(await import('../../oci/platform.js')) };
      const platform = opts.platform ? kiln.parsePlatform(opts.platform) : undefined;
      process.exitCode = await kiln.runWasm(image, {
        args,
        env: opts.env,
        dirs: opts.dir,
        platform,
        context: contextOf(cmd),
      });
    });
}
