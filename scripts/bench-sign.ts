/**
 * The sign part of `npm run bench`: `kiln sign` of an image on a local registry and `kiln verify` of
 * it, each against kiln's own start-up floor (`kiln --version`) and `node -e 0`, in one run. Goal
 * (the signing issue): each within 50 ms over the floor. Every `kiln sign` signs an image of its own,
 * so no run finds another's signature already there.
 */

import { rmSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { type OpenRegistry, startRegistry } from '../test/support/registry.js';
import { median, runQuiet, verdict } from './bench-common.js';

export interface SignBenchOptions {
  root: string;
  quick: boolean;
}

const GOAL_MS = 50;

export async function signBench(opts: SignBenchOptions): Promise<{ markdown: string }> {
  const runs = opts.quick ? 3 : 10;
  const work = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-bench-sign-'));
  process.once('exit', () => rmSync(work, { recursive: true, force: true }));
  // A copy of the bundled CLI, so a rebuild of dist/ during the run changes nothing measured.
  const bin = path.join(work, 'kiln', 'bin', 'kiln.js');
  await fs.cp(path.join(opts.root, 'dist', 'bin'), path.dirname(bin), { recursive: true });
  await fs.writeFile(path.join(work, 'kiln', 'package.json'), '{ "type": "module" }\n');
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    KILN_HOME: path.join(work, 'home'),
    KILN_PASSWORD: 'bench',
  };
  const kiln = (args: string[]) => runQuiet(process.execPath, [bin, ...args], { env, cwd: work });
  const hello = path.join(opts.root, 'examples', 'hello', 'hello.wasm');

  let reg: OpenRegistry | undefined;
  try {
    reg = await startRegistry({ auth: 'none' });
    await kiln(['keygen', '--output-key-prefix', path.join(work, 'bench')]);
    const refs: string[] = [];
    for (let i = 0; i < runs + 1; i++) {
      const ref = `${reg.host}/bench/sign:${i}`;
      await kiln(['package', hello, '--annotation', `run=${i}`, '--to', ref]);
      refs.push(ref);
    }
    const time = async (argv: () => string[], n: number): Promise<number[]> => {
      const out: number[] = [];
      for (let i = 0; i < n; i++) {
        const args = argv();
        const t0 = performance.now();
        await runQuiet(args[0]!, args.slice(1), { env, cwd: work });
        out.push(performance.now() - t0);
      }
      return out;
    };
    // Warm-up: one of each, not counted.
    await kiln(['sign', refs[runs]!, '--key', path.join(work, 'bench.key')]);
    await kiln(['verify', refs[runs]!, '--key', path.join(work, 'bench.pub')]);
    const node = median(await time(() => [process.execPath, '-e', '0'], runs));
    const version = median(await time(() => [process.execPath, bin, '--version'], runs));
    let i = 0;
    const sign = median(
      await time(
        () => [process.execPath, bin, 'sign', refs[i++]!, '--key', path.join(work, 'bench.key')],
        runs,
      ),
    );
    let j = 0;
    const verify = median(
      await time(
        () => [process.execPath, bin, 'verify', refs[j++]!, '--key', path.join(work, 'bench.pub')],
        runs,
      ),
    );
    const row = (name: string, ms: number) =>
      `| ${name} | ${ms.toFixed(0)} ms | ${(ms - version).toFixed(0)} ms | ${verdict(ms - version <= GOAL_MS)} |`;
    const markdown = [
      '## Sign and verify',
      '',
      `Medians of ${runs} runs, one run, on a local registry (Debian's docker-registry, no referrers API: the fallback tag). \`node -e 0\`: ${node.toFixed(0)} ms; kiln's floor, \`kiln --version\`: ${version.toFixed(0)} ms.`,
      '',
      `| command | time | over the floor | goal ≤ ${GOAL_MS} ms over the floor |`,
      '|---|---:|---:|---|',
      row('`kiln sign IMAGE --key K` (cosign .sig + Sigstore bundle referrer)', sign),
      row('`kiln verify IMAGE --key PUB`', verify),
      '',
      '`kiln sign` re-reads each tag list it amends until it has held for a settle window (50 ms when no other writer was seen), so that concurrent signers never lose an entry: that window is part of what it costs over the floor.',
      '',
    ].join('\n');
    return { markdown };
  } finally {
    await reg?.stop();
  }
}
