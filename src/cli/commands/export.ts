import type { Command } from 'commander';
import { KilnError } from '../../errors.js';
import { examples, globals } from '../common.js';
import { contextOf } from '../context.js';
import { Output, plural, red } from '../output.js';

export function register(program: Command): void {
  program
    .command('export')
    .description('write the flattened filesystem of an image (layers applied, whiteouts done) as one tar')
    .argument('<src>', 'source image')
    .requiredOption('-o, --output <file>', 'the tar to write; - for stdout')
    .option('--platform <os/arch>', 'choose this platform from an index')
    .addHelpText(
      'after',
      examples([
        'kiln export oci:./layout:app -o rootfs.tar',
        'kiln export oci-archive:./app.tar --platform linux/arm64 -o - | tar -t',
      ]),
    )
    .action(async (src: string, opts, cmd: Command) => {
      const out = new Output(globals(cmd));
      const toStdout = opts.output === '-';
      if (toStdout && out.flags.json)
        throw new KilnError('E_USAGE', '--json and -o - both want stdout; write the tar to a file');
      if (toStdout && process.stdout.isTTY)
        throw new KilnError('E_USAGE', 'refusing to write a tar to a terminal', {
          hint: 'redirect stdout, or use -o FILE',
        });
      const kiln = { ...(await import('../../api/image.js')), ...(await import('../../api/oci.js')) };
      const platform = opts.platform ? kiln.parsePlatform(opts.platform) : undefined;
      const result = await kiln.exportImage(src, toStdout ? process.stdout : opts.output, {
        context: contextOf(cmd),
        platform,
        onLayer: (i, layer) => out.debug(`reading layer ${i} ${layer.digest}`),
      });
      const unsafe = result.issues.filter((i) => i.unsafe);
      // Left out because an extractor would refuse them too; the tar written is complete without them.
      const error =
        unsafe.length > 0
          ? new KilnError(
              'E_UNSAFE_PATH',
              `left out ${plural(unsafe.length, 'unsafe entry', 'unsafe entries')} (first: ${unsafe[0]!.path}); everything else was exported`,
            )
          : undefined;
      if (out.flags.json) {
        out.json(error ? { ...result, error: error.toJSON() } : result);
        if (error) process.exitCode = 1;
        return;
      }
      for (const issue of result.issues)
        if (issue.unsafe)
          process.stderr.write(`${red('refused:')} ${issue.path} (layer ${issue.layer}): ${issue.reason}\n`);
        else out.info(`skipped: ${issue.path} (layer ${issue.layer}): ${issue.reason}`);
      if (error) throw error;
      out.info(
        `exported ${plural(result.entries, 'entry', 'entries')} from ${plural(result.layers, 'layer')} of ${result.digest} to ${toStdout ? 'stdout' : opts.output}`,
      );
    });
}
