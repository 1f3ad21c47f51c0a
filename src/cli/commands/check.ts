import { type Command, Option } from 'commander';
import type { CheckResult } from '../../api/check.js';
import { action } from '../action.js';
import { commaList, examples } from '../common.js';
import { bold, dim, green, red } from '../output.js';

const CONSUMERS = ['containerd', 'k8s', 'runwasi', 'crun', 'docker', 'istio', 'spin', 'wkg'];

export function register(program: Command): void {
  program
    .command('check')
    .description(
      'say, before the push, which WebAssembly consumers would run an image and what to fix for the others',
    )
    .argument(
      '<image>',
      'an image or index (REGISTRY/REPO:TAG, oci:DIR:TAG, oci-archive:FILE, ...), a .wasm file, or a spin.toml (--format spin)',
    )
    .addOption(
      new Option(
        '--for <consumer,...>',
        `consumers to check (repeatable; default: all): ${CONSUMERS.join(', ')}`,
      ).argParser((v: string, prev: string[] = []) => [...prev, v]),
    )
    .addOption(
      new Option(
        '--format <format>',
        'for a .wasm file: the packaging to check (default: image); spin takes a spin.toml',
      ).choices(['image', 'artifact', 'runwasi', 'istio', 'istio-oci', 'wasm-to-oci', 'spin']),
    )
    .addHelpText(
      'after',
      `${examples([
        'kiln check registry.example.com/wasm/hello:1',
        'kiln check oci:./out:hello --for k8s,runwasi',
        'kiln check hello.wasm --format artifact --for wkg,spin --json',
        'kiln check spin.toml --format spin --for spin',
      ])}
Each consumer's choices are replayed from its own source: which manifest it picks for its platform,
which layer it takes as the module, and whether its media types, annotations, entrypoint and config
pass. A verdict is ok, or FAIL with what will go wrong and the kiln flag that fixes it; "gate" notes
say what needs a newer version or a setting. Exits 1 when a consumer asked for would fail.
docs/formats.md has the compatibility matrix of every format and consumer.
`,
    )
    .action(
      action(async ({ out, context, flags: opts }, image) => {
        const consumers = commaList(opts.for);
        let result: CheckResult;
        if ((image.endsWith('.wasm') || image.endsWith('.toml')) && !image.includes(':')) {
          const { checkWasmFile } = await import('../../api/wasm.js');
          result = await checkWasmFile({ file: image, format: opts.format, for: consumers, context });
        } else {
          if (opts.format) {
            const { KilnError } = await import('../../errors.js');
            throw new KilnError('E_USAGE', '--format is for a .wasm file; an image has its format already');
          }
          const { checkImage } = await import('../../api/check.js');
          result = await checkImage({ ref: image, for: consumers, context });
        }
        if (!result.ok) process.exitCode = 1;
        return { json: result, human: () => out.data(render(result)) };
      }),
    );
}

function render(result: CheckResult): string {
  const width = Math.max(...result.verdicts.map((v) => v.consumer.length));
  const lines = [bold(`${result.name} (${result.digest.slice(0, 19)})`)];
  for (const v of result.verdicts) {
    const fails = v.findings.filter((f) => f.severity === 'fail');
    const gates = v.findings.filter((f) => f.severity === 'gate');
    const where = v.picked
      ? dim(` ${v.picked.platform ?? ''} ${v.picked.digest.slice(0, 19)}`.replace(/^ +/, ' '))
      : '';
    lines.push(`${v.consumer.padEnd(width)}  ${v.ok ? green('ok  ') : red('FAIL')}${v.ok ? where : ''}`);
    for (const f of [...fails, ...gates]) {
      lines.push(
        `${' '.repeat(width + 2)}${f.severity === 'fail' ? red('✗') : dim('!')} ${f.message} ${dim(`[${f.rule}]`)}`,
      );
      if (f.fix) lines.push(`${' '.repeat(width + 4)}${dim('fix:')} ${f.fix}`);
    }
  }
  const failed = result.verdicts.filter((v) => !v.ok).map((v) => v.consumer);
  lines.push(
    failed.length
      ? `${failed.length} of ${result.verdicts.length} would not run it: ${failed.join(', ')}`
      : `all ${result.verdicts.length} would run it`,
  );
  return lines.join('\n');
}
