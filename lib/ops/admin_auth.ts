/**
 * The bearer token that guards the LB's mutating HTTP endpoints, compared
 * in time independent of where a wrong token differs.
 *
 * @module
 */

import { HttpError } from "./routes.ts";

const _encoder = new TextEncoder();

/**
 * A check for `Authorization: Bearer <token>`: throws {@linkcode HttpError}
 * 401 (missing or wrong, with `WWW-Authenticate`) or 403 (no token set, so
 * mutating endpoints are off).
 *
 * @example
 * ```ts
 * import { bearerGuard } from "./admin_auth.ts";
 * const requireAdmin = bearerGuard("0123456789abcdef0123");
 * requireAdmin(new Request("http://x/", { headers: { authorization: "Bearer 0123456789abcdef0123" } }));
 * ```
 */
export function bearerGuard(token: string | undefined): (req: Request) => void {
  const expected = token === undefined ? undefined : _encoder.encode(token);
  return (req) => {
    if (!expected) {
      throw new HttpError(403, "mutating endpoints are disabled: the LB has no admin token");
    }
    const m = /^Bearer\s+(\S+)$/i.exec(req.headers.get("authorization") ?? "");
    if (!m || !_safeEqual(_encoder.encode(m[1]!), expected)) {
      throw new HttpError(401, "missing or wrong bearer token", {
        "www-authenticate": 'Bearer realm="qhcp"',
      });
    }
  };
}

/** Compares secrets in time independent of where they differ. */
function _safeEqual(a: Uint8Array, b: Uint8Array): boolean {
  let diff = a.length ^ b.length;
  for (let i = 0; i < Math.max(a.length, b.length); i++) diff |= (a[i] ?? 0) ^ (b[i] ?? 0);
  return diff === 0;
}
