import type { Command } from 'commander';
import { action } from '../action.js';
import { examples } from '../common.js';

export function register(program: Command): void {
  program
    .command('componentize')
    .description('make a WASI preview 1 module (command or reactor) a component, with the preview 1 adapter')
    .argument('<in.wasm>', 'a WASI preview 1 module')
    .requiredOption('-o, --output <out.wasm>', 'where to write the component')
    .addHelpText(
      'after',
      examples([
        'kiln componentize hello.wasm -o hello.component.wasm',
        'kiln package hello.wasm --component --to oci:./out:hello',
      ]),
    )
    .action(
      action(async ({ out, flags: opts }, input) => {
        const { componentizeFile } = await import('../../api/run.js');
        const result = await componentizeFile(input, opts.output);
        return {
          json: { ...result },
          human: () =>
            out.info(
              `${input} (preview 1 ${result.role}) -> ${opts.output}: a component (${result.adapter})`,
            ),
          data: result.digest,
        };
      }),
    );
}
