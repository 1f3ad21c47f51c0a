import { type Command, Option } from 'commander';
import { KilnError } from '../../errors.js';
import { action } from '../action.js';
import { examples, jobs } from '../common.js';
import { publicKey } from '../keys.js';
import { plural } from '../output.js';
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
    .option(
      '--referrers',
      "also copy what refers to each manifest: signatures (cosign's .sig tag, Sigstore bundles), attestations, SBOMs",
    )
    .option(
      '--verify-key <key>',
      "verify the source's signatures with this public key first (as kiln verify); on failure nothing is written",
    )
    .option(
      '--verify-policy <file>',
      'verify the source against this policy first (as kiln verify --policy; docs/signing.md); on failure nothing is written',
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
        '',
        '--referrers copies, for every manifest copied, its OCI referrers (the referrers API or the',
        "fallback tag sha256-<hex>) and cosign's sha256-<hex>.sig/.att/.sbom tags, and theirs in turn, into",
        "the destination's referrers (fallback tag or index.json), before the tag is written. Registries",
        'and oci: layouts only (archives hold no referrers: E_UNSUPPORTED); not with --format.',
      ].join('\n'),
    )
    .addHelpText(
      'after',
      examples([
        'kiln copy localhost:5000/app:1 registry.example.com/team/app:1',
        'kiln copy registry.example.com/app:1 oci:./layout:app --platform linux/arm64',
        'kiln copy oci:./out:hello oci-archive:./hello.tar',
        'kiln copy localhost:5000/pushed-by-docker:1 oci:./layout:app --format oci',
        'kiln copy registry.example.com/team/app:1 mirror.example.com/team/app:1 --referrers --verify-key release.pub',
      ]),
    )
    .action(
      action(async ({ out, context, flags: opts, cmd, platform: platformFlag }, src, dst) => {
        if (opts.platform && opts.allPlatforms)
          throw new KilnError('E_USAGE', '--platform and --all-platforms exclude each other');
        const { copy } = await import('../../api/transport.js');
        const platform = await platformFlag();
        const verifyKey = opts.verifyKey ? await publicKey(opts.verifyKey) : undefined;
        const verifyPolicy = opts.verifyPolicy
          ? await (await import('../../api/sign.js')).loadPolicy(opts.verifyPolicy)
          : undefined;
        const progress = new Progress(out.flags);
        const result = await copy(src, dst, {
          platform,
          format: opts.format,
          ...(opts.referrers ? { referrers: true } : {}),
          ...(verifyKey ? { verifyKey } : {}),
          ...(verifyPolicy ? { verifyPolicy } : {}),
          jobs: jobs(cmd),
          onEvent: progress.handler(),
          context,
          // --src-creds and --dest-creds over the context's --creds, for their side only.
          ...(opts.srcCreds ? { source: { registry: { creds: opts.srcCreds } } } : {}),
          ...(opts.destCreds ? { destination: { registry: { creds: opts.destCreds } } } : {}),
        }).finally(() => progress.finish());
        return {
          json: result,
          human: () => {
            if (result.verified)
              out.info(
                `verified ${result.verified.root.digest}: ${plural(result.verified.checks.length, 'check')} passed`,
              );
            const mounted = result.blobsMounted ? `, ${result.blobsMounted} mounted` : '';
            out.info(
              `copied ${plural(result.blobsCopied, 'blob')} (${result.blobsSkipped} already there${mounted}) to ${dst}`,
            );
            const r = result.referrers;
            if (r && r.referrers.length + r.tags.length === 0)
              out.info('note: no referrers or cosign tags found for the manifests copied');
            else if (r) {
              const tags = r.tags.map((t) => `.${t.tag.split('.').at(-1)} ${t.how}`);
              out.info(
                `copied ${plural(r.referrers.length, 'referrer')} and ${plural(r.tags.length, 'cosign tag')}${tags.length ? ` (${tags.join(', ')})` : ''}`,
              );
            }
            for (const s of r?.skipped ?? []) out.info(`note: left ${s.digest} behind: ${s.reason}`);
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
      action(async ({ context, platform }, image) => {
        const { digest } = await import('../../api/transport.js');
        const desc = await digest(image, { platform: await platform(), context });
        return { json: desc, data: desc.digest };
      }),
    );

  program
    .command('tags')
    .description('list the tags of a repository')
    .argument('<repo>', 'REGISTRY/REPO, or oci:DIR')
    .addHelpText('after', examples(['kiln tags localhost:5000/app', 'kiln tags oci:./layout']))
    .action(
      action(async ({ context }, repo) => {
        const { listTags } = await import('../../api/transport.js');
        const tags = await listTags(repo, { context });
        return { json: tags, ...(tags.length ? { data: tags.join('\n') } : {}) };
      }),
    );
}
