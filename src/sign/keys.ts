/**
 * Signing keys: ECDSA P-256, the key type cosign makes and every Sigstore verifier takes.
 *
 * - The private key is a PKCS#8 `EncryptedPrivateKeyInfo` in PEM (`ENCRYPTED PRIVATE KEY`):
 *   PBES2 with scrypt (N=16384, r=8, p=1, a 16-byte salt; RFC 7914 §7) deriving an AES-256-CBC
 *   key. Node's own export offers only PBKDF2 at OpenSSL's default 2048 rounds, so kiln writes the
 *   PBES2 structure itself; the primitives (scrypt, AES) are Node's, and `openssl pkey -in KEY`
 *   reads it. These are OpenSSL's `pkcs8 -scrypt` defaults: OpenSSL refuses scrypt parameters
 *   above 32 MiB. `decryptPrivateKey` reads kiln's own structure back with Node's asynchronous
 *   scrypt, which runs on libuv's thread pool (the ~60 ms the KDF costs overlap the caller's reads
 *   of the registry); any other encrypted key goes to OpenSSL (Node's createPrivateKey).
 * - The public key is SPKI in PEM (`PUBLIC KEY`), as `cosign verify --key` reads it.
 * - The key's hint (Sigstore bundles' `verificationMaterial.publicKey.hint`, DSSE `keyid`) is the
 *   base64 SHA-256 of the SPKI DER.
 *
 * Keys load from a file, `env://VAR` or `-` (stdin). Key material and passwords never go into a
 * message: errors name where the key came from, never what it holds.
 */
import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  randomBytes,
  scrypt,
} from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { ioError, KilnError } from '../errors.js';

/** scrypt's cost (N), block size (r) and parallelism (p): OpenSSL's defaults for `pkcs8 -scrypt`. */
const SCRYPT = { N: 16_384, r: 8, p: 1 } as const;
const OID_PBES2 = '1.2.840.113549.1.5.13';
const OID_SCRYPT = '1.3.6.1.4.1.11591.4.11';
const OID_AES256_CBC = '2.16.840.1.101.3.4.1.42';
/** A key file is a few hundred bytes; anything much larger is not one. */
const MAX_KEY_BYTES = 64 * 1024;

/** A key pair `generateKeys` made: both halves as PEM, and the key's hint. */
export interface KeyPair {
  /** `ENCRYPTED PRIVATE KEY` PEM (PKCS#8, PBES2/scrypt/AES-256-CBC). */
  privatePem: string;
  /** `PUBLIC KEY` PEM (SPKI). */
  publicPem: string;
  /** base64 SHA-256 of the SPKI DER. */
  hint: string;
}

/** A new P-256 key pair, the private key encrypted with `password`. */
export async function generateKeys(password: string): Promise<KeyPair> {
  if (password === '')
    throw new KilnError('E_BAD_PASSWORD', 'an empty password would leave the private key unprotected', {
      hint: 'set KILN_PASSWORD, or run kiln keygen on a terminal to be asked',
    });
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return {
    privatePem: await encryptPrivateKey(privateKey, password),
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    hint: keyHint(publicKey),
  };
}

/** The key's hint: base64 SHA-256 of its SPKI DER (of the public half for a private key). */
export function keyHint(key: KeyObject): string {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  return createHash('sha256')
    .update(pub.export({ type: 'spki', format: 'der' }))
    .digest('base64');
}

/** The PKCS#8 EncryptedPrivateKeyInfo of `key` (PBES2: scrypt, AES-256-CBC), as PEM. */
export async function encryptPrivateKey(key: KeyObject, password: string): Promise<string> {
  const salt = randomBytes(16);
  const iv = randomBytes(16);
  const kek = await new Promise<Buffer>((resolve, reject) =>
    scrypt(password, salt, 32, { ...SCRYPT, maxmem: 64 * 1024 * 1024 }, (err, k) =>
      err ? reject(err) : resolve(k),
    ),
  );
  const cipher = createCipheriv('aes-256-cbc', kek, iv);
  const plain = key.export({ type: 'pkcs8', format: 'der' });
  const encrypted = Buffer.concat([cipher.update(plain), cipher.final()]);
  plain.fill(0);
  kek.fill(0);
  const info = seq(
    seq(
      oid(OID_PBES2),
      seq(
        seq(oid(OID_SCRYPT), seq(octets(salt), int(SCRYPT.N), int(SCRYPT.r), int(SCRYPT.p), int(32))),
        seq(oid(OID_AES256_CBC), octets(iv)),
      ),
    ),
    octets(encrypted),
  );
  const lines = info.toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN ENCRYPTED PRIVATE KEY-----\n${lines.join('\n')}\n-----END ENCRYPTED PRIVATE KEY-----\n`;
}

// DER, only what EncryptedPrivateKeyInfo needs: SEQUENCE, OBJECT IDENTIFIER, OCTET STRING, INTEGER.
function tlv(tag: number, body: Buffer): Buffer {
  const n = body.length;
  const length: number[] = [];
  if (n < 0x80) length.push(n);
  else {
    for (let v = n; v > 0; v >>= 8) length.unshift(v & 0xff);
    length.unshift(0x80 | length.length);
  }
  return Buffer.concat([Buffer.from([tag, ...length]), body]);
}
const seq = (...parts: Buffer[]): Buffer => tlv(0x30, Buffer.concat(parts));
const octets = (b: Buffer): Buffer => tlv(0x04, b);
function int(n: number): Buffer {
  const bytes: number[] = [];
  for (let v = n; ; v = Math.floor(v / 256)) {
    bytes.unshift(v & 0xff);
    if (v < 256) break;
  }
  if (bytes[0]! & 0x80) bytes.unshift(0);
  return tlv(0x02, Buffer.from(bytes));
}
function oid(dotted: string): Buffer {
  const [a, b, ...rest] = dotted.split('.').map(Number) as [number, number, ...number[]];
  const out = [40 * a + b];
  for (const v of rest) {
    const group = [v & 0x7f];
    for (let x = v >>> 7; x > 0; x >>>= 7) group.unshift((x & 0x7f) | 0x80);
    out.push(...group);
  }
  return tlv(0x06, Buffer.from(out));
}

/** One DER element: its tag, its body, and where the next element starts. */
interface Der {
  tag: number;
  body: Buffer;
  end: number;
}

/** The DER element at `at` in `buf`, or undefined when it is not one. */
function der(buf: Buffer, at = 0): Der | undefined {
  if (at + 2 > buf.length) return undefined;
  const tag = buf[at]!;
  let len = buf[at + 1]!;
  let start = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 3 || start + n > buf.length) return undefined;
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[start + i]!;
    start += n;
  }
  if (start + len > buf.length) return undefined;
  return { tag, body: buf.subarray(start, start + len), end: start + len };
}

/** The elements of a SEQUENCE's body, or undefined when they don't parse. */
function children(el: Der | undefined): Der[] | undefined {
  if (el?.tag !== 0x30) return undefined;
  const out: Der[] = [];
  for (let at = 0; at < el.body.length; ) {
    const c = der(el.body, at);
    if (!c) return undefined;
    out.push(c);
    at = c.end;
  }
  return out;
}

const isOid = (el: Der | undefined, dotted: string) => !!el && oid(dotted).equals(tlv(el.tag, el.body));
const uint = (el: Der | undefined) =>
  el?.tag === 0x02 && el.body.length <= 6 ? el.body.reduce((n, b) => n * 256 + b, 0) : undefined;

/** The scrypt parameters, IV and ciphertext of kiln's own key format; undefined for any other. */
function kilnEncrypted(pem: string) {
  const b64 = /-----BEGIN ENCRYPTED PRIVATE KEY-----([\s\S]*?)-----END ENCRYPTED PRIVATE KEY-----/.exec(
    pem,
  )?.[1];
  if (!b64) return undefined;
  const top = children(der(Buffer.from(b64.replace(/\s+/g, ''), 'base64')));
  const alg = children(top?.[0]);
  const params = children(alg?.[1]);
  const kdf = children(params?.[0]);
  const kdfParams = children(kdf?.[1]);
  const cipher = children(params?.[1]);
  if (top?.length !== 2 || top[1]!.tag !== 0x04 || !isOid(alg?.[0], OID_PBES2)) return undefined;
  if (!isOid(kdf?.[0], OID_SCRYPT) || !isOid(cipher?.[0], OID_AES256_CBC)) return undefined;
  const [salt, n, r, p, keyLength] = kdfParams ?? [];
  const iv = cipher?.[1];
  const cost = { N: uint(n), r: uint(r), p: uint(p) };
  if (salt?.tag !== 0x04 || iv?.tag !== 0x04 || iv.body.length !== 16) return undefined;
  if (keyLength && uint(keyLength) !== 32) return undefined;
  if (cost.N !== SCRYPT.N || cost.r !== SCRYPT.r || cost.p !== SCRYPT.p) return undefined;
  return { salt: salt.body, iv: iv.body, encrypted: top[1]!.body };
}

/**
 * The private key in `pem`, as `parsePrivateKey` reads it, without holding up the event loop: a
 * key in kiln's own format (PBES2, scrypt N=16384 r=8 p=1, AES-256-CBC) is decrypted with Node's
 * asynchronous scrypt (libuv's thread pool), so a caller's reads go on while the KDF runs; any
 * other key is OpenSSL's to read, as parsePrivateKey does.
 */
export async function decryptPrivateKey(
  pem: string,
  password: string | undefined,
  from: KeySpec,
): Promise<KeyObject> {
  const own = password === undefined ? undefined : kilnEncrypted(pem);
  if (!own) return parsePrivateKey(pem, password, from);
  const kek = await new Promise<Buffer>((resolve, reject) =>
    scrypt(password!, own.salt, 32, { ...SCRYPT, maxmem: 64 * 1024 * 1024 }, (err, k) =>
      err ? reject(err) : resolve(k),
    ),
  );
  let plain: Buffer;
  try {
    const decipher = createDecipheriv('aes-256-cbc', kek, own.iv);
    plain = Buffer.concat([decipher.update(own.encrypted), decipher.final()]);
  } catch {
    // A wrong password mostly fails the padding check, else decodes to garbage (below).
    throw wrongPassword(described(from));
  } finally {
    kek.fill(0);
  }
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: plain, format: 'der', type: 'pkcs8' });
  } catch {
    throw wrongPassword(described(from));
  } finally {
    plain.fill(0);
  }
  checkP256(key, described(from));
  return key;
}

function wrongPassword(where: string): KilnError {
  return new KilnError('E_BAD_PASSWORD', `wrong password for ${where}`, {
    hint: 'KILN_PASSWORD (or the password typed) must be the one given to kiln keygen',
  });
}

/** Where a key comes from: a file, `env://VAR`, or `-` for stdin. */
export type KeySpec = string;

/** How a key is named in messages: never its content. */
function described(spec: KeySpec): string {
  if (spec === '-') return 'the key on stdin';
  if (spec.startsWith('env://')) return `the key in $${spec.slice(6)}`;
  return `key file ${spec}`;
}

/** The PEM text a key spec names. */
export async function readKeyText(spec: KeySpec, stdin: () => Promise<Buffer> = readStdin): Promise<string> {
  let bytes: Buffer;
  if (spec === '-') bytes = await stdin();
  else if (spec.startsWith('env://')) {
    const name = spec.slice(6);
    const value = name === '' ? undefined : process.env[name];
    if (value === undefined || value === '')
      throw new KilnError('E_BAD_KEY', `${described(spec)}: the variable is not set`, {
        hint: 'env://VAR reads the PEM from the environment variable VAR',
      });
    bytes = Buffer.from(value);
  } else {
    try {
      bytes = await readFile(spec);
    } catch (err) {
      const e = ioError(err, described(spec));
      throw new KilnError('E_BAD_KEY', e.message, {
        cause: err,
        hint: 'pass --key FILE, env://VAR or - (stdin); kiln keygen makes a key pair',
      });
    }
  }
  if (bytes.length > MAX_KEY_BYTES)
    throw new KilnError('E_BAD_KEY', `${described(spec)} is ${bytes.length} bytes: not a PEM key`);
  return bytes.toString('utf8');
}

async function readStdin(): Promise<Buffer> {
  const parts: Buffer[] = [];
  let size = 0;
  for await (const chunk of process.stdin) {
    parts.push(chunk as Buffer);
    size += (chunk as Buffer).length;
    if (size > MAX_KEY_BYTES) break;
  }
  return Buffer.concat(parts);
}

/** True when the PEM is an encrypted private key (a password is needed to load it). */
export function isEncrypted(pem: string): boolean {
  return pem.includes('-----BEGIN ENCRYPTED PRIVATE KEY-----');
}

/** A P-256 private key from PEM (`password` for an encrypted one); `from` names it in messages. */
export function parsePrivateKey(pem: string, password: string | undefined, from: KeySpec): KeyObject {
  const where = described(from);
  if (!/-----BEGIN (ENCRYPTED |EC )?PRIVATE KEY-----/.test(pem))
    throw new KilnError(
      'E_BAD_KEY',
      /-----BEGIN PUBLIC KEY-----/.test(pem)
        ? `${where} is a public key; signing needs the private key`
        : `${where} holds no PEM private key`,
      { hint: 'kiln keygen writes PREFIX.key (private, encrypted) and PREFIX.pub (public)' },
    );
  const encrypted = isEncrypted(pem);
  if (encrypted && password === undefined)
    throw new KilnError('E_BAD_PASSWORD', `${where} is encrypted and no password was given`, {
      hint: 'set KILN_PASSWORD, or run on a terminal to be asked',
    });
  let key: KeyObject;
  try {
    key = createPrivateKey({
      key: pem,
      format: 'pem',
      ...(encrypted ? { passphrase: password } : {}),
    });
  } catch (err) {
    // A wrong password mostly fails the padding check, else decodes to garbage: either way, it's the password.
    if (encrypted) throw wrongPassword(where);
    throw new KilnError('E_BAD_KEY', `${where} is not a readable private key`, { cause: err });
  }
  checkP256(key, where);
  return key;
}

/** A P-256 public key from PEM (SPKI). */
export function parsePublicKey(pem: string, from: KeySpec): KeyObject {
  const where = described(from);
  if (/PRIVATE KEY-----/.test(pem))
    throw new KilnError('E_BAD_KEY', `${where} is a private key; verifying takes the public key`, {
      hint: 'pass the PREFIX.pub kiln keygen wrote',
    });
  let key: KeyObject;
  try {
    key = createPublicKey({ key: pem, format: 'pem' });
  } catch (err) {
    throw new KilnError('E_BAD_KEY', `${where} holds no PEM public key`, {
      cause: err,
      hint: 'pass the PREFIX.pub kiln keygen wrote (-----BEGIN PUBLIC KEY-----)',
    });
  }
  checkP256(key, where);
  return key;
}

function checkP256(key: KeyObject, where: string): void {
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1')
    throw new KilnError(
      'E_BAD_KEY',
      `${where} is a ${key.asymmetricKeyType}${key.asymmetricKeyDetails?.namedCurve ? ` ${key.asymmetricKeyDetails.namedCurve}` : ''} key; kiln signs with ECDSA P-256`,
      { hint: 'kiln keygen makes a P-256 key pair' },
    );
}

/** Loads the private key `spec` names; `password` for an encrypted one. */
export async function loadPrivateKey(spec: KeySpec, password: string | undefined): Promise<KeyObject> {
  return decryptPrivateKey(await readKeyText(spec), password, spec);
}

/** Loads the public key `spec` names. */
export async function loadPublicKey(spec: KeySpec): Promise<KeyObject> {
  return parsePublicKey(await readKeyText(spec), spec);
}
