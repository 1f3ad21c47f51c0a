import type { FlatIssue } from '../api/image.js';
import { KilnError } from '../errors.js';
import { type Output, plural, red } from './output.js';

/**
 * Names what flattening left out (flatten, diff, export) on stderr; unsafe entries are the error
 * the command fails with once its output is written (`done`: what happened to everything else).
 */
export function reportIssues(out: Output, issues: FlatIssue[], done = 'written'): KilnError | undefined {
  const unsafe = issues.filter((i) => i.unsafe);
  if (!out.flags.json)
    for (const issue of issues)
      if (issue.unsafe)
        process.stderr.write(`${red('refused:')} ${issue.path} (layer ${issue.layer}): ${issue.reason}\n`);
      else out.info(`skipped: ${issue.path} (layer ${issue.layer}): ${issue.reason}`);
  if (unsafe.length === 0) return undefined;
  return new KilnError(
    'E_UNSAFE_PATH',
    `left out ${plural(unsafe.length, 'unsafe entry', 'unsafe entries')} (first: ${unsafe[0]!.path}); everything else was ${done}`,
  );
}
