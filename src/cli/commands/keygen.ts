import { chmod, open } from 'node:fs/promises';
import type { Command } from 'commander';
import { ioError, KilnError } from '../../errors.js';
import { action, type Flags } from '../action.js';
import { examples } from '../common.js';
import { password } from '../keys.js';

export function register(program: Command): void {
  program
    .command('keygen')
    .description('make an ECDSA P-256 key pair for kiln sign, attest and verify (and cosign)')
    .option('--output-key-prefix <prefix>', 'write PREFIX.key (private, encrypted) and PREFIX.pub', 'kiln')
    .addHelpText(
      'after',
      `${examples(['kiln keygen', 'KILN_PASSWORD=… kiln keygen --output-key-prefix ci/release'])}
PREFIX.key is PKCS#8 (EncryptedPrivateKeyInfo, PBES2: scrypt and AES-256-CBC) in PEM, encrypted
with the password from KILN_PASSWORD, else asked twice on the terminal; PREFIX.pub is the public
key (SPKI PEM). Existing files are not overwritten. docs/signing.md has the details.
`,
    )
    .action(
      action<Flags, []>(async ({ out, flags: opts }) => {
        const { generateKeys } = await import('../../api/sign.js');
        const prefix: string = opts.outputKeyPrefix;
        const keys = await generateKeys(await password(`the new key ${prefix}.key`, true));
        await writeNew(`${prefix}.key`, keys.privatePem, 0o600);
        await writeNew(`${prefix}.pub`, keys.publicPem, 0o644);
        return {
          json: { privateKey: `${prefix}.key`, publicKey: `${prefix}.pub`, hint: keys.hint },
          human: () => out.info(`wrote ${prefix}.key (private, encrypted) and ${prefix}.pub`),
          data: `${prefix}.pub`,
        };
      }),
    );
}

/** Creates `file` (never replacing one), mode `mode`. */
async function writeNew(file: string, text: string, mode: number): Promise<void> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(file, 'wx', mode);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST')
      throw new KilnError('E_USAGE', `${file} exists; kiln keygen does not overwrite keys`, {
        hint: 'choose another --output-key-prefix, or remove the old pair first',
      });
    throw ioError(err, file);
  }
  try {
    await handle.writeFile(text);
  } finally {
    await handle.close();
  }
  await chmod(file, mode);
}
