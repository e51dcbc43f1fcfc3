// The Events view: the live stream of `/api/events`, newest first, filtered by severity and
// provider. The stream is read from sign-in to sign-out (whichever view is shown) and
// reconnects with a growing pause when it drops; a `lagged` notice from the router (events
// this tab missed because it fell behind) is shown in the list.

import { readEvents } from "./api.js";
import { $, fill, h } from "./dom.js";
import * as fmt from "./format.js";
import { known } from "./providers.js";

/** Events kept in the list; older ones are dropped. */
const KEEP = 500;
const SEVERITY = { low: 0, medium: 1, high: 2, critical: 3 };

let items = [];
let missed = 0;
let abort = null;
let unseen = 0;
let visible = false;
const listeners = [];

/** Calls `f(type, event)` for every event received. */
export function onEvent(f) {
  listeners.push(f);
}

function setState(text, cls) {
  const el = $("#events-state");
  el.textContent = text;
  el.className = `pill ${cls}`;
}

function passes(item) {
  const min = SEVERITY[$("#events-severity").value] ?? 0;
  const provider = $("#events-provider").value;
  if (item.type === "lagged") return true;
  if ((SEVERITY[item.data.severity] ?? 0) < min) return false;
  if (provider && item.data.provider_name !== provider) return false;
  return true;
}

function entry(item) {
  if (item.type === "lagged") {
    return h(
      "li",
      { class: "lagged", "data-type": "lagged" },
      h("span", { class: "kind", text: "missed events" }),
      h("span", {}, fmt.time(item.received)),
      h("span", {}),
      h("span", { class: "message", text: `This page fell behind and missed ${fmt.int(item.data.missed)} event(s).` }),
    );
  }
  const e = item.data;
  return h(
    "li",
    { class: `sev-${e.severity}`, "data-type": item.type, "data-provider": e.provider_name || "" },
    h("span", { class: "kind", text: item.type.replace(/_/g, " ") }),
    h("span", {}, fmt.time(e.timestamp)),
    h("span", { class: "who" }, e.provider_name ? h("strong", { text: e.provider_name }) : "", ` · ${e.severity}`),
    h("span", { class: "message", text: e.message }),
  );
}

function render() {
  const shownItems = items.filter(passes);
  fill($("#events-list"), shownItems.map(entry));
  $("#events-empty").hidden = shownItems.length > 0;
}

/** The notice of missed events stays when the list moves on (or is cleared). */
function showMissed(at) {
  const el = $("#events-missed");
  if (!missed) {
    el.hidden = true;
    return;
  }
  fill(el, `This page fell behind and missed ${fmt.int(missed)} event(s) since sign-in; the latest at `, fmt.time(at), ".");
  el.hidden = false;
}

function receive(type, data) {
  const item = { type, data, received: new Date().toISOString() };
  if (type === "lagged") {
    missed += Number(data.missed) || 0;
    showMissed(item.received);
  }
  items.unshift(item);
  if (items.length > KEEP) items.length = KEEP;
  if (type !== "lagged") addProvider(data.provider_name);
  if (visible) {
    if (passes(item)) {
      $("#events-list").prepend(entry(item));
      const list = $("#events-list");
      while (list.children.length > KEEP) list.lastElementChild.remove();
      $("#events-empty").hidden = true;
    }
  } else {
    unseen += 1;
    const badge = $("#events-unseen");
    badge.textContent = String(Math.min(unseen, 999));
    badge.hidden = false;
  }
  for (const f of listeners) f(type, data);
}

function addProvider(name) {
  if (!name) return;
  const select = $("#events-provider");
  if ([...select.options].some((o) => o.value === name)) return;
  select.append(h("option", { value: name, text: name }));
}

/** Starts reading the stream (at sign-in); reconnects until `stop`. */
export function start() {
  stop();
  const controller = new AbortController();
  abort = controller;
  let pause = 1000;
  (async () => {
    while (!controller.signal.aborted) {
      setState("connecting…", "down");
      try {
        await readEvents(receive, controller.signal, () => {
          setState("live", "live");
          pause = 1000;
        });
      } catch (e) {
        if (controller.signal.aborted || e.status === 401) return;
      }
      if (controller.signal.aborted) return;
      setState(`reconnecting in ${Math.round(pause / 1000)} s`, "down");
      await new Promise((r) => setTimeout(r, pause));
      pause = Math.min(pause * 2, 30000);
    }
  })();
}

/** Stops reading (at sign-out). */
export function stop() {
  if (abort) abort.abort();
  abort = null;
  setState("not connected", "");
}

/** The view is shown or hidden. */
export function setVisible(v) {
  visible = v;
  if (v) {
    unseen = 0;
    $("#events-unseen").hidden = true;
    for (const p of known) addProvider(p.name);
    render();
  }
}

export function init() {
  $("#events-severity").addEventListener("change", render);
  $("#events-provider").addEventListener("change", render);
  $("#events-clear").addEventListener("click", () => {
    items = [];
    render();
  });
}

export function forget() {
  stop();
  items = [];
  unseen = 0;
  missed = 0;
  showMissed(null);
  $("#events-unseen").hidden = true;
  fill($("#events-list"));
  const select = $("#events-provider");
  while (select.options.length > 1) select.lastElementChild.remove();
}
