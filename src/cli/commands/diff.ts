import type { Command } from 'commander';
import type { FlatIssue } from '../../api/image.js';
import { KilnError } from '../../errors.js';
import { examples, globals } from '../common.js';
import { contextOf } from '../context.js';
import { Output, plural, red } from '../output.js';

/** Names what flattening left out; unsafe entries make the command fail once its output is written. */
export function reportIssues(out: Output, issues: FlatIssue[]): KilnError | undefined {
  const unsafe = issues.filter((i) => i.unsafe);
  if (!out.flags.json)
    for (const issue of issues)
      if (issue.unsafe)
        process.stderr.write(`${red('refused:')} ${issue.path} (layer ${issue.layer}): ${issue.reason}\n`);
      else out.info(`skipped: ${issue.path} (layer ${issue.layer}): ${issue.reason}`);
  if (unsafe.length === 0) return undefined;
  return new KilnError(
    'E_UNSAFE_PATH',
    `left out ${plural(unsafe.length, 'unsafe entry', 'unsafe entries')} (first: ${unsafe[0]!.path}); everything else was written`,
  );
}

export function register(program: Command): void {
  program
    .command('diff')
    .description('one layer holding what UPPER adds or changes over LOWER, with whiteouts for deletions')
    .argument('<lower>', 'the image diffed against (any source transport)')
    .argument('<upper>', 'the image whose changes the layer holds')
    .option(
      '--to <dest>',
      "write an image: UPPER's config over the diff layer (REGISTRY/REPO[:TAG], oci:DIR[:TAG], oci-archive:, docker-archive:, docker-daemon:)",
    )
    .option('--output <file>', 'write the layer itself: gzip tar, or plain tar when FILE ends in .tar')
    .option('--platform <os/arch>', 'the image to use from index sources (default: LOWER follows UPPER)')
    .option('--created <rfc3339>', 'time of the history entry (default: SOURCE_DATE_EPOCH, else the epoch)')
    .addHelpText(
      'after',
      `${examples([
        'kiln diff oci:./out:base oci:./out:app --output app-layer.tar.gz',
        'kiln diff oci:./out:base oci:./out:app --to oci:./out:app-diff',
        'kiln diff registry.example/base:1 registry.example/app:1 --platform linux/amd64 --output layer.tar',
      ])}
Give exactly one of --to and --output. LOWER's layers followed by the diff give UPPER's filesystem:
new and changed paths (type, mode, owners, mtime, xattrs, content, hard links) are in the layer, sorted,
and deleted ones are whiteouts (.wh.NAME; .wh..wh..opq for a directory that lost all it had).
Identical images give an empty layer. When LOWER's layers are a prefix of UPPER's, the diff is UPPER's
remaining layers, reused as they are ("reused": true); --output then needs exactly one such layer,
else the remaining layers are squashed into one.
`,
    )
    .action(async (lower: string, upper: string, opts, cmd: Command) => {
      const out = new Output(globals(cmd));
      if ((opts.to === undefined) === (opts.output === undefined))
        throw new KilnError('E_USAGE', 'give exactly one of --to DST and --output FILE');
      const kiln = { ...(await import('../../api/image.js')), ...(await import('../../api/oci.js')) };
      const result = await kiln.diffImages({
        context: contextOf(cmd),
        lower,
        upper,
        to: opts.to,
        output: opts.output,
        platform: opts.platform ? kiln.parsePlatform(opts.platform) : undefined,
        created: opts.created,
        onLayer: (i, layer) => out.debug(`reading layer ${i} ${layer.digest}`),
      });
      const error = reportIssues(out, result.issues);
      if (out.flags.json) {
        out.json(error ? { ...result, error: error.toJSON() } : result);
        if (error) process.exitCode = 1;
        return;
      }
      const c = result.counts;
      out.info(
        result.reused
          ? `reused ${plural(result.layers.length, 'layer')} of ${upper} (${lower} is a prefix of it)`
          : `diff: ${c?.added ?? 0} added, ${c?.changed ?? 0} changed, ${plural(c?.deleted ?? 0, 'whiteout')}, ${c?.opaque ?? 0} opaque (${plural(result.entries ?? 0, 'entry', 'entries')})`,
      );
      if (result.output !== undefined) {
        out.info(`wrote ${result.output}`);
        out.data(result.layers[0]!.descriptor.digest);
      } else {
        out.info(`wrote ${result.destination}`);
        out.data(result.descriptor!.digest);
      }
      if (error) throw error;
    });
}
