/**
 * What the signing tests share: media and predicate types, key pairs made with `kiln keygen`, and
 * hello.wasm packed as an image of its own per seed.
 */
import { join } from 'node:path';
import { HELLO_WASM } from './images.js';
import { type KilnOptions, type KilnResult, kilnWithEnv } from './kiln.js';
import { workDir } from './temp.js';

export const BUNDLE = 'application/vnd.dev.sigstore.bundle.v0.3+json';
export const SLSA = 'https://slsa.dev/provenance/v1';
export const TEST_RESULT = 'https://example.com/test-result/v1';

/** A test file's kiln that must succeed, giving its stdout (kilnWithEnv's `kOk`). */
export type KilnOk = (args: string[], opts?: KilnOptions) => Promise<string>;

export interface KeyPair {
  key: string;
  pub: string;
}

/**
 * Two key pairs made with kiln keygen in `dir`, ours (`password`) and another (`otherPassword`),
 * made once at the first call.
 */
export function keyPairs(
  kOk: KilnOk,
  dir: string,
  password: string,
  otherPassword: string,
): () => Promise<{ mine: KeyPair; other: KeyPair }> {
  let made: Promise<{ mine: KeyPair; other: KeyPair }> | undefined;
  const make = async (prefix: string, pass: string): Promise<KeyPair> => {
    const p = join(dir, prefix);
    await kOk(['keygen', '--output-key-prefix', p], { env: { KILN_PASSWORD: pass } });
    return { key: `${p}.key`, pub: `${p}.pub` };
  };
  return () => {
    made ??= (async () => ({
      mine: await make('mine', password),
      other: await make('other', otherPassword),
    }))();
    return made;
  };
}

/** Packs hello.wasm to `ref`, an annotation making each seed's image its own; its digest. */
export async function packedWasm(kOk: KilnOk, ref: string, seed: string): Promise<string> {
  const out = await kOk([
    'package',
    HELLO_WASM,
    '--to',
    ref,
    '--annotation',
    `org.opencontainers.image.description=${seed}`,
  ]);
  return out.trim();
}

/**
 * A signing test file's setup: its work dir, kiln with KILN_PASSWORD set to `password`
 * ({@link kilnWithEnv}, each result also handed to `seen`), its two key pairs and `packed`.
 */
export function signingFile(
  prefix: string,
  password: string,
  otherPassword: string,
  seen?: (r: KilnResult) => void,
) {
  const work = workDir(prefix);
  const kilnFns = kilnWithEnv({ KILN_PASSWORD: password }, seen);
  return {
    work,
    ...kilnFns,
    keys: keyPairs(kilnFns.kOk, work, password, otherPassword),
    packed: (ref: string, seed: string) => packedWasm(kilnFns.kOk, ref, seed),
    /** kiln attest of `ref` with the predicate in `file` as `type`, signed with `key`. */
    attest: (ref: string, file: string, type: string, key: string) =>
      kilnFns.kOk(['attest', ref, '--predicate', file, '--type', type, '--key', key]),
  };
}
