/**
 * Reading parsed JSON values for the codec's checks: the integer and name
 * list tests they share, and the short description of a value that their
 * error messages quote. Pure.
 *
 * @module
 */

/** Whether `v` is a number that is a safe integer. */
export function isInteger(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v);
}

/** Whether `v` is an array of non-empty strings (metric names, capabilities). */
export function isNameArray(v: unknown): v is string[] {
  return Array.isArray(v) && v.every((x) => typeof x === "string" && x.length > 0);
}

/** Short description of a JSON value for error messages. */
export function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  switch (typeof value) {
    case "undefined":
      return "missing";
    case "string": {
      const s = JSON.stringify(value.length > 40 ? value.slice(0, 40) + "…" : value);
      return `string ${s}`;
    }
    case "number":
    case "boolean":
      return `${typeof value} ${String(value)}`;
    case "object":
      return "an object";
    default:
      return typeof value;
  }
}
