/**
 * Finding the credentials for a registry, in the order users of docker, skopeo and crane expect:
 * `--creds`, then env KILN_AUTH, then docker's config.json (credHelpers, auths, credsStore), else none.
 */
import { KilnError } from '../errors.js';
import type { Credentials } from './docker-config.js';
import {
  authsOf,
  credHelperFor,
  credsStoreOf,
  dockerConfigPath,
  entryCredentials,
  type HelperOptions,
  helperGet,
  matchingKeys,
  parseConfigJson,
  readDockerConfig,
  registryHost,
  serverAddress,
} from './docker-config.js';

export type { Credentials } from './docker-config.js';

export interface FoundCredentials {
  credentials?: Credentials;
  /** Where they came from, for --debug output (never the secret): '--creds', 'KILN_AUTH', a file, a helper, 'anonymous'. */
  source: string;
}

export interface FindCredentialsOptions extends HelperOptions {
  /** `user:password` from the command line; wins over everything else. */
  creds?: string;
}

const ANONYMOUS: FoundCredentials = { source: 'anonymous' };

/**
 * The credentials for `registry` (`host[:port]` as in image references; docker.io for Docker Hub).
 * Throws E_USAGE for malformed --creds/KILN_AUTH, E_CREDENTIALS for an unreadable config.json or a
 * failing credential helper; a helper that has nothing for the registry means anonymous.
 */
export async function findCredentials(
  registry: string,
  options: FindCredentialsOptions = {},
): Promise<FoundCredentials> {
  const host = registryHost(registry);
  if (options.creds !== undefined)
    return { credentials: userPassword(options.creds, '--creds'), source: '--creds' };
  const env = options.env ?? process.env;

  const kilnAuth = env['KILN_AUTH'];
  if (kilnAuth !== undefined && kilnAuth.trim() !== '') {
    const credentials = fromKilnAuth(kilnAuth, host);
    // A JSON KILN_AUTH without this registry leaves it to docker's config.
    if (credentials) return { credentials, source: 'KILN_AUTH' };
  }

  const file = dockerConfigPath(env);
  const config = await readDockerConfig(file);
  if (config === undefined) return ANONYMOUS;
  const urls = [...new Set([serverAddress(host), ...matchingKeys(authsOf(config), host)])];

  // As docker: a credHelpers entry is the only place looked at for its registry.
  const perHost = credHelperFor(config, host, file);
  if (perHost) {
    const credentials = await helperGet(perHost.program, urls, options);
    return credentials ? { credentials, source: perHost.program } : ANONYMOUS;
  }
  const auths = authsOf(config);
  for (const key of matchingKeys(auths, host)) {
    const credentials = entryCredentials(auths?.[key], `${file}: auths["${key}"]`);
    if (credentials) return { credentials, source: `${file} (auths)` };
  }
  const store = credsStoreOf(config, file);
  if (store) {
    const credentials = await helperGet(store.program, urls, options);
    if (credentials) return { credentials, source: store.program };
  }
  return ANONYMOUS;
}

/** `user:password`, split at the first colon. The value is never quoted in the error: it holds the password. */
function userPassword(value: string, what: string): Credentials {
  const colon = value.indexOf(':');
  if (colon <= 0 || colon === value.length - 1)
    throw new KilnError('E_USAGE', `${what} takes USER:PASSWORD (both non-empty)`);
  return { username: value.slice(0, colon), password: value.slice(colon + 1) };
}

/** KILN_AUTH: `user:password` for every registry, or JSON as config.json's `auths` (wrapped or bare). */
function fromKilnAuth(value: string, host: string): Credentials | undefined {
  if (!value.trimStart().startsWith('{')) return userPassword(value, 'KILN_AUTH');
  const parsed = parseConfigJson(value, 'KILN_AUTH');
  const auths = authsOf(parsed) ?? parsed;
  for (const key of matchingKeys(auths, host)) {
    const credentials = entryCredentials(auths[key], `KILN_AUTH: entry "${key}"`);
    if (credentials) return credentials;
  }
  return undefined;
}
