// The Providers view: one row per provider with its configuration, health, load and last-24 h
// figures, and the actions an operator takes on it (add, edit, enable/disable, reset, check
// now, delete).

import { api } from "./api.js";
import { $, $$, clearErrors, fill, h, keepingFocus, showError, toast } from "./dom.js";
import * as fmt from "./format.js";

/** The providers as last loaded, each merged from the list, health and load views. */
export let known = [];
/** Whether the router reports a provider `kind` (older routers do not accept the field). */
let kindSupported = false;

/** healthy, unhealthy, cooling or disabled; "not-loaded" for a stored provider this
 * instance could not load (the router then lists only its id, name and `load_error`). */
export function standing(p) {
  if (p.loaded === false) return "not-loaded";
  if (!p.enabled) return "disabled";
  if (!p.health || !p.health.is_healthy) return "unhealthy";
  const until = p.health.cooldown_until && Date.parse(p.health.cooldown_until);
  if (until && until > Date.now()) return "cooling";
  return "healthy";
}

export function kindOf(p) {
  return p.kind || "openai";
}

function modelNames(p) {
  return (p.models || []).map((m) => (typeof m === "string" ? m : m.name));
}

function modelsText(p) {
  return (p.models || [])
    .map((m) => (typeof m === "string" ? m : m.upstream && m.upstream !== m.name ? `${m.name}=${m.upstream}` : m.name))
    .join(", ");
}

/** Loads every provider with its health, load and last-24 h figures. */
export async function loadProviders() {
  const [list, health, load] = await Promise.all([
    api("GET", "/api/providers"),
    api("GET", "/api/providers/health"),
    api("GET", "/api/providers/load"),
  ]);
  const byId = (rows) => new Map((rows.data || []).map((r) => [r.provider_id, r]));
  const h24 = byId(health);
  const loads = byId(load);
  known = (list.data || []).map((p) => ({
    ...p,
    last_24h: (h24.get(p.id) || {}).last_24h || {},
    load_score: (loads.get(p.id) || {}).load,
  }));
  if (known.some((p) => "kind" in p)) kindSupported = true;
  return known;
}

function badge(state) {
  return h("span", { class: `badge ${state}`, "data-health": state, text: state.replace("-", " ") });
}

function cell(label, content, cls) {
  // One wrapper per cell, so a narrow screen's label-and-value layout keeps it together.
  return h("td", { "data-label": label, class: cls }, h("div", {}, content));
}

function row(p) {
  const state = standing(p);
  const hl = p.health || {};
  const ld = p.load || {};
  const d = p.last_24h || {};
  const load = Number.isFinite(p.load_score) ? Math.round(p.load_score) : null;
  const key = (what) => `${what}-${p.id}`;
  const lastError = p.load_error
    ? p.load_error
    : hl.last_error
    ? [hl.last_status_code ? `${hl.last_status_code}: ` : "", hl.last_error]
    : hl.last_status_code
      ? `last status ${hl.last_status_code}`
      : "–";
  return h(
    "tr",
    { "data-provider": p.name, "data-id": p.id },
    cell("Provider", [h("strong", { text: p.name }), h("span", { class: "sub url", text: p.base_url })]),
    cell("Kind", [kindOf(p), Array.isArray(p.endpoints) && p.endpoints.length ? h("span", { class: "sub", text: p.endpoints.join(", ") }) : null], "kind"),
    cell("Models", modelsText(p), "models"),
    cell("Weight · priority", `${fmt.int(p.weight)} · ${fmt.int(p.priority)}`, "num"),
    cell("Health", [
      badge(state),
      p.loaded === false ? null : h("span", { class: "sub", text: `${fmt.int(hl.error_count)} error${hl.error_count === 1 ? "" : "s"} in a row` }),
      hl.next_retry_at && state === "unhealthy" ? h("span", { class: "sub" }, "retry ", fmt.time(hl.next_retry_at, { relative: true })) : null,
      state === "cooling" ? h("span", { class: "sub" }, "resting ", fmt.time(hl.cooldown_until, { relative: true })) : null,
    ]),
    cell("Last error", lastError, "error-text"),
    cell("Load", [
      load === null
        ? "–"
        : h("span", { class: "load" }, h("meter", { min: 0, max: 100, low: 50, high: 80, optimum: 0, value: load, title: `load ${load} of 100` }), String(load)),
      h("span", { class: "sub", text: `${fmt.int(ld.in_flight)} in flight` }),
    ]),
    cell("Last 24 h", [
      h("span", { text: d.total_requests ? `${fmt.pct(d.success_rate)} of ${fmt.int(d.total_requests)}` : "no requests" }),
      h("span", { class: "sub", text: d.total_requests ? `${fmt.ms(d.average_response_time_ms)} · ${fmt.int(d.total_tokens || 0)} tokens` : "" }),
    ], "num"),
    cell("Actions", [
      h("button", { type: "button", class: "small quiet", "data-focus": key("edit"), "data-action": "edit", text: "Edit", "aria-label": `Edit ${p.name}`, onclick: () => openForm(p) }),
      h("button", {
        type: "button", class: "small quiet", "data-focus": key("toggle"), "data-action": "toggle",
        text: p.enabled ? "Disable" : "Enable", "aria-label": `${p.enabled ? "Disable" : "Enable"} ${p.name}`,
        onclick: () => act(p, "toggle"),
      }),
      h("button", { type: "button", class: "small quiet", "data-focus": key("reset"), "data-action": "reset", text: "Reset", "aria-label": `Reset the health of ${p.name}`, onclick: () => act(p, "reset") }),
      h("button", { type: "button", class: "small quiet", "data-focus": key("check"), "data-action": "check", text: "Check now", "aria-label": `Check ${p.name} now`, onclick: () => act(p, "check") }),
      h("button", { type: "button", class: "small danger", "data-focus": key("delete"), "data-action": "delete", text: "Delete", "aria-label": `Delete ${p.name}`, onclick: () => confirmDelete(p) }),
    ], "actions"),
  );
}

/**
 * Draws the table from `known`. A row whose data has not changed is kept as it is, so a
 * refresh does not move the ground under a pointer or the keyboard focus. Relative times
 * ("retry in 5 min") are redrawn every half minute.
 */
export function render() {
  const body = $("#providers-body");
  const before = new Map($$("tr[data-id]", body).map((r) => [r.dataset.id, r]));
  const tick = Math.floor(Date.now() / 30000);
  const wanted = $("#providers-filter").value.trim().toLowerCase();
  const matches = (p) => !wanted || [p.name, kindOf(p), ...modelNames(p)].some((t) => String(t).toLowerCase().includes(wanted));
  const shown = known.filter(matches);
  const rows = shown.map((p) => {
    const sig = `${tick}:${JSON.stringify(p)}`;
    const old = before.get(String(p.id));
    if (old && old.dataset.sig === sig) return old;
    const tr = row(p);
    tr.dataset.sig = sig;
    return tr;
  });
  keepingFocus(body, () => {
    const none = known.length ? "No provider matches the filter." : "No providers yet: add one.";
    fill(body, rows.length ? rows : h("tr", {}, h("td", { colspan: 9, text: none })));
  });
}

/** Loads and draws; called on a timer while the view is shown. */
export async function refresh() {
  try {
    await loadProviders();
    render();
    $("#providers-status").textContent = `Updated ${new Date().toLocaleTimeString()}; refreshes every few seconds.`;
  } catch (e) {
    if (e.name !== "AbortError") $("#providers-status").textContent = `Could not load providers: ${e.message}`;
  }
}

async function act(p, what) {
  try {
    if (what === "toggle") {
      await api("PUT", `/api/providers/${p.id}`, { enabled: !p.enabled });
      toast(`${p.name} ${p.enabled ? "disabled" : "enabled"}`, "good");
    } else if (what === "reset") {
      await api("POST", `/api/providers/${p.id}/reset`);
      toast(`${p.name}: health reset`, "good");
    } else if (what === "check") {
      toast(`Checking ${p.name}…`);
      const r = await api("POST", `/api/health-check/force/${p.id}`);
      const detail = [r.status ? `status ${r.status}` : null, Number.isFinite(r.latency_ms) ? fmt.ms(r.latency_ms) : null, r.error]
        .filter(Boolean)
        .join(", ");
      toast(`Check of ${p.name}: ${r.ok ? "passed" : "failed"}${detail ? ` (${detail})` : ""}`, r.ok ? "good" : "bad");
    }
  } catch (e) {
    toast(`${p.name}: ${e.message}`, "bad");
  }
  await refresh();
}

function confirmDelete(p) {
  const dialog = $("#confirm-dialog");
  $("#confirm-text").textContent = `Delete provider ${p.name}? Requests already using it finish; no new request goes to it. This cannot be undone.`;
  const form = $("#confirm-form");
  const done = async (yes) => {
    form.onsubmit = null;
    $("#confirm-no").onclick = null;
    dialog.close();
    if (!yes) return;
    try {
      await api("DELETE", `/api/providers/${p.id}`);
      toast(`${p.name} deleted`, "good");
    } catch (e) {
      toast(`${p.name}: ${e.message}`, "bad");
    }
    await refresh();
  };
  form.onsubmit = (ev) => {
    ev.preventDefault();
    done(true);
  };
  $("#confirm-no").onclick = () => done(false);
  dialog.onclose = () => {
    form.onsubmit = null;
  };
  dialog.showModal();
  $("#confirm-no").focus();
}

// ---- the add / edit form ----

let editing = null; // the provider being edited, or null when adding

function parseModels(text) {
  return text
    .split(",")
    .map((t) => t.trim())
    .filter(Boolean)
    .map((t) => {
      const eq = t.indexOf("=");
      return eq < 0 ? t : { name: t.slice(0, eq).trim(), upstream: t.slice(eq + 1).trim() };
    });
}

function numberOrText(v) {
  // Sent as a number when it is one, so the router's own range check answers; otherwise as
  // typed, so its type error names the field.
  if (v.trim() === "") return null;
  const n = Number(v);
  return Number.isFinite(n) ? n : v;
}

/** The form's values as a provider body. */
function formBody(form) {
  const v = (name) => form.elements[name].value;
  const body = {
    name: v("name").trim(),
    base_url: v("base_url").trim(),
    models: parseModels(v("models")),
    weight: numberOrText(v("weight")) ?? 1,
    priority: numberOrText(v("priority")) ?? 0,
    timeout_ms: numberOrText(v("timeout_ms")),
    probe_model: v("probe_model").trim() || null,
    enabled: form.elements.enabled.checked,
  };
  if (kindSupported || v("kind") !== "openai") body.kind = v("kind");
  const key = v("api_key");
  const keyEnv = v("api_key_env").trim();
  if (key) body.api_key = key;
  if (keyEnv) body.api_key_env = keyEnv;
  return body;
}

/** Only what changed, for `PUT` (an empty key field keeps the stored key). */
function changes(body, p) {
  const before = {
    name: p.name,
    base_url: p.base_url,
    models: p.models,
    weight: p.weight,
    priority: p.priority,
    timeout_ms: p.timeout_ms,
    probe_model: p.probe_model ?? null,
    enabled: p.enabled,
    kind: kindOf(p),
    api_key_env: p.api_key_env ?? undefined,
  };
  const out = {};
  for (const [k, v] of Object.entries(body)) {
    if (JSON.stringify(v) !== JSON.stringify(before[k])) out[k] = v;
  }
  return out;
}

export function openForm(p = null) {
  editing = p;
  const dialog = $("#provider-dialog");
  const form = $("#provider-form");
  form.reset();
  clearErrors(form);
  $("#provider-form-status").textContent = "";
  $("#provider-dialog-title").textContent = p ? `Edit ${p.name}` : "Add provider";
  $("#pf-submit").textContent = p ? "Save" : "Add";
  for (const el of form.querySelectorAll(".create-only")) el.hidden = !!p;
  const set = (name, value) => {
    form.elements[name].value = value ?? "";
  };
  if (p) {
    set("name", p.name);
    set("kind", kindOf(p));
    set("base_url", p.base_url);
    set("api_key_env", p.api_key_env);
    set("models", modelsText(p));
    set("weight", p.weight);
    set("priority", p.priority);
    set("timeout_ms", p.timeout_ms);
    set("probe_model", p.probe_model);
    form.elements.enabled.checked = !!p.enabled;
    $("#pf-api-key-hint").textContent = p.api_key ? `Stored: ${p.api_key}. Leave empty to keep it.` : "";
  } else {
    set("weight", 1);
    set("priority", 0);
    form.elements.enabled.checked = true;
    $("#pf-api-key-hint").textContent = "";
  }
  dialog.showModal();
  form.elements.name.focus();
}

async function submitForm(ev) {
  ev.preventDefault();
  const form = ev.target;
  clearErrors(form);
  const status = $("#provider-form-status");
  const body = formBody(form);
  const submit = $("#pf-submit");
  submit.disabled = true;
  try {
    if (editing) {
      const diff = changes(body, editing);
      if (Object.keys(diff).length === 0) {
        status.textContent = "Nothing changed.";
        return;
      }
      await api("PUT", `/api/providers/${editing.id}`, diff);
      toast(`${body.name} saved`, "good");
      $("#provider-dialog").close();
    } else {
      const validateOnly = $("#pf-validate-only").checked;
      const probe = $("#pf-probe-first").checked;
      if (probe) status.textContent = "Probing the upstream…";
      const q = new URLSearchParams({ validate_only: validateOnly, health_check: probe });
      await api("POST", `/api/providers?${q}`, body);
      if (validateOnly) {
        status.textContent = probe ? "Valid, and the upstream answered. Nothing was added." : "Valid. Nothing was added.";
        return;
      }
      toast(`${body.name} added`, "good");
      $("#provider-dialog").close();
    }
    await refresh();
  } catch (e) {
    status.textContent = "";
    showError(form, e);
  } finally {
    submit.disabled = false;
  }
}

/** Wires the view's static controls (once). */
export function init() {
  $("#provider-add").addEventListener("click", () => openForm(null));
  $("#providers-filter").addEventListener("input", render);
  $("#provider-form").addEventListener("submit", submitForm);
  $("#pf-cancel").addEventListener("click", () => $("#provider-dialog").close());
}

/** Forgets everything shown (sign-out). */
export function forget() {
  known = [];
  $("#providers-filter").value = "";
  fill($("#providers-body"));
  for (const d of ["#provider-dialog", "#confirm-dialog"]) if ($(d).open) $(d).close();
}
