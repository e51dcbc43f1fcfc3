// The dashboard's entry point: sign-in and sign-out, switching views (by the URL's #hash),
// and refreshing the shown view every few seconds.

import { onSignedOut, setToken, signOut, signedIn, tryToken } from "./api.js";
import { $, $$ } from "./dom.js";
import * as overview from "./overview.js";
import * as providers from "./providers.js";
import * as usage from "./usage.js";
import * as events from "./events.js";
import * as healthcheck from "./healthcheck.js";
import * as explain from "./explain.js";

/** How often the Overview and Providers views reload. */
const REFRESH_MS = 5000;

const VIEWS = {
  overview: { module: overview, every: REFRESH_MS },
  providers: { module: providers, every: REFRESH_MS },
  usage: { module: usage },
  events: { module: events },
  health: { module: healthcheck },
  explain: { module: explain },
};

let current = null;
let timer = null;
/** Views being loaded: a load asked for meanwhile is dropped, not queued. */
const loading = new Set();

function banner(text) {
  const el = $("#banner");
  el.textContent = text;
  el.hidden = !text;
}

function viewFromHash() {
  const name = location.hash.slice(1);
  return name in VIEWS ? name : "overview";
}

async function load(name) {
  const view = VIEWS[name];
  if (loading.has(name)) return;
  loading.add(name);
  try {
    if (view.module.refresh) await view.module.refresh();
    if (current === name) banner("");
  } catch (e) {
    if (e.name === "AbortError" || !signedIn()) return;
    banner(`Could not load ${name}: ${e.message}`);
  } finally {
    loading.delete(name);
  }
}

function show(name) {
  clearInterval(timer);
  timer = null;
  current = name;
  for (const [n] of Object.entries(VIEWS)) $(`#view-${n}`).hidden = n !== name;
  for (const a of $$("#nav a")) {
    if (a.dataset.view === name) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  events.setVisible(name === "events");
  load(name);
  const every = VIEWS[name].every;
  if (every) {
    timer = setInterval(() => {
      // Pause while a dialog is open, so a form being filled is not disturbed.
      if (!document.querySelector("dialog[open]")) load(name);
    }, every);
  }
}

function route() {
  if (!signedIn()) return;
  show(viewFromHash());
}

function enter() {
  $("#signin").hidden = true;
  $("#nav").hidden = false;
  $("#signout").hidden = false;
  events.start();
  route();
  $("#main").focus();
}

function leave(reason) {
  clearInterval(timer);
  timer = null;
  current = null;
  for (const m of [overview, providers, usage, events, healthcheck, explain]) m.forget();
  for (const n of Object.keys(VIEWS)) $(`#view-${n}`).hidden = true;
  $("#nav").hidden = true;
  $("#signout").hidden = true;
  $("#signin").hidden = false;
  banner("");
  $("#token-error").textContent = reason || "";
  const input = $("#token");
  input.value = "";
  input.focus();
}

async function signIn(ev) {
  ev.preventDefault();
  const input = $("#token");
  const error = $("#token-error");
  const candidate = input.value.trim();
  error.textContent = "";
  input.removeAttribute("aria-invalid");
  if (!candidate) {
    error.textContent = "Enter the admin token.";
    input.setAttribute("aria-invalid", "true");
    return;
  }
  try {
    if (!(await tryToken(candidate))) {
      error.textContent = "That token is wrong: the router refused it.";
      input.setAttribute("aria-invalid", "true");
      input.select();
      return;
    }
  } catch (e) {
    error.textContent = `Could not sign in: ${e.message}`;
    return;
  }
  input.value = "";
  setToken(candidate);
  enter();
}

function init() {
  for (const m of [providers, usage, events, healthcheck, explain]) m.init();
  $("#signin-form").addEventListener("submit", signIn);
  $("#signout").addEventListener("click", () => signOut(""));
  onSignedOut(leave);
  window.addEventListener("hashchange", route);
  // Whatever a view draws next, the provider list changes as events arrive: reload at once
  // rather than at the next tick, so a badge turns as soon as the router says so.
  events.onEvent((type) => {
    if (type.startsWith("provider_") && type !== "provider_switch" && type !== "provider_request_failed") {
      if (current === "providers" || current === "overview") load(current);
    }
  });
  $("#token").focus();
}

// Anything unexpected is said on the page (and in the console), not swallowed.
window.addEventListener("unhandledrejection", (ev) => {
  if (ev.reason && ev.reason.name === "AbortError") return;
  banner(`Unexpected error: ${ev.reason && ev.reason.message ? ev.reason.message : ev.reason}`);
});

init();
