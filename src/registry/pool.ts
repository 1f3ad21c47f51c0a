/**
 * A connection pool: the Registry objects (one per host and settings, so pings, tokens and sockets
 * are reused) and the HTTP clients under them (one per trust setting). A KilnContext owns one; its
 * close() closes every connection.
 */
import { HttpClient } from './http.js';
import { Registry, type RegistryOptions, tlsKey, tlsOptions } from './registry.js';

export class RegistryPool {
  private readonly clients = new Map<string, HttpClient>();
  private readonly registries = new Map<string, Registry>();

  /** The Registry for `host` with these options, made on first use. */
  registry(host: string, options: RegistryOptions = {}): Registry {
    const key = JSON.stringify([
      host,
      options.creds ?? '',
      options.insecureRegistries ?? [],
      options.caFiles ?? [],
      options.retry ?? null,
    ]);
    let r = this.registries.get(key);
    if (!r) {
      r = new Registry(host, options, this.client(options));
      this.registries.set(key, r);
    }
    return r;
  }

  private client(options: RegistryOptions): HttpClient {
    const key = tlsKey(options);
    let client = this.clients.get(key);
    if (!client) {
      client = new HttpClient(tlsOptions(options));
      this.clients.set(key, client);
    }
    return client;
  }

  /** Closes every connection and forgets every registry (a later use starts afresh). */
  close(): void {
    this.registries.clear();
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }
}
