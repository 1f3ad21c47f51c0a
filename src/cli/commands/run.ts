import type { Command } from 'commander';
import { KilnError } from '../../errors.js';
import { action, type Flags } from '../action.js';
import { collect, examples } from '../common.js';
import { publicKey } from '../keys.js';

export function register(program: Command): void {
  program
    .command('run')
    .description(
      'run a WebAssembly image or .wasm file (a WASI preview 1 command or a component) in a sandbox',
    )
    .argument(
      '<image>',
      'an image (REGISTRY/REPO:TAG, oci:..., oci-archive:..., docker-archive:...) or a .wasm file',
    )
    .argument('[args...]', 'arguments for the module (after --)')
    .option(
      '--dir <host[:guest[:ro]]>',
      'give the module a host directory, :ro read-only (repeatable)',
      collect,
    )
    .option('--env <k=v>', 'environment variable (repeatable)', collect)
    .option('--platform <os/arch>', 'choose this platform from an index (default: the wasm one)')
    .option('--max-memory <MiB>', "limit the guest's memory (each wasm memory, and the host's heap)")
    .option('--timeout <seconds>', 'stop the guest after this long (E_TIMEOUT)')
    .option('--allow-net', 'let the guest use the network (not available yet: refused)')
    .option(
      '--verify-key <key>',
      "verify the image's signatures with this public key first (as kiln verify) and run the digest verified",
    )
    .option(
      '--verify-policy <file>',
      'verify the image against this policy first (as kiln verify --policy); on failure nothing runs',
    )
    .addHelpText(
      'after',
      examples([
        'kiln run oci:./out:hello -- a b',
        'kiln run hello.wasm --env GREETING=hi -- world',
        'kiln run oci:./out:hello --dir ./data:/data -- /data/input.txt',
        'kiln run oci:./out:app --dir ./in:/in:ro --max-memory 256 --timeout 30',
        'kiln run registry.example.com/wasm/app:1 --verify-key release.pub',
      ]),
    )
    .action(
      action<Flags, [string, string[]]>(
        async ({ context, flags: opts, platform: platformFlag }, image, args) => {
          const { runWasm } = await import('../../api/run.js');
          const platform = await platformFlag();
          let target = image;
          if (opts.verifyKey || opts.verifyPolicy) {
            if (image.endsWith('.wasm') && !image.includes(':'))
              throw new KilnError(
                'E_USAGE',
                `--verify-key and --verify-policy check an image's signatures, and ${image} is a file`,
                {
                  hint: 'run it from a registry or an oci: layout it was signed in',
                },
              );
            const key = opts.verifyKey ? await publicKey(opts.verifyKey) : undefined;
            const { loadPolicy, requireVerified } = await import('../../api/sign.js');
            const policy = opts.verifyPolicy ? await loadPolicy(opts.verifyPolicy) : undefined;
            // The guest runs from the digest verified, even if the tag moves meanwhile.
            target = (
              await requireVerified(image, {
                ...(key ? { key } : {}),
                ...(policy ? { policy } : {}),
                context,
              })
            ).ref;
          }
          process.exitCode = await runWasm(target, {
            args,
            env: opts.env,
            dirs: opts.dir,
            platform,
            context,
            maxMemoryMiB: opts.maxMemory === undefined ? undefined : positive(opts.maxMemory, '--max-memory'),
            timeoutMs: opts.timeout === undefined ? undefined : positive(opts.timeout, '--timeout') * 1000,
            allowNet: opts.allowNet,
          });
          return undefined;
        },
      ),
    );
}

function positive(value: string, flag: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0)
    throw new KilnError('E_USAGE', `${flag} takes a positive number, got '${value}'`);
  return n;
}
