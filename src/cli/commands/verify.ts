import type { Command } from 'commander';
import { KilnError } from '../../errors.js';
import { action } from '../action.js';
import { collect, examples } from '../common.js';
import { publicKey } from '../keys.js';

export function register(program: Command): void {
  program
    .command('verify')
    .description("check an image's signatures and attestations against a public key or a policy")
    .argument('<image>', 'REGISTRY/REPO[:TAG][@DIGEST] or oci:DIR[:TAG]')
    .option('--key <key>', 'the public key: FILE (PREFIX.pub), env://VAR or - (stdin)')
    .option(
      '--policy <file>',
      'a policy (YAML or JSON): the keys, attestations and SLSA builders and sources each repository needs',
    )
    .option(
      '--type <uri>',
      'require an attestation of this predicate type on each image, by --key (repeatable)',
      collect,
    )
    .option('--recursive', "for an index: check each of its images' signatures too")
    .addHelpText(
      'after',
      `${examples([
        'kiln verify registry.example.com/team/app:1 --key kiln.pub',
        'kiln verify registry.example.com/team/app:1 --key kiln.pub --type https://slsa.dev/provenance/v1',
        'kiln verify registry.example.com/team/app:1 --policy policy.yaml',
        'kiln verify oci:./out:hello --key kiln.pub --json',
      ])}
Checks with --key: a cosign signature (tag sha256-<hex>.sig) by the key whose payload names the
manifest's digest; a Sigstore bundle (referrer) by the key whose statement names it; every
attestation by the key names its image; each --type has one. With --policy, the requirements of
every rule whose pattern matches the repository (no rule matching fails). Exits 1 listing what
failed. The policy format is in docs/signing.md.
`,
    )
    .action(
      action(async ({ out, context, flags }, image) => {
        if (!flags.key && !flags.policy)
          throw new KilnError('E_USAGE', 'kiln verify needs --key PUB, --policy FILE, or both');
        if (flags.type && !flags.key)
          throw new KilnError('E_USAGE', '--type asks for attestations by --key', {
            hint: 'give --key, or list the attestations in the policy',
          });
        const key = flags.key ? await publicKey(flags.key) : undefined;
        const { loadPolicy, verificationError, verifyImage } = await import('../../api/sign.js');
        const policy = flags.policy ? await loadPolicy(flags.policy) : undefined;
        const report = await verifyImage(image, {
          ...(key ? { key } : {}),
          ...(policy ? { policy } : {}),
          ...(flags.type ? { types: flags.type } : {}),
          recursive: !!flags.recursive,
          context,
        });
        // Listed before a failure is thrown: the error names only what failed.
        if (!out.flags.json)
          for (const c of report.checks)
            out.info(
              `${c.ok ? 'ok  ' : 'FAIL'} ${c.subject}${c.platform ? ` (${c.platform})` : ''} ${c.kind}${c.key ? ` [${c.key}]` : ''}: ${c.detail}`,
            );
        if (!report.ok) throw verificationError(image, report);
        return { json: report, data: report.root.digest };
      }),
    );
}
