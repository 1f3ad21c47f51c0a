/** Loopback networking for tests. */
import type { Agent, Server as HttpServer } from 'node:http';
import { type AddressInfo, createServer, type Server, type Socket } from 'node:net';

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

/** Listens on a kernel-chosen loopback port; unref'd, as are its connections: never keeps a test alive. */
export function listenLoopback(server: Server): Promise<number> {
  server.on('connection', (socket: Socket) => socket.unref());
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      server.unref();
      resolve((server.address() as AddressInfo).port);
    });
  });
}

/**
 * An idempotent stop for an HTTP server: `before` (if any), then the server closed with its open
 * connections, and `agent` (its upstream connections) destroyed.
 */
export function stopper(
  server: HttpServer,
  agent?: Agent,
  before?: () => Promise<void>,
): () => Promise<void> {
  let stopped = false;
  return async () => {
    if (stopped) return;
    stopped = true;
    await before?.();
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    agent?.destroy();
    await closed;
  };
}
