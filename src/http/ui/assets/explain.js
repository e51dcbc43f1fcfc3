// The Explain view: `GET /api/routing/explain?model=X` lists the providers the next request
// for a model would try, in order, and why any is skipped. A router without that endpoint
// answers its fallback 404, which is said plainly.

import { api } from "./api.js";
import { $, clearErrors, fill, h, showError } from "./dom.js";
import { loadProviders } from "./providers.js";

/** A value as text; an object as its set fields ("rpm 60, tpm 1000"), an empty one as "–". */
function show(value) {
  if (value === null || value === undefined || value === "") return "–";
  if (Array.isArray(value)) return value.length ? value.map(show).join(", ") : "–";
  if (typeof value === "object") {
    const set = Object.entries(value).filter(([, v]) => v !== null && v !== undefined);
    return set.length ? set.map(([k, v]) => `${k.replace(/_/g, " ")}: ${show(v)}`).join("\n") : "–";
  }
  return String(value);
}

/** Columns: every key of the candidates, in the order first seen. */
function columns(candidates) {
  const keys = [];
  for (const c of candidates) for (const k of Object.keys(c)) if (!keys.includes(k)) keys.push(k);
  return keys;
}

function render(answer) {
  const candidates = Array.isArray(answer) ? answer : answer.candidates || answer.data || [];
  const facts = Array.isArray(answer)
    ? []
    : Object.entries(answer).filter(([, v]) => v === null || typeof v !== "object");
  fill($("#explain-facts"), facts.flatMap(([k, v]) => [h("dt", { text: k.replace(/_/g, " ") }), h("dd", { text: show(v) })]));
  const table = $("#explain-table");
  const keys = columns(candidates);
  // The order is the table's own; a `position` field, when the router gives one, says it.
  const numbered = !keys.includes("position");
  fill(table.tHead, h("tr", {}, numbered ? h("th", { scope: "col", class: "num", text: "#" }) : null, keys.map((k) => h("th", { scope: "col", text: k.replace(/_/g, " ") }))));
  fill(
    table.tBodies[0],
    candidates.map((c, i) =>
      h("tr", {}, numbered ? h("td", { "data-label": "#", class: "num", text: String(i + 1) }) : null, keys.map((k) => {
          const nested = c[k] !== null && typeof c[k] === "object" && !Array.isArray(c[k]);
          return h("td", { "data-label": k.replace(/_/g, " "), class: nested ? "nested" : null }, h("span", { text: show(c[k]) }));
        })),
    ),
  );
  $("#explain-status").textContent = candidates.length ? `${candidates.length} candidate(s), in the order they would be tried.` : "No provider would be tried for this model.";
}

/** Counts the questions asked: an answer to an older one arriving late is dropped. */
let asked = 0;

async function explain(ev) {
  ev.preventDefault();
  const form = ev.target;
  clearErrors(form);
  const model = form.elements.model.value.trim();
  const status = $("#explain-status");
  status.textContent = "";
  fill($("#explain-facts"));
  fill($("#explain-table").tHead);
  fill($("#explain-table").tBodies[0]);
  if (!model) {
    showError(form, { param: "model", message: "name a model" });
    return;
  }
  const mine = ++asked;
  try {
    const answer = await api("GET", `/api/routing/explain?${new URLSearchParams({ model })}`);
    if (mine === asked) render(answer);
  } catch (e) {
    if (mine !== asked) return;
    if (e.missingRoute) status.textContent = "This router cannot explain its routing yet (it has no GET /api/routing/explain).";
    else showError(form, { param: e.param || "model", message: e.message });
  }
}

/** Offers the known models (when the view opens). */
export async function refresh() {
  const names = new Set();
  for (const p of await loadProviders()) for (const m of p.models || []) names.add(typeof m === "string" ? m : m.name);
  fill($("#explain-models"), [...names].sort().map((n) => h("option", { value: n })));
}

export function init() {
  $("#explain-form").addEventListener("submit", explain);
}

export function forget() {
  fill($("#explain-facts"));
  fill($("#explain-table").tHead);
  fill($("#explain-table").tBodies[0]);
  $("#explain-status").textContent = "";
}
