/**
 * Resolving package names to the set of packages an install needs, the way apt does for what matters
 * in an image: Pre-Depends and Depends (not Recommends or Suggests), alternatives (the first one that
 * can be had, unless one is already there), virtual packages through Provides, versioned relations
 * (Debian's version comparison), and groups already satisfied by a package in the set skipped.
 * Conflicts and Breaks are not checked, nor are Essential packages added unasked (a minimal set, as
 * `apt-get install --no-install-recommends` into an empty root). Deterministic: the same index and
 * request give the same list, in an order where a package comes after what it depends on.
 */
import { KilnError } from '../errors.js';
import { formatRelation, parseRelations, type Relation, type RelationGroup } from './control.js';
import { compareVersions, satisfiesVersion } from './version.js';

/** A binary package as the Packages index lists it (the fields resolution and download use). */
export interface IndexPackage {
  name: string;
  version: string;
  architecture: string;
  /** Path in the archive, from its root: `pool/main/b/busybox/busybox-static_..._amd64.deb`. */
  filename: string;
  size: number;
  /** Lowercase hex. */
  sha256: string;
  depends?: string;
  preDepends?: string;
  provides?: string;
  priority?: string;
  essential?: boolean;
  multiArch?: string;
}

/** A package the resolution chose, and why: who needed it (undefined for a package asked for). */
export interface ResolvedPackage extends IndexPackage {
  /** The package whose relation brought this one in, or undefined when it was asked for. */
  neededBy?: string;
}

/** What one package provides: a name, with a version when the Provides entry has one. */
interface Provided {
  pkg: IndexPackage;
  version?: string;
}

/** Packages by name and by what they provide. */
export class PackageIndex {
  private readonly byName = new Map<string, IndexPackage[]>();
  private readonly providers = new Map<string, Provided[]>();

  constructor(
    packages: Iterable<IndexPackage>,
    /** Where the index came from, for messages: `bookworm main amd64`. */
    readonly where: string,
  ) {
    for (const p of packages) {
      const list = this.byName.get(p.name);
      if (list) list.push(p);
      else this.byName.set(p.name, [p]);
      for (const group of parseRelations(p.provides, `${p.name} Provides`))
        for (const r of group) {
          const provided: Provided = r.op === '=' && r.version ? { pkg: p, version: r.version } : { pkg: p };
          const had = this.providers.get(r.name);
          if (had) had.push(provided);
          else this.providers.set(r.name, [provided]);
        }
    }
    // Highest version first, so the first candidate that fits is the one apt would pick.
    for (const list of this.byName.values()) list.sort((a, b) => compareVersions(b.version, a.version));
  }

  get size(): number {
    return this.byName.size;
  }

  /** Every version of `name` in the index, highest first. */
  versions(name: string): readonly IndexPackage[] {
    return this.byName.get(name) ?? [];
  }

  /** The packages that provide `name`. */
  providersOf(name: string): readonly Provided[] {
    return this.providers.get(name) ?? [];
  }

  /** A few names like `name`, for a hint. */
  similar(name: string): string[] {
    const out: string[] = [];
    for (const n of this.byName.keys()) {
      if (n.startsWith(name) || name.startsWith(n) || n.includes(name)) out.push(n);
      if (out.length >= 200) break;
    }
    return out.sort((a, b) => a.length - b.length || (a < b ? -1 : 1)).slice(0, 5);
  }
}

/** One package asked for: a name, optionally `=version`. */
export interface PackageRequest {
  name: string;
  version?: string;
}

/** `busybox-static`, `libc6=2.36-9+deb12u4`. */
export function parseRequest(text: string): PackageRequest {
  const t = text.trim();
  const m = /^([a-z0-9][a-z0-9+.-]*)(?:=(\S+))?$/.exec(t);
  if (!m)
    throw new KilnError('E_USAGE', `--package '${text}' is not a Debian package name`, {
      hint: 'a package is NAME or NAME=VERSION: lowercase letters, digits and + - . (e.g. busybox-static)',
    });
  return m[2] ? { name: m[1]!, version: m[2] } : { name: m[1]! };
}

const PRIORITY_RANK: Record<string, number> = {
  required: 0,
  important: 1,
  standard: 2,
  optional: 3,
  extra: 4,
};

/**
 * The packages `requests` need from `index`, each once, in install order (a package after those it
 * depends on; cycles are broken where they close). A name that is no package is E_NOT_FOUND; a
 * relation nothing in the index satisfies is E_UNRESOLVED naming the chain that needed it.
 */
export function resolvePackages(index: PackageIndex, requests: PackageRequest[]): ResolvedPackage[] {
  const selected = new Map<string, ResolvedPackage>();
  /** For each selected package, what satisfies each of its relation groups (install-order edges). */
  const edges = new Map<string, string[]>();
  const chainOf = new Map<string, string[]>();
  const queue: ResolvedPackage[] = [];
  /** What the selected packages provide, by the name provided. */
  const provided = new Map<string, Provided[]>();

  const select = (pkg: IndexPackage, neededBy: string | undefined, chain: string[]): ResolvedPackage => {
    const chosen: ResolvedPackage = neededBy === undefined ? { ...pkg } : { ...pkg, neededBy };
    selected.set(pkg.name, chosen);
    for (const group of parseRelations(pkg.provides, `${pkg.name} Provides`))
      for (const r of group) {
        const entry: Provided =
          r.op === '=' && r.version ? { pkg: chosen, version: r.version } : { pkg: chosen };
        provided.set(r.name, [...(provided.get(r.name) ?? []), entry]);
      }
    chainOf.set(pkg.name, chain);
    queue.push(chosen);
    return chosen;
  };

  for (const req of requests) {
    if (selected.has(req.name)) continue;
    select(requested(index, req), undefined, [req.version ? `${req.name}=${req.version}` : req.name]);
  }

  while (queue.length > 0) {
    const pkg = queue.shift()!;
    const chain = chainOf.get(pkg.name)!;
    const groups: RelationGroup[] = [
      ...parseRelations(pkg.preDepends, `${pkg.name} ${pkg.version} Pre-Depends`),
      ...parseRelations(pkg.depends, `${pkg.name} ${pkg.version} Depends`),
    ];
    const out: string[] = [];
    for (const group of groups) {
      const have = satisfiedBy(group, selected, provided);
      if (have) {
        out.push(have);
        continue;
      }
      const candidate = firstCandidate(index, group);
      if (!candidate) throw unresolved(index, chain, group, selected);
      if (selected.has(candidate.name)) {
        // Chosen before at a version this relation does not accept, and the index has no other.
        throw unresolved(index, chain, group, selected);
      }
      select(candidate, pkg.name, [...chain, describe(group)]);
      out.push(candidate.name);
    }
    edges.set(pkg.name, out);
  }

  // Install order: depth first from each request, dependencies first.
  const order: ResolvedPackage[] = [];
  const state = new Map<string, 'open' | 'done'>();
  const visit = (name: string) => {
    if (state.has(name)) return;
    state.set(name, 'open');
    for (const dep of edges.get(name) ?? []) visit(dep);
    state.set(name, 'done');
    order.push(selected.get(name)!);
  };
  for (const req of requests) visit(req.name);
  for (const name of selected.keys()) visit(name); // none left, unless a request was a virtual name
  return order;
}

/** The package a request names: the version asked for, else the highest; a virtual name with one provider is that provider. */
function requested(index: PackageIndex, req: PackageRequest): IndexPackage {
  const versions = index.versions(req.name);
  if (req.version !== undefined) {
    const hit = versions.find((p) => p.version === req.version);
    if (hit) return hit;
    if (versions.length > 0)
      throw new KilnError('E_NOT_FOUND', `${req.name} ${req.version} is not in ${index.where}`, {
        hint: `the index has ${versions.map((p) => p.version).join(', ')}`,
      });
  } else if (versions.length > 0) return versions[0]!;
  const providers = index.providersOf(req.name);
  if (providers.length === 1 && req.version === undefined) return providers[0]!.pkg;
  if (providers.length > 1)
    throw new KilnError(
      'E_AMBIGUOUS',
      `${req.name} is a virtual package provided by ${providerNames(providers)}`,
      {
        hint: 'name the one to install',
      },
    );
  const similar = index.similar(req.name);
  throw new KilnError('E_NOT_FOUND', `no package ${req.name} in ${index.where}`, {
    hint: similar.length ? `similar names: ${similar.join(', ')}` : 'check the name, --suite and --arch',
  });
}

function providerNames(providers: readonly Provided[]): string {
  return [...new Set(providers.map((p) => p.pkg.name))].sort().join(', ');
}

/** Whether `r` is met by `pkg` itself (its name and version). */
function meets(r: Relation, pkg: IndexPackage): boolean {
  return pkg.name === r.name && (r.op === undefined || satisfiesVersion(pkg.version, r.op, r.version!));
}

/** Whether `r` is met by a Provides entry; policy §7.5: an unversioned one never meets a versioned relation. */
function providedMeets(r: Relation, p: Provided): boolean {
  return r.op === undefined || (p.version !== undefined && satisfiesVersion(p.version, r.op, r.version!));
}

/** The selected package that satisfies one alternative of `group` (itself or through Provides), if any. */
function satisfiedBy(
  group: RelationGroup,
  selected: Map<string, ResolvedPackage>,
  provided: Map<string, Provided[]>,
): string | undefined {
  for (const r of group) {
    const real = selected.get(r.name);
    if (real && meets(r, real)) return real.name;
  }
  for (const r of group) {
    const hit = provided.get(r.name)?.find((p) => providedMeets(r, p));
    if (hit) return hit.pkg.name;
  }
  return undefined;
}

/**
 * The package for the first alternative of `group` the index can satisfy: the real package of that
 * name (highest fitting version), else a provider (by Priority, then name, as the tie-break apt
 * leaves to the user).
 */
function firstCandidate(index: PackageIndex, group: RelationGroup): IndexPackage | undefined {
  for (const r of group) {
    const real = index.versions(r.name).find((p) => meets(r, p));
    if (real) return real;
    const providers = index
      .providersOf(r.name)
      .filter((p) => providedMeets(r, p))
      .map((p) => p.pkg)
      .sort(
        (a, b) =>
          (PRIORITY_RANK[a.priority ?? ''] ?? 5) - (PRIORITY_RANK[b.priority ?? ''] ?? 5) ||
          (a.name < b.name ? -1 : a.name > b.name ? 1 : 0),
      );
    if (providers[0]) return providers[0];
  }
  return undefined;
}

function describe(group: RelationGroup): string {
  return group.map(formatRelation).join(' | ');
}

function unresolved(
  index: PackageIndex,
  chain: string[],
  group: RelationGroup,
  selected: Map<string, ResolvedPackage>,
): KilnError {
  const why = group
    .map((r) => {
      const chosen = selected.get(r.name);
      if (chosen) return `${r.name} ${chosen.version} is already chosen`;
      const versions = index.versions(r.name);
      if (versions.length > 0) return `${r.name} has only ${versions.map((p) => p.version).join(', ')}`;
      if (index.providersOf(r.name).length > 0)
        return `${r.name} is provided only by ${providerNames(index.providersOf(r.name))}, without a fitting version`;
      return `no package ${r.name}`;
    })
    .join('; ');
  return new KilnError(
    'E_UNRESOLVED',
    `can't satisfy ${[...chain, describe(group)].join(' → ')}: ${why} in ${index.where}`,
    {
      hint: 'the package cannot be installed from this suite as it is: check --suite and --arch, or ask for another package',
    },
  );
}
