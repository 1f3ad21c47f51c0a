/**
 * Packages into layers, without dpkg, root or maintainer scripts.
 *
 * A package layer holds the files of its packages' `data.tar` (regular files, symlinks, hard links,
 * device nodes) and dpkg's record of each package under `var/lib/dpkg/info/` (`.list`, `.md5sums`,
 * `.conffiles`, the maintainer scripts), streamed from the .deb straight into the layer: nothing of
 * a package is held in memory but its control members. Directories are left out of package layers:
 * the top layer makes every directory once, with the owner and mode of the first package (in install
 * order) that ships it, as dpkg keeps a directory's metadata when a later package ships it again. So
 * a package layer depends on its .debs alone (and the mtime): the same package is the same layer, in
 * every image, and registries and runtimes keep one copy.
 *
 * Entries keep the modes (setuid, sticky) and numeric owners of the package (Debian policy lets a
 * .deb own files only by the static ids of base-passwd); times are kiln's (SOURCE_DATE_EPOCH, else 0).
 *
 * merged /usr: as debootstrap does for bookworm, `/bin`, `/sbin`, `/lib` (and per architecture
 * `/lib64`, `/lib32`, `/libx32`...) are symlinks into `/usr`, made in the top layer; what packages
 * ship under them is written under `/usr` (dpkg would write through the symlinks to the same place),
 * and a package's own symlink for one of them (later base-files do ship them) is left to the top layer.
 */
import { createHash } from 'node:crypto';
import { KilnError } from '../errors.js';
import { compareBytes, type LayerEntry, layerPath } from '../layer/entries.js';
import { END_OF_ARCHIVE, encodeHeader, padding } from '../layer/tar-header.js';
import { type WrittenLayer, writeLayer, writeTarLayer } from '../layer/write-layer.js';
import type { OciLayout } from '../store/layout.js';
import { type Alternative, alternativesAdminFile, parseAlternatives } from './alternatives.js';
import { field, formatStanza, type Stanza } from './control.js';
import { arMembers, DEB_HINT, type DebEntry, debPath, debTarEntries, readControl } from './deb.js';
import { compressionOf, decompress } from './decompress.js';

/** Directories a merged-/usr system links into /usr, by Debian architecture (debootstrap's setup_merged_usr). */
const MERGED_EXTRA: Record<string, string[]> = {
  amd64: ['lib32', 'lib64', 'libx32'],
  i386: ['lib64', 'libx32'],
  mips: ['lib32', 'lib64'],
  mipsel: ['lib32', 'lib64'],
  mips64el: ['lib32', 'lib64', 'libo32'],
  loong64: ['lib32', 'lib64'],
  powerpc: ['lib64'],
  ppc64: ['lib32', 'lib64'],
  ppc64el: ['lib64'],
  s390x: ['lib32'],
  sparc64: ['lib32', 'lib64'],
  x32: ['lib32', 'lib64', 'libx32'],
};

/** The top-level directories that are symlinks into /usr on a merged-/usr system of `architecture`. */
export function mergedUsrDirs(architecture: string): string[] {
  return ['bin', 'sbin', 'lib', ...(MERGED_EXTRA[architecture] ?? [])];
}

/** `bin/sh` → `usr/bin/sh` when `bin` is merged; other paths as they are. */
export function usrMergedPath(p: string, merged: readonly string[]): string {
  const slash = p.indexOf('/');
  const top = slash === -1 ? p : p.slice(0, slash);
  return merged.includes(top) ? `usr/${p}` : p;
}

/** A directory a package ships, as the top layer makes it. */
export interface PackageDir {
  path: string;
  mode: number;
  uid: number;
  gid: number;
}

/** What a package put into its layer, kept for the top layer (dpkg's status) and the result. */
export interface UnpackedPackage {
  name: string;
  version: string;
  architecture: string;
  /** The control file of the .deb, as dpkg records it in its status. */
  control: [string, string][];
  /** Each conffile with the MD5 of its content, as `Conffiles:` lists them. */
  conffiles: [string, string][];
  /** The directories it ships (merged-/usr paths), in archive order. */
  dirs: PackageDir[];
  /** Maintainer scripts and triggers its control.tar holds, none of which ran. */
  scripts: string[];
  /** Small files kept for effects kiln does in place of a script (base-passwd's master files). */
  captured: Record<string, string>;
  /** Its postinst's update-alternatives calls whose path it ships (slaves likewise), for the top layer. */
  alternatives: Alternative[];
  /** Entries left out, and why. */
  skipped: { path: string; reason: string }[];
}

/** Control members dpkg runs (or reads for triggers); listed as skipped when present. */
const SCRIPTS = ['preinst', 'postinst', 'prerm', 'postrm', 'config', 'triggers'];
const EXECUTABLE_INFO = new Set(['preinst', 'postinst', 'prerm', 'postrm', 'config']);
/** Files kiln reads to do a script's effect (see finalEntries). */
const CAPTURE = new Set([
  'usr/share/base-passwd/passwd.master',
  'usr/share/base-passwd/group.master',
  ...['dot.profile', 'dot.bashrc', 'profile', 'motd', 'info.dir'].map((f) => `usr/share/base-files/${f}`),
]);
const MAX_CAPTURE = 1024 * 1024;

/** One .deb to unpack into a layer: which package it is, and its bytes. */
export interface DebInput {
  /** `busybox-static 1:1.35.0-4+deb12u1+b1`, for messages. */
  what: string;
  open: () => AsyncIterable<Uint8Array> | Iterable<Uint8Array>;
}

/** Options of a package layer: the entries' mtime and the merged-/usr directories. */
export interface PackageLayerOptions {
  mtime: number;
  merged: readonly string[];
}

/** The info file prefix dpkg uses: `name` or, for Multi-Arch: same packages, `name:arch`. */
export function infoName(control: Stanza): string {
  const name = field(control, 'Package')!;
  const ma = (field(control, 'Multi-Arch') ?? '').toLowerCase();
  return ma === 'same' ? `${name}:${field(control, 'Architecture')}` : name;
}

/** Writes the packages `debs` as one layer into the store; returns the layer and what each package put there. */
export async function writePackageLayer(
  store: OciLayout,
  debs: DebInput[],
  options: PackageLayerOptions,
): Promise<{ layer: WrittenLayer; packages: UnpackedPackage[] }> {
  const packages: UnpackedPackage[] = [];
  const layer = await writeTarLayer(store, packagesTar(debs, options, packages));
  return { layer, packages };
}

async function* packagesTar(
  debs: DebInput[],
  options: PackageLayerOptions,
  out: UnpackedPackage[],
): AsyncGenerator<Uint8Array> {
  for (const deb of debs) yield* packageTar(deb, options, out);
  yield END_OF_ARCHIVE;
}

async function* packageTar(
  deb: DebInput,
  options: PackageLayerOptions,
  out: UnpackedPackage[],
): AsyncGenerator<Uint8Array> {
  const { mtime, merged } = options;
  let control: Awaited<ReturnType<typeof readControl>> | undefined;
  let sawData = false;
  let version: string | undefined;
  for await (const member of arMembers(deb.open(), deb.what)) {
    if (member.name === 'debian-binary') {
      let text = '';
      for await (const c of member.content) text += Buffer.from(c).toString('latin1');
      version = text.trim();
      if (!/^2\.\d+$/.test(version))
        throw new KilnError('E_UNSUPPORTED', `${deb.what} is a .deb of format ${version}, not 2.x`, {
          hint: DEB_HINT,
        });
      continue;
    }
    if (member.name.startsWith('control.tar')) {
      control = await readControl(member, deb.what);
      continue;
    }
    if (!member.name.startsWith('data.tar')) continue; // _gpgorigin and other extensions
    if (!control || version === undefined)
      throw new KilnError(
        'E_BAD_ARCHIVE',
        `${deb.what}: data.tar comes before debian-binary and control.tar`,
        { hint: DEB_HINT },
      );
    const compression = compressionOf(member.name);
    if (compression === undefined)
      throw new KilnError(
        'E_UNSUPPORTED',
        `${deb.what}: ${member.name} is compressed in a way kiln does not read`,
        {
          hint: 'kiln reads data members that are plain, gzip, xz or zstd',
        },
      );
    sawData = true;
    const conffiles = new Set(
      (control.files.get('conffiles')?.toString('utf8') ?? '')
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => l.startsWith('/'))
        .map((l) => l.replace(/^remove-on-upgrade\s+/, '')),
    );
    const pkg: UnpackedPackage = {
      name: field(control.control, 'Package') ?? '',
      version: field(control.control, 'Version') ?? '',
      architecture: field(control.control, 'Architecture') ?? '',
      control: control.control,
      conffiles: [],
      dirs: [],
      scripts: SCRIPTS.filter((s) => control!.files.has(s)),
      captured: {},
      alternatives: [],
      skipped: [],
    };
    const alternatives = parseAlternatives(control.files.get('postinst')?.toString('utf8') ?? '');
    const canonical = (abs: string) => usrMergedPath(debPath(abs), merged);
    const watched = new Set(
      alternatives.flatMap((a) => [a.path, ...a.slaves.map((s) => s.path)]).map(canonical),
    );
    const shipped = new Set<string>();
    const list: string[] = ['/.'];
    const where = `${deb.what} ${member.name}`;
    for await (const { entry, content } of debTarEntries(
      decompress(member.content, compression, where),
      where,
    )) {
      if (entry.path === '') continue;
      for (const p of [entry.path, ...(entry.type === 'hardlink' ? [entry.linkname ?? ''] : [])])
        if (layerPath(p) !== p || p === '')
          throw new KilnError('E_UNSAFE_PATH', `${where}: '${p}' is not a plain path inside the root`, {
            hint: 'a package that writes outside its root is refused',
          });
      list.push(`/${entry.path}`);
      const target = usrMergedPath(entry.path, merged);
      if (entry.type === 'dir') {
        pkg.dirs.push({ path: target, mode: entry.mode & 0o7777, uid: entry.uid, gid: entry.gid });
        continue;
      }
      if (entry.type === 'other') {
        pkg.skipped.push({ path: entry.path, reason: 'an entry type kiln does not write' });
        continue;
      }
      if (entry.type === 'symlink' && merged.includes(entry.path)) {
        // A package's own merged-/usr link (bin -> usr/bin): the top layer makes it.
        pkg.skipped.push({ path: entry.path, reason: 'merged-/usr symlink: made in the top layer' });
        continue;
      }
      if (watched.has(target)) shipped.add(target);
      yield header(entry, target, mtime, merged);
      if (entry.type !== 'file') continue;
      const md5 = conffiles.has(`/${entry.path}`) ? createHash('md5') : undefined;
      const capture = CAPTURE.has(target) && entry.size <= MAX_CAPTURE ? ([] as Buffer[]) : undefined;
      let size = 0;
      for await (const chunk of content) {
        size += chunk.byteLength;
        md5?.update(chunk);
        capture?.push(chunk);
        yield chunk;
      }
      if (size !== entry.size)
        throw new KilnError('E_BAD_ARCHIVE', `${where}: ${entry.path} is cut short`, { hint: DEB_HINT });
      const pad = padding(size);
      if (pad) yield Buffer.alloc(pad);
      if (md5) pkg.conffiles.push([`/${entry.path}`, md5.digest('hex')]);
      if (capture) pkg.captured[target] = Buffer.concat(capture).toString('utf8');
    }
    // dpkg's record of the package: its file list and the control members it keeps.
    const info = infoName(control.control);
    const infoFiles: [string, Buffer, number][] = [
      [`${info}.list`, Buffer.from(`${list.join('\n')}\n`), 0o644],
    ];
    for (const [name, bytes] of [...control.files].sort(([a], [b]) => compareBytes(a, b)))
      infoFiles.push([`${info}.${name}`, bytes, EXECUTABLE_INFO.has(name) ? 0o755 : 0o644]);
    for (const [name, bytes, mode] of infoFiles) {
      yield encodeHeader({
        path: `var/lib/dpkg/info/${name}`,
        type: 'file',
        mode,
        uid: 0,
        gid: 0,
        size: bytes.length,
        mtime,
      });
      yield bytes;
      const pad = padding(bytes.length);
      if (pad) yield Buffer.alloc(pad);
    }
    pkg.alternatives = alternatives
      .filter((a) => shipped.has(canonical(a.path)))
      .map((a) => ({ ...a, slaves: a.slaves.filter((sl) => shipped.has(canonical(sl.path))) }));
    // Conffiles keep the order the package lists them in.
    const order = [...conffiles];
    pkg.conffiles.sort(([a], [b]) => order.indexOf(a) - order.indexOf(b));
    out.push(pkg);
  }
  if (!sawData)
    throw new KilnError('E_BAD_ARCHIVE', `${deb.what} has no data.tar member`, { hint: DEB_HINT });
}

function header(entry: DebEntry, target: string, mtime: number, merged: readonly string[]): Buffer {
  return encodeHeader({
    path: target,
    type: entry.type as Exclude<DebEntry['type'], 'dir' | 'other'>,
    mode: entry.type === 'symlink' ? 0o777 : entry.mode & 0o7777,
    uid: entry.uid,
    gid: entry.gid,
    size: entry.type === 'file' ? entry.size : 0,
    mtime,
    ...(entry.linkname !== undefined
      ? { linkname: entry.type === 'hardlink' ? usrMergedPath(entry.linkname, merged) : entry.linkname }
      : {}),
    ...(entry.devmajor !== undefined ? { devmajor: entry.devmajor, devminor: entry.devminor ?? 0 } : {}),
  });
}

/** dpkg's order of the fields it knows in a status stanza; other fields follow in the package's order. */
const STATUS_ORDER = [
  'package',
  'essential',
  'status',
  'priority',
  'section',
  'installed-size',
  'origin',
  'maintainer',
  'bugs',
  'architecture',
  'multi-arch',
  'source',
  'version',
  'config-version',
  'replaces',
  'provides',
  'depends',
  'pre-depends',
  'recommends',
  'suggests',
  'breaks',
  'conflicts',
  'enhances',
  'conffiles',
  'description',
  'triggers-pending',
  'triggers-awaited',
];

/** A package's stanza in `/var/lib/dpkg/status`: its control fields, `Status: install ok installed`, its Conffiles. */
export function statusStanza(pkg: UnpackedPackage): string {
  const fields: Stanza = pkg.control.filter(([k]) => !['status', 'conffiles'].includes(k.toLowerCase()));
  fields.push(['Status', 'install ok installed']);
  if (pkg.conffiles.length > 0)
    fields.push(['Conffiles', `\n${pkg.conffiles.map(([p, md5]) => `${p} ${md5}`).join('\n')}`]);
  const rank = (k: string) => {
    const i = STATUS_ORDER.indexOf(k.toLowerCase());
    return i === -1 ? STATUS_ORDER.length : i;
  };
  const ordered = fields
    .map((f, i) => ({ f, i }))
    .sort((a, b) => rank(a.f[0]) - rank(b.f[0]) || a.i - b.i)
    .map(({ f }) => f);
  return formatStanza(ordered);
}

/** Options of the top layer: the architecture, mtime, merged-/usr directories. */
export interface TopLayerOptions {
  mtime: number;
  merged: readonly string[];
}

/** What kiln did in place of a maintainer script. */
export interface ScriptEffect {
  package: string;
  /** What was made: `/etc/passwd`. */
  path: string;
  /** What the script would have done. */
  as: string;
}

/**
 * The top layer's entries: every directory of every package (the first package's owner and mode),
 * the merged-/usr symlinks, dpkg's database (`status` with a stanza per package, sorted by name as
 * dpkg writes it; `available`, `info/`, `updates/`), and the effects kiln does in place of scripts:
 * base-passwd's postinst (/etc/passwd and /etc/group from its master files; no package ships them)
 * and update-alternatives (alternatives.ts). Sorted by path.
 */
export function topLayerEntries(
  packages: UnpackedPackage[],
  options: TopLayerOptions,
): { entries: LayerEntry[]; effects: ScriptEffect[] } {
  const byPath = new Map<string, LayerEntry>();
  const dir = (path: string, mode = 0o755, uid = 0, gid = 0) => {
    const parts = path.split('/');
    for (let i = 1; i < parts.length; i++) {
      const parent = parts.slice(0, i).join('/');
      if (!byPath.has(parent)) byPath.set(parent, { path: parent, type: 'dir', mode: 0o755, uid: 0, gid: 0 });
    }
    if (!byPath.has(path)) byPath.set(path, { path, type: 'dir', mode, uid, gid });
  };
  for (const m of options.merged) {
    byPath.set(m, { path: m, type: 'symlink', linkname: `usr/${m}` });
    dir(`usr/${m}`);
  }
  for (const pkg of packages)
    for (const d of pkg.dirs) if (!options.merged.includes(d.path)) dir(d.path, d.mode, d.uid, d.gid);
  for (const d of [
    'var/lib/dpkg/info',
    'var/lib/dpkg/updates',
    'var/lib/dpkg/alternatives',
    'var/lib/dpkg/triggers',
  ])
    dir(d);
  const status = [...packages]
    .sort((a, b) => compareBytes(a.name, b.name) || compareBytes(a.architecture, b.architecture))
    .map(statusStanza)
    .join('\n');
  const file = (path: string, text: string, mode = 0o644) =>
    byPath.set(path, { path, type: 'file', mode, uid: 0, gid: 0, content: Buffer.from(text, 'utf8') });
  file('var/lib/dpkg/status', status);
  file('var/lib/dpkg/available', '');
  // The info database's format: 1 names Multi-Arch: same packages' files `name:arch.*` (dpkg reads 0 without it).
  file('var/lib/dpkg/info/format', '1\n');

  const effects: ScriptEffect[] = [];
  const basePasswd = packages.find((p) => p.name === 'base-passwd');
  if (basePasswd)
    for (const [target, master] of [
      ['etc/passwd', 'usr/share/base-passwd/passwd.master'],
      ['etc/group', 'usr/share/base-passwd/group.master'],
    ] as const) {
      const text = basePasswd.captured[master];
      if (text === undefined) continue;
      dir('etc');
      file(target, text);
      effects.push({ package: 'base-passwd', path: `/${target}`, as: `postinst copies /${master}` });
    }
  const baseFiles = packages.find((p) => p.name === 'base-files');
  if (baseFiles) effects.push(...baseFilesEffects(baseFiles, { byPath, dir, file }));
  // update-alternatives: per name, the highest priority (the first package on a tie).
  const groups = new Map<string, { pkg: UnpackedPackage; alt: Alternative }[]>();
  for (const pkg of packages)
    for (const alt of pkg.alternatives ?? [])
      groups.set(alt.name, [...(groups.get(alt.name) ?? []), { pkg, alt }]);
  const link = (abs: string, target: string) => {
    const p = usrMergedPath(debPath(abs), options.merged);
    const parent = p.slice(0, p.lastIndexOf('/'));
    if (parent) dir(parent);
    byPath.set(p, { path: p, type: 'symlink', linkname: target });
  };
  for (const [name, group] of [...groups].sort(([a], [b]) => compareBytes(a, b))) {
    const best = group.reduce((a, b) => (b.alt.priority > a.alt.priority ? b : a));
    for (const l of [best.alt, ...best.alt.slaves]) {
      link(l.link, `/etc/alternatives/${l.name}`);
      link(`/etc/alternatives/${l.name}`, l.path);
    }
    dir('var/lib/dpkg/alternatives');
    file(`var/lib/dpkg/alternatives/${name}`, alternativesAdminFile(group.map((g) => g.alt)));
    effects.push({
      package: best.pkg.name,
      path: best.alt.link,
      as: `update-alternatives --install ${best.alt.link} ${name} ${best.alt.path} ${best.alt.priority}`,
    });
  }
  const entries = [...byPath.values()].sort((a, b) => compareBytes(a.path, b.path));
  return { entries, effects };
}

/** The top layer being made: its entries by path, and how directories and files are added to it. */
interface TopLayer {
  byPath: Map<string, LayerEntry>;
  dir: (path: string, mode?: number, uid?: number, gid?: number) => void;
  file: (path: string, text: string, mode?: number) => void;
}

/** The `utmp` group of base-passwd's static ids, which owns the login records. */
const UTMP_GID = 43;
const MAIL_GID = 8;

/**
 * What base-files' postinst does on a first install (`configure` with no old version), as files:
 * the default /etc/profile, /etc/motd and root's dot files copied from /usr/share/base-files, the
 * directories it makes (/opt, /srv, /mnt, /media, /var/mail 2775 root:mail, /run/lock 1777,
 * /usr/local/*), /var/run and /var/lock moved to links into /run, /var/spool/mail, /usr/local/man
 * and /etc/dpkg/origins/default as links, the empty login records in /var/log, and the info dir.
 */
function baseFilesEffects(pkg: UnpackedPackage, top: TopLayer): ScriptEffect[] {
  const effects: ScriptEffect[] = [];
  const made = (path: string, as: string) => effects.push({ package: 'base-files', path: `/${path}`, as });
  const link = (path: string, target: string) => {
    top.byPath.set(path, { path, type: 'symlink', linkname: target });
  };
  for (const [from, to] of [
    ['dot.profile', 'root/.profile'],
    ['dot.bashrc', 'root/.bashrc'],
    ['profile', 'etc/profile'],
    ['motd', 'etc/motd'],
  ] as const) {
    const text = pkg.captured[`usr/share/base-files/${from}`];
    if (text === undefined) continue;
    top.file(to, text);
    made(to, `postinst copies /usr/share/base-files/${from}`);
  }
  if (top.byPath.has('etc/dpkg/origins')) {
    link('etc/dpkg/origins/default', 'debian');
    made('etc/dpkg/origins/default', 'postinst links it to debian');
  }
  for (const d of ['mnt', 'srv', 'opt', 'etc/opt', 'var/opt', 'media']) top.dir(d);
  top.dir('var/mail', 0o2775, 0, MAIL_GID);
  top.dir('var/spool');
  link('var/spool/mail', '../mail');
  top.dir('run');
  top.dir('run/lock', 0o1777);
  link('var/run', '/run');
  link('var/lock', '/run/lock');
  made('var/run', 'postinst migrates /var/run and /var/lock to links into /run');
  for (const d of ['share', 'share/man', 'bin', 'games', 'lib', 'include', 'sbin', 'src', 'etc'])
    top.dir(`usr/local/${d}`);
  link('usr/local/man', 'share/man');
  for (const [log, mode] of [
    ['wtmp', 0o664],
    ['btmp', 0o660],
    ['lastlog', 0o664],
  ] as const) {
    top.dir('var/log');
    top.byPath.set(`var/log/${log}`, {
      path: `var/log/${log}`,
      type: 'file',
      mode,
      uid: 0,
      gid: UTMP_GID,
      content: new Uint8Array(0),
    });
  }
  const infoDir = pkg.captured['usr/share/base-files/info.dir'];
  if (infoDir !== undefined && top.byPath.get('usr/share/info')?.type === 'dir')
    top.file('usr/share/info/dir', infoDir);
  return effects;
}

/** Writes the top layer (see topLayerEntries) into the store, modes kept as the packages set them. */
export async function writeTopLayer(
  store: OciLayout,
  packages: UnpackedPackage[],
  options: TopLayerOptions,
): Promise<{ layer: WrittenLayer; effects: ScriptEffect[] }> {
  const { entries, effects } = topLayerEntries(packages, options);
  const layer = await writeLayer(store, entries, { mtime: options.mtime, keepModes: true });
  return { layer, effects };
}
