/**
 * Who may talk to whom: JWT signing and verification with token binding,
 * certificates (a development CA, chain and name verification, key-pair
 * checks), and the default files.
 *
 * @module
 */

export * from "./jwt.ts";
export * from "./certs.ts";
export * from "./names.ts";
export * from "./files.ts";
