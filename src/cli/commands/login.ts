import type { Command } from 'commander';
import { KilnError } from '../../errors.js';
import { action } from '../action.js';
import { examples, registryOptions } from '../common.js';

interface LoginFlags {
  username?: string;
  password?: string;
  passwordStdin?: boolean;
}

export function register(program: Command): void {
  program
    .command('login')
    .description(
      'log in to a registry; credentials are kept where docker keeps them (config.json or its helper)',
    )
    .argument('[registry]', 'registry host[:port]', 'docker.io')
    .option('-u, --username <user>', 'user name')
    .option('-p, --password <password>', 'password or token (insecure: use --password-stdin)')
    .option('--password-stdin', 'read the password from stdin')
    .addHelpText(
      'after',
      examples([
        'echo "$TOKEN" | kiln login ghcr.io -u octocat --password-stdin',
        'kiln login localhost:5000 -u admin',
        'kiln login          # Docker Hub, asks for user name and password',
      ]),
    )
    .action(
      action<LoginFlags>(async ({ out, flags, cmd }, registry) => {
        const { login, registryHost, Registry } = await import('../../api/registry.js');
        const host = registryHost(registry);
        const creds = await askCredentials(flags);
        // Checked against the registry first, as docker does, so bad credentials are never stored.
        const verify = () =>
          new Registry(host, {
            ...registryOptions(cmd),
            creds: `${creds.username}:${creds.password}`,
          }).checkLogin();
        const result = await login(host, creds, { verify });
        out.debug(`credentials for ${host} stored with ${result.store}; ${result.configPath} updated`);
        return {
          json: { registry: host, configPath: result.configPath, store: result.store },
          human: () => out.info('Login Succeeded'),
        };
      }),
    );

  program
    .command('logout')
    .description('remove the credentials for a registry from docker config.json and its helper')
    .argument('[registry]', 'registry host[:port]', 'docker.io')
    .addHelpText('after', examples(['kiln logout ghcr.io']))
    .action(
      action(async ({ out }, registry) => {
        const { logout, registryHost } = await import('../../api/registry.js');
        const host = registryHost(registry);
        const result = await logout(host);
        return {
          json: { registry: host, configPath: result.configPath, removed: result.removed },
          human: () =>
            out.info(result.removed ? `Removed login credentials for ${host}` : `Not logged in to ${host}`),
        };
      }),
    );
}

/** User name and password from the flags, else stdin (piped), else prompts on the terminal. */
async function askCredentials(opts: LoginFlags): Promise<{ username: string; password: string }> {
  if (opts.password !== undefined && opts.passwordStdin)
    throw new KilnError('E_USAGE', '--password and --password-stdin cannot be used together');
  if (opts.password !== undefined)
    process.stderr.write('WARNING! Using --password via the CLI is insecure. Use --password-stdin.\n');
  const tty = process.stdin.isTTY === true;
  let username = opts.username;
  let password = opts.password;
  if (password === undefined && (opts.passwordStdin || !tty)) {
    if (!username)
      throw new KilnError('E_USAGE', '--username is required when the password comes from stdin');
    password = (await readStdin()).replace(/\r?\n$/, '');
    if (password === '') throw new KilnError('E_USAGE', 'no password on stdin');
  }
  if (!username) {
    if (!tty) throw new KilnError('E_USAGE', '--username is required when stdin is not a terminal');
    username = (await promptLine('Username: ')).trim();
  }
  password ??= await promptHidden('Password: ');
  return { username, password };
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

async function promptLine(question: string): Promise<string> {
  const readline = await import('node:readline/promises');
  const rl = readline.createInterface({ input: process.stdin, output: process.stderr });
  try {
    return await rl.question(question);
  } finally {
    rl.close();
  }
}

/** Reads a line from the terminal in raw mode, echoing nothing. */
async function promptHidden(question: string): Promise<string> {
  const stdin = process.stdin;
  process.stderr.write(question);
  stdin.setRawMode(true);
  stdin.resume();
  try {
    return await new Promise<string>((resolve, reject) => {
      let value = '';
      const onData = (chunk: Buffer) => {
        for (const ch of chunk.toString('utf8')) {
          if (ch === '\r' || ch === '\n' || (ch === '\u0004' && value === '')) {
            stdin.off('data', onData);
            return resolve(value);
          }
          if (ch === '\u0003') {
            stdin.off('data', onData);
            return reject(new KilnError('E_ABORTED', 'login cancelled'));
          }
          if (ch === '\u007f' || ch === '\b') value = [...value].slice(0, -1).join('');
          else if (ch === '\u001b')
            break; // an escape sequence (arrow keys): ignore the rest of it
          else if (ch >= ' ') value += ch;
        }
      };
      stdin.on('data', onData);
    });
  } finally {
    stdin.setRawMode(false);
    stdin.pause();
    process.stderr.write('\n');
  }
}
