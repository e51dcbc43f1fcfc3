// Building the page from data. Every text from the router (names, errors, messages) goes in
// as text nodes, never as markup, and no style attribute is written (the CSP forbids both).

/** `h("td", {class: "num", text: "3"}, child…)`: an element with attributes and children. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

const SVG_NS = "http://www.w3.org/2000/svg";

/** An SVG element, built like `h`. */
export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "text") el.textContent = String(v);
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "style") throw new Error("inline styles are not allowed");
    else el.setAttribute(k, v === true ? "" : String(v));
  }
}

function append(el, children) {
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

/** Replaces an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

/**
 * Re-renders a region without losing the keyboard focus: the focused element's
 * `data-focus` key is looked up again after `render` and focused.
 */
export function keepingFocus(region, render) {
  const active = document.activeElement;
  const key = active && region.contains(active) ? active.getAttribute("data-focus") : null;
  render();
  if (key) {
    const again = region.querySelector(`[data-focus="${CSS.escape(key)}"]`);
    if (again) again.focus();
  }
}

/** Toasts shown at once; an older one gives way to a newer one. */
const MAX_TOASTS = 3;

/** A short message in the corner that goes away by itself. */
export function toast(text, kind = "") {
  const el = h("div", { class: `toast ${kind}`, role: "status", text });
  const box = $("#toasts");
  box.append(el);
  while (box.children.length > MAX_TOASTS) box.firstElementChild.remove();
  setTimeout(() => el.remove(), 5000);
}

/**
 * Shows an API error next to the field it concerns (`error.param`), or at the form's
 * `body` slot when it names no field of the form. Returns the element it was shown in.
 */
export function showError(form, err) {
  clearErrors(form);
  const param = (err.param || "").match(/^[A-Za-z_]+/);
  let slot = param ? form.querySelector(`[data-error-for="${param[0]}"]`) : null;
  if (!slot) slot = form.querySelector('[data-error-for="body"]');
  if (!slot) return null;
  slot.textContent = err.message;
  const input = param ? form.querySelector(`[name="${param[0]}"]`) : null;
  if (input && slot.getAttribute("data-error-for") !== "body") {
    input.setAttribute("aria-invalid", "true");
    if (!slot.id) slot.id = `${form.id}-${param[0]}-error`;
    input.setAttribute("aria-describedby", slot.id);
    input.focus();
  }
  return slot;
}

/** Removes every error shown by `showError`. */
export function clearErrors(form) {
  for (const e of form.querySelectorAll("[data-error-for]")) e.textContent = "";
  for (const i of form.querySelectorAll('[aria-invalid="true"]')) i.removeAttribute("aria-invalid");
}
