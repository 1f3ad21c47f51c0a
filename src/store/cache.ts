import * as os from 'node:os';
import * as path from 'node:path';
import { OciLayout } from './layout.js';

/** kiln's own store: `KILN_HOME`, else `$XDG_CACHE_HOME/kiln`, else `~/.cache/kiln`. */
export function cacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.KILN_HOME) return path.resolve(env.KILN_HOME);
  const xdg =
    env.XDG_CACHE_HOME && path.isAbsolute(env.XDG_CACHE_HOME)
      ? env.XDG_CACHE_HOME
      : path.join(os.homedir(), '.cache');
  return path.join(xdg, 'kiln');
}

export function openCache(env: NodeJS.ProcessEnv = process.env): Promise<OciLayout> {
  return OciLayout.open(cacheDir(env), { create: true });
}
