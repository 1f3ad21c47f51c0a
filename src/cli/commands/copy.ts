import type { Command } from 'commander';
import { examples, globals } from '../common.js';
import { Output } from '../output.js';

export function register(program: Command): void {
  program
    .command('copy')
    .description('copy an image or index between transports')
    .argument('<src>', 'source image')
    .argument('<dst>', 'destination')
    .option('--platform <os/arch>', 'copy only this platform out of an index')
    .addHelpText(
      'after',
      examples([
        'kiln copy oci:./out:hello oci-archive:./hello.tar',
        'kiln copy oci-archive:./app.tar oci:./layout:app',
      ]),
    )
    .action(async (src: string, dst: string, opts, cmd: Command) => {
      const out = new Output(globals(cmd));
      const kiln = await import('../../index.js');
      const platform = opts.platform ? kiln.parsePlatform(opts.platform) : undefined;
      const result = await kiln.copy(src, dst, { platform });
      if (out.flags.json) return out.json(result);
      out.info(`copied ${result.blobsCopied} blobs (${result.blobsSkipped} already there) to ${dst}`);
      out.data(result.descriptor.digest);
    });
}
