import type { Command } from 'commander';
import { examples, globals } from '../common.js';
import { Output } from '../output.js';

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
    .action(async (input: string, opts, cmd: Command) => {
      const out = new Output(globals(cmd));
      const kiln = await import('../../api/run.js');
      const result = await kiln.componentizeFile(input, opts.output);
      if (out.flags.json) return out.json({ ...result });
      out.info(`${input} (preview 1 ${result.role}) -> ${opts.output}: a component (${result.adapter})`);
      out.data(result.digest);
    });
}
