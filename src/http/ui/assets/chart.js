// Charts drawn as SVG: a line chart of daily values per series and a bar chart of counts per
// minute. Every point carries a <title> (its value) so a pointer or screen reader can read
// it; colours come from the stylesheet classes s0…s7.

import { s } from "./dom.js";

const W = 640;
const H = 220;
const PAD = { left: 56, right: 12, top: 12, bottom: 28 };

/** A maximum with a little headroom, rounded to a readable step. */
function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function frame(labels, max, yFormat, { everyLabel, xOf }) {
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img" });
  const innerW = W - PAD.left - PAD.right;
  const innerH = H - PAD.top - PAD.bottom;
  for (let i = 0; i <= 4; i++) {
    const y = PAD.top + innerH - (innerH * i) / 4;
    svg.append(s("line", { class: "axis", x1: PAD.left, x2: W - PAD.right, y1: y, y2: y }));
    svg.append(s("text", { class: "tick", x: PAD.left - 6, y: y + 4, "text-anchor": "end", text: yFormat((max * i) / 4) }));
  }
  const n = labels.length;
  const step = Math.max(1, Math.ceil(n / everyLabel));
  labels.forEach((label, i) => {
    if (i % step !== 0 && i !== n - 1) return;
    const x = xOf(i, innerW);
    svg.append(s("text", { class: "tick", x, y: H - 8, "text-anchor": "middle", text: label }));
  });
  return { svg, innerW, innerH };
}

function xAt(i, n, innerW) {
  return PAD.left + (n <= 1 ? innerW / 2 : (innerW * i) / (n - 1));
}

/**
 * A line chart. `labels` are the x values (days); `series` is `[{name, values}]` with one
 * value per label. One circle per value, so the chart has `series × labels` points.
 */
export function lineChart(labels, series, yFormat, title) {
  const max = niceMax(Math.max(0, ...series.flatMap((x) => x.values.filter(Number.isFinite))));
  const xOf = (i, innerW) => xAt(i, labels.length, innerW);
  const { svg, innerW, innerH } = frame(labels.map((d) => d.slice(5)), max, yFormat, { everyLabel: 8, xOf });
  svg.setAttribute("aria-label", title);
  if (series.length === 0) {
    svg.append(s("text", { class: "empty", x: W / 2, y: H / 2, "text-anchor": "middle", text: "No usage in this range" }));
    return svg;
  }
  const yAt = (v) => PAD.top + innerH - (innerH * Math.min(v, max)) / max;
  series.forEach((ser, k) => {
    const cls = `s${k % 8}`;
    const pts = ser.values.map((v, i) => [xAt(i, labels.length, innerW), yAt(Number.isFinite(v) ? v : 0)]);
    svg.append(s("polyline", { class: `line ${cls}`, points: pts.map((p) => p.join(",")).join(" ") }));
    pts.forEach(([x, y], i) => {
      const v = ser.values[i];
      svg.append(
        s("circle", { class: `point ${cls}`, cx: x, cy: y, r: 3.5, "data-series": ser.name, "data-day": labels[i] },
          s("title", { text: `${ser.name}, ${labels[i]}: ${Number.isFinite(v) ? yFormat(v) : "no requests"}` })),
      );
    });
  });
  return svg;
}

/** A bar chart of `[{label, value, failed}]`, failed part drawn over the total. */
export function barChart(bars, yFormat, title) {
  const max = niceMax(Math.max(0, ...bars.map((b) => b.value)));
  const slotOf = (innerW) => innerW / Math.max(1, bars.length);
  const xOf = (i, innerW) => PAD.left + (i + 0.5) * slotOf(innerW);
  const { svg, innerW, innerH } = frame(bars.map((b) => b.label), max, yFormat, { everyLabel: 6, xOf });
  svg.setAttribute("aria-label", title);
  const slot = slotOf(innerW);
  bars.forEach((b, i) => {
    const x = PAD.left + i * slot + slot * 0.15;
    const w = Math.max(1, slot * 0.7);
    const hTotal = (innerH * b.value) / max;
    const hFailed = (innerH * b.failed) / max;
    const base = PAD.top + innerH;
    svg.append(
      s("rect", { class: "bar", x, y: base - hTotal, width: w, height: hTotal },
        s("title", { text: `${b.label}: ${yFormat(b.value)} requests, ${yFormat(b.failed)} failed` })),
    );
    if (b.failed > 0) svg.append(s("rect", { class: "bar failed", x, y: base - hFailed, width: w, height: hFailed }));
  });
  return svg;
}
