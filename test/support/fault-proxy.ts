/**
 * A fault-injecting reverse proxy for registry tests: streams requests to a real plain-HTTP registry
 * (or any HTTP server) and back, like `startRequestLog`, but answers chosen requests with a fault
 * instead: an error status, a connection reset before the response or in the middle of a body, a
 * delay, or a corrupted response body. The Host header stays the proxy's, so the registry's absolute
 * Location URLs (upload sessions) come back through the proxy and can be faulted too.
 *
 * Rules are matched in order against every request; each rule counts the requests it matches and
 * faults those after the first `skip`, `times` of them. Every request is recorded with what was done
 * to it.
 *
 * `randomCuts` puts a TCP layer in front that cuts connections at random, as a flaky network does:
 * each new client connection is picked with a probability, and a picked one is reset once a random
 * number of bytes has passed in one direction (request or response), wherever in whichever request
 * that falls. The picks come from a seeded PRNG, so a run can be repeated (connections are numbered
 * in the order they arrive). Every connection is recorded, with its plan and whether it was cut.
 *
 * `startRequestLog` is the same proxy without faults: it counts requests, and can answer blob GETs with
 * a redirect to a storage URL, as registries backed by S3 or a CDN do.
 *
 * `startConnectionCounter` is a plain TCP pass-through that counts connections and tells TLS
 * handshakes from plain HTTP, for proving a client does not retry a TLS failure.
 */

import { randomBytes } from 'node:crypto';
import {
  Agent,
  createServer,
  request as httpRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  type ServerResponse,
} from 'node:http';
import { createConnection, createServer as createNetServer, type Socket } from 'node:net';
import { after } from 'node:test';
import { listenLoopback, stopper } from './net.js';
import { prng } from './random.js';

export type Fault =
  /** Answer this status (with an OCI error body, and `Retry-After` if given) without asking upstream. */
  | { status: number; retryAfter?: string; headers?: Record<string, string>; body?: string }
  /** Read the request (not forwarded), then reset the connection: the client gets no response. */
  | { reset: 'before-response' }
  /**
   * Reset the connection after `afterBytes` bytes of a body. `side` defaults to `request` for
   * requests that carry a body (PUT/PATCH/POST), `response` otherwise. On the request side the
   * bytes read are not forwarded unless `forward` is set: then the upstream request is cut too, and
   * the client's connection reset 100 ms later.
   */
  | { reset: 'mid-body'; afterBytes: number; side?: 'request' | 'response'; forward?: boolean }
  /** Hold the request this long, then forward it (unless the client went away meanwhile). */
  | { delayMs: number }
  /** Forward, and flip the bits of one byte of the response body (same length, other content). */
  | { corruptBody: true }
  /**
   * Forward, but stop sending the response body after `afterBytes` bytes (headers already sent):
   * for `ms`, then go on, or (without `ms`) until the client gives up and goes away.
   */
  | { stall: 'mid-body'; afterBytes: number; ms?: number }
  /** Forward without the request's Range header: the server answers as one without range support. */
  | { ignoreRange: true };

export interface FaultRule {
  match: {
    method?: string;
    /** Tested against the request's path and query, as requested. */
    path?: RegExp;
  };
  /** Matching requests let through untouched before faults start (default 0). */
  skip?: number;
  /** Matching requests faulted after the skipped ones (default 1; Infinity for all). */
  times?: number;
  fault: Fault;
}

export interface FaultLogEntry {
  method: string;
  /** Path without the query. */
  path: string;
  /** Path and query, as requested. */
  url: string;
  /** Status answered to the client; 'reset' when the connection was reset; 0 until known. */
  status: number | 'reset';
  /** What the proxy did instead of (or to) the registry's answer, e.g. `503`, `reset:mid-body`. */
  fault?: string;
  /** Date.now() when the request arrived. */
  at: number;
  /** Request body bytes the proxy read from the client. */
  bytesIn: number;
  /** Response body bytes the proxy sent to the client. */
  bytesOut: number;
  /** The request's Range header, if it had one. */
  range?: string;
}

export interface RandomCuts {
  /** Share of new connections picked to be cut, 0 to 1. */
  probability: number;
  /** Seeds the PRNG behind the picks, directions and offsets. */
  seed: number;
  /**
   * A picked connection is cut after an offset drawn log-uniformly from [minOffset, maxOffset]
   * bytes (default minOffset 16): as often in the first KiBs (headers, tokens, manifests, small
   * answers) as in the MiBs of a blob. A connection that ends before the offset is not cut.
   */
  maxOffset: number;
  minOffset?: number;
  /** Which byte streams may be cut (default both): `request` is what the client sends. */
  directions?: ('request' | 'response')[];
}

export interface ConnectionLogEntry {
  /** 1, 2, … in the order connections arrived. */
  id: number;
  at: number;
  /** The planned cut, for a picked connection. */
  plan?: { direction: 'request' | 'response'; offset: number };
  /** True once the connection was cut as planned. */
  cut: boolean;
  /** Bytes from the client (all its requests, headers included). */
  bytesIn: number;
  /** Bytes to the client. */
  bytesOut: number;
}

export interface FaultProxyOptions {
  rules?: FaultRule[];
  /** Replaces text in response header values (e.g. a token realm, to send token requests through another proxy). */
  rewriteHeaders?: { from: string; to: string }[];
  /** Called as each request arrives, after it is logged. */
  onRequest?: (entry: FaultLogEntry) => void;
  /** Cut connections at random (see the file comment). */
  randomCuts?: RandomCuts;
}

export interface FaultProxy {
  /** `127.0.0.1:PORT` of the proxy. */
  readonly host: string;
  /** `http://127.0.0.1:PORT`. */
  readonly url: string;
  /** Every request the proxy got, in arrival order. */
  readonly requests: FaultLogEntry[];
  /** Every client connection, in arrival order (with `randomCuts` only). */
  readonly connections: ConnectionLogEntry[];
  /** Replaces the rules (and starts their counts afresh). */
  setRules(rules: FaultRule[]): void;
  /** Empties `requests` (in place). */
  clear(): void;
  /** Stops the proxy (not the upstream server). Idempotent. */
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

// Hop-by-hop headers (RFC 9110 7.6.1): each connection has its own.
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'upgrade']);

function forwardHeaders(
  headers: IncomingHttpHeaders,
  rewrite: readonly { from: string; to: string }[] = [],
  drop: readonly string[] = [],
): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  const fix = (v: string) => rewrite.reduce((s, r) => s.split(r.from).join(r.to), v);
  for (const [k, v] of Object.entries(headers)) {
    if (v === undefined || HOP_BY_HOP.has(k) || drop.includes(k)) continue;
    out[k] = Array.isArray(v) ? v.map(fix) : fix(v);
  }
  return out;
}

function describeFault(f: Fault): string {
  if ('status' in f) return String(f.status);
  if ('reset' in f) return `reset:${f.reset}`;
  if ('delayMs' in f) return `delay:${f.delayMs}`;
  if ('stall' in f) return `stall:${f.stall}`;
  if ('ignoreRange' in f) return 'ignore-range';
  return 'corrupt';
}

/** Resets the client's connection (RST, not FIN), as a crashed peer or a middlebox would. */
function resetClient(res: ServerResponse): void {
  const socket = res.socket ?? res.req.socket;
  if (socket && !socket.destroyed) socket.resetAndDestroy();
}

/** {@link startFaultProxy}, stopped when the test (or file) that starts it is done (node:test `after`). */
export async function faultProxy(target: string, options: FaultProxyOptions = {}): Promise<FaultProxy> {
  const p = await startFaultProxy(target, options);
  after(() => p.stop());
  return p;
}

/** Starts a fault-injecting reverse proxy in front of the plain-HTTP server at `target`. */
export async function startFaultProxy(target: string, options: FaultProxyOptions = {}): Promise<FaultProxy> {
  const upstream = new URL(target);
  if (upstream.protocol !== 'http:') throw new Error(`startFaultProxy: only http:// targets, got ${target}`);
  const agent = new Agent({ keepAlive: true });
  const requests: FaultLogEntry[] = [];
  let rules: FaultRule[] = options.rules ?? [];
  let counts = new Map<FaultRule, number>();

  /** The fault for this request, if a rule's window covers it. Every matching rule counts it. */
  const faultFor = (method: string, url: string): Fault | undefined => {
    let chosen: Fault | undefined;
    for (const rule of rules) {
      if (rule.match.method !== undefined && rule.match.method !== method) continue;
      if (rule.match.path !== undefined && !rule.match.path.test(url)) continue;
      const n = (counts.get(rule) ?? 0) + 1;
      counts.set(rule, n);
      const skip = rule.skip ?? 0;
      if (chosen === undefined && n > skip && n <= skip + (rule.times ?? 1)) chosen = rule.fault;
    }
    return chosen;
  };

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const method = req.method ?? 'GET';
    const reqUrl = req.url ?? '/';
    const entry: FaultLogEntry = {
      method,
      path: reqUrl.split('?')[0]!,
      url: reqUrl,
      status: 0,
      at: Date.now(),
      bytesIn: 0,
      bytesOut: 0,
    };
    if (typeof req.headers.range === 'string') entry.range = req.headers.range;
    requests.push(entry);
    const fault = faultFor(method, reqUrl);
    if (fault) entry.fault = describeFault(fault);
    options.onRequest?.(entry);
    const clientGone = () => req.destroyed || req.socket.destroyed || res.destroyed || res.writableEnded;

    /** Reads the request body to its end (counted, not forwarded), then runs `then`. */
    const drain = (then: () => void) => {
      req.on('data', (c: Buffer) => {
        entry.bytesIn += c.length;
      });
      req.once('end', then);
      req.once('error', () => {});
    };

    if (fault && 'status' in fault) {
      drain(() => {
        const body =
          fault.body ??
          JSON.stringify({ errors: [{ code: 'UNAVAILABLE', message: `fault injected: ${fault.status}` }] });
        const headers: OutgoingHttpHeaders = {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
          ...fault.headers,
        };
        if (fault.retryAfter !== undefined) headers['retry-after'] = fault.retryAfter;
        entry.status = fault.status;
        res.writeHead(fault.status, headers);
        entry.bytesOut = method === 'HEAD' ? 0 : Buffer.byteLength(body);
        res.end(body);
      });
      return;
    }
    if (fault && 'reset' in fault && fault.reset === 'before-response') {
      drain(() => {
        entry.status = 'reset';
        resetClient(res);
      });
      return;
    }

    const hasBody =
      (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0') ||
      req.headers['transfer-encoding'] !== undefined;
    const midBody = fault && 'reset' in fault && fault.reset === 'mid-body' ? fault : undefined;
    const cutRequest = midBody && (midBody.side ?? (hasBody ? 'request' : 'response')) === 'request';
    const cutResponse = midBody && !cutRequest;
    const stall = fault && 'stall' in fault ? fault : undefined;
    let stalled = false;

    const forward = () => {
      if (clientGone()) {
        entry.status = 0;
        entry.fault = `${entry.fault ?? ''} (client gone)`.trim();
        return;
      }
      if (cutRequest && !midBody.forward) {
        let reset = false;
        req.on('data', (c: Buffer) => {
          if (reset) return;
          entry.bytesIn += c.length;
          if (entry.bytesIn >= midBody.afterBytes) {
            reset = true;
            entry.status = 'reset';
            resetClient(res);
          }
        });
        req.once('end', () => {
          if (!reset) {
            entry.status = 'reset';
            resetClient(res);
          }
        });
        req.once('error', () => {});
        return;
      }
      const up = httpRequest(
        {
          host: upstream.hostname,
          port: upstream.port,
          method,
          path: reqUrl,
          headers: forwardHeaders(req.headers, [], fault && 'ignoreRange' in fault ? ['range'] : []),
          agent,
        },
        (ures) => {
          const status = ures.statusCode ?? 502;
          const headers = forwardHeaders(ures.headers, options.rewriteHeaders);
          res.writeHead(status, ures.statusMessage, headers);
          entry.status = status;
          let corrupted = false;
          let cut = false;
          ures.on('data', (chunk: Buffer) => {
            if (cut) return;
            let out = chunk;
            if (fault && 'corruptBody' in fault && !corrupted && chunk.length > 0) {
              corrupted = true;
              out = Buffer.from(chunk);
              const i = Math.floor(out.length / 2);
              out[i] = out[i]! ^ 0xff;
            }
            if (cutResponse && entry.bytesOut + out.length >= midBody.afterBytes) {
              cut = true;
              out = out.subarray(0, Math.max(0, midBody.afterBytes - entry.bytesOut));
              entry.bytesOut += out.length;
              entry.status = 'reset';
              ures.destroy();
              // Let the head and the bytes so far reach the client, then reset.
              res.write(out, () => setTimeout(() => resetClient(res), 20));
              return;
            }
            if (stall && !stalled && entry.bytesOut + out.length >= stall.afterBytes) {
              // Send up to the stall point; hold the rest back, and the upstream with it (which then
              // stops sending too, and finds out only afterwards if the client went away).
              stalled = true;
              const at = Math.max(0, stall.afterBytes - entry.bytesOut);
              const held = out.subarray(at);
              out = out.subarray(0, at);
              entry.bytesOut += out.length;
              res.flushHeaders();
              if (out.length > 0) res.write(out);
              ures.pause();
              if (stall.ms !== undefined)
                setTimeout(() => {
                  if (res.destroyed) return;
                  entry.bytesOut += held.length;
                  res.write(held);
                  ures.resume();
                }, stall.ms).unref();
              return;
            }
            entry.bytesOut += out.length;
            if (!res.write(out)) {
              ures.pause();
              res.once('drain', () => ures.resume());
            }
          });
          ures.on('end', () => {
            if (!cut) res.end();
          });
          ures.on('error', () => {
            if (!cut) res.destroy();
          });
          // The upstream went away mid-body (a registry stopped): so does the client's response.
          ures.on('close', () => {
            if (!ures.complete && !cut) res.destroy();
          });
        },
      );
      up.on('error', (e) => {
        if (entry.status === 'reset') return;
        if (res.headersSent) res.destroy();
        else {
          entry.status = 502;
          res.writeHead(502, { 'content-type': 'text/plain' });
          res.end(`proxy: ${e.message}\n`);
        }
      });
      res.on('close', () => {
        if (!res.writableFinished) up.destroy(); // the client went away
      });
      req.on('data', (c: Buffer) => {
        if (entry.status === 'reset') return;
        entry.bytesIn += c.length;
        if (cutRequest && entry.bytesIn >= midBody.afterBytes) {
          // The registry gets what was read so far, then its request is cut as well; the client's
          // connection is reset only once the registry has had time to handle the cut, so what it
          // answers the client next does not race its handling of the broken request.
          const keep = c.subarray(0, c.length - (entry.bytesIn - midBody.afterBytes));
          entry.bytesIn = midBody.afterBytes;
          entry.status = 'reset';
          up.write(keep, () =>
            setTimeout(() => {
              up.destroy();
              setTimeout(() => resetClient(res), 100);
            }, 20),
          );
          return;
        }
        if (!up.write(c)) {
          req.pause();
          up.once('drain', () => req.resume());
        }
      });
      req.on('end', () => {
        if (entry.status !== 'reset') up.end();
      });
      req.on('error', () => up.destroy());
    };

    if (fault && 'delayMs' in fault) setTimeout(forward, fault.delayMs).unref();
    else forward();
  };

  const server = createServer(handle);
  const innerPort = await listenLoopback(server);
  const connections: ConnectionLogEntry[] = [];
  const front = options.randomCuts
    ? await startCutter(innerPort, options.randomCuts, connections)
    : undefined;
  const port = front?.port ?? innerPort;
  const url = `http://127.0.0.1:${port}`;
  const stop = stopper(server, agent, front?.stop);
  return {
    host: `127.0.0.1:${port}`,
    url,
    requests,
    connections,
    setRules: (next) => {
      rules = next;
      counts = new Map();
    },
    clear: () => {
      requests.length = 0;
    },
    stop,
    [Symbol.asyncDispose]: stop,
  };
}

/**
 * The random-cut layer: a TCP pass-through to the proxy's HTTP server on `innerPort` that resets
 * picked connections at their planned offset. A request cut is cut on the inside too (the registry
 * gets the bytes that passed, then a broken connection); a response cut reaches the client after the
 * bytes before it.
 */
async function startCutter(
  innerPort: number,
  cuts: RandomCuts,
  log: ConnectionLogEntry[],
): Promise<{ port: number; stop(): Promise<void> }> {
  const random = prng(cuts.seed);
  const directions = cuts.directions ?? ['request', 'response'];
  const min = Math.max(1, cuts.minOffset ?? 16);
  const sockets = new Set<Socket>();
  const server = createNetServer((client) => {
    const entry: ConnectionLogEntry = {
      id: log.length + 1,
      at: Date.now(),
      cut: false,
      bytesIn: 0,
      bytesOut: 0,
    };
    log.push(entry);
    if (random() < cuts.probability) {
      const direction = directions[Math.floor(random() * directions.length)]!;
      const offset = Math.round(
        Math.exp(Math.log(min) + random() * (Math.log(cuts.maxOffset) - Math.log(min))),
      );
      entry.plan = { direction, offset };
    }
    const inner = createConnection(innerPort, '127.0.0.1');
    inner.unref();
    sockets.add(client);
    sockets.add(inner);
    let over = false;
    const close = () => {
      over = true;
      sockets.delete(client);
      sockets.delete(inner);
      if (!client.destroyed) client.destroy();
      if (!inner.destroyed) inner.destroy();
    };
    /** Passes `chunk` on, or cuts the connection where the plan says. */
    const pass = (chunk: Buffer, direction: 'request' | 'response') => {
      if (over) return;
      const [from, to] = direction === 'request' ? [client, inner] : [inner, client];
      const before = direction === 'request' ? entry.bytesIn : entry.bytesOut;
      const plan = entry.plan;
      let out = chunk;
      const cutting = plan?.direction === direction && before + chunk.length >= plan.offset;
      if (cutting) out = chunk.subarray(0, plan.offset - before);
      if (direction === 'request') entry.bytesIn += out.length;
      else entry.bytesOut += out.length;
      if (!cutting) {
        if (!to.write(out)) {
          from.pause();
          to.once('drain', () => from.resume());
        }
        return;
      }
      over = true;
      entry.cut = true;
      if (direction === 'request') {
        // The client's connection breaks now; the server gets what passed, then a broken one.
        client.resetAndDestroy();
        if (out.length === 0) inner.destroy();
        else inner.write(out, () => inner.destroy());
      } else {
        inner.destroy();
        // What passed reaches the client before the reset (which would discard unsent bytes).
        if (out.length === 0) client.resetAndDestroy();
        else client.write(out, () => setTimeout(() => client.resetAndDestroy(), 20));
      }
      sockets.delete(client);
      sockets.delete(inner);
    };
    client.on('data', (c: Buffer) => pass(c, 'request'));
    inner.on('data', (c: Buffer) => pass(c, 'response'));
    client.on('end', () => {
      if (!over) inner.end();
    });
    inner.on('end', () => {
      if (!over) client.end();
    });
    client.on('error', close);
    inner.on('error', close);
    client.on('close', () => {
      if (!over) close();
    });
    inner.on('close', () => {
      if (!over) close();
    });
  });
  const port = await listenLoopback(server);
  return {
    port,
    stop: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export interface ConnectionCounter {
  /** `127.0.0.1:PORT` of the counter. */
  readonly host: string;
  /** One entry per connection, by what its first byte says: a TLS handshake or plain text. */
  readonly connections: ('tls' | 'plain' | 'empty')[];
  stop(): Promise<void>;
}

/** A TCP pass-through to `host:port` that records each connection's kind (TLS ClientHello or not). */
export async function startConnectionCounter(target: {
  host: string;
  port: number;
}): Promise<ConnectionCounter> {
  const connections: ('tls' | 'plain' | 'empty')[] = [];
  const sockets = new Set<Socket>();
  const server = createNetServer((client) => {
    const i = connections.push('empty') - 1;
    const up = createConnection(target.port, target.host);
    sockets.add(client);
    sockets.add(up);
    client.once('data', (first: Buffer) => {
      connections[i] = first[0] === 0x16 ? 'tls' : 'plain';
    });
    client.pipe(up);
    up.pipe(client);
    const close = () => {
      client.destroy();
      up.destroy();
      sockets.delete(client);
      sockets.delete(up);
    };
    client.on('error', close);
    up.on('error', close);
    client.on('close', close);
    up.on('close', close);
  });
  const port = await listenLoopback(server);
  return {
    host: `127.0.0.1:${port}`,
    connections,
    stop: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

// ---------------------------------------------------------------------------------------------------
// Counting reverse proxy (no faults)

export interface LoggedRequest {
  method: string;
  /** Path without the query. */
  path: string;
  /** Path and query, as requested. */
  url: string;
  /** Status answered to the client; 0 until the answer's head is sent. */
  status: number;
}

export interface RequestLog {
  /** `127.0.0.1:PORT` of the proxy. */
  readonly host: string;
  /** `http://127.0.0.1:PORT`: use it instead of the registry's URL. */
  readonly url: string;
  /** Every request the proxy got, in arrival order. */
  readonly requests: LoggedRequest[];
  /** Empties `requests` (in place). */
  clear(): void;
  /** Stops the proxy (not the registry). Idempotent. */
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

export interface RequestLogOptions {
  /**
   * Answer `GET /v2/<name>/blobs/<digest>` that the registry would serve with a 307 to
   * `/_storage/<digest>?key=…` on this proxy, which then serves the blob without auth (like a presigned
   * S3 URL). Errors (401, 404) are passed on as they are.
   */
  redirectBlobs?: boolean;
}

const BLOB_PATH = /^\/v2\/(.+)\/blobs\/([a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+)$/;

/**
 * Starts a counting reverse proxy in front of the plain-HTTP registry at `target` (`http://host:port`).
 * Requests are streamed both ways; the Host header stays the proxy's, so the registry's absolute
 * Location URLs (upload sessions) point back to the proxy and are counted too.
 */
export async function startRequestLog(target: string, opts: RequestLogOptions = {}): Promise<RequestLog> {
  const upstream = new URL(target);
  if (upstream.protocol !== 'http:') throw new Error(`startRequestLog: only http:// targets, got ${target}`);
  const agent = new Agent({ keepAlive: true });
  const requests: LoggedRequest[] = [];
  // Storage keys handed out in redirects: which blob, with the credentials that were accepted.
  const storageKeys = new Map<string, { name: string; digest: string; authorization: string | undefined }>();
  let selfUrl = '';

  const server = createServer((req, res) => {
    const reqUrl = req.url ?? '/';
    const path = reqUrl.split('?')[0]!;
    const entry: LoggedRequest = { method: req.method ?? 'GET', path, url: reqUrl, status: 0 };
    requests.push(entry);
    const answer = (status: number, headers: OutgoingHttpHeaders, body?: string) => {
      entry.status = status;
      res.writeHead(status, headers);
      res.end(body);
    };

    let upstreamPath = reqUrl;
    let headers = forwardHeaders(req.headers);
    let redirectable = false;
    if (opts.redirectBlobs && path.startsWith('/_storage/')) {
      const key = new URL(reqUrl, 'http://proxy').searchParams.get('key') ?? '';
      const stored = storageKeys.get(key);
      if (stored === undefined || `/_storage/${stored.digest}` !== path) {
        req.resume();
        answer(403, { 'Content-Type': 'text/plain' }, 'AccessDenied: unknown storage key\n');
        return;
      }
      upstreamPath = `/v2/${stored.name}/blobs/${stored.digest}`;
      headers = forwardHeaders(req.headers, [], ['authorization']);
      if (stored.authorization !== undefined) headers['authorization'] = stored.authorization;
    } else if (opts.redirectBlobs && req.method === 'GET' && BLOB_PATH.test(path)) {
      redirectable = true;
    }

    const up = httpRequest(
      {
        host: upstream.hostname,
        port: upstream.port,
        method: req.method,
        path: upstreamPath,
        headers,
        agent,
      },
      (ures) => {
        const status = ures.statusCode ?? 502;
        if (redirectable && status === 200) {
          ures.destroy(); // the client gets the blob from the storage URL instead
          const [, name, digest] = BLOB_PATH.exec(path)!;
          const key = randomBytes(12).toString('hex');
          storageKeys.set(key, { name: name!, digest: digest!, authorization: req.headers.authorization });
          answer(307, { Location: `${selfUrl}/_storage/${digest}?key=${key}`, 'Content-Length': 0 });
          return;
        }
        entry.status = status;
        res.writeHead(status, ures.statusMessage, forwardHeaders(ures.headers));
        ures.pipe(res);
        ures.on('error', () => res.destroy());
      },
    );
    up.on('error', (e) => {
      if (res.headersSent) res.destroy();
      else answer(502, { 'Content-Type': 'text/plain' }, `proxy: ${e.message}\n`);
    });
    res.on('close', () => {
      if (!res.writableFinished) up.destroy(); // the client went away
    });
    req.pipe(up);
  });

  const port = await listenLoopback(server);
  selfUrl = `http://127.0.0.1:${port}`;
  const stop = stopper(server, agent);
  return {
    host: `127.0.0.1:${port}`,
    url: selfUrl,
    requests,
    clear: () => {
      requests.length = 0;
    },
    stop,
    [Symbol.asyncDispose]: stop,
  };
}
