// The Overview: today's totals (UTC day, fleet-wide from the usage rows), providers by
// standing, requests per minute over the last hour and the usage-write lag (this instance).

import { api } from "./api.js";
import { $, fill } from "./dom.js";
import * as fmt from "./format.js";
import { barChart } from "./chart.js";
import { known, loadProviders, standing } from "./providers.js";

function set(id, value) {
  const el = $(id);
  if (value instanceof Node) fill(el, value);
  else el.textContent = value;
}

function today(summary) {
  let requests = 0;
  let success = 0;
  let tokens = 0;
  let latencyWeighted = 0;
  for (const f of summary) {
    requests += f.total_requests || 0;
    success += f.success_requests || 0;
    tokens += f.total_tokens || 0;
    latencyWeighted += (f.average_response_time_ms || 0) * (f.total_requests || 0);
  }
  set("#ov-requests", fmt.int(requests));
  set("#ov-success", requests ? fmt.pct(success / requests) : "–");
  set("#ov-tokens", fmt.int(tokens));
  set("#ov-latency", requests ? fmt.ms(latencyWeighted / requests) : "–");
}

function standings(providers) {
  const counts = { healthy: 0, unhealthy: 0, cooling: 0, disabled: 0 };
  for (const p of providers) {
    const st = standing(p);
    counts[st in counts ? st : "unhealthy"] += 1; // one not loaded here serves nothing here
  }
  for (const [k, v] of Object.entries(counts)) set(`#ov-${k}`, fmt.int(v));
}

function recent(r) {
  const bars = (r.per_minute || []).map((m) => ({
    label: new Date(m.minute).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }),
    value: m.requests,
    failed: m.failed,
  }));
  const box = $("#ov-rpm");
  fill(box, barChart(box, bars, fmt.int, "Requests per minute over the last hour"));
  set("#ov-lag", r.pending_rows ? fmt.ms(r.flush_lag_ms) : "nothing waiting");
  set("#ov-pending", fmt.int(r.pending_rows));
  set("#ov-failures", fmt.int(r.flush_failures));
  set("#ov-last-flush", r.last_flush_at ? fmt.time(r.last_flush_at) : "not yet (since start)");
}

/** Loads and draws everything; called on a timer while the view is shown. */
export async function refresh() {
  const day = fmt.utcDay(0);
  const [usage, activity] = await Promise.all([
    api("GET", `/api/stats/usage?from=${day}&to=${day}`),
    api("GET", "/api/stats/recent"),
    loadProviders(),
  ]);
  today(usage.summary || []);
  standings(known);
  recent(activity);
}

export function forget() {
  for (const id of ["requests", "success", "tokens", "latency", "healthy", "unhealthy", "cooling", "disabled", "lag", "pending", "failures", "last-flush"]) {
    set(`#ov-${id}`, "–");
  }
  fill($("#ov-rpm"));
}

