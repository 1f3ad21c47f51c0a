/**
 * kiln's library API, `kiln-oci`: everything under `src/api/`, one module per area, each also its
 * own subpath export (`kiln-oci/oci`, `kiln-oci/image`, …). The CLI uses only these. Naming:
 * docs/architecture.md, "The public API".
 */

export * from './api/build.js';
export * from './api/check.js';
export * from './api/context.js';
export * from './api/debian.js';
export * from './api/image.js';
export * from './api/oci.js';
export * from './api/registry.js';
export * from './api/run.js';
export * from './api/sbom.js';
export * from './api/sign.js';
export * from './api/toolchain.js';
export * from './api/transport.js';
export * from './api/wasm.js';
