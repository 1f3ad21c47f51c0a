import type { Command } from 'commander';
import { action, type Flags } from '../action.js';
import { examples } from '../common.js';
import { humanSize, plural } from '../output.js';

export function register(program: Command): void {
  const toolchain = program
    .command('toolchain')
    .description("the toolchain images in kiln's store, for builds with no network (--offline)");

  toolchain
    .command('list')
    .description('list the toolchain images kiln has pulled')
    .action(
      action(async ({ out, context }) => {
        const { listRootfs, storedToolchains } = await import('../../api/toolchain.js');
        const store = await context.store();
        const unpacked = new Set((await listRootfs()).map((r) => r.digest));
        const rows = (await storedToolchains(store)).map((t) => ({
          name: t.name,
          pinned: t.pinned,
          digest: t.descriptor.digest,
          platform: t.platform ? `${t.platform.os}/${t.platform.architecture}` : undefined,
          unpacked: unpacked.has(t.descriptor.digest),
        }));
        return {
          json: rows,
          human: () => {
            if (rows.length === 0) return out.info('no toolchain images yet: kiln toolchain pull LANG|IMAGE');
            // The whole reference as stored: NAME@DIGEST, never a shortened digest.
            for (const r of rows)
              out.data(`${r.name}@${r.pinned}\t${r.platform ?? ''}${r.unpacked ? '\tunpacked' : ''}`);
          },
        };
      }),
    );

  toolchain
    .command('pull')
    .description("pull a toolchain image into kiln's store (a language's preset, an image, or the project's)")
    .argument(
      '[lang-or-image]',
      "a language (rust, tinygo, go, c, dotnet, assemblyscript) or an image; default: the project's",
    )
    .option('-C, --dir <dir>', 'the project directory whose kiln.lock pins it', '.')
    .addHelpText(
      'after',
      examples([
        "kiln toolchain pull            # the current project's toolchain, pinned in kiln.lock",
        'kiln toolchain pull rust',
        'kiln toolchain pull localhost:5000/wasi-sdk:25',
      ]),
    )
    .action(
      action<{ dir: string }, [string | undefined]>(async ({ out, context, flags: opts }, what) => {
        const { isLanguage, preset, detectLanguage, resolveToolchain } = await import(
          '../../api/toolchain.js'
        );
        const { LockFile, loadProject } = await import('../../api/build.js');
        const project = await loadProject(opts.dir, { store: await context.store() });
        let image: string;
        if (what === undefined) {
          const p = project.project;
          image = p.toolchain?.image ?? preset(p.lang ?? (await detectLanguage(project.sourceDir))).image;
        } else image = isLanguage(what) ? preset(what).image : what;
        // A language or the project's own toolchain is pinned in the project's kiln.lock.
        const lock = what === undefined || isLanguage(what) ? await LockFile.load(project.dir) : undefined;
        const r = await resolveToolchain(image, {
          ...(lock ? { pins: lock } : {}),
          onPull: (ref) => out.info(`pulling ${ref}`),
          context,
        });
        await lock?.save();
        return {
          json: { name: r.image.name, pinned: r.pinned, digest: r.image.descriptor.digest, pulled: r.pulled },
          human: () => out.info(`${r.pulled ? 'pulled' : 'already in the store:'} ${r.image.name}`),
          data: `${r.image.name}@${r.pinned}`,
        };
      }),
    );

  toolchain
    .command('prune')
    .description(
      "remove toolchain images (all, or those named) from kiln's store, with their unpacked root filesystems",
    )
    .argument('[image...]', 'toolchain images to remove (default: all)')
    .action(
      action<Flags, [string[]]>(async ({ out, context }, images) => {
        const { forgetToolchains, pruneRootfs, storedToolchains, toolchainName } = await import(
          '../../api/toolchain.js'
        );
        const { collectGarbage } = await import('../../api/context.js');
        const { parseManifest } = await import('../../api/oci.js');
        const store = await context.store();
        const names = images.length ? new Set(images.map(toolchainName)) : undefined;
        const dropped = await forgetToolchains(store, names);
        // Their blobs are complete and known: collect them now, not after the grace period.
        const finished = new Set<string>();
        for (const t of dropped) {
          finished.add(t.descriptor.digest);
          try {
            const parsed = parseManifest(await store.readBlob(t.descriptor.digest), t.name);
            if (parsed.kind === 'manifest') {
              finished.add(parsed.manifest.config.digest);
              for (const l of parsed.manifest.layers) finished.add(l.digest);
            }
          } catch {}
        }
        const keep = new Set((await storedToolchains(store)).map((t) => t.descriptor.digest));
        const removedRootfs = await pruneRootfs(keep);
        const gc = await collectGarbage(store, { finished });
        return {
          json: {
            removed: dropped.map((t) => t.name),
            rootfs: removedRootfs,
            blobs: gc.removed,
            bytes: gc.bytes,
          },
          human: () =>
            out.info(
              `removed ${plural(dropped.length, 'toolchain image')}, ${plural(removedRootfs.length, 'unpacked root filesystem')}, ${plural(gc.removed, 'blob')} (${humanSize(gc.bytes)})`,
            ),
        };
      }),
    );
}
