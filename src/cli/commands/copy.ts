import { type Command, Option } from 'commander';
import { KilnError } from '../../errors.js';
import { action } from '../action.js';
import { examples, globals, jobs } from '../common.js';
import { contextOf } from '../context.js';
import { Output, plural } from '../output.js';
import { Progress } from '../progress.js';

export function register(program: Command): void {
  program
    .command('copy')
    .description('copy an image or index between registries, layouts and archives')
    .argument(
      '<src>',
      'source: REGISTRY/REPO[:TAG][@DIGEST], oci:DIR[:TAG], oci-archive:FILE, docker-archive:FILE',
    )
    .argument(
      '<dst>',
      'destination: a registry reference, oci:, oci-archive:, docker-archive:, docker-daemon:',
    )
    .option('--platform <os/arch>', 'copy only this platform out of an index')
    .option('--all-platforms', 'copy the whole index, every platform (the default)')
    .addOption(
      new Option(
        '--format <format>',
        'convert manifests to OCI or Docker v2 schema 2 (same blobs, new digests); default: kept byte for byte',
      ).choices(['oci', 'docker']),
    )
    .option('--src-creds <user:password>', 'credentials for the source registry')
    .option('--dest-creds <user:password>', 'credentials for the destination registry')
    .addHelpText(
      'after',
      [
        '',
        'Destinations:',
        '  oci:DIR[:TAG], oci-archive:FILE[:TAG]  the tag replaces its entry; other tags already there are kept',
        '  docker-archive:FILE[:NAME:TAG]         an index keeps every platform (index.json); manifest.json,',
        "                                         which docker load reads, names the host platform's image",
        '  docker-daemon:NAME:TAG                 one image: choose it from an index with --platform',
      ].join('\n'),
    )
    .addHelpText(
      'after',
      examples([
        'kiln copy localhost:5000/app:1 registry.example.com/team/app:1',
        'kiln copy registry.example.com/app:1 oci:./layout:app --platform linux/arm64',
        'kiln copy oci:./out:hello oci-archive:./hello.tar',
        'kiln copy localhost:5000/pushed-by-docker:1 oci:./layout:app --format oci',
      ]),
    )
    .action(
      action(async ({ out, context, flags: opts, cmd }, src, dst) => {
        if (opts.platform && opts.allPlatforms)
          throw new KilnError('E_USAGE', '--platform and --all-platforms exclude each other');
        const kiln = { ...(await import('../../api/transport.js')), ...(await import('../../api/oci.js')) };
        const platform = opts.platform ? kiln.parsePlatform(opts.platform) : undefined;
        const progress = new Progress(out.flags);
        const result = await kiln
          .copy(src, dst, {
            platform,
            format: opts.format,
            jobs: jobs(cmd),
            onEvent: progress.handler(),
            context,
            // --src-creds and --dest-creds over the context's --creds, for their side only.
            ...(opts.srcCreds ? { source: { registry: { creds: opts.srcCreds } } } : {}),
            ...(opts.destCreds ? { destination: { registry: { creds: opts.destCreds } } } : {}),
          })
          .finally(() => progress.finish());
        return {
          json: result,
          human: () => {
            const mounted = result.blobsMounted ? `, ${result.blobsMounted} mounted` : '';
            out.info(
              `copied ${plural(result.blobsCopied, 'blob')} (${result.blobsSkipped} already there${mounted}) to ${dst}`,
            );
          },
          data: result.descriptor.digest,
        };
      }),
    );

  program
    .command('digest')
    .description('print the digest of an image or index')
    .argument('<image>', 'a registry reference or any image location')
    .option('--platform <os/arch>', "the digest of this platform's image in an index")
    .addHelpText('after', examples(['kiln digest localhost:5000/app:1', 'kiln digest oci:./out:hello']))
    .action(
      action(async ({ context, flags: opts }, image) => {
        const kiln = { ...(await import('../../api/transport.js')), ...(await import('../../api/oci.js')) };
        const platform = opts.platform ? kiln.parsePlatform(opts.platform) : undefined;
        const desc = await kiln.digest(image, { platform, context });
        return { json: desc, data: desc.digest };
      }),
    );

  program
    .command('tags')
    .description('list the tags of a repository')
    .argument('<repo>', 'REGISTRY/REPO, or oci:DIR')
    .addHelpText('after', examples(['kiln tags localhost:5000/app', 'kiln tags oci:./layout']))
    .action(async (repo: string, _opts, cmd: Command) => {
      const out = new Output(globals(cmd));
      const kiln = { ...(await import('../../api/transport.js')), ...(await import('../../api/oci.js')) };
      const tags = await kiln.listTags(repo, { context: contextOf(cmd) });
      if (out.flags.json) return out.json(tags);
      if (tags.length) out.data(tags.join('\n'));
    });
}
