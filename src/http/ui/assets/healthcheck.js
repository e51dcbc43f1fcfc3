// The Health check view: the stored configuration as a form; saving applies it at once.

import { api } from "./api.js";
import { $, clearErrors, showError } from "./dom.js";
import * as fmt from "./format.js";

function hints(form) {
  $("#hc-interval-hint").textContent = fmt.seconds(Number(form.elements.interval_seconds.value));
  $("#hc-retry-hint").textContent = fmt.seconds(Number(form.elements.retry_after_seconds.value));
}

function fillForm(c) {
  const form = $("#health-form");
  form.elements.enabled.checked = !!c.enabled;
  form.elements.interval_seconds.value = c.interval_seconds;
  form.elements.max_error_count.value = c.max_error_count;
  form.elements.retry_after_seconds.value = c.retry_after_seconds;
  form.elements.auto_recovery.checked = !!c.auto_recovery;
  hints(form);
}

/** A number field's value: a number when it is one, else the text, for the router to refuse. */
function num(input) {
  const v = input.value.trim();
  const n = Number(v);
  return v !== "" && Number.isFinite(n) ? n : v;
}

async function save(ev) {
  ev.preventDefault();
  const form = ev.target;
  clearErrors(form);
  const status = $("#health-status");
  status.textContent = "";
  const body = {
    enabled: form.elements.enabled.checked,
    interval_seconds: num(form.elements.interval_seconds),
    max_error_count: num(form.elements.max_error_count),
    retry_after_seconds: num(form.elements.retry_after_seconds),
    auto_recovery: form.elements.auto_recovery.checked,
  };
  try {
    fillForm(await api("PUT", "/api/health-check/config", body));
    status.textContent = `Saved and applied at ${new Date().toLocaleTimeString()}.`;
  } catch (e) {
    showError(form, e);
  }
}

/** Loads the stored configuration into the form (when the view opens). */
export async function refresh() {
  const form = $("#health-form");
  clearErrors(form);
  $("#health-status").textContent = "";
  fillForm(await api("GET", "/api/health-check/config"));
}

export function init() {
  const form = $("#health-form");
  form.addEventListener("submit", save);
  form.addEventListener("input", () => hints(form));
}

export function forget() {
  $("#health-form").reset();
  $("#health-status").textContent = "";
}
