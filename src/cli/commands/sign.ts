import type { Command } from 'commander';
import { action } from '../action.js';
import { examples } from '../common.js';
import { privateKey } from '../keys.js';

export function register(program: Command): void {
  program
    .command('sign')
    .description('sign an image: a cosign signature (tag sha256-<hex>.sig) and a Sigstore bundle (referrer)')
    .argument('<image>', 'REGISTRY/REPO[:TAG][@DIGEST] or oci:DIR[:TAG]')
    .requiredOption('--key <key>', 'the private key: FILE, env://VAR or - (stdin)')
    .option('--recursive', 'for an index: sign each of its images too')
    .addHelpText(
      'after',
      `${examples([
        'kiln sign registry.example.com/team/app:1 --key kiln.key',
        'KILN_PASSWORD=… kiln sign registry.example.com/team/app:1 --key env://SIGNING_KEY --recursive',
        'kiln sign oci:./out:hello --key kiln.key',
      ])}
Both forms sign the manifest's digest (for an index, the index's): cosign's classic signature,
appended to the signatures already under the tag, and a Sigstore bundle v0.3 attached as an OCI
referrer. The key's password comes from KILN_PASSWORD, else it is asked on the terminal.
Check with kiln verify IMAGE --key PREFIX.pub (or cosign verify --key PREFIX.pub).
`,
    )
    .action(
      action(async ({ out, context, flags }, image) => {
        // The key decrypts (scrypt, on the thread pool) while signImage reads the image.
        const { key } = await privateKey(flags.key);
        const { signImage } = await import('../../api/sign.js');
        const result = await signImage(image, { key, recursive: !!flags.recursive, context });
        return {
          json: result,
          human: () => {
            for (const s of result.signed)
              out.info(
                `signed ${s.subject.digest}${s.platform ? ` (${s.platform.os}/${s.platform.architecture})` : ''}: tag ${s.signature.tag}, bundle ${s.bundle.digest}`,
              );
          },
          data: result.signed[0]!.subject.digest,
        };
      }),
    );
}
