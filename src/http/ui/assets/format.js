// Numbers and times as people read them: thousands grouped, milliseconds, percentages, and
// times in the browser's zone with the UTC time on hover.

import { h } from "./dom.js";

const whole = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const oneDecimal = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });

const finite = (n) => typeof n === "number" && Number.isFinite(n);

/** 12,345 */
export function int(n) {
  return finite(n) ? whole.format(n) : "–";
}

/** A rate in 0..1 as "97.5 %". */
export function pct(rate) {
  return finite(rate) ? `${oneDecimal.format(rate * 100)} %` : "–";
}

/** 850 ms, 1.2 s, 3.5 min */
export function ms(n) {
  if (!finite(n)) return "–";
  if (n < 1000) return `${whole.format(n)} ms`;
  if (n < 120000) return `${oneDecimal.format(n / 1000)} s`;
  if (n < 7200000) return `${oneDecimal.format(n / 60000)} min`;
  return `${oneDecimal.format(n / 3600000)} h`;
}

/** 90 s as "1.5 min"; used for settings in seconds. */
export function seconds(n) {
  return finite(n) ? ms(n * 1000) : "–";
}

/** "2026-12-03 08:15:00 UTC" */
export function utc(date) {
  return `${date.toISOString().slice(0, 19).replace("T", " ")} UTC`;
}

/** A <time> showing `iso` in the browser's zone, with UTC in its tooltip; "–" for none. */
export function time(iso, { relative = false } = {}) {
  if (!iso) return "–";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "–";
  let text = d.toLocaleString();
  if (relative) {
    const diff = d.getTime() - Date.now();
    const inText = diff >= 0 ? `in ${ms(diff)}` : `${ms(-diff)} ago`;
    text = `${inText} (${d.toLocaleTimeString()})`;
  }
  return h("time", { datetime: d.toISOString(), title: utc(d), text });
}

/** A UTC day `YYYY-MM-DD`, `offset` days from today. */
export function utcDay(offset = 0) {
  const d = new Date(Date.now() + offset * 86400000);
  return d.toISOString().slice(0, 10);
}

/** Every UTC day from `from` to `to` inclusive, at most `max`. */
export function daysBetween(from, to, max = 366) {
  const out = [];
  let t = Date.parse(`${from}T00:00:00Z`);
  const end = Date.parse(`${to}T00:00:00Z`);
  while (Number.isFinite(t) && t <= end && out.length < max) {
    out.push(new Date(t).toISOString().slice(0, 10));
    t += 86400000;
  }
  return out;
}
