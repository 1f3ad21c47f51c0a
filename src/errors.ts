/**
 * The one error type a user can meet. `code` is stable (scripts match on it), `message` is one
 * line, `hint` says what would work. Programmer errors stay plain `Error`.
 */
export type KilnErrorCode =
  | 'E_USAGE'
  | 'E_NOT_FOUND'
  | 'E_NOT_WASM'
  | 'E_BAD_REFERENCE'
  | 'E_BAD_PLATFORM'
  | 'E_BAD_DIGEST'
  | 'E_DIGEST_MISMATCH'
  | 'E_SIZE_MISMATCH'
  | 'E_TOO_LARGE'
  | 'E_BAD_MANIFEST'
  | 'E_BAD_CONFIG'
  | 'E_BAD_LAYOUT'
  | 'E_BAD_ARCHIVE'
  | 'E_BAD_TAR'
  | 'E_UNSAFE_PATH'
  | 'E_UNKNOWN_FORMAT'
  | 'E_UNKNOWN_TRANSPORT'
  | 'E_NO_MATCHING_PLATFORM'
  | 'E_AMBIGUOUS'
  | 'E_NOT_RUNNABLE'
  | 'E_TRAP'
  | 'E_ENGINE'
  | 'E_UNSUPPORTED'
  | 'E_IO'
  | 'E_LOCKED'
  | 'E_AUTH'
  | 'E_DENIED'
  | 'E_CREDENTIALS'
  | 'E_NETWORK'
  | 'E_TLS'
  | 'E_REGISTRY'
  | 'E_TIMEOUT'
  | 'E_ABORTED'
  | 'E_BUILD_FAILED'
  | 'E_NO_ARTIFACT'
  | 'E_WRONG_PLATFORM'
  | 'E_NO_RUNNER'
  | 'E_RUNNER'
  | 'E_OFFLINE'
  | 'E_BAD_PROJECT'
  | 'E_UNKNOWN_LANGUAGE'
  | 'E_BASE_MISMATCH'
  | 'E_BAD_KEY'
  | 'E_BAD_PASSWORD'
  | 'E_VERIFY_FAILED'
  | 'E_BAD_POLICY'
  | 'E_UNRESOLVED'
  | 'E_CHECK_FAILED';

export interface KilnErrorOptions {
  hint?: string;
  cause?: unknown;
}

/** An error a user can hit: a stable `code`, a one-line message and a hint. */
export class KilnError extends Error {
  readonly code: KilnErrorCode;
  readonly hint: string | undefined;

  constructor(code: KilnErrorCode, message: string, options: KilnErrorOptions = {}) {
    super(redact(message.replace(/\s*\n\s*/g, ' ')), { cause: options.cause });
    this.name = 'KilnError';
    this.code = code;
    this.hint = options.hint === undefined ? undefined : redact(options.hint);
  }

  toJSON(): { code: string; message: string; hint?: string } {
    return this.hint
      ? { code: this.code, message: this.message, hint: this.hint }
      : { code: this.code, message: this.message };
  }
}

/** Whether `e` is a KilnError (with `code`, when given). */
export function isKilnError(e: unknown, code?: KilnErrorCode): e is KilnError {
  return e instanceof KilnError && (code === undefined || e.code === code);
}

/** Strips credentials from anything that might carry them: URL userinfo, auth headers, tokens. */
export function redact(text: string): string {
  return text
    .replace(/(\b[a-z][a-z0-9+.-]*:\/\/)[^/\s:@]+(:[^/\s@]*)?@/gi, '$1***@')
    .replace(
      /\b(authorization|proxy-authorization)(["']?\s*[:=]\s*["']?)(basic|bearer)\s+[^\s"',}]+/gi,
      '$1$2$3 ***',
    )
    .replace(
      /\b(password|passwd|token|access_token|refresh_token|identitytoken|secret)(["']?\s*[:=]\s*["']?)[^\s"',}&]+/gi,
      '$1$2***',
    );
}

/** Wraps a Node system error (ENOENT, EACCES, ...) as a KilnError naming the path. */
/** What a file operation gives, or undefined when the file is not there; any other failure as `ioError`. */
export async function unlessMissing<T>(op: Promise<T>, what: string): Promise<T | undefined> {
  try {
    return await op;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw ioError(err, what);
  }
}

export function ioError(err: unknown, what: string): KilnError {
  const e = err as NodeJS.ErrnoException;
  if (e && e.code === 'ENOENT')
    return new KilnError('E_NOT_FOUND', `${what}: no such file or directory`, { cause: err });
  if (e && (e.code === 'EACCES' || e.code === 'EPERM'))
    return new KilnError('E_IO', `${what}: permission denied`, { cause: err });
  return new KilnError('E_IO', `${what}: ${e?.message ?? String(err)}`, { cause: err });
}
