import type { Command } from 'commander';
import { action } from '../action.js';
import { examples } from '../common.js';

export function register(program: Command): void {
  program
    .command('sbom')
    .description('print the SPDX SBOM attached to an image (an OCI referrer)')
    .argument('<image>', 'REGISTRY/REPO[:TAG][@DIGEST] or oci:DIR[:TAG]')
    .option('--platform <os/arch>', 'choose this platform from an index (default: its only image)')
    .addHelpText(
      'after',
      `${examples([
        'kiln sbom registry.example.com/team/app:1',
        'kiln sbom registry.example.com/team/app:1 --platform linux/arm64 > app.spdx.json',
        'kiln sbom oci:./out:hello --json',
      ])}
The SBOM is found through the registry's referrers API, else the fallback tag sha256-<hex of the
image manifest's digest>. With several attached, the newest is printed. --json wraps the document
with the image (subject) and the referrer manifest's descriptors.
`,
    )
    .action(
      action(async ({ out, context, platform }, image) => {
        const { findSbom } = await import('../../api/sbom.js');
        const found = await findSbom(image, { platform: await platform(), context });
        return {
          json: {
            subject: found.subject,
            referrer: found.referrer,
            document: JSON.parse(found.document.toString('utf8')),
          },
          human: () => {
            out.info(`SBOM ${found.referrer.digest} for ${found.subject.digest}`);
            process.stdout.write(found.document);
          },
        };
      }),
    );
}
