/**
 * What the HTTP API reads from a request, checked: a JSON object body within
 * a size limit and with only known fields, integer query parameters, and a
 * server named in the path. Each failure is an {@linkcode HttpError} whose
 * message names what was wrong.
 *
 * @module
 */

import type { ServerDirectory } from "../lb/directory.ts";
import type { WatchView } from "../lb/watch.ts";
import { HttpError } from "./routes.ts";

/** Largest accepted request body, bytes. */
const _MAX_BODY = 64 * 1024;

/** An integer query parameter in a range, or 400 naming it. */
export function _intParam(
  url: URL,
  name: string,
  fallback: number,
  min: number,
  max: number,
): number {
  const text = url.searchParams.get(name);
  if (text === null) return fallback;
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < min || n > max) {
    throw new HttpError(
      400,
      `query '${name}' must be an integer in ${min}..${max}, got ${
        JSON.stringify(text.slice(0, 20))
      }`,
    );
  }
  return n;
}

/** One server by its address in a path, or 404. */
export function _server(monitor: ServerDirectory, address: string): WatchView {
  let v: WatchView | undefined;
  try {
    v = monitor.server(address);
  } catch {
    throw new HttpError(400, `bad server address ${JSON.stringify(address.slice(0, 100))}`);
  }
  if (!v) throw new HttpError(404, `unknown server ${address.slice(0, 100)}`);
  return v;
}

/** The body as a JSON object: 413 beyond the size limit, 400 when not a JSON object. */
export async function _body(req: Request): Promise<Record<string, unknown>> {
  const declared = Number(req.headers.get("content-length") ?? "0");
  if (declared > _MAX_BODY) {
    throw new HttpError(413, `body of ${declared} bytes exceeds ${_MAX_BODY}`);
  }
  const text = await req.text();
  if (text.length > _MAX_BODY) throw new HttpError(413, `body exceeds ${_MAX_BODY} bytes`);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new HttpError(400, `body is not JSON: ${(e as Error).message}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new HttpError(400, "body must be a JSON object");
  }
  return value as Record<string, unknown>;
}

/** 400 naming the first field of `body` not in `allowed`. */
export function _only(body: Record<string, unknown>, allowed: string[]): void {
  for (const key of Object.keys(body)) {
    if (!allowed.includes(key)) {
      throw new HttpError(
        400,
        `unknown field '${key.slice(0, 40)}', expected ${allowed.map((a) => `'${a}'`).join(", ")}`,
      );
    }
  }
}
