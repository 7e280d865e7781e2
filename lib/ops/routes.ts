/**
 * A small route table for the LB's HTTP API: method and path pattern to a
 * handler, with 404 for an unknown path, 405 and `Allow` for a known path
 * and the wrong method, HEAD served as GET, and path segments decoded (a bad
 * percent-encoding is 400). Handlers throw {@linkcode HttpError} to answer
 * with a status; the table turns it into `{"error": ...}`.
 *
 * @module
 */

/** An answer other than 200, with the message the client gets. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = "HttpError";
  }
}

/** A handler: the request, the named path segments, and the parsed URL. */
export type RouteHandler = (
  req: Request,
  params: Record<string, string>,
  url: URL,
) => Response | Promise<Response>;

interface _Route {
  method: string;
  parts: string[];
  handler: RouteHandler;
}

/**
 * Methods and path patterns (`/api/servers/:address`) to handlers.
 *
 * @example
 * ```ts
 * import { Router } from "./routes.ts";
 * const router = new Router().add("GET", "/health/:address", (_req, p) => new Response(p.address));
 * await (await router.handle(new Request("http://x/health/10.0.0.7%3A4243"))).text(); // "10.0.0.7:4243"
 * (await router.handle(new Request("http://x/health/a", { method: "POST" }))).status; // 405
 * ```
 */
export class Router {
  readonly #routes: _Route[] = [];

  /** Adds a route; `:name` matches one path segment, given to the handler decoded. */
  add(method: string, pattern: string, handler: RouteHandler): this {
    this.#routes.push({ method, parts: _split(pattern), handler });
    return this;
  }

  /** Finds the route and runs it; throws {@linkcode HttpError} for 400, 404 and 405. */
  async handle(req: Request): Promise<Response> {
    const url = new URL(req.url);
    let parts: string[];
    try {
      parts = _split(url.pathname).map((s) => decodeURIComponent(s));
    } catch {
      throw new HttpError(400, "bad percent-encoding in the path");
    }
    const method = req.method === "HEAD" ? "GET" : req.method;
    const allow: string[] = [];
    for (const route of this.#routes) {
      const params = _match(route.parts, parts);
      if (!params) continue;
      if (route.method === method) return await route.handler(req, params, url);
      allow.push(route.method);
    }
    if (allow.length > 0) {
      throw new HttpError(405, `method ${req.method} not allowed`, { allow: allow.join(", ") });
    }
    throw new HttpError(404, `no route for ${req.method} ${url.pathname.slice(0, 100)}`);
  }
}

/** Path segments, without empty ones (so a trailing slash does not matter). */
function _split(path: string): string[] {
  return path.split("/").filter((s) => s !== "");
}

function _match(pattern: string[], parts: string[]): Record<string, string> | undefined {
  if (pattern.length !== parts.length) return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i]!;
    if (p.startsWith(":")) params[p.slice(1)] = parts[i]!;
    else if (p !== parts[i]) return undefined;
  }
  return params;
}

/** A JSON answer, never cached. */
export function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body, null, 2) + "\n", {
    status,
    headers: {
      "content-type": "application/json; charset=utf-8",
      "cache-control": "no-store",
      ...headers,
    },
  });
}
