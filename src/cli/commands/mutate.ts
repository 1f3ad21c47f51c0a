import type { Command } from 'commander';
import { KilnError } from '../../errors.js';
import { action } from '../action.js';
import { collect, examples } from '../common.js';
import { plural } from '../output.js';

/**
 * An entrypoint or command: a JSON array of strings, or one word (a program without arguments).
 * Anything with spaces or commas is refused rather than split by a guess; '' or [] removes it.
 */
export function parseCommand(value: string, flag: string): string[] {
  const v = value.trim();
  if (v.startsWith('[')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(v);
    } catch (err) {
      throw new KilnError('E_USAGE', `${flag} is not a valid JSON array: ${(err as Error).message}`);
    }
    if (!Array.isArray(parsed) || !parsed.every((p) => typeof p === 'string'))
      throw new KilnError('E_USAGE', `${flag} must be a JSON array of strings`);
    return parsed;
  }
  if (v === '') return [];
  if (/[\s,]/.test(v))
    throw new KilnError('E_USAGE', `${flag} '${value}' has spaces or commas; give a JSON array`, {
      hint: `for example: ${flag} '["/bin/sh","-c","echo hello"]'`,
    });
  return [v];
}

/** `K=V` sets (V may be empty), `K-` removes. */
export function parseChanges(pairs: string[] | undefined, flag: string): Record<string, string | null> {
  const out: Record<string, string | null> = {};
  for (const p of pairs ?? []) {
    const i = p.indexOf('=');
    if (i > 0) out[p.slice(0, i)] = p.slice(i + 1);
    else if (i < 0 && p.length > 1 && p.endsWith('-')) out[p.slice(0, -1)] = null;
    else throw new KilnError('E_USAGE', `${flag} takes KEY=VALUE (or KEY- to remove), got '${p}'`);
  }
  return out;
}

export function register(program: Command): void {
  program
    .command('mutate')
    .description("change an image's config and annotations and write the new image")
    .argument('<src>', 'the image or index (any source transport)')
    .requiredOption(
      '--to <dest>',
      'destination: REGISTRY/REPO[:TAG], oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:NAME:TAG], docker-daemon:NAME:TAG',
    )
    .option('--entrypoint <cmd>', "new entrypoint: a JSON array, or one word; '' removes it")
    .option('--cmd <cmd>', "new command: a JSON array, or one word; '' removes it")
    .option('--env <k=v>', 'set a variable, replacing one of the same name; K- removes (repeatable)', collect)
    .option('--label <k=v>', 'set a config label; K- removes (repeatable)', collect)
    .option(
      '--annotation <k=v>',
      "set a manifest annotation (and the index's, for an index); K- removes (repeatable)",
      collect,
    )
    .option('--workdir <dir>', 'working directory')
    .option('--user <user>', 'user (name, uid or uid:gid)')
    .option('--platform <os/arch>', 'from an index: change only this image and write it alone')
    .addHelpText(
      'after',
      `${examples([
        `kiln mutate oci:./out:app --entrypoint '["/app","--serve"]' --env PORT=8080 --to oci:./out:app2`,
        'kiln mutate oci:./out:multi --label org.opencontainers.image.version=1.2 --to oci:./out:multi2',
        'kiln mutate oci:./out:multi --platform linux/amd64 --cmd /bin/sh --to docker-archive:./a.tar:a:1',
      ])}
--entrypoint and --cmd take a JSON array of strings, or a single word without spaces or commas
(crane splits on commas; kiln refuses to guess: '/bin/sh -c x' must be written as a JSON array).
Setting the entrypoint leaves the command as it is. Everything else of the config is kept.
Without --platform every image of an index is changed and a new index is written.
`,
    )
    .action(
      action(async ({ out, context, flags: opts, platform }, src) => {
        const { mutateImage } = await import('../../api/image.js');
        const result = await mutateImage({
          context,
          source: src,
          to: opts.to,
          platform: await platform(),
          entrypoint:
            opts.entrypoint === undefined ? undefined : parseCommand(opts.entrypoint, '--entrypoint'),
          cmd: opts.cmd === undefined ? undefined : parseCommand(opts.cmd, '--cmd'),
          env: parseChanges(opts.env, '--env'),
          labels: parseChanges(opts.label, '--label'),
          annotations: parseChanges(opts.annotation, '--annotation'),
          workdir: opts.workdir,
          user: opts.user,
        });
        return {
          json: result,
          human: () =>
            out.info(`changed ${plural(result.changed, 'image')} of ${src}, wrote ${result.destination}`),
          data: result.descriptor.digest,
        };
      }),
    );
}
