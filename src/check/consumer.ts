/**
 * The shape every consumer check has: rules written from the consumer's own source (each cites the
 * file), and a `check` that replays the consumer's choices over a subject and says what goes wrong.
 */
import { formatPlatform, type Platform, platformMatches } from '../oci/platform.js';
import type { CheckSubject, SubjectImage } from './subject.js';

/** The consumers `kiln check --for` knows. */
export const CONSUMERS = ['containerd', 'k8s', 'runwasi', 'crun', 'docker', 'istio', 'spin', 'wkg'] as const;
/** A consumer `kiln check --for` knows. */
export type ConsumerName = (typeof CONSUMERS)[number];

/**
 * `fail`: the consumer will not run it. `gate`: it runs only on versions or settings the rule names
 * (an older containerd, Docker's classic image store); reported, never a failure by itself.
 */
export type Severity = 'fail' | 'gate';

/** One rule of one consumer: what it checks and where in the consumer's source that comes from. */
export interface Rule {
  id: string;
  severity: Severity;
  /** What the consumer does, in one line. */
  says: string;
  /** The consumer's source the rule was written from: repository and file. */
  source: string;
}

/** A rule that does not hold for this subject. */
export interface Finding {
  rule: string;
  severity: Severity;
  message: string;
  /** The kiln flag (or step) that fixes it. */
  fix?: string;
}

/** What the consumer would take: the image (and platform it is picked by) and the module layer. */
export interface Picked {
  digest: string;
  platform?: string;
  layer?: string;
}

/** One consumer's verdict: ok (no failing finding), what it would take, and every finding. */
export interface Verdict {
  consumer: ConsumerName;
  /** No `fail` finding. */
  ok: boolean;
  picked?: Picked;
  findings: Finding[];
}

/** A consumer's check: its rules and the replay of its choices over a subject. */
export interface Consumer {
  name: ConsumerName;
  /** Who this is, in a few words (`containerd 1.6/1.7, ctr and the CRI`). */
  title: string;
  rules: readonly Rule[];
  check(subject: CheckSubject): { picked?: Picked; findings: Finding[] };
}

/**
 * What a consumer pulling by platform does first: take the index entry `want` picks (a single
 * manifest as is), else report `rule` with `why(the platforms listed)` and `fix`, and go no further.
 */
export interface PlatformPull {
  want: (p: Platform) => boolean;
  rule: string;
  why: (listed: string) => string;
  fix: string;
}

/** The image a consumer took, and the platform of the index entry it came by. */
export interface Hit {
  image: SubjectImage;
  platform?: string;
}

/**
 * A consumer made of its rule table and its replay: the replay adds findings (each naming a rule
 * of the table) and returns what the consumer would take, if anything.
 */
export function defineConsumer(spec: {
  name: ConsumerName;
  title: string;
  rules: readonly Rule[];
  replay: (subject: CheckSubject, f: Findings) => Picked | undefined;
}): Consumer {
  const { replay, ...meta } = spec;
  return {
    ...meta,
    check(subject) {
      const f = new Findings(meta.rules);
      const taken = replay(subject, f);
      return { ...(taken ? { picked: taken } : {}), findings: f.list };
    },
  };
}

/** `defineConsumer` for a consumer that pulls by platform: the replay runs on the image `pull` takes. */
export function definePullingConsumer(spec: {
  name: ConsumerName;
  title: string;
  rules: readonly Rule[];
  pull: PlatformPull;
  replay: (hit: Hit, f: Findings, subject: CheckSubject) => Picked | undefined;
}): Consumer {
  const { pull, replay, ...meta } = spec;
  return defineConsumer({
    ...meta,
    replay(subject, f) {
      const hit = imageFor(subject, pull.want);
      if (hit) return replay(hit, f, subject);
      f.add(pull.rule, pull.why(listedPlatforms(subject)), pull.fix);
      return undefined;
    },
  });
}

/** Collects findings against a consumer's rule table, so a finding always names a known rule. */
export class Findings {
  readonly list: Finding[] = [];
  constructor(private readonly rules: readonly Rule[]) {}

  add(id: string, message: string, fix?: string): void {
    const rule = this.rules.find((r) => r.id === id);
    if (!rule) throw new Error(`no rule ${id}`); // a programming error, caught by the rule-table test
    this.list.push({ rule: id, severity: rule.severity, message, ...(fix ? { fix } : {}) });
  }
}

/** The image a consumer pulling for `want` gets: a top-level manifest as is, else the first matching entry. */
export function imageFor(subject: CheckSubject, want: (p: Platform) => boolean): Hit | undefined {
  if (!subject.index) {
    const image = subject.images[0];
    return image ? { image } : undefined;
  }
  for (const image of subject.images)
    if (image.entryPlatform && want(image.entryPlatform))
      return { image, platform: formatPlatform(image.entryPlatform) };
  return undefined;
}

/** Platforms an index lists, for messages. */
export function listedPlatforms(subject: CheckSubject): string {
  const ps = subject.images.filter((i) => i.entryPlatform).map((i) => formatPlatform(i.entryPlatform!));
  return ps.length ? ps.join(', ') : 'none';
}

export const matching =
  (want: Platform) =>
  (p: Platform): boolean =>
    platformMatches(want, p);

/** A wasm platform entry: architecture `wasm`. */
export const isWasmEntry = (p: Platform): boolean => p.architecture === 'wasm';

export function picked(image: SubjectImage, platform?: string, layer?: string): Picked {
  return { digest: image.digest, ...(platform ? { platform } : {}), ...(layer ? { layer } : {}) };
}
