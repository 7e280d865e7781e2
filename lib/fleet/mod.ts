/**
 * Fleet mode (docs/FLEET.md): several LBs share the checking and the verdict
 * through etcd. The store interface and its two implementations (etcd's JSON
 * gateway, an in-memory fake), rendezvous assignment, the key layout, the
 * shared verdict, the driver of one LB, and the fleet as a server directory.
 *
 * @module
 */

export * from "./store.ts";
export * from "./etcd.ts";
export * from "./memory_store.ts";
export * from "./assign.ts";
export * from "./keys.ts";
export * from "./verdicts.ts";
export * from "./fleet.ts";
export * from "./mirror.ts";
export * from "./entries.ts";
export * from "./directory.ts";
