/** `kiln-oci/registry`: the distribution protocol's client, its errors, settings and credentials. */
export { login, logout, registryHost } from '../registry/docker-config.js';
export { RegistryError } from '../registry/errors.js';
export { Registry, type RegistryOptions } from '../registry/registry.js';
export type { RetryPolicy } from '../registry/retry.js';
