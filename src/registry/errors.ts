/**
 * RegistryError: what a registry (or the network on the way to it) did, as data. Its `code` is one
 * of KilnError's (E_AUTH, E_NOT_FOUND, E_NETWORK, ...), so scripts see what they always saw; the
 * fields say what retry decisions need, instead of side tables or patterns over messages.
 */
import { KilnError, type KilnErrorCode, type KilnErrorOptions } from '../errors.js';

export interface RegistryErrorOptions extends KilnErrorOptions {
  /** The HTTP status the registry answered, when it answered. */
  status?: number;
  /** The registry's own code from its JSON errors body: `MANIFEST_UNKNOWN`, `DENIED`, ... */
  registryCode?: string;
  /** How long the registry asked to wait (Retry-After), in milliseconds. */
  retryAfterMs?: number;
  /** Another try may cure it, and the retries meant for it are not spent. */
  retryable?: boolean;
  /** What failed without the request it concerns (`ECONNRESET`, `no data for 30 s`), for messages that name the transfer instead. */
  reason?: string;
}

/** What a registry (or the network to it) did: status, the registry's error code, Retry-After, retryable. */
export class RegistryError extends KilnError {
  readonly status: number | undefined;
  readonly registryCode: string | undefined;
  readonly retryAfterMs: number | undefined;
  readonly retryable: boolean;
  readonly reason: string;

  constructor(code: KilnErrorCode, message: string, options: RegistryErrorOptions = {}) {
    super(code, message, options);
    this.name = 'RegistryError';
    this.status = options.status;
    this.registryCode = options.registryCode;
    this.retryAfterMs = options.retryAfterMs;
    this.retryable = options.retryable ?? false;
    this.reason = options.reason ?? this.message;
  }

  /**
   * This error as the final word of a transfer whose retries are spent: not retryable, so an outer
   * loop (an upload whose source this was) does not spend the same retries again. `message`
   * replaces the message when given.
   */
  final(message?: string): RegistryError {
    if (!this.retryable && message === undefined) return this;
    return new RegistryError(this.code, message ?? this.message, {
      hint: this.hint,
      cause: this,
      status: this.status,
      registryCode: this.registryCode,
      retryAfterMs: this.retryAfterMs,
      reason: this.reason,
    });
  }
}

/** True for a failure another try may cure (see RegistryError.retryable). */
export function isRetryable(err: unknown): boolean {
  return err instanceof RegistryError && err.retryable;
}
