/**
 * A suite of a Debian archive, trusted the way apt trusts it: `dists/<suite>/InRelease` verified with
 * `gpgv` against the distribution's keyring (the system's, from debian-archive-keyring), the Release
 * text taken from what gpgv says was signed (never from the file around it), its suite and
 * Valid-Until checked; then `<component>/binary-<arch>/Packages.xz` (or .gz) fetched by the SHA-256
 * the Release lists (by-hash when the archive offers it, so an archive updated meanwhile still
 * serves the bytes asked for), verified while it is written into kiln's store, where later runs find
 * it by that digest; and read as a stream into a PackageIndex.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { ioError, KilnError } from '../errors.js';
import { type OciLayout, writeFileAtomic } from '../store/layout.js';
import { field, parseStanzas, readStanzas, type Stanza } from './control.js';
import { type Compression, decompress } from './decompress.js';
import type { Mirror } from './mirror.js';
import { type IndexPackage, PackageIndex } from './resolve.js';

/** The keyring apt uses for Debian (package debian-archive-keyring). */
export const DEBIAN_KEYRING = '/usr/share/keyrings/debian-archive-keyring.gpg';

/** A verified Release file: what it says about the suite, and the files it lists by SHA-256. */
export interface Release {
  suite?: string;
  codename?: string;
  date?: string;
  validUntil?: string;
  architectures: string[];
  components: string[];
  acquireByHash: boolean;
  /** Path (from `dists/<suite>/`) → SHA-256 and size. */
  files: Map<string, { sha256: string; size: number }>;
}

/**
 * Verifies a clear-signed InRelease with gpgv and the keyring: at least one good signature by one of
 * its keys, and no bad one. Returns the signed text. E_VERIFY_FAILED names `what` and says why.
 */
export async function verifyInRelease(bytes: Buffer, keyring: string, what: string): Promise<string> {
  await fs.access(keyring).catch((err) => {
    throw new KilnError('E_NOT_FOUND', `the keyring ${keyring} is not there: kiln can't verify ${what}`, {
      cause: err,
      hint: 'apt-get install debian-archive-keyring (Ubuntu: ubuntu-keyring), or name one with --keyring FILE',
    });
  });
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-gpgv-'));
  try {
    const input = path.join(dir, 'InRelease');
    const output = path.join(dir, 'Release');
    await fs.writeFile(input, bytes);
    const r = await runGpgv(['--keyring', keyring, '--status-fd', '1', '--output', output, input]);
    const status = r.stdout.split('\n').filter((l) => l.startsWith('[GNUPG:] '));
    const has = (tag: string) =>
      status.some((l) => l.startsWith(`[GNUPG:] ${tag} `) || l === `[GNUPG:] ${tag}`);
    const detail = r.stderr
      .trim()
      .split('\n')
      .filter((l) => /BAD|bad|error|NO_PUBKEY|no public key|not/i.test(l))[0];
    if (has('BADSIG') || !has('GOODSIG') || !has('VALIDSIG'))
      throw new KilnError(
        'E_VERIFY_FAILED',
        `${what}: the signature does not verify with ${keyring}${detail ? ` (${detail.replace(/^gpgv: /, '')})` : ''}`,
        {
          hint: has('BADSIG')
            ? 'the file was changed after it was signed, or a proxy altered it: try again, or another --mirror'
            : "no good signature by a key of the keyring: is the keyring the distribution's (--keyring), and the mirror the one meant?",
        },
      );
    return await fs.readFile(output, 'utf8');
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

function runGpgv(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('gpgv', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    child.once('error', (err) =>
      reject(
        (err as NodeJS.ErrnoException).code === 'ENOENT'
          ? new KilnError('E_UNSUPPORTED', 'gpgv is not installed: kiln verifies Release files with it', {
              hint: 'apt-get install gpgv',
              cause: err,
            })
          : ioError(err, 'gpgv'),
      ),
    );
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Parses the signed Release text; `what` names it in errors. */
export async function parseRelease(text: string, what: string): Promise<Release> {
  const [stanza] = await parseStanzas(text, what);
  if (!stanza)
    throw new KilnError('E_BAD_ARCHIVE', `${what} is empty`, {
      hint: 'the mirror serves an empty Release for the suite: check --mirror and --suite',
    });
  const files = new Map<string, { sha256: string; size: number }>();
  for (const line of (field(stanza, 'SHA256') ?? '').split('\n')) {
    const m = /^\s*([0-9a-f]{64})\s+(\d+)\s+(\S+)\s*$/.exec(line);
    if (m) files.set(m[3]!, { sha256: m[1]!, size: Number(m[2]) });
  }
  const list = (name: string) => (field(stanza, name) ?? '').split(/\s+/).filter((s) => s !== '');
  const release: Release = {
    architectures: list('Architectures'),
    components: list('Components'),
    acquireByHash: (field(stanza, 'Acquire-By-Hash') ?? '').toLowerCase() === 'yes',
    files,
  };
  const set = (key: 'suite' | 'codename' | 'date' | 'validUntil', name: string) => {
    const v = field(stanza, name);
    if (v !== undefined) release[key] = v;
  };
  set('suite', 'Suite');
  set('codename', 'Codename');
  set('date', 'Date');
  set('validUntil', 'Valid-Until');
  return release;
}

/** Checks a Release against what was asked: the suite, the architecture and components, its validity in time. */
export function checkRelease(
  release: Release,
  asked: { suite: string; architecture: string; components: string[] },
  what: string,
  now = Date.now(),
): void {
  if (release.suite !== asked.suite && release.codename !== asked.suite)
    throw new KilnError(
      'E_VERIFY_FAILED',
      `${what} is for ${release.codename ?? release.suite ?? 'an unnamed suite'}, not ${asked.suite}`,
      { hint: 'the mirror serves another suite under that name: a misconfigured mirror, or a replayed file' },
    );
  if (release.validUntil !== undefined) {
    const until = Date.parse(release.validUntil);
    if (!Number.isNaN(until) && until < now)
      throw new KilnError('E_VERIFY_FAILED', `${what} expired on ${release.validUntil}`, {
        hint: 'the mirror is stale (or the file replayed): try another --mirror',
      });
  }
  if (release.architectures.length > 0 && !release.architectures.includes(asked.architecture))
    throw new KilnError('E_NOT_FOUND', `${asked.suite} has no architecture ${asked.architecture}`, {
      hint: `it has ${release.architectures.filter((a) => a !== 'all').join(', ')}`,
    });
  for (const c of asked.components)
    if (release.components.length > 0 && !release.components.includes(c))
      throw new KilnError('E_NOT_FOUND', `${asked.suite} has no component ${c}`, {
        hint: `it has ${release.components.join(', ')}`,
      });
}

/** Where a Packages index is, as the Release lists it. */
export interface IndexFile {
  /** Path from the archive root (by-hash when offered). */
  path: string;
  /** As the Release names it: `main/binary-amd64/Packages.xz`. */
  name: string;
  sha256: string;
  size: number;
  compression: Compression;
}

/** The Packages index of one component and architecture: xz, else gzip, else plain. */
export function packagesFile(
  release: Release,
  suite: string,
  component: string,
  architecture: string,
): IndexFile {
  const base = `${component}/binary-${architecture}/Packages`;
  for (const [suffix, compression] of [
    ['.xz', 'xz'],
    ['.gz', 'gzip'],
    ['', 'none'],
  ] as const) {
    const listed = release.files.get(`${base}${suffix}`);
    if (!listed) continue;
    const byHash = `${component}/binary-${architecture}/by-hash/SHA256/${listed.sha256}`;
    return {
      path: `dists/${suite}/${release.acquireByHash ? byHash : `${base}${suffix}`}`,
      name: `${base}${suffix}`,
      ...listed,
      compression,
    };
  }
  throw new KilnError('E_NOT_FOUND', `the Release of ${suite} lists no ${base} index`, {
    hint: 'check --suite, --arch and --component',
  });
}

/** The fields resolution and download need, lowercased; the rest of each stanza is not kept. */
const INDEX_FIELDS = new Set([
  'package',
  'version',
  'architecture',
  'filename',
  'size',
  'sha256',
  'depends',
  'pre-depends',
  'provides',
  'priority',
  'essential',
  'multi-arch',
]);

/** A Packages stanza as an IndexPackage; undefined for one without the fields a download needs. */
export function indexPackage(stanza: Stanza): IndexPackage | undefined {
  const get = (name: string) => field(stanza, name);
  const name = get('Package');
  const version = get('Version');
  const architecture = get('Architecture');
  const filename = get('Filename');
  const size = get('Size');
  const sha256 = get('SHA256');
  if (!name || !version || !architecture || !filename || !size || !sha256 || !/^[0-9a-f]{64}$/.test(sha256))
    return undefined;
  const p: IndexPackage = { name, version, architecture, filename, size: Number(size), sha256 };
  const depends = get('Depends');
  if (depends) p.depends = depends;
  const pre = get('Pre-Depends');
  if (pre) p.preDepends = pre;
  const provides = get('Provides');
  if (provides) p.provides = provides;
  const priority = get('Priority');
  if (priority) p.priority = priority;
  if ((get('Essential') ?? '').toLowerCase() === 'yes') p.essential = true;
  const ma = get('Multi-Arch');
  if (ma) p.multiArch = ma;
  return p;
}

/** Options of `loadIndex`: the suite, architecture, components and keyring. */
export interface LoadIndexOptions {
  suite: string;
  architecture: string;
  components: string[];
  keyring: string;
  store: OciLayout;
  /** Told when an index is downloaded rather than found in the store. */
  onFetch?: (file: IndexFile) => void;
}

/** The verified package index of a suite, from `mirror` (Packages files cached in the store by digest). */
export async function loadIndex(mirror: Mirror, options: LoadIndexOptions): Promise<PackageIndex> {
  const { suite, architecture, components } = options;
  const what = `${mirror.name}/dists/${suite}/InRelease`;
  const signed = await mirror.fetchSmall(`dists/${suite}/InRelease`, `the InRelease of ${suite}`);
  const release = await parseRelease(await verifyInRelease(signed, options.keyring, what), what);
  checkRelease(release, { suite, architecture, components }, what);
  const packages: IndexPackage[] = [];
  for (const component of components) {
    const file = packagesFile(release, suite, component, architecture);
    const desc = `${suite} ${file.name}`;
    const parsed = await readParsed(options.store, file.sha256);
    if (parsed) {
      packages.push(...parsed);
      continue;
    }
    const got = await mirror.download(file.path, file, options.store, desc);
    if (got.fetched) options.onFetch?.(file);
    const stream = options.store.openBlob(got.digest);
    const read: IndexPackage[] = [];
    try {
      for await (const stanza of readStanzas(
        decompress(stream, file.compression, desc),
        desc,
        INDEX_FIELDS,
      )) {
        const p = indexPackage(stanza);
        if (p && (p.architecture === architecture || p.architecture === 'all')) read.push(p);
      }
    } finally {
      stream.destroy();
    }
    await writeParsed(options.store, file.sha256, read);
    packages.push(...read);
  }
  return new PackageIndex(packages, `${suite} ${components.join(' ')} (${architecture})`);
}

/**
 * A Packages file as read, kept beside the store's blobs under the file's SHA-256 (`debian/indexes/`):
 * reading 50 MB of deb822 takes seconds, the JSON a tenth of that. A record that can't be read is a
 * miss; one that can't be written only costs the next run the parse.
 */
const PARSED_FORMAT = 1;

function parsedPath(store: OciLayout, sha256: string): string {
  return path.join(store.dir, 'debian', 'indexes', `${sha256}.json`);
}

async function readParsed(store: OciLayout, sha256: string): Promise<IndexPackage[] | undefined> {
  try {
    const data = JSON.parse(await fs.readFile(parsedPath(store, sha256), 'utf8')) as {
      format?: number;
      packages?: IndexPackage[];
    };
    return data.format === PARSED_FORMAT && Array.isArray(data.packages) ? data.packages : undefined;
  } catch {
    return undefined;
  }
}

async function writeParsed(store: OciLayout, sha256: string, packages: IndexPackage[]): Promise<void> {
  const file = parsedPath(store, sha256);
  try {
    await fs.mkdir(path.dirname(file), { recursive: true });
    await writeFileAtomic(file, JSON.stringify({ format: PARSED_FORMAT, packages }));
  } catch {
    // an optimisation only
  }
}
