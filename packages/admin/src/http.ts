/** Small HTTP helpers: JSON bodies in (bounded, validated), JSON out, errors as `{ error: { code, message } }`. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { z } from 'zod';

export type ErrorCode =
  | 'bad-request'
  | 'unauthorized'
  | 'forbidden'
  | 'not-found'
  | 'method-not-allowed'
  | 'conflict'
  | 'payload-too-large'
  | 'unsupported-media-type'
  | 'not-enabled'
  | 'too-many-requests'
  | 'internal-error';

/** An answer other than success; its message goes to the caller, so it never holds a secret. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: ErrorCode,
    message: string,
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

const BASE_HEADERS = {
  'content-type': 'application/json; charset=utf-8',
  // answers name clients, users and rules: never cached, never sniffed, never framed
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
  'content-security-policy': "default-src 'none'; frame-ancestors 'none'",
} as const;

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Readonly<Record<string, string>> = {}): void {
  if (res.headersSent) return;
  if (status === 204) {
    res.writeHead(204, { ...BASE_HEADERS, ...headers });
    res.end();
    return;
  }
  const text = JSON.stringify(body) + '\n';
  res.writeHead(status, { ...BASE_HEADERS, 'content-length': String(Buffer.byteLength(text)), ...headers });
  res.end(text);
}

export function sendError(res: ServerResponse, err: HttpError): void {
  sendJson(res, err.status, { error: { code: err.code, message: err.message } }, err.headers);
}

/** Read a request body of at most `limit` bytes and parse it as JSON; undefined for an empty body. */
export async function readJson(req: IncomingMessage, limit: number): Promise<unknown> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) throw new HttpError(413, 'payload-too-large', `the body is larger than ${limit} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new HttpError(413, 'payload-too-large', `the body is larger than ${limit} bytes`);
    chunks.push(chunk);
  }
  if (size === 0) return undefined;
  const type = String(req.headers['content-type'] ?? '');
  // JSON only: a form or text/plain body is what a cross-site browser request could send without a preflight
  if (!/^application\/json\s*(;|$)/i.test(type)) throw new HttpError(415, 'unsupported-media-type', 'send the body as application/json');
  try {
    return JSON.parse(Buffer.concat(chunks, size).toString('utf8')) as unknown;
  } catch (err) {
    throw new HttpError(400, 'bad-request', `the body is not valid JSON: ${(err as Error).message}`);
  }
}

/** `rules[2].topics[0]: must not be empty; username: required` — every problem, with its path. */
export function describeZodError(error: z.ZodError): string {
  return error.issues
    .map((i) => {
      const path = i.path.map((p, n) => (typeof p === 'number' ? `[${p}]` : n === 0 ? String(p) : `.${String(p)}`)).join('');
      return path === '' ? i.message : `${path}: ${i.message}`;
    })
    .join('; ');
}

/** Validate a parsed body; a bad one is a 400 naming every problem. */
export function parseBody<S extends z.ZodType>(schema: S, body: unknown): z.output<S> {
  const r = schema.safeParse(body);
  if (!r.success) throw new HttpError(400, 'bad-request', body === undefined ? 'a JSON body is required here' : `invalid body: ${describeZodError(r.error)}`);
  return r.data;
}
