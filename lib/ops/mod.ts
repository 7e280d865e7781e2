/**
 * What operators and data planes read: the HTTP server and its API (route
 * table, admin auth, event stream, dashboard, Prometheus), the HAProxy agent-
 * check port, the status table, and connection limits.
 *
 * @module
 */

export * from "./http_server.ts";
export * from "./accept_loop.ts";
export * from "./http_api.ts";
export * from "./routes.ts";
export * from "./admin_auth.ts";
export * from "./events.ts";
export * from "./dashboard.ts";
export * from "./prometheus.ts";
export * from "./agent_check.ts";
export * from "./dns.ts";
export * from "./dns_server.ts";
export * from "./haproxy_runtime.ts";
export * from "./status_table.ts";
export * from "./limits.ts";
