import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { ioError, KilnError } from '../../errors.js';
import { action } from '../action.js';
import { examples } from '../common.js';
import { privateKey } from '../keys.js';

/** A predicate is a JSON document a person could read. */
const MAX_PREDICATE_BYTES = 16 * 1024 * 1024;

export function register(program: Command): void {
  program
    .command('attest')
    .description('attach a signed in-toto attestation (DSSE, Sigstore bundle) to each image as a referrer')
    .argument('<image>', 'REGISTRY/REPO[:TAG][@DIGEST] or oci:DIR[:TAG]')
    .requiredOption('--predicate <file>', 'the predicate: a JSON file (- for stdin)')
    .requiredOption('--type <uri>', 'the predicate type, e.g. https://slsa.dev/provenance/v1')
    .requiredOption('--key <key>', 'the private key: FILE, env://VAR or - (stdin)')
    .addHelpText(
      'after',
      `${examples([
        'kiln attest registry.example.com/team/app:1 --predicate provenance.json --type https://slsa.dev/provenance/v1 --key kiln.key',
        'kiln attest oci:./out:hello --predicate results.json --type https://example.com/test-result/v1 --key kiln.key',
      ])}
The statement's subject is each image manifest: for an index, every image in it (each gets its own
referrer; the index lists no attestation entries). kiln verify IMAGE --key PREFIX.pub --type URI checks it.
`,
    )
    .action(
      action(async ({ out, context, flags }, image) => {
        if (flags.predicate === '-' && flags.key === '-')
          throw new KilnError('E_USAGE', '--predicate and --key cannot both read stdin');
        const predicate = await readPredicate(flags.predicate);
        const { key } = await privateKey(flags.key);
        const { attestImage } = await import('../../api/sign.js');
        const attached = await attestImage(image, {
          key: await key,
          predicateType: flags.type,
          predicate,
          context,
        });
        return {
          json: { attestations: attached },
          human: () => {
            for (const a of attached)
              out.info(`attested ${a.subject.digest}: ${a.predicateType} (referrer ${a.referrer.digest})`);
          },
          ...(attached.length ? { data: attached.map((a) => a.referrer.digest).join('\n') } : {}),
        };
      }),
    );
}

async function readPredicate(file: string): Promise<unknown> {
  let text: string;
  try {
    if (file === '-') {
      const parts: Buffer[] = [];
      for await (const chunk of process.stdin) parts.push(chunk as Buffer);
      text = Buffer.concat(parts).toString('utf8');
    } else text = await readFile(file, 'utf8');
  } catch (err) {
    throw ioError(err, `predicate ${file}`);
  }
  if (text.length > MAX_PREDICATE_BYTES)
    throw new KilnError('E_TOO_LARGE', `predicate ${file} is over ${MAX_PREDICATE_BYTES} bytes`);
  try {
    return JSON.parse(text);
  } catch {
    throw new KilnError('E_USAGE', `predicate ${file} is not JSON`, {
      hint: 'the predicate is the JSON object that goes into the statement\'s "predicate"',
    });
  }
}
