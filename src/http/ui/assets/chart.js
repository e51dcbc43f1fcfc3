// Charts drawn as SVG: a line chart of daily values per series and a bar chart of counts per
// minute. Every point carries a <title> (its value) so a pointer or screen reader can read
// it; colours come from the stylesheet classes s0…s7.

import { s } from "./dom.js";

/** Drawing size when the box's width is unknown (drawn while hidden). */
const DEFAULT_W = 640;
const H = 220;
/** Horizontal grid lines above zero. */
const STEPS = 5;
const PAD = { left: 56, right: 12, top: 12, bottom: 28 };

/** The top of the y axis: at least `v` and `floor`, rounded up to 1, 2 or 5 × 10ⁿ. */
function niceMax(v, floor) {
  if (!(v > floor)) return floor;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

/** The chart's width in user units: the box's own pixel width, so text is drawn at size. */
function widthOf(box) {
  const w = box && box.clientWidth;
  return w && w > 200 ? Math.min(w, 2400) : DEFAULT_W;
}

function frame(W, labels, max, yFormat, { everyLabel, xOf }) {
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img" });
  const innerW = W - PAD.left - PAD.right;
  const innerH = H - PAD.top - PAD.bottom;
  for (let i = 0; i <= STEPS; i++) {
    const y = PAD.top + innerH - (innerH * i) / STEPS;
    svg.append(s("line", { class: "axis", x1: PAD.left, x2: W - PAD.right, y1: y, y2: y }));
    svg.append(s("text", { class: "tick", x: PAD.left - 6, y: y + 4, "text-anchor": "end", text: yFormat((max * i) / STEPS) }));
  }
  const n = labels.length;
  const step = Math.max(1, Math.ceil(n / Math.max(2, Math.floor(everyLabel * (W / DEFAULT_W)))));
  labels.forEach((label, i) => {
    if (i % step !== 0 && i !== n - 1) return;
    const x = xOf(i, innerW);
    const anchor = x > W - PAD.right - 24 ? "end" : "middle";
    svg.append(s("text", { class: "tick", x, y: H - 8, "text-anchor": anchor, text: label }));
  });
  return { svg, innerW, innerH };
}

function xAt(i, n, innerW) {
  return PAD.left + (n <= 1 ? innerW / 2 : (innerW * i) / (n - 1));
}

/**
 * A line chart drawn for `box`. `labels` are the x values (days); `series` is
 * `[{name, values}]` with one value per label. One circle per value, so the chart has
 * `series × labels` points. `top` fixes the y axis (1 for rates); `floor` is its least top.
 */
export function lineChart(box, labels, series, yFormat, title, { top = null, floor = 5 } = {}) {
  const W = widthOf(box);
  const max = top ?? niceMax(Math.max(0, ...series.flatMap((x) => x.values.filter(Number.isFinite))), floor);
  const xOf = (i, innerW) => xAt(i, labels.length, innerW);
  const { svg, innerW, innerH } = frame(W, labels.map((d) => d.slice(5)), max, yFormat, { everyLabel: 8, xOf });
  svg.setAttribute("aria-label", title);
  if (series.length === 0) {
    svg.append(s("text", { class: "empty", x: W / 2, y: H / 2, "text-anchor": "middle", text: "No usage in this range" }));
    return svg;
  }
  const yAt = (v) => PAD.top + innerH - (innerH * Math.min(v, max)) / max;
  const dots = s("g");
  series.forEach((ser, k) => {
    const cls = `s${k % 8}`;
    // A day without a value (no requests: no rate, no latency) breaks the line and has no point.
    let run = [];
    const flush = () => {
      if (run.length) svg.append(s("polyline", { class: `line ${cls}`, points: run.map((p) => p.join(",")).join(" ") }));
      run = [];
    };
    ser.values.forEach((v, i) => {
      if (!Number.isFinite(v)) {
        flush();
        return;
      }
      const x = xAt(i, labels.length, innerW);
      const y = yAt(v);
      run.push([x, y]);
      dots.append(
        s("circle", { class: `point ${cls}`, cx: x, cy: y, r: 3.5, "data-series": ser.name, "data-day": labels[i] },
          s("title", { text: `${ser.name}, ${labels[i]}: ${yFormat(v)}` })),
      );
    });
    flush();
  });
  svg.append(dots);
  return svg;
}

/** A bar chart of `[{label, value, failed}]` drawn for `box`, failed part over the total. */
export function barChart(box, bars, yFormat, title) {
  const W = widthOf(box);
  const max = niceMax(Math.max(0, ...bars.map((b) => b.value)), 5);
  const slotOf = (innerW) => innerW / Math.max(1, bars.length);
  const xOf = (i, innerW) => PAD.left + (i + 0.5) * slotOf(innerW);
  const { svg, innerW, innerH } = frame(W, bars.map((b) => b.label), max, yFormat, { everyLabel: 6, xOf });
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
