/**
 * Bytes as text: base64 and hex, written once for PEM, JWS, etcd keys,
 * secrets and serial numbers.
 *
 * @module
 */

/**
 * Standard base64 (with padding) of `bytes`.
 *
 * @example
 * ```ts
 * import { toBase64 } from "./bytes.ts";
 * toBase64(new Uint8Array([1, 2, 3])); // "AQID"
 * ```
 */
export function toBase64(bytes: Uint8Array): string {
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin);
}

/**
 * Lower-case hex of `bytes`.
 *
 * @example
 * ```ts
 * import { toHex } from "./bytes.ts";
 * toHex(new Uint8Array([0x2b, 0x65, 0x70])); // "2b6570"
 * ```
 */
export function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * The parts one after the other, in one new array.
 *
 * @example
 * ```ts
 * import { concatBytes } from "./bytes.ts";
 * concatBytes(new Uint8Array([1]), new Uint8Array([2, 3])); // Uint8Array [1, 2, 3]
 * ```
 */
export function concatBytes(...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
