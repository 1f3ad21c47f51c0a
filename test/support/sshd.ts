/**
 * A private, throw-away OpenSSH server and ssh agent for tests of `ssh://` engine endpoints.
 *
 * `startSshd()` runs `sshd -D` (we must be root) on 127.0.0.1 at a free port with its own host key,
 * config, pidfile and authorized_keys (nothing of /etc/ssh is read), root login by key only, and the
 * environment `env` set in every session (e.g. DOCKER_HOST of a private engine, so the far side's
 * `docker system dial-stdio` reaches it). An `ssh-agent` holds the client key. Both are stopped by
 * stop(), or at process exit.
 *
 * The client is the real `ssh`, which kiln runs as the docker CLI does. So that it knows the server's
 * host key without the user's ~/.ssh being touched, `clientEnv` puts first on PATH an `ssh` that runs
 * the real one with a private config (`-F`: this known_hosts only, strict checking, no prompts).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { type AddressInfo, connect, createServer } from 'node:net';
import { join } from 'node:path';
import { exitSet, killAndWait, killSync } from './processes.js';
import { findTool, runOk, skipOrFail } from './tools.js';

type ClientEnv = Record<'DOCKER_HOST' | 'SSH_AUTH_SOCK' | 'PATH', string>;

export interface Sshd {
  /** `ssh://root@127.0.0.1:PORT`, a DOCKER_HOST. */
  readonly host: string;
  /** SSH_AUTH_SOCK of the agent that holds the key the server accepts. */
  readonly authSock: string;
  /** For a kiln that reaches the engine through this server: DOCKER_HOST, SSH_AUTH_SOCK, and PATH with the configured `ssh` first. */
  readonly clientEnv: ClientEnv;
  /** The same with an `ssh` that does not know the server's host key (and so refuses it). */
  readonly strangerEnv: ClientEnv;
  /** sshd's log (-e: to stderr). */
  readonly logPath: string;
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** Why a private sshd cannot be started here, as a skip reason; undefined if it can. Throws in CI. */
export function sshdSkipReason(): string | undefined {
  if (process.getuid?.() !== 0) return skipOrFail('starting a private sshd needs root');
  for (const [tool, pkg] of [
    ['sshd', 'openssh-server'],
    ['ssh', 'openssh-client'],
    ['ssh-agent', 'openssh-client'],
    ['ssh-add', 'openssh-client'],
    ['ssh-keygen', 'openssh-client'],
  ] as const)
    if (findTool(tool) === undefined) return skipOrFail(`'${tool}' not found (apt-get install ${pkg})`);
  return undefined;
}

interface Child {
  child: ChildProcess;
  exited: boolean;
}

interface Running {
  dir: string;
  children: Child[];
}

const live = exitSet<Running>((r) => {
  live.delete(r);
  for (const c of r.children) if (!c.exited) killSync(c.child, 5_000, 2_000);
  rmSync(r.dir, { recursive: true, force: true });
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

function answers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('data', (d) => {
      socket.destroy();
      resolve(d.toString().startsWith('SSH-'));
    });
    socket.once('error', () => resolve(false));
  });
}

function track(running: Running, child: ChildProcess): Child {
  const c: Child = { child, exited: false };
  child.on('exit', () => {
    c.exited = true;
  });
  child.on('error', () => {
    c.exited = true;
  });
  child.unref();
  running.children.push(c);
  return c;
}

async function until(what: string, ok: () => boolean | Promise<boolean>, log: string): Promise<void> {
  const started = Date.now();
  while (!(await ok())) {
    if (Date.now() - started > 20_000) {
      const tail = existsSync(log) ? readFileSync(log, 'utf8').split('\n').slice(-30).join('\n') : '';
      throw new Error(`private sshd: ${what} within 20 s\n${tail}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function startSshd(env: Record<string, string> = {}): Promise<Sshd> {
  const reason = sshdSkipReason();
  if (reason !== undefined) throw new Error(`cannot start a private sshd: ${reason}`);
  const dir = mkdtempSync('/tmp/ks-');
  const running: Running = { dir, children: [] };
  live.add(running);
  const stop = async () => {
    if (!live.has(running)) return;
    for (const c of running.children) await killAndWait(c.child, () => c.exited, 5_000, 2_000);
    live.delete(running);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const keygen = findTool('ssh-keygen')!;
    await runOk(keygen, ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'host_key')]);
    await runOk(keygen, ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'client_key')]);
    writeFileSync(join(dir, 'authorized_keys'), readFileSync(join(dir, 'client_key.pub')));
    const port = await freePort();
    const setEnv = Object.entries(env).map(([k, v]) => `${k}=${v}`);
    const config = join(dir, 'sshd_config');
    writeFileSync(
      config,
      [
        `Port ${port}`,
        'ListenAddress 127.0.0.1',
        `HostKey ${join(dir, 'host_key')}`,
        `PidFile ${join(dir, 'sshd.pid')}`,
        `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
        'PermitRootLogin prohibit-password',
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        'UsePAM no',
        'StrictModes no',
        'LogLevel VERBOSE',
        ...(setEnv.length ? [`SetEnv ${setEnv.join(' ')}`] : []),
        '',
      ].join('\n'),
    );
    // sshd's privilege separation directory (the package's tmpfiles.d makes it at boot).
    mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
    const logPath = join(dir, 'sshd.log');
    const logFd = openSync(logPath, 'a');
    try {
      track(
        running,
        spawn(findTool('sshd')!, ['-D', '-e', '-f', config], { stdio: ['ignore', logFd, logFd] }),
      );
    } finally {
      closeSync(logFd);
    }
    const authSock = join(dir, 'agent.sock');
    track(running, spawn(findTool('ssh-agent')!, ['-D', '-a', authSock], { stdio: 'ignore' }));
    await until('ssh-agent did not start', () => existsSync(authSock), logPath);
    await runOk(findTool('ssh-add')!, ['-q', join(dir, 'client_key')], {
      env: { ...process.env, SSH_AUTH_SOCK: authSock },
    });
    await until('sshd did not answer', () => answers(port), logPath);
    const hostKey = readFileSync(join(dir, 'host_key.pub'), 'utf8').split(' ').slice(0, 2).join(' ');
    writeFileSync(join(dir, 'known_hosts'), `[127.0.0.1]:${port} ${hostKey}\n`);
    const host = `ssh://root@127.0.0.1:${port}`;
    const client = (name: string, knownHosts: string): ClientEnv => {
      const config = join(dir, `${name}.ssh_config`);
      writeFileSync(
        config,
        [
          'Host *',
          `  UserKnownHostsFile ${knownHosts}`,
          '  GlobalKnownHostsFile /dev/null',
          '  StrictHostKeyChecking yes',
          '  BatchMode yes',
          '',
        ].join('\n'),
      );
      const bin = join(dir, `${name}-bin`);
      mkdirSync(bin);
      writeFileSync(join(bin, 'ssh'), `#!/bin/sh\nexec ${findTool('ssh')!} -F ${config} "$@"\n`, {
        mode: 0o755,
      });
      return { DOCKER_HOST: host, SSH_AUTH_SOCK: authSock, PATH: `${bin}:${process.env['PATH'] ?? ''}` };
    };
    return {
      host,
      authSock,
      clientEnv: client('client', join(dir, 'known_hosts')),
      strangerEnv: client('stranger', '/dev/null'),
      logPath,
      stop,
      [Symbol.asyncDispose]: stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
