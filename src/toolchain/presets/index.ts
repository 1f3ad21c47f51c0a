/**
 * Language presets: which toolchain image and command build a project, and how kiln tells the
 * language from the files in the directory. kiln.yaml and flags override image and command.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { KilnError } from '../../errors.js';
import { assemblyscript, c, dotnet, go, rust, tinygo } from './languages.js';

export { LANGUAGES, type Language, type NativeBuild, type NativeTarget, type Preset } from './types.js';

import { LANGUAGES, type Language, type NativeBuild, type NativeTarget, type Preset } from './types.js';

/** The artifact every preset writes, relative to /out. */
export const DEFAULT_ARTIFACT = 'app.wasm';
/** The artifact every preset's native build writes, relative to /out. */
export const DEFAULT_NATIVE_ARTIFACT = 'app';

const PRESETS: Readonly<Record<Language, Preset>> = { rust, tinygo, go, c, dotnet, assemblyscript };

/** Whether `value` names a language kiln has a preset for. */
export function isLanguage(value: string): value is Language {
  return (LANGUAGES as readonly string[]).includes(value);
}

/** The preset (toolchain image, command, artifact) of a language. */
export function preset(lang: string): Preset {
  if (!isLanguage(lang))
    throw new KilnError('E_UNKNOWN_LANGUAGE', `unknown language '${lang}'`, {
      hint: `use one of ${LANGUAGES.join(', ')}, or --toolchain IMAGE --command CMD`,
    });
  return PRESETS[lang];
}

/** The preset's build for a native target; E_UNSUPPORTED for languages that only build wasm. */
export function nativeBuild(p: Preset, target: NativeTarget, platform: string): NativeBuild {
  if (!p.native)
    throw new KilnError('E_UNSUPPORTED', `${p.lang} has no native target in kiln (asked for ${platform})`, {
      hint: `build it for wasm (no --platform, or wasip1/wasm), or give --toolchain IMAGE --command CMD that writes $KILN_OUT/app for $KILN_TARGET_PLATFORM`,
    });
  return p.native(target);
}

/** Order of detection: the most specific markers first (C last: stray .c files are common). */
const DETECT_ORDER: readonly Language[] = ['rust', 'tinygo', 'go', 'dotnet', 'assemblyscript', 'c'];

function matches(marker: string, names: readonly string[]): boolean {
  if (marker.startsWith('*.')) return names.some((n) => n.endsWith(marker.slice(1)));
  return names.includes(marker);
}

/** The language of the project in `dir`, from its top-level files; E_UNKNOWN_LANGUAGE when none fits. */
export async function detectLanguage(dir: string): Promise<Language> {
  const names = await fs.readdir(dir).catch((err: NodeJS.ErrnoException) => {
    throw new KilnError(
      err.code === 'ENOENT' ? 'E_NOT_FOUND' : 'E_IO',
      `cannot read the project directory ${dir}: ${err.code ?? err.message}`,
    );
  });
  for (const lang of DETECT_ORDER) {
    if (lang === 'assemblyscript') {
      if (names.includes('package.json') && (await usesAssemblyScript(path.join(dir, 'package.json'))))
        return lang;
      continue;
    }
    if (PRESETS[lang].markers.some((m) => matches(m, names))) return lang;
  }
  throw new KilnError('E_UNKNOWN_LANGUAGE', `cannot tell the language of the project in ${dir}`, {
    hint: `kiln looks for Cargo.toml, go.mod, *.csproj, package.json with assemblyscript, *.c or CMakeLists.txt; or pass --lang (${LANGUAGES.join(', ')})`,
  });
}

async function usesAssemblyScript(file: string): Promise<boolean> {
  try {
    const pkg = JSON.parse(await fs.readFile(file, 'utf8')) as Record<
      string,
      Record<string, string> | undefined
    >;
    return ['dependencies', 'devDependencies'].some((k) => pkg[k]?.assemblyscript !== undefined);
  } catch {
    return false;
  }
}
