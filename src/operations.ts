/**
 * The operations behind the commands: copy (with referrers and a signature check), inspect, digest, tags. Kept apart from index.ts
 * so a command loads only these and what they use, not the whole library (start-up time).
 */

import type { KeyObject } from 'node:crypto';
import { type KilnContext, withContext } from './context.js';
import { KilnError } from './errors.js';
import { type InspectResult, inspectSource } from './image/inspect.js';
import type { Platform } from './oci/platform.js';
import type { Descriptor } from './oci/types.js';
import type { Policy } from './sign/policy.js';
import type { VerifyReport } from './sign/verify.js';
import { type CopyHooks, type CopyOptions, type CopyResult, copyImage } from './transport/copy.js';
import type { ReferrersCopy } from './transport/copy-referrers.js';
import { type OpenOptions, openDestination, openSource, openTags, withSource } from './transport/open.js';
import { parseLocation } from './transport/parse.js';
import { cannot, transportOf } from './transport/transports.js';
import type { ImageSource } from './transport/types.js';

/** What every operation may be given: the context it runs with (see KilnContext). */
export interface ContextOption {
  /** Registry settings and connections, the store, an abort signal, an event sink; default: one for this call. */
  context?: KilnContext;
}

/** Options of `copy`: those of an image copy, a context, and options of opening the source and destination. */
export interface CopyCommandOptions extends CopyOptions, ContextOption {
  /** How to open the source and the destination (credentials of each side, say), on top of the context. */
  source?: Omit<OpenOptions, 'context'>;
  destination?: Omit<OpenOptions, 'context'>;
  /**
   * Copy what refers to each manifest copied too: its OCI referrers (signature bundles,
   * attestations, SBOMs) and cosign's `sha256-<hex>.sig`/`.att`/`.sbom` tags, recursively, into the
   * destination's referrers (the fallback tag on a registry without the API, index.json in a
   * layout), before the tag is written. Both sides must keep referrers (registries, `oci:`
   * layouts; E_UNSUPPORTED otherwise), and `format` is refused with it (E_USAGE).
   */
  referrers?: boolean;
  /**
   * Verify the source with this public key first, as `kiln verify --key` does, and copy the digest
   * verified; a failed check is E_VERIFY_FAILED with nothing written.
   */
  verifyKey?: KeyObject;
  /**
   * Verify the source against this policy first, as `kiln verify --policy` does (with `verifyKey`
   * too, both must hold); a failed requirement is E_VERIFY_FAILED with nothing written.
   */
  verifyPolicy?: Policy;
}

/** What `copy` did: the image copy, and with `referrers` or `verifyKey` what they found. */
export interface CopyCommandResult extends CopyResult {
  /** With `referrers`: the referrers and cosign tags copied, and those left behind. */
  referrers?: ReferrersCopy;
  /** With `verifyKey`: the verification of the source. */
  verified?: VerifyReport;
}

/** Copies an image or index between any two transports. */
export async function copy(
  src: string | ImageSource,
  dst: string,
  options: CopyCommandOptions = {},
): Promise<CopyCommandResult> {
  return withContext(options.context, async (context) => {
    // The copy's signal reaches the transports too, so an abort stops requests in flight.
    const signal = context.signalWith(options.signal);
    const open = (o: OpenOptions | undefined): OpenOptions => ({
      ...o,
      context,
      signal: o?.signal ?? signal,
    });
    if (options.referrers) canCopyReferrers(src, dst, options);
    let from = src;
    let verified: VerifyReport | undefined;
    if (options.verifyKey || options.verifyPolicy) {
      if (typeof src !== 'string')
        throw new KilnError(
          'E_USAGE',
          'verifying a copy needs its source as a reference, not an opened source',
        );
      // Verified before the destination is opened: a failure writes nothing. The copy reads the digest verified.
      const { requireVerified } = await import('./sign/verify.js');
      const pinned = await requireVerified(src, {
        ...(options.verifyKey ? { key: options.verifyKey } : {}),
        ...(options.verifyPolicy ? { policy: options.verifyPolicy } : {}),
        context,
        signal,
        ...(options.source?.registry ? { registry: options.source.registry } : {}),
      });
      from = pinned.ref;
      verified = pinned.report;
    }
    const source = typeof from === 'string' ? await openSource(from, open(options.source)) : from;
    try {
      const destination = await openDestination(dst, open(options.destination));
      let referrers: ReferrersCopy | undefined;
      const hooks: CopyHooks = {};
      if (options.referrers && typeof from === 'string') {
        const fromRef = from;
        hooks.beforeCommit = async (root) => {
          const { copyReferrers, manifestsUnder } = await import('./transport/copy-referrers.js');
          const { defaultMtime } = await import('./layer/tar-writer.js');
          const created = new Date(defaultMtime() * 1000).toISOString().replace('.000Z', 'Z');
          referrers = await copyReferrers(
            source,
            { ref: fromRef, options: open(options.source) },
            { ref: dst, options: open(options.destination) },
            await manifestsUnder(source, root),
            created,
            signal,
          );
        };
      }
      const result = await copyImage(
        source,
        destination,
        { ...options, signal, onEvent: context.events(options.onEvent) },
        hooks,
      );
      return { ...result, ...(referrers ? { referrers } : {}), ...(verified ? { verified } : {}) };
    } finally {
      await source.close();
    }
  });
}

/** Refuses `referrers` where they can't be copied, before anything is read or written. */
function canCopyReferrers(src: string | ImageSource, dst: string, options: CopyCommandOptions): void {
  if (typeof src !== 'string')
    throw new KilnError('E_USAGE', 'copying referrers needs the source as a reference, not an opened source');
  if (options.format)
    throw new KilnError(
      'E_USAGE',
      `--referrers keeps the signatures and attestations of the manifests as they are, and --format ${options.format} gives them new digests that none of them names`,
      { hint: 'copy without --format, or sign and attest the converted image again' },
    );
  const from = parseLocation(src);
  if (!transportOf(from).capabilities.referrers) {
    const e = cannot(from, src, 'hold referrers to copy', (c) => c.referrers);
    throw new KilnError(e.code, e.message, {
      hint: `${e.hint}; an archive carries the image only: copy it without --referrers, then sign it where it lands`,
    });
  }
  const to = parseLocation(dst);
  if (!transportOf(to).capabilities.referrers) {
    const e = cannot(to, dst, 'keep referrers', (c) => c.referrers);
    throw new KilnError(e.code, e.message, {
      hint: `${e.hint}; or copy without --referrers`,
    });
  }
}

/** The manifest (or index), config and layers of an image. */
export async function inspect(
  ref: string,
  options: { platform?: Platform } & ContextOption = {},
): Promise<InspectResult> {
  return withSource(ref, options.context, (source) => inspectSource(source, options));
}

/** The digest of what a reference names (the platform's manifest with `platform`), as `crane digest`. */
export async function digest(
  ref: string,
  options: { platform?: Platform } & ContextOption = {},
): Promise<Descriptor> {
  return withSource(ref, options.context, async (source) => {
    const root = await source.resolve();
    if (!options.platform) return root;
    const { selectManifest } = await import('./image/resolve.js');
    const { parseManifest } = await import('./oci/validate.js');
    const parsed = parseManifest(await source.fetchManifest(root), `manifest ${root.digest}`, root.mediaType);
    if (parsed.kind !== 'index') return root;
    return selectManifest(parsed.index, options.platform, ref);
  });
}

/** The tags of a registry repository, or of an OCI layout (`oci:DIR`). */
export async function listTags(repo: string, options: ContextOption = {}): Promise<string[]> {
  return openTags(repo, options.context ? { context: options.context } : {});
}
