/**
 * SPDX 2.3 JSON documents for images kiln builds: the image itself, the files kiln put in it, the
 * toolchain and base images, and the packages lock files name. Pure and deterministic: the same input
 * gives byte-identical JSON (everything is sorted, no clock, no randomness).
 */
import { createHash } from 'node:crypto';
import type { Platform } from '../oci/platform.js';
import type { Descriptor } from '../oci/types.js';

/** A file listed in an SBOM: path, sums and size. */
export interface SbomFile {
  /** Path in the image, relative, posix (`app.wasm`, `usr/bin/app`). */
  path: string;
  /** Lowercase hex. */
  sha256: string;
  size: number;
  /** Lowercase hex; with every file's SHA1 the image package gets SPDX's verification code. */
  sha1?: string;
}

/** A package listed in an SBOM (from a lock file). */
export interface SbomPackage {
  name: string;
  version?: string;
  purl?: string;
  /** The lock file it was read from, e.g. `Cargo.lock`. */
  source: string;
  /** Only needed to build (npm devDependencies): related as DEV_DEPENDENCY_OF the image. */
  dev?: boolean;
}

/** What an SBOM describes: a name, the subject image, its platform, files and packages. */
export interface SbomInput {
  /** The image's name (a repository, or kiln.yaml image.name). */
  name: string;
  /** The image manifest the SBOM describes. */
  subject: Descriptor;
  platform?: Platform;
  /** Files kiln put in the image (its own layers, not the base's). */
  files: SbomFile[];
  /** The toolchain image the artifact was compiled in. */
  toolchain?: { image: string; digest: string };
  /** The base image, for native images. */
  base?: { name: string; digest: string };
  /** Packages from lock files. */
  packages?: SbomPackage[];
  /** RFC 3339 time (SOURCE_DATE_EPOCH, or the epoch, for reproducible output). */
  created: string;
  /** `kiln-<version>`. */
  creatorTool?: string;
}

const NOASSERTION = 'NOASSERTION';

interface SpdxChecksum {
  algorithm: string;
  checksumValue: string;
}

interface SpdxPackage {
  name: string;
  SPDXID: string;
  versionInfo?: string;
  supplier?: string;
  downloadLocation: string;
  filesAnalyzed: boolean;
  packageVerificationCode?: { packageVerificationCodeValue: string };
  checksums?: SpdxChecksum[];
  licenseConcluded: string;
  licenseDeclared: string;
  copyrightText: string;
  comment?: string;
  externalRefs?: { referenceCategory: string; referenceType: string; referenceLocator: string }[];
  primaryPackagePurpose?: string;
}

interface SpdxFile {
  fileName: string;
  SPDXID: string;
  checksums: SpdxChecksum[];
  licenseConcluded: string;
  copyrightText: string;
  comment?: string;
}

interface SpdxRelationship {
  spdxElementId: string;
  relationshipType: string;
  relatedSpdxElement: string;
}

function relation(from: string, type: string, to: string): SpdxRelationship {
  return { spdxElementId: from, relationshipType: type, relatedSpdxElement: to };
}

/** The SPDX 2.3 document for `input`, as UTF-8 JSON (2-space indented, newline-terminated). */
export function spdxDocument(input: SbomInput): Buffer {
  const hex = input.subject.digest.slice(input.subject.digest.indexOf(':') + 1);
  const files = sortedFiles(input.files);
  const packages: SpdxPackage[] = [];
  const relationships: SpdxRelationship[] = [
    { spdxElementId: 'SPDXRef-DOCUMENT', relationshipType: 'DESCRIBES', relatedSpdxElement: 'SPDXRef-Image' },
  ];

  const image: SpdxPackage = {
    name: input.name,
    SPDXID: 'SPDXRef-Image',
    versionInfo: input.subject.digest,
    supplier: NOASSERTION,
    downloadLocation: NOASSERTION,
    filesAnalyzed: files.length > 0,
    checksums: [checksum(input.subject.digest)],
    licenseConcluded: NOASSERTION,
    licenseDeclared: NOASSERTION,
    copyrightText: NOASSERTION,
    externalRefs: [purlRef(ociPurl(input.name, input.subject.digest, input.platform))],
    primaryPackagePurpose: 'CONTAINER',
  };
  if (input.platform) image.comment = `platform ${platformString(input.platform)}`;
  // SPDX's verification code is over SHA1s; only possible when every file has one.
  if (files.length > 0 && files.every((f) => f.sha1))
    image.packageVerificationCode = { packageVerificationCodeValue: verificationCode(files) };
  packages.push(image);

  // Other images, each a package related to the image: the toolchain that built it, the base it is on.
  const related = [
    input.toolchain && {
      id: 'SPDXRef-Toolchain',
      name: input.toolchain.image,
      digest: input.toolchain.digest,
      relationship: relation('SPDXRef-Toolchain', 'BUILD_TOOL_OF', 'SPDXRef-Image'),
    },
    input.base && {
      id: 'SPDXRef-Base',
      ...input.base,
      relationship: relation('SPDXRef-Image', 'DESCENDANT_OF', 'SPDXRef-Base'),
    },
  ];
  for (const r of related) {
    if (!r) continue;
    packages.push(imagePackage(r.id, r.name, r.digest));
    relationships.push(r.relationship);
  }

  sortedPackages(input.packages ?? []).forEach((p, i) => {
    const id = `SPDXRef-Package-${i + 1}`;
    const pkg: SpdxPackage = {
      name: p.name,
      SPDXID: id,
      downloadLocation: NOASSERTION,
      filesAnalyzed: false,
      licenseConcluded: NOASSERTION,
      licenseDeclared: NOASSERTION,
      copyrightText: NOASSERTION,
      comment: `from ${p.source}`,
    };
    if (p.version !== undefined) pkg.versionInfo = p.version;
    if (p.purl) pkg.externalRefs = [purlRef(p.purl)];
    packages.push(pkg);
    relationships.push(
      p.dev
        ? { spdxElementId: id, relationshipType: 'DEV_DEPENDENCY_OF', relatedSpdxElement: 'SPDXRef-Image' }
        : { spdxElementId: 'SPDXRef-Image', relationshipType: 'DEPENDS_ON', relatedSpdxElement: id },
    );
  });

  const spdxFiles: SpdxFile[] = files.map((f, i) => {
    const sums: SpdxChecksum[] = [];
    if (f.sha1) sums.push({ algorithm: 'SHA1', checksumValue: f.sha1 });
    sums.push({ algorithm: 'SHA256', checksumValue: f.sha256 });
    const id = `SPDXRef-File-${i + 1}`;
    relationships.push({
      spdxElementId: 'SPDXRef-Image',
      relationshipType: 'CONTAINS',
      relatedSpdxElement: id,
    });
    return {
      fileName: `./${f.path}`,
      SPDXID: id,
      checksums: sums,
      licenseConcluded: NOASSERTION,
      copyrightText: NOASSERTION,
      comment: `size ${f.size}`,
    };
  });

  const doc = {
    spdxVersion: 'SPDX-2.3',
    dataLicense: 'CC0-1.0',
    SPDXID: 'SPDXRef-DOCUMENT',
    name: `${input.name}@${input.subject.digest}`,
    documentNamespace: `https://kiln.dev/spdx/${namespaceName(input.name)}/${hex}`,
    creationInfo: {
      created: input.created,
      creators: [`Tool: ${input.creatorTool ?? 'kiln'}`],
    },
    documentDescribes: ['SPDXRef-Image'],
    packages,
    files: spdxFiles,
    relationships,
  };
  return Buffer.from(`${JSON.stringify(doc, null, 2)}\n`, 'utf8');
}

function sortedFiles(files: SbomFile[]): SbomFile[] {
  const byPath = new Map<string, SbomFile>();
  for (const f of files) byPath.set(f.path.replace(/^(\.?\/)+/, ''), f);
  return [...byPath.entries()].sort(([a], [b]) => compare(a, b)).map(([path, f]) => ({ ...f, path }));
}

/** Sorted by purl (else source, name, version) and deduplicated on the same key. */
export function sortedPackages(packages: SbomPackage[]): SbomPackage[] {
  const key = (p: SbomPackage) => p.purl ?? `${p.source}\u0000${p.name}\u0000${p.version ?? ''}`;
  const seen = new Map<string, SbomPackage>();
  for (const p of packages) {
    const k = key(p);
    const had = seen.get(k);
    // A package needed at run time anywhere is not only a dev dependency.
    if (had) seen.set(k, { ...had, dev: had.dev === true && p.dev === true ? true : undefined });
    else seen.set(k, p);
  }
  return [...seen.entries()]
    .sort(([a], [b]) => compare(a, b))
    .map(([, p]) => {
      const out: SbomPackage = { name: p.name, source: p.source };
      if (p.version !== undefined) out.version = p.version;
      if (p.purl !== undefined) out.purl = p.purl;
      if (p.dev) out.dev = true;
      return out;
    });
}

/** Code-unit order: locale-independent, so every machine sorts alike. */
function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function checksum(digest: string): SpdxChecksum {
  const i = digest.indexOf(':');
  return { algorithm: digest.slice(0, i).toUpperCase(), checksumValue: digest.slice(i + 1) };
}

function purlRef(purl: string) {
  return { referenceCategory: 'PACKAGE-MANAGER', referenceType: 'purl', referenceLocator: purl };
}

function imagePackage(id: string, name: string, digest: string): SpdxPackage {
  return {
    name,
    SPDXID: id,
    versionInfo: digest,
    supplier: NOASSERTION,
    downloadLocation: NOASSERTION,
    filesAnalyzed: false,
    checksums: [checksum(digest)],
    licenseConcluded: NOASSERTION,
    licenseDeclared: NOASSERTION,
    copyrightText: NOASSERTION,
    externalRefs: [purlRef(ociPurl(name, digest))],
    primaryPackagePurpose: 'CONTAINER',
  };
}

function platformString(p: Platform): string {
  return `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ''}`;
}

/**
 * The purl of an OCI image (purl-spec `oci` type): the repository's last component, lowercased, as
 * the name; the digest as the version; the full repository as `repository_url`, the tag as `tag`.
 */
export function ociPurl(name: string, digest: string, platform?: Platform): string {
  // As written: no docker.io/library/ or :latest filled in, which would name another image.
  let repository = name.replace(/@.*$/, '');
  let tag: string | undefined;
  const colon = repository.lastIndexOf(':');
  if (colon > repository.lastIndexOf('/')) {
    tag = repository.slice(colon + 1);
    repository = repository.slice(0, colon);
  }
  const last = repository.slice(repository.lastIndexOf('/') + 1).toLowerCase();
  const qualifiers: [string, string][] = [];
  if (platform) qualifiers.push(['arch', platform.architecture], ['os', platform.os]);
  if (repository.includes('/')) qualifiers.push(['repository_url', repository.toLowerCase()]);
  if (tag) qualifiers.push(['tag', tag]);
  if (platform?.variant) qualifiers.push(['variant', platform.variant]);
  qualifiers.sort(([a], [b]) => compare(a, b));
  const q = qualifiers.map(([k, v]) => `${k}=${encodeQualifier(v)}`).join('&');
  return `pkg:oci/${encodeURIComponent(last)}@${encodeURIComponent(digest)}${q ? `?${q}` : ''}`;
}

function encodeQualifier(v: string): string {
  return encodeURIComponent(v).replace(/%2F/g, '/').replace(/%3A/g, ':');
}

/** A name safe in a URL path: the namespace must be a URI. */
function namespaceName(name: string): string {
  return name
    .split('/')
    .map((s) => encodeURIComponent(s))
    .join('/');
}

/** SPDX 2.3 §7.9: SHA1 over the sorted, concatenated SHA1s of the package's files. */
function verificationCode(files: SbomFile[]): string {
  const sums = files.map((f) => f.sha1 as string).sort();
  return createHash('sha1').update(sums.join('')).digest('hex');
}
