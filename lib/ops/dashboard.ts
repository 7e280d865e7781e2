/**
 * The LB's live dashboard: one self-contained HTML page (no build step, no
 * CDN) served at `GET /`. It listens to `GET /api/events` (server-sent events)
 * and falls back to polling `GET /api/snapshot` every 2 s.
 *
 * @module
 */

/** Points of history per server in the dashboard payload. */
export const DASHBOARD_POINTS = 60;

/** The dashboard page. */
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>QHCP load balancer</title>
<style>
  :root { --up: #1a7f37; --down: #cf222e; --unknown: #9a6700; --drain: #8250df; --muted: #57606a; }
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #1f2328; background: #fff; }
  header { display: flex; gap: 1.5rem; align-items: baseline; flex-wrap: wrap; }
  h1 { font-size: 1.3rem; margin: 0; }
  #summary span { margin-right: .8rem; }
  #live { color: var(--muted); font-size: .85rem; }
  #live.on::before { content: "● "; color: var(--up); }
  #live.off::before { content: "● "; color: var(--down); }
  table { border-collapse: collapse; margin-top: 1rem; width: 100%; }
  th, td { text-align: left; padding: .35rem .6rem; border-bottom: 1px solid #d0d7de; white-space: nowrap; }
  th { font-weight: 600; color: var(--muted); font-size: .8rem; text-transform: uppercase; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; }
  td.err { white-space: normal; color: var(--muted); max-width: 28rem; font-size: .85rem; }
  .state { font-weight: 700; padding: .1rem .45rem; border-radius: .3rem; color: #fff; }
  .state.UP { background: var(--up); } .state.DOWN { background: var(--down); }
  .state.UNKNOWN { background: var(--unknown); } .state.DRAINING { background: var(--drain); }
  .bar { display: inline-block; width: 60px; height: 8px; background: #eaeef2; border-radius: 4px; vertical-align: middle; margin-right: .4rem; }
  .bar i { display: block; height: 100%; background: var(--up); border-radius: 4px; }
  svg { vertical-align: middle; }
  svg .rtt { fill: none; stroke: #0969da; stroke-width: 1.5; }
  svg .cpu { fill: none; stroke: #bc4c00; stroke-width: 1.2; }
  svg .mem { fill: none; stroke: #8250df; stroke-width: 1.2; }
  svg .fail { fill: var(--down); }
  .legend { color: var(--muted); font-size: .8rem; }
  .legend b { font-weight: 400; } .l-rtt { color: #0969da; } .l-cpu { color: #bc4c00; } .l-mem { color: #8250df; }
</style>
</head>
<body>
<header>
  <h1>QHCP <span id="lb"></span></h1>
  <div id="summary"></div>
  <div id="live" class="off">connecting…</div>
</header>
<table>
  <thead><tr>
    <th>Server</th><th>State</th><th>Weight</th><th>CPU %</th><th>Mem %</th><th>RTT ms</th>
    <th>Fails</th><th title="suspicion (phi) of the heartbeat silence; the LB probes at 8">Phi</th><th>Checked by</th><th>History <span class="legend"><b class="l-rtt">rtt</b> <b class="l-cpu">cpu</b> <b class="l-mem">mem</b></span></th><th>Last error</th>
  </tr></thead>
  <tbody id="rows"></tbody>
</table>
<script>
"use strict";
const rows = document.getElementById("rows");
const live = document.getElementById("live");
const fmt = (v, d) => v === null || v === undefined ? "-" : Number(v).toFixed(d);
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);

function spark(points) {
  const w = 140, h = 28;
  if (!points.length) return '<svg width="' + w + '" height="' + h + '"></svg>';
  const t0 = points[0].t, t1 = points[points.length - 1].t || t0 + 1;
  const x = (t) => ((t - t0) / Math.max(1, t1 - t0)) * (w - 4) + 2;
  const maxR = Math.max(1, ...points.filter((p) => p.r !== null).map((p) => p.r));
  const line = (key, max, cls) => {
    const pts = points.filter((p) => p[key] !== null).map((p) => x(p.t).toFixed(1) + "," + (h - 2 - (p[key] / max) * (h - 4)).toFixed(1));
    return pts.length ? '<polyline class="' + cls + '" points="' + pts.join(" ") + '"/>' : "";
  };
  const fails = points.filter((p) => !p.ok).map((p) => '<circle class="fail" r="2" cx="' + x(p.t).toFixed(1) + '" cy="' + (h - 3) + '"/>').join("");
  return '<svg width="' + w + '" height="' + h + '">' + line("c", 100, "cpu") + line("m", 100, "mem") + line("r", maxR, "rtt") + fails + "</svg>";
}

function render(data) {
  document.getElementById("lb").textContent = data.lb_id;
  const count = (s) => data.servers.filter((x) => x.state === s).length;
  document.getElementById("summary").innerHTML =
    "<span>" + data.servers.length + " servers</span><span>" + count("UP") + " UP</span><span>" +
    count("DOWN") + " DOWN</span><span>" + count("UNKNOWN") + " UNKNOWN</span>" +
    (data.services || []).map((x) => '<span class="service">' + esc(x.name) + " " + x.healthy + "/" + x.total + "</span>").join("");
  rows.innerHTML = data.servers.map((s) => {
    const shown = s.state === "UP" && s.status === "DRAINING" ? "DRAINING" : s.state;
    const m = s.metrics || {};
    return '<tr data-server="' + esc(s.address) + '" data-state="' + shown + '">' +
      "<td>" + esc(s.address) + (s.server_id ? ' <span class="legend">' + esc(s.server_id) + "</span>" : "") + "</td>" +
      '<td><span class="state ' + shown + '">' + shown + "</span></td>" +
      '<td class="num"><span class="bar"><i style="width:' + s.weight + '%"></i></span>' + s.weight + "</td>" +
      '<td class="num">' + fmt(m.cpu_percent, 1) + "</td>" +
      '<td class="num">' + fmt(m.mem_percent, 1) + "</td>" +
      '<td class="num">' + fmt(s.last_rtt_ms, 2) + "</td>" +
      '<td class="num">' + s.consecutive_failures + "</td>" +
      '<td class="num">' + (s.suspicion === null || s.suspicion === undefined ? "-" : fmt(Math.min(s.suspicion, 99), 1)) + "</td>" +
      "<td>" + esc(s.fleet ? s.fleet.checked_by.join(", ") + (s.fleet.stale_ms !== null ? " (stale " + Math.round(s.fleet.stale_ms / 1000) + " s)" : "") : "this LB") + "</td>" +
      "<td>" + spark(s.history || []) + "</td>" +
      '<td class="err">' + esc(s.last_error || "") + "</td></tr>";
  }).join("");
  document.body.dataset.updated = data.time;
}

let polling = null;
function poll() {
  if (polling) return;
  live.className = "off";
  live.textContent = "polling";
  const tick = () => fetch("api/snapshot").then((r) => r.json()).then(render).catch(() => {});
  tick();
  polling = setInterval(tick, 2000);
}

if ("EventSource" in window) {
  const events = new EventSource("api/events");
  events.addEventListener("status", (e) => {
    if (polling) { clearInterval(polling); polling = null; }
    live.className = "on";
    live.textContent = "live";
    render(JSON.parse(e.data));
  });
  events.onerror = () => { live.className = "off"; live.textContent = "reconnecting…"; setTimeout(() => { if (events.readyState === 2) poll(); }, 3000); };
} else {
  poll();
}
</script>
</body>
</html>
`;
