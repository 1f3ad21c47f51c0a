/**
 * The local runner: the toolchain installed on the host, for users who have it. The command runs
 * by /bin/sh -c in the source directory with KILN_OUT and KILN_SRC pointing at the host paths and
 * a private TMPDIR; nothing is isolated, so it is never chosen over a sandbox by `auto` unless
 * nothing else works.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { KilnError } from '../errors.js';
import type { BuildJob, Runner, RunResult } from './runner.js';

export class LocalRunner implements Runner {
  readonly name = 'local' as const;

  async unavailable(): Promise<string | undefined> {
    return (await fs.access('/bin/sh').then(
      () => true,
      () => false,
    ))
      ? undefined
      : 'there is no /bin/sh on this host';
  }

  async run(job: BuildJob): Promise<RunResult> {
    const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-local-'));
    try {
      const env = { ...process.env, ...job.env, KILN_OUT: job.outDir, KILN_SRC: job.srcDir, TMPDIR: tmp };
      const child = spawn('/bin/sh', ['-c', job.command], {
        cwd: job.srcDir,
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
        detached: true, // its own process group, so an abort stops the whole build
      });
      const output = job.output ?? process.stderr;
      child.stdout.pipe(output, { end: false });
      child.stderr.pipe(output, { end: false });
      const onAbort = () => {
        try {
          if (child.pid) process.kill(-child.pid, 'SIGKILL');
        } catch {}
      };
      job.signal?.addEventListener('abort', onAbort, { once: true });
      try {
        const exitCode = await new Promise<number>((resolve, reject) => {
          child.on('error', (err) =>
            reject(new KilnError('E_RUNNER', `cannot start /bin/sh: ${err.message}`)),
          );
          child.on('close', (code, signal) =>
            resolve(code ?? (signal ? 128 + (os.constants.signals[signal] ?? 0) : 1)),
          );
        });
        if (job.signal?.aborted) throw new KilnError('E_ABORTED', 'the build was stopped');
        return { runner: 'local', exitCode };
      } finally {
        job.signal?.removeEventListener('abort', onAbort);
      }
    } finally {
      await fs.rm(tmp, { recursive: true, force: true });
    }
  }
}
