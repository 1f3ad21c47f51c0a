/**
 * Picks the runner: the one asked for (which must work here), or with `auto` the bubblewrap sandbox
 * when it can run (no daemon, no root: kiln is daemonless first), else a Docker engine if one
 * answers, else the host's own toolchain. Either way the choice comes with why, for the user.
 */
import type { KilnContext } from '../context.js';
import { KilnError } from '../errors.js';
import type { Runner, RunnerName } from './runner.js';

export type RunnerChoice = RunnerName | 'auto';

export interface SelectedRunner {
  runner: Runner;
  /** Why auto skipped the runners before it (empty when one was asked for by name). */
  skipped: string[];
  /** Why this runner, one line: `bubblewrap works; daemonless`, `bubblewrap unavailable: ...`. */
  reason: string;
}

/** The order `auto` tries them in: the daemonless sandbox first, an engine only when it cannot run. */
export const AUTO_ORDER: readonly RunnerName[] = ['sandbox', 'docker', 'local'];

async function create(name: RunnerName, context: KilnContext | undefined): Promise<Runner> {
  switch (name) {
    case 'docker':
    case 'podman': {
      const { DockerRunner } = await import('./docker-runner.js');
      return new DockerRunner({ engine: name });
    }
    case 'sandbox': {
      const { SandboxRunner } = await import('./sandbox-runner.js');
      return new SandboxRunner(context ? { context } : {});
    }
    case 'local': {
      const { LocalRunner } = await import('./local-runner.js');
      return new LocalRunner();
    }
  }
}

/** How a skipped runner is named in the reason: the sandbox by the tool it needs. */
function label(name: RunnerName): string {
  return name === 'sandbox' ? 'bubblewrap' : name;
}

/** `context` keeps what runners learn about this machine (the sandbox's probe) for its life. */
export async function selectRunner(
  choice: RunnerChoice = 'auto',
  context?: KilnContext,
): Promise<SelectedRunner> {
  if (choice !== 'auto') {
    const runner = await create(choice, context);
    const why = await runner.unavailable();
    if (why !== undefined)
      throw new KilnError('E_NO_RUNNER', `the ${choice} runner cannot run here: ${why}`, {
        hint: 'pick another with --runner (docker, podman, sandbox, local), or auto',
      });
    return { runner, skipped: [], reason: `asked for with --runner ${choice}` };
  }
  const skipped: Array<{ name: RunnerName; why: string }> = [];
  for (const name of AUTO_ORDER) {
    const runner = await create(name, context);
    const why = await runner.unavailable();
    if (why === undefined) {
      const reason =
        name === 'sandbox'
          ? 'bubblewrap works; daemonless'
          : skipped.map((s) => `${label(s.name)} unavailable: ${s.why}`).join('; ');
      return { runner, skipped: skipped.map((s) => `${s.name}: ${s.why}`), reason };
    }
    skipped.push({ name, why });
  }
  throw new KilnError(
    'E_NO_RUNNER',
    `no runner works here (${skipped.map((s) => `${s.name}: ${s.why}`).join('; ')})`,
    {
      hint: 'install bubblewrap (apt-get install bubblewrap) or start a Docker engine, or pick one with --runner',
    },
  );
}
