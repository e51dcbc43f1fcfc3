// The Usage view: daily charts per provider or per model over a chosen range of UTC days
// (requests, success rate, tokens, average latency), the rows beneath, a CSV download, and
// the least-used provider of the range.

import { api } from "./api.js";
import { $, clearErrors, fill, h, showError } from "./dom.js";
import * as fmt from "./format.js";
import { lineChart } from "./chart.js";
import { known, loadProviders } from "./providers.js";

/** The longest range drawn, in days. */
const MAX_DAYS = 366;
/** Rows drawn in the table, newest first; the CSV holds every row. */
const MAX_TABLE_ROWS = 2000;

let rows = [];
let shown = { from: null, to: null };
/** Counts the loads asked for: an answer to an older one arriving late is dropped. */
let asked = 0;

function providerName(id) {
  const p = known.find((x) => x.id === id);
  return p ? p.name : `#${id} (removed)`;
}

/** Totals per (series, day): requests, successes, tokens, response time. */
function aggregate(by) {
  const series = new Map();
  for (const r of rows) {
    const name = by === "model" ? r.model : providerName(r.provider_id);
    if (!series.has(name)) series.set(name, new Map());
    const days = series.get(name);
    const t = days.get(r.date) || { requests: 0, success: 0, tokens: 0, time: 0 };
    t.requests += r.total_requests;
    t.success += r.success_requests;
    t.tokens += r.total_tokens;
    t.time += r.total_response_time_ms;
    days.set(r.date, t);
  }
  return [...series.entries()].sort(([a], [b]) => a.localeCompare(b));
}

function charts(by, days) {
  const series = aggregate(by);
  const line = (pick) => series.map(([name, perDay]) => ({ name, values: days.map((d) => pick(perDay.get(d))) }));
  const draw = (id, values, format, title, opts) => {
    const box = $(id);
    fill(box, lineChart(box, days, values, format, title, opts));
  };
  draw("#chart-requests", line((t) => (t ? t.requests : 0)), fmt.int, "Requests per day");
  draw("#chart-success", line((t) => (t && t.requests ? t.success / t.requests : NaN)), fmt.pct, "Success rate per day", { top: 1 });
  draw("#chart-tokens", line((t) => (t ? t.tokens : 0)), fmt.int, "Tokens per day");
  draw("#chart-latency", line((t) => (t && t.requests ? t.time / t.requests : NaN)), fmt.ms, "Average latency per day");
  fill(
    $("#usage-legend"),
    series.map(([name], k) => h("span", {}, h("span", { class: `swatch s${k % 8}` }), name)),
  );
}

function table() {
  const cell = (label, text, cls) => h("td", { "data-label": label, class: cls }, h("span", { text }));
  const body = rows.length
    ? [...rows]
        .sort((a, b) => b.date.localeCompare(a.date) || a.provider_id - b.provider_id || a.model.localeCompare(b.model))
        .slice(0, MAX_TABLE_ROWS)
        .map((r) =>
          h(
            "tr",
            {},
            cell("Day", r.date),
            cell("Provider", providerName(r.provider_id)),
            cell("Model", r.model),
            cell("Requests", fmt.int(r.total_requests), "num"),
            cell("Succeeded", fmt.int(r.success_requests), "num"),
            cell("Failed", fmt.int(r.failed_requests), "num"),
            cell("Success rate", fmt.pct(r.success_rate), "num"),
            cell("Prompt tokens", fmt.int(r.prompt_tokens), "num"),
            cell("Completion tokens", fmt.int(r.completion_tokens), "num"),
            cell("Total tokens", fmt.int(r.total_tokens), "num"),
            cell("Avg latency", fmt.ms(r.avg_response_time_ms), "num"),
          ),
        )
    : h("tr", {}, h("td", { colspan: 11, text: "No usage in this range." }));
  if (rows.length > MAX_TABLE_ROWS) {
    body.push(h("tr", {}, h("td", { colspan: 11, text: `The newest ${fmt.int(MAX_TABLE_ROWS)} of ${fmt.int(rows.length)} rows; the CSV has them all.` })));
  }
  fill($("#usage-body"), body);
}

/** The enabled provider with the fewest requests in the range (none counts as zero). */
function leastUsed(summary) {
  const counts = new Map(summary.map((f) => [f.provider_id, f.total_requests]));
  const candidates = known
    .filter((p) => p.enabled)
    .map((p) => ({ p, n: counts.get(p.id) || 0 }))
    .sort((a, b) => a.n - b.n || a.p.id - b.p.id);
  const el = $("#usage-least");
  if (!candidates.length) {
    el.textContent = "";
    return;
  }
  const { p, n } = candidates[0];
  fill(el, "Least used in this range: ", h("strong", { text: p.name }), ` (${fmt.int(n)} requests).`);
}

async function show(ev) {
  if (ev) ev.preventDefault();
  const form = $("#usage-form");
  clearErrors(form);
  $("#usage-form-error").textContent = "";
  const from = form.elements.from.value;
  const to = form.elements.to.value;
  const by = form.elements.by.value;
  if (!from || !to) {
    showError(form, { param: from ? "to" : "from", message: "choose a day" });
    return;
  }
  const mine = ++asked;
  try {
    const q = new URLSearchParams({ from, to });
    const [usage] = await Promise.all([api("GET", `/api/stats/usage?${q}`), loadProviders()]);
    if (mine !== asked) return;
    rows = usage.data || [];
    shown = { from, to };
    const days = fmt.daysBetween(from, to, MAX_DAYS);
    charts(by, days);
    table();
    leastUsed(usage.summary || []);
  } catch (e) {
    if (mine !== asked) return;
    const slot = showError(form, e);
    if (!slot) $("#usage-form-error").textContent = e.message;
  }
}

function csvField(v) {
  const s = String(v ?? "");
  // Quote every field that needs it; a leading = + - @ is neutralised so a spreadsheet does
  // not run it as a formula.
  const safe = /^[=+\-@]/.test(s) && !/^-?\d/.test(s) ? `'${s}` : s;
  return /[",\n\r]/.test(safe) ? `"${safe.replace(/"/g, '""')}"` : safe;
}

function downloadCsv() {
  const head = ["date", "provider_id", "provider", "model", "total_requests", "success_requests", "failed_requests", "success_rate", "prompt_tokens", "completion_tokens", "total_tokens", "avg_response_time_ms"];
  const lines = [head.join(",")];
  for (const r of rows) {
    lines.push(
      [r.date, r.provider_id, providerName(r.provider_id), r.model, r.total_requests, r.success_requests, r.failed_requests, r.success_rate, r.prompt_tokens, r.completion_tokens, r.total_tokens, r.avg_response_time_ms]
        .map(csvField)
        .join(","),
    );
  }
  const blob = new Blob([`${lines.join("\r\n")}\r\n`], { type: "text/csv" });
  const url = URL.createObjectURL(blob);
  const a = h("a", { href: url, download: `switchyard-usage-${shown.from}-to-${shown.to}.csv` });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

export function init() {
  const form = $("#usage-form");
  form.elements.from.value = fmt.utcDay(-6);
  form.elements.to.value = fmt.utcDay(0);
  form.addEventListener("submit", show);
  form.elements.by.addEventListener("change", () => show());
  $("#usage-csv").addEventListener("click", downloadCsv);
}

/** Shows the chosen range (when the view opens). */
export function refresh() {
  return show();
}

export function forget() {
  rows = [];
  for (const id of ["#chart-requests", "#chart-success", "#chart-tokens", "#chart-latency", "#usage-legend", "#usage-body", "#usage-least"]) fill($(id));
}
