/** Loopback networking for tests. */
import { type AddressInfo, createServer } from 'node:net';

/**
 * A tcp port on 127.0.0.1 that was free a moment ago: whoever binds it next (a registry, an engine)
 * does so itself, so a clash is possible.
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}
