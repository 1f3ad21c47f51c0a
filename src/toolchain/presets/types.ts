/** The shapes of a language preset, apart from the presets themselves (languages.ts imports them). */
export const LANGUAGES = ['rust', 'tinygo', 'go', 'c', 'dotnet', 'assemblyscript'] as const;
/** A language kiln has a preset for. */
export type Language = (typeof LANGUAGES)[number];

/** How a language builds: toolchain image, command, artifact, native builds. */
export interface Preset {
  lang: Language;
  /** Default toolchain image (a tag, pinned in kiln.lock on first use). */
  image: string;
  /** Run by /bin/sh -c in /src; writes "$KILN_OUT/app.wasm". */
  command: string;
  env: Record<string, string>;
  /** File names (or `*.ext`) at the top of the project that mark it as this language. */
  markers: string[];
  /** The command fetches what it needs: the build gets a network unless told otherwise. */
  needsNetwork?: boolean;
  /**
   * The build for a native (linux) target, cross-compiling in the same image; absent when the
   * language has none. The build sees the target in $KILN_TARGET_* (see compile.ts).
   */
  native?: (target: NativeTarget) => NativeBuild;
}

/** A native target as a preset needs it. */
export interface NativeTarget {
  /** Go's names: amd64, arm64, arm, 386, ppc64le, s390x, riscv64. */
  arch: string;
  variant?: string;
  /** GNU triple: x86_64-linux-gnu, aarch64-linux-gnu, arm-linux-gnueabihf, ... */
  triple: string;
}

export interface NativeBuild {
  /** Run by /bin/sh -c in /src; writes "$KILN_OUT/app". */
  command: string;
  env: Record<string, string>;
}
