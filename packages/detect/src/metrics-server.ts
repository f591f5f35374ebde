/**
 * The Prometheus endpoint: GET <path> on its own HTTP listener (loopback by default), optionally
 * behind a bearer token. Anything else is 404; a wrong or missing token is 401.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { timingSafeEqual, createHash } from 'node:crypto';
import type { BrokerContext } from '@bastion/core';

type Logger = BrokerContext['logger'];

export interface MetricsServerOptions {
  host: string;
  port: number;
  path: string;
  /** Required as `Authorization: Bearer <token>` when set. */
  token?: string | undefined;
  /** Bound but not serving yet (503) until `configure({ held: false })`: a reload binds the new address before it applies. */
  held?: boolean;
}

export interface MetricsServer {
  address(): { host: string; port: number };
  /** Change the path, token or hold for the next request (the address stays). */
  configure(o: Partial<Pick<MetricsServerOptions, 'path' | 'token' | 'held'>>): void;
  close(): Promise<void>;
}

const digest = (s: string) => createHash('sha256').update(s).digest();

export function serveMetrics(source: { scrape(): Promise<string>; readonly contentType: string }, o: MetricsServerOptions, logger?: Logger): Promise<MetricsServer> {
  let path = o.path;
  let want = o.token === undefined ? undefined : digest(`Bearer ${o.token}`);
  let held = o.held === true;
  const server = createServer((req, res) => {
    if (held) {
      res.writeHead(503, { 'content-type': 'text/plain', 'retry-after': '1' }).end('starting\n');
      return;
    }
    const url = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' || url !== path) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    if (want !== undefined && !timingSafeEqual(digest(req.headers.authorization ?? ''), want)) {
      res.writeHead(401, { 'content-type': 'text/plain', 'www-authenticate': 'Bearer' }).end('unauthorized\n');
      return;
    }
    source.scrape().then(
      (text) => res.writeHead(200, { 'content-type': source.contentType }).end(text),
      (err: unknown) => {
        logger?.error({ err }, 'metrics scrape failed');
        res.writeHead(500, { 'content-type': 'text/plain' }).end('scrape failed\n');
      },
    );
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 10_000;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => {
      server.off('error', reject);
      server.on('error', (err) => logger?.error({ err }, 'metrics endpoint error'));
      resolve({
        address: () => {
          const a = server.address() as AddressInfo;
          return { host: a.address, port: a.port };
        },
        configure(c) {
          if (c.path !== undefined) path = c.path;
          if ('token' in c) want = c.token === undefined ? undefined : digest(`Bearer ${c.token}`);
          if (c.held !== undefined) held = c.held;
        },
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            server.closeAllConnections();
          }),
      });
    });
  });
}
