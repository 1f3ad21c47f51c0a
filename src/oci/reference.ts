/**
 * Image references in docker's grammar (github.com/distribution/reference):
 *   [registry/]path[:tag][@digest]
 * with docker's defaults: registry docker.io, `library/` for one-component paths, tag `latest`.
 */
import { KilnError } from '../errors.js';

/** A parsed image reference: registry, repository, tag, digest. */
export interface Reference {
  registry: string;
  repository: string;
  tag?: string;
  digest?: string;
}

export const DEFAULT_REGISTRY = 'docker.io';
export const DEFAULT_TAG = 'latest';
const NAME_MAX = 255;

// host: DNS-ish labels, IPv4, or a bracketed IPv6 literal; then an optional numeric port.
const HOST_RE =
  /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?$/;
const COMPONENT_RE = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG_RE = /^\w[\w.-]{0,127}$/;
// OCI image-spec digest grammar; the registered algorithms get their exact lengths below.
const DIGEST_RE = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;
const DIGEST_HEX_LENGTH: Record<string, number> = { sha256: 64, sha512: 128 };

function looksLikeHost(component: string): boolean {
  return component.includes('.') || component.includes(':') || component === 'localhost';
}

function fail(input: string, why: string, hint?: string): never {
  throw new KilnError(
    'E_BAD_REFERENCE',
    `invalid image reference ${JSON.stringify(input)}: ${why}`,
    hint === undefined ? {} : { hint },
  );
}

function checkDigest(input: string, digest: string): void {
  const q = JSON.stringify(digest);
  if (!DIGEST_RE.test(digest)) fail(input, `digest ${q} is not of the form algorithm:hex`);
  const [algorithm, hex] = digest.split(':') as [string, string];
  const length = DIGEST_HEX_LENGTH[algorithm];
  if (length !== undefined && (hex.length !== length || !/^[0-9a-f]+$/.test(hex))) {
    fail(input, `${algorithm} digest ${q} must be ${length} lowercase hex characters`);
  }
}

/** `start` is where `path` begins in `input`, so the hint can fix it in place. */
function checkPath(input: string, path: string, start: number): void {
  if (/[A-Z]/.test(path)) {
    // Registries and tags may hold capitals, so the hint lowercases only the repository.
    const fixed = input.slice(0, start) + path.toLowerCase() + input.slice(start + path.length);
    fail(input, 'repository names must be lowercase', `try ${JSON.stringify(fixed)}`);
  }
  const bad = /[^a-z0-9._/-]/.exec(path);
  if (bad) fail(input, `repository contains invalid character ${JSON.stringify(bad[0])}`);
  for (const component of path.split('/')) {
    if (!COMPONENT_RE.test(component)) {
      fail(
        input,
        `invalid repository path component ${JSON.stringify(component)}: use lowercase letters and digits ` +
          `separated by '.', '_', '__' or '-'`,
      );
    }
  }
}

/** Parses an image reference (`registry/repo:tag@digest`, with Docker Hub's defaults). */
export function parseReference(input: string): Reference {
  if (input.trim() === '') fail(input, 'the reference is empty');
  if (/\s/.test(input)) fail(input, 'references cannot contain whitespace');

  // Neither name nor tag may contain '@', so the first one starts the digest.
  const at = input.indexOf('@');
  const digest = at === -1 ? undefined : input.slice(at + 1);
  let name = at === -1 ? input : input.slice(0, at);
  if (digest !== undefined) checkDigest(input, digest);

  // A ':' after the last '/' starts the tag; earlier ones belong to the registry's port.
  let tag: string | undefined;
  const colon = name.indexOf(':', name.lastIndexOf('/') + 1);
  if (colon !== -1) {
    tag = name.slice(colon + 1);
    name = name.slice(0, colon);
    if (!TAG_RE.test(tag)) {
      fail(
        input,
        `invalid tag ${JSON.stringify(tag)}: tags are 1-128 letters, digits, '_', '.' or '-' and cannot start with '.' or '-'`,
      );
    }
  }

  if (name === '') fail(input, 'the repository name is missing');
  if (name.startsWith('/')) fail(input, "the name cannot start with '/'");
  if (name.endsWith('/')) fail(input, "the name cannot end with '/'");
  if (name.includes('//')) fail(input, "the name cannot contain '//'");

  // Docker's rule: the first component is a host only if it looks like one, so `ubuntu` and
  // `myuser/app` stay on Docker Hub while `ghcr.io/x` and `localhost/x` do not.
  let registry = DEFAULT_REGISTRY;
  let path = name;
  let start = 0;
  const slash = name.indexOf('/');
  if (slash !== -1) {
    const first = name.slice(0, slash);
    if (looksLikeHost(first)) {
      if (!HOST_RE.test(first)) fail(input, `invalid registry host ${JSON.stringify(first)}`);
      registry = first === 'index.docker.io' ? DEFAULT_REGISTRY : first;
      path = name.slice(slash + 1);
      start = slash + 1;
    }
  }
  checkPath(input, path, start);
  if (registry === DEFAULT_REGISTRY && !path.includes('/')) path = `library/${path}`;

  const length = registry.length + 1 + path.length;
  if (length > NAME_MAX)
    fail(input, `the name is ${length} characters long, more than the ${NAME_MAX} allowed`);

  const ref: Reference = { registry, repository: path };
  if (tag !== undefined) ref.tag = tag;
  else if (digest === undefined) ref.tag = DEFAULT_TAG;
  if (digest !== undefined) ref.digest = digest;
  return ref;
}

function suffix(ref: Reference): string {
  return (ref.tag === undefined ? '' : `:${ref.tag}`) + (ref.digest === undefined ? '' : `@${ref.digest}`);
}

/** The canonical, fully qualified form: registry/repository[:tag][@digest]. */
export function formatReference(ref: Reference): string {
  return `${ref.registry}/${ref.repository}${suffix(ref)}`;
}

/** Docker's short form, as `docker images` prints it: `ubuntu:22.04`, `myuser/app:1`. */
export function familiarReference(ref: Reference): string {
  let name = `${ref.registry}/${ref.repository}`;
  // Keep docker.io/ when the path's first component would otherwise be read as a host.
  if (ref.registry === DEFAULT_REGISTRY && !looksLikeHost(ref.repository.split('/')[0]!)) {
    const rest = ref.repository.slice('library/'.length);
    // `library/x` shortens to `x`, but `library/x/y` must stay (`x/y` would be a different image).
    name = ref.repository.startsWith('library/') && !rest.includes('/') ? rest : ref.repository;
  }
  return name + suffix(ref);
}
