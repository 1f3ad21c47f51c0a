/**
 * Picks the runner: the one asked for (which must work here), or with `auto` a Docker engine if
 * one answers, else the bubblewrap sandbox if it works, else the host's own toolchain.
 */
import { KilnError } from '../errors.js';
import type { Runner, RunnerName } from './runner.js';

export type RunnerChoice = RunnerName | 'auto';

export interface SelectedRunner {
  runner: Runner;
  /** Why auto skipped the runners before it (empty when one was asked for by name). */
  skipped: string[];
}

async function create(name: RunnerName): Promise<Runner> {
  switch (name) {
    case 'docker':
    case 'podman': {
      const { DockerRunner } = await import('./docker-runner.js');
      return new DockerRunner({ engine: name });
    }
    case 'sandbox': {
      const { SandboxRunner } = await import('./sandbox-runner.js');
      return new SandboxRunner();
    }
    case 'local': {
      const { LocalRunner } = await import('./local-runner.js');
      return new LocalRunner();
    }
  }
}

export async function selectRunner(choice: RunnerChoice = 'auto'): Promise<SelectedRunner> {
  if (choice !== 'auto') {
    const runner = await create(choice);
    const why = await runner.unavailable();
    if (why !== undefined)
      throw new KilnError('E_NO_RUNNER', `the ${choice} runner cannot run here: ${why}`, {
        hint: 'pick another with --runner (docker, podman, sandbox, local), or auto',
      });
    return { runner, skipped: [] };
  }
  const skipped: string[] = [];
  for (const name of ['docker', 'sandbox', 'local'] as const) {
    const runner = await create(name);
    const why = await runner.unavailable();
    if (why === undefined) return { runner, skipped };
    skipped.push(`${name}: ${why}`);
  }
  throw new KilnError('E_NO_RUNNER', `no runner works here (${skipped.join('; ')})`);
}
