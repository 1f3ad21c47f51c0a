/**
 * Throw-away certificates for tests served over TLS (a registry, a Docker engine): a test CA and
 * certificates it signs, EC P-256 keys, made with openssl, valid for 7 days.
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { requireTool, runOk } from './tools.js';

const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

export interface TestCa {
  /** The CA certificate (PEM path). */
  ca: string;
  caKey: string;
  /** Where signCert() writes its requests and extension files. */
  dir: string;
  openssl: string;
}

/** A self-signed CA named `subject` (`/CN=…`): its certificate at `ca`, its key in `dir`. */
export async function makeCa(dir: string, ca: string, subject: string): Promise<TestCa> {
  const openssl = requireTool('openssl');
  if (openssl === undefined) throw new Error('openssl not found (apt-get install openssl)');
  const caKey = join(dir, 'ca-key.pem');
  await runOk(openssl, [
    ...['req', '-x509', ...EC_KEY, '-keyout', caKey, '-out', ca, '-days', '7', '-subj', subject],
    ...['-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'],
  ]);
  return { ca, caKey, dir, openssl };
}

/**
 * A key at `key` and a certificate at `cert` for `/CN=NAME`, signed by `ca`, with the extensions
 * `ext` (`subjectAltName=…`, `extendedKeyUsage=…`) and basicConstraints CA:FALSE.
 */
export async function signCert(
  ca: TestCa,
  name: string,
  key: string,
  cert: string,
  ext: string[],
): Promise<void> {
  const csr = join(ca.dir, `${name}.csr`);
  const extFile = join(ca.dir, `${name}.ext`);
  await runOk(ca.openssl, ['req', '-new', ...EC_KEY, '-keyout', key, '-out', csr, '-subj', `/CN=${name}`]);
  writeFileSync(extFile, [...ext, 'basicConstraints=critical,CA:FALSE', ''].join('\n'));
  const serial = `0x${randomBytes(8).toString('hex')}`; // no .srl file next to the CA
  await runOk(ca.openssl, [
    ...['x509', '-req', '-in', csr, '-CA', ca.ca, '-CAkey', ca.caKey, '-set_serial', serial],
    ...['-days', '7', '-extfile', extFile, '-out', cert],
  ]);
}

/** Extensions of a server certificate for 127.0.0.1 and localhost. */
export const SERVER_EXT = [
  'subjectAltName=IP:127.0.0.1,DNS:localhost',
  'keyUsage=critical,digitalSignature',
  'extendedKeyUsage=serverAuth',
];
