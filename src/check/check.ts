/**
 * `kiln check`: reads an image or index once and replays, for each consumer asked for, the choices
 * that consumer makes (which manifest, which layer, which media types and markers it accepts), so a
 * push is checked before a cluster finds out.
 */
import type { KilnContext } from '../context.js';
import { KilnError } from '../errors.js';
import { withSource } from '../transport/open.js';
import type { ImageSource } from '../transport/types.js';
import { CONSUMERS, type Consumer, type ConsumerName, type Verdict } from './consumer.js';
import { containerd } from './consumers/containerd.js';
import { crun } from './consumers/crun.js';
import { docker } from './consumers/docker.js';
import { istio } from './consumers/istio.js';
import { k8s } from './consumers/k8s.js';
import { runwasi } from './consumers/runwasi.js';
import { spin } from './consumers/spin.js';
import { wkg } from './consumers/wkg.js';
import { type CheckSubject, loadSubject } from './subject.js';

/** Every consumer's check, by name, in the order `kiln check` reports them. */
export const CONSUMER_CHECKS: Readonly<Record<ConsumerName, Consumer>> = {
  containerd,
  k8s,
  runwasi,
  crun,
  docker,
  istio,
  spin,
  wkg,
};

/** What `checkImage` found: the subject's root and a verdict per consumer. */
export interface CheckResult {
  name: string;
  digest: string;
  mediaType: string;
  /** True when no consumer asked for would fail. */
  ok: boolean;
  verdicts: Verdict[];
}

/** Options of `checkImage`. */
export interface CheckOptions {
  /** An image or index, any source transport (`oci:DIR:TAG`, `REGISTRY/REPO:TAG`, ...). */
  ref: string;
  /** The consumers to check for; every one when empty or absent. */
  for?: readonly string[];
  context?: KilnContext;
}

/** The consumer names asked for, checked; every consumer when none is named. */
export function consumersOf(names: readonly string[] | undefined): ConsumerName[] {
  if (!names || names.length === 0) return [...CONSUMERS];
  const out: ConsumerName[] = [];
  for (const name of names) {
    if (!(CONSUMERS as readonly string[]).includes(name))
      throw new KilnError('E_USAGE', `unknown consumer '${name}'`, {
        hint: `consumers: ${CONSUMERS.join(', ')}`,
      });
    if (!out.includes(name as ConsumerName)) out.push(name as ConsumerName);
  }
  return out;
}

/** Checks an image or index by reference for each consumer asked for. */
export async function checkImage(options: CheckOptions): Promise<CheckResult> {
  const names = consumersOf(options.for);
  return withSource(options.ref, options.context, (source) => checkSource(source, names));
}

/** Checks what `source` names for each consumer (all when none are given). */
export async function checkSource(source: ImageSource, names?: readonly string[]): Promise<CheckResult> {
  return checkSubject(await loadSubject(source), consumersOf(names));
}

/** The verdicts over an already loaded subject: pure, so the rule tables are testable without I/O. */
export function checkSubject(subject: CheckSubject, names: readonly ConsumerName[]): CheckResult {
  const verdicts = names.map((name): Verdict => {
    const { picked, findings } = CONSUMER_CHECKS[name].check(subject);
    return {
      consumer: name,
      ok: findings.every((f) => f.severity !== 'fail'),
      ...(picked ? { picked } : {}),
      findings,
    };
  });
  return {
    name: subject.name,
    digest: subject.root.digest,
    mediaType: subject.root.mediaType,
    ok: verdicts.every((v) => v.ok),
    verdicts,
  };
}

/** Refuses (E_CHECK_FAILED) when a verdict failed: `package --check` and kiln.yaml's `check:`. */
export function assertChecked(result: CheckResult): void {
  const failed = result.verdicts.filter((v) => !v.ok);
  if (failed.length === 0) return;
  const first = failed[0]!.findings.find((f) => f.severity === 'fail')!;
  throw new KilnError(
    'E_CHECK_FAILED',
    `${failed.map((v) => v.consumer).join(', ')} would not run this image: ${first.message}`,
    { hint: first.fix ?? `run kiln check --for ${failed[0]!.consumer} on it for every finding` },
  );
}
