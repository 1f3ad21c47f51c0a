import { type Command, Option } from 'commander';
import { action } from '../action.js';
import {
  aliasesOf,
  aliasOptions,
  collect,
  commaList,
  compressionOption,
  examples,
  keyValues,
} from '../common.js';

export function register(program: Command): void {
  aliasOptions(program.command('package'))
    .description('package a .wasm file (or a Spin application) as an OCI image or artifact')
    .argument('<file>', 'the WebAssembly module or component; with --format spin, the spin.toml')
    .requiredOption(
      '--to <dest>',
      'destination: REGISTRY/REPO[:TAG], oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:NAME:TAG], docker-daemon:NAME:TAG',
    )
    .addOption(
      new Option('--format <format>', 'packaging convention; docs/formats.md has the strings each one writes')
        .choices(['image', 'artifact', 'runwasi', 'istio', 'istio-oci', 'wasm-to-oci', 'spin'])
        .default('image'),
    )
    .option('--name <name>', "the module's name in the image: /<name>.wasm (default: the file's base name)")
    .option('--platform <os/arch>', 'platform to record (default: wasip1/wasm, wasip2/wasm for a component)')
    .option('--annotation <k=v>', 'manifest annotation (repeatable)', collect)
    .option('--label <k=v>', 'config label (repeatable)', collect)
    .option('--env <k=v>', 'environment variable in the config (repeatable)', collect)
    .option('--created <rfc3339>', 'creation time (default: SOURCE_DATE_EPOCH, else the epoch)')
    .option('--runtime-config <file>', 'Istio runtime config JSON (istio, istio-oci)')
    .option(
      '--check <consumer,...>',
      'refuse to write an image these consumers would not run (kiln check --for; repeatable)',
      collect,
    )
    .option('--component', 'make a preview 1 module a component first (wasip2), as kiln componentize does')
    .addOption(compressionOption())
    .addHelpText(
      'after',
      examples([
        'kiln package hello.wasm --to oci:./out:hello',
        'kiln package hello.wasm --to localhost:5000/wasm/hello:1',
        'kiln package hello.wasm --format artifact --to oci-archive:./hello.tar',
        'kiln package hello.wasm --platform linux/amd64 --to docker-archive:./hello.tar:hello:1',
        'kiln package hello.wasm --format runwasi --check runwasi,k8s --to localhost:5000/wasm/hello:1',
        'kiln package spin.toml --format spin --to localhost:5000/spin/app:1   # as spin registry push writes it',
      ]),
    )
    .action(
      action(async ({ out, context, flags: opts, platform }, file) => {
        const kiln = { ...(await import('../../api/wasm.js')), ...(await import('../../api/oci.js')) };
        keyValues(opts.env, '--env'); // checked here; the config keeps the K=V list as given
        if (opts.component && opts.format === 'spin') {
          const { KilnError } = await import('../../errors.js');
          throw new KilnError('E_USAGE', '--component is for one .wasm; the spin format takes a spin.toml', {
            hint: "give spin.toml's components as components (kiln componentize), then kiln package spin.toml --format spin",
          });
        }
        const made = opts.component
          ? await (await import('../../api/run.js')).componentizeToTemp(file)
          : undefined;
        const result = await kiln
          .pack({
            context,
            file: made?.file ?? file,
            to: opts.to,
            format: opts.format,
            name: opts.name,
            platform: await platform(),
            annotations: keyValues(opts.annotation, '--annotation'),
            labels: keyValues(opts.label, '--label'),
            env: opts.env,
            created: opts.created,
            runtimeConfig: opts.runtimeConfig,
            aliases: aliasesOf(opts, kiln.parsePlatform),
            check: commaList(opts.check),
            compression: opts.compression,
          })
          .finally(() => made?.cleanup());
        const what = result.spin
          ? `Spin app: ${result.spin.components.join(', ')}`
          : `${result.wasm.kind}, ${kiln.formatPlatform(result.platform)}`;
        return {
          json: { ...result },
          human: () => out.info(`packaged ${file} (${what}) as ${result.format} to ${result.destination}`),
          data: result.descriptor.digest,
        };
      }),
    );
}
