/**
 * Keys and passwords for the signing commands: the password comes from KILN_PASSWORD, else it is
 * asked on the terminal without echo. It is never printed, logged, or written anywhere.
 */
import type { KeyObject } from 'node:crypto';
import { KilnError } from '../errors.js';

/** The password: KILN_PASSWORD, else asked on a terminal (twice with `confirm`); `why` says for what. */
export async function password(why: string, confirm = false): Promise<string> {
  const fromEnv = process.env.KILN_PASSWORD;
  if (fromEnv !== undefined) return fromEnv;
  if (!process.stdin.isTTY || !process.stderr.isTTY)
    throw new KilnError(
      'E_BAD_PASSWORD',
      `a password is needed for ${why} and there is no terminal to ask on`,
      {
        hint: 'set KILN_PASSWORD',
      },
    );
  const first = await ask(`Password for ${why}: `);
  if (confirm && (await ask('Again: ')) !== first)
    throw new KilnError('E_BAD_PASSWORD', 'the two passwords differ', { hint: 'run kiln keygen again' });
  return first;
}

/** Reads a line from the terminal without echo. Ctrl-C aborts. */
function ask(prompt: string): Promise<string> {
  const stdin = process.stdin;
  process.stderr.write(prompt);
  return new Promise((resolve, reject) => {
    let value = '';
    const done = (err?: Error) => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write('\n');
      if (err) reject(err);
      else resolve(value);
    };
    const onData = (chunk: Buffer) => {
      for (const ch of chunk.toString('utf8')) {
        if (ch === '\r' || ch === '\n') return done();
        if (ch === '\u0003') return done(new KilnError('E_ABORTED', 'interrupted'));
        if (ch === '\u007f' || ch === '\b') value = value.slice(0, -1);
        else value += ch;
      }
    };
    stdin.setRawMode(true);
    stdin.resume();
    stdin.on('data', onData);
  });
}

/**
 * The private key `spec` names, decrypted with the password (asked only when the key is
 * encrypted). The key is read and the password asked before this returns; `key` is the
 * decryption, still running (scrypt, on the thread pool), so a command can read the image meanwhile.
 */
export async function privateKey(spec: string): Promise<{ key: Promise<KeyObject> }> {
  const { decryptPrivateKey, isEncrypted, readKeyText } = await import('../api/sign.js');
  const pem = await readKeyText(spec);
  const secret = isEncrypted(pem) ? await password(spec === '-' ? 'the key' : spec) : undefined;
  return { key: decryptPrivateKey(pem, secret, spec) };
}

export async function publicKey(spec: string): Promise<KeyObject> {
  const { loadPublicKey } = await import('../api/sign.js');
  return loadPublicKey(spec);
}
