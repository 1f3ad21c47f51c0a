/**
 * `kiln build DIR/...` and `kiln build WORKSPACE`: every project built (build/workspace.ts), one
 * line each as it finishes (stderr), then a table (stdout): project, platforms, digest, built or
 * cached, time. `--json` prints the projects as an array. Exit code 1 if any project failed.
 */
import type { ProjectResult, WorkspaceOptions } from '../api/build.js';
import type { KilnContext } from '../api/context.js';
import { KilnError } from '../errors.js';
import { type Output, plural } from './output.js';

export async function buildWorkspaceCommand(
  options: WorkspaceOptions & { context: KilnContext },
  out: Output,
): Promise<void> {
  const { buildWorkspace } = await import('../api/build.js');
  const result = await buildWorkspace({
    ...options,
    onProject: (e) => {
      if (e.type === 'done') line(e.result, out);
    },
  });
  if (result.failed > 0) process.exitCode = 1;
  if (out.flags.json) return out.json(result.projects.map(({ result: _r, ...rest }) => rest));
  const rows = [
    ['PROJECT', 'PLATFORMS', 'DIGEST', 'RESULT', 'TIME'],
    ...result.projects.map((p) => [
      p.project,
      p.platforms.join(',') || '-',
      p.digest ? p.digest.slice(0, 19) : '-',
      p.status,
      p.status === 'cancelled' && p.seconds === 0 ? '-' : `${p.seconds.toFixed(1)}s`,
    ]),
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  out.data(
    rows
      .map((r) =>
        r
          .map((c, i) => c.padEnd(widths[i]!))
          .join('  ')
          .trimEnd(),
      )
      .join('\n'),
  );
  const count = (s: ProjectResult['status']) => result.projects.filter((p) => p.status === s).length;
  const parts = (['built', 'cached', 'failed', 'cancelled'] as const)
    .filter((s) => count(s) > 0)
    .map((s) => `${count(s)} ${s}`);
  out.info(`${plural(result.projects.length, 'project')}: ${parts.join(', ')}`);
}

/** One project, as it finishes: what it wrote, or why it failed (with its build's output). */
function line(p: ProjectResult, out: Output): void {
  if (p.status === 'failed' || p.status === 'cancelled') {
    out.info(
      `${p.project}: ${p.status}: ${p.error?.message ?? ''} (${p.error?.code}, ${p.seconds.toFixed(1)}s)`,
    );
    if (p.status === 'failed' && p.log)
      out.info(
        p.log
          .trimEnd()
          .split('\n')
          .map((l) => `  | ${l}`)
          .join('\n'),
      );
    return;
  }
  out.info(
    `${p.project}: ${p.status} ${p.digest ?? ''} (${p.platforms.join(', ') || 'no platform'}, ${p.seconds.toFixed(1)}s) -> ${p.destinations.join(', ')}`,
  );
}

/** The flags that name one project's files make no sense for many. */
export function checkWorkspaceFlags(opts: { file?: string; output?: string }): void {
  for (const [flag, value] of [
    ['--file', opts.file],
    ['--output', opts.output],
  ] as const)
    if (value !== undefined)
      throw new KilnError('E_USAGE', `${flag} names one project's file; a workspace has many projects`, {
        hint: `leave ${flag} out, or build one project: kiln build DIR/PROJECT ${flag} ...`,
      });
}
