/** Path matching for the admin routes: `/v1/clients/:id` with each segment URL-decoded. */
import { HttpError } from './http.js';
import type { Method, Route } from './routes/route.js';

interface Compiled {
  readonly route: Route;
  readonly parts: readonly string[];
}

export interface Match {
  readonly route: Route;
  readonly params: Record<string, string>;
}

export class Router {
  readonly #routes: Compiled[];

  constructor(routes: readonly Route[]) {
    this.#routes = routes.map((route) => ({ route, parts: route.path.split('/').slice(1) }));
  }

  /** The route for a method and path; 404 when no path matches, 405 (with Allow) when only the method is wrong. */
  match(method: string, pathname: string): Match {
    let segments: string[];
    try {
      segments = pathname.split('/').slice(1).map((s) => decodeURIComponent(s));
    } catch {
      throw new HttpError(400, 'bad-request', 'malformed percent-encoding in the path');
    }
    if (segments.length > 1 && segments[segments.length - 1] === '') segments.pop(); // trailing slash
    const allowed: Method[] = [];
    for (const c of this.#routes) {
      const params = matchParts(c.parts, segments);
      if (params === undefined) continue;
      if (c.route.method === method) return { route: c.route, params };
      allowed.push(c.route.method);
    }
    if (allowed.length > 0) throw new HttpError(405, 'method-not-allowed', `${method} is not allowed here (allowed: ${allowed.join(', ')})`, { allow: allowed.join(', ') });
    throw new HttpError(404, 'not-found', `no endpoint ${pathname}`);
  }
}

function matchParts(parts: readonly string[], segments: readonly string[]): Record<string, string> | undefined {
  if (parts.length !== segments.length) return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i] as string;
    const s = segments[i] as string;
    if (p.startsWith(':')) {
      if (s === '') return undefined;
      params[p.slice(1)] = s;
    } else if (p !== s) return undefined;
  }
  return params;
}
