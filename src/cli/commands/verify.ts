import type { Command } from 'commander';
import { KilnError } from '../../errors.js';
import { collect, examples, globals } from '../common.js';
import { contextOf } from '../context.js';
import { publicKey } from '../keys.js';
import { Output } from '../output.js';

export function register(program: Command): void {
  program
    .command('verify')
    .description("check an image's signatures and attestations against a public key")
    .argument('<image>', 'REGISTRY/REPO[:TAG][@DIGEST] or oci:DIR[:TAG]')
    .requiredOption('--key <key>', 'the public key: FILE (PREFIX.pub), env://VAR or - (stdin)')
    .option(
      '--type <uri>',
      'require an attestation of this predicate type on each image (repeatable)',
      collect,
    )
    .option('--recursive', "for an index: check each of its images' signatures too")
    .addHelpText(
      'after',
      `${examples([
        'kiln verify registry.example.com/team/app:1 --key kiln.pub',
        'kiln verify registry.example.com/team/app:1 --key kiln.pub --type https://slsa.dev/provenance/v1',
        'kiln verify oci:./out:hello --key kiln.pub --json',
      ])}
Checks: a cosign signature (tag sha256-<hex>.sig) by the key whose payload names the manifest's
digest; a Sigstore bundle (referrer) by the key whose statement names it; every attestation by the
key names its image; each --type has one. Exits 1 listing what failed.
`,
    )
    .action(async (image: string, opts, cmd: Command) => {
      const out = new Output(globals(cmd));
      const key = await publicKey(opts.key);
      const { verifyImage } = await import('../../api/sign.js');
      const report = await verifyImage(image, {
        key,
        ...(opts.type ? { types: opts.type } : {}),
        recursive: !!opts.recursive,
        context: contextOf(cmd),
      });
      if (out.flags.json && report.ok) return out.json(report);
      if (!out.flags.json)
        for (const c of report.checks)
          out.info(
            `${c.ok ? 'ok  ' : 'FAIL'} ${c.subject}${c.platform ? ` (${c.platform})` : ''} ${c.kind}: ${c.detail}`,
          );
      if (!report.ok)
        throw new KilnError(
          'E_VERIFY_FAILED',
          `${image}: ${report.failures.length} of ${report.checks.length} checks failed: ${report.failures.join('; ')}`,
          {
            hint: 'sign with kiln sign IMAGE --key PREFIX.key (attest with kiln attest); check with the matching PREFIX.pub',
          },
        );
      out.data(report.root.digest);
    });
}
