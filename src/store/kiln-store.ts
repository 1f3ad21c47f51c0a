import * as os from 'node:os';
import * as path from 'node:path';
import { OciLayout } from './layout.js';

/** kiln's own store: `KILN_HOME`, else `$XDG_CACHE_HOME/kiln`, else `~/.cache/kiln`. */
export function storeDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.KILN_HOME) return path.resolve(env.KILN_HOME);
  const xdg =
    env.XDG_CACHE_HOME && path.isAbsolute(env.XDG_CACHE_HOME)
      ? env.XDG_CACHE_HOME
      : path.join(os.homedir(), '.cache');
  return path.join(xdg, 'kiln');
}

/** kiln's store (`storeDir()`) opened as an OCI layout. */
export function openStore(env: NodeJS.ProcessEnv = process.env): Promise<OciLayout> {
  return OciLayout.open(storeDir(env), { create: true });
}
