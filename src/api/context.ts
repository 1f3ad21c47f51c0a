/**
 * `kiln-oci/context`: what every operation runs with (`{ context }` in its options): registry settings
 * and credentials, the connection pool, kiln's store, an abort signal and an event sink. Make one with
 * createContext, pass it to any number of operations (concurrent ones too), close it when done.
 * Without one an operation makes its own for that call; two contexts share nothing. Also kiln's
 * errors and its store (`KILN_HOME`).
 */
export {
  type ContextOptions,
  createContext,
  Interrupted,
  KilnContext,
  type KilnEvent,
} from '../context.js';
export { isKilnError, KilnError, type KilnErrorCode, redact } from '../errors.js';
export { collectGarbage, type GcResult } from '../store/gc.js';
export { openStore, storeDir } from '../store/kiln-store.js';
export { OciLayout } from '../store/layout.js';
