// Small SVG charts for the uno dashboard: bars (stacked or diverging), lines
// and inline rate bars. No dependencies; every chart is an <svg role="img">
// with a text summary for screen readers and a <title> per mark for hover.

const NS = 'http://www.w3.org/2000/svg';

/** Creates an SVG element with attributes and children. */
export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== undefined && value !== null && value !== false) el.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** A "nice" upper bound and tick step for values up to `max`. */
export function niceScale(max, ticks = 4, integer = false) {
  if (!(max > 0)) return { top: 1, step: 1 };
  const rough = integer ? Math.max(1, max / ticks) : max / ticks;
  const pow = 10 ** Math.floor(Math.log10(rough));
  let step = [1, 2, 2.5, 5, 10].map((m) => m * pow).find((m) => m >= rough) ?? 10 * pow;
  if (integer) step = Math.max(1, Math.round(step));
  return { top: Math.ceil(max / step) * step, step };
}

function fmtTick(v) {
  if (Math.abs(v) >= 1000) return `${+(v / 1000).toFixed(1)}k`;
  return `${+v.toFixed(2)}`;
}

const PAD = { top: 12, right: 12, bottom: 26, left: 44 };

function frame(width, height, label) {
  return s('svg', {
    class: 'chart',
    viewBox: `0 0 ${width} ${height}`,
    width,
    height,
    role: 'img',
    'aria-label': label,
  });
}

function xLabels(svg, labels, x, band, height, shown) {
  labels.forEach((text, i) => {
    if (!shown.has(i)) return;
    svg.append(
      s('text', { x: x(i) + band / 2, y: height - 8, class: 'tick', 'text-anchor': 'middle' }, text),
    );
  });
}

/** Which x labels to draw: as many of the non-blank ones as fit (about
 *  56 px each), evenly spaced among them. */
function labelEvery(labels, plotW) {
  const room = Math.max(1, Math.floor(plotW / 56));
  const candidates = labels.map((l, i) => (l ? i : -1)).filter((i) => i >= 0);
  const stride = Math.max(1, Math.ceil(candidates.length / room));
  return new Set(candidates.filter((_, k) => k % stride === 0));
}

function yGrid(svg, width, y, top, step, min = 0, format = fmtTick) {
  for (let v = min; v <= top + 1e-9; v += step) {
    const yy = y(v);
    svg.append(
      s('line', {
        x1: PAD.left,
        x2: width - PAD.right,
        y1: yy,
        y2: yy,
        class: v === 0 ? 'axis' : 'grid',
      }),
      s('text', { x: PAD.left - 6, y: yy + 4, class: 'tick', 'text-anchor': 'end' }, format(Math.abs(v))),
    );
  }
}

/**
 * Bars over categories. `series`: [{name, cls, values[]}] stacked upwards;
 * `below`: optional series drawn downwards from zero (diverging).
 * `labels`: one x label per category; `titles`: hover text per category.
 */
export function barChart({ width = 600, height = 200, labels, series, below = [], titles = [], label, format, integer = false }) {
  const svg = frame(width, height, label);
  const n = labels.length;
  const sum = (list, i) => list.reduce((acc, se) => acc + (se.values[i] || 0), 0);
  const upMax = Math.max(0, ...labels.map((_, i) => sum(series, i)));
  const downMax = Math.max(0, ...labels.map((_, i) => sum(below, i)));
  const plotH = height - PAD.top - PAD.bottom;
  const plotW = width - PAD.left - PAD.right;
  const share = below.length ? upMax / Math.max(upMax + downMax, 1e-9) || 0.5 : 1;
  const upScale = niceScale(upMax, below.length ? 2 : 4, integer);
  const downScale = niceScale(downMax, 2, integer);
  const zeroY = PAD.top + plotH * (below.length ? Math.min(Math.max(share, 0.3), 0.7) : 1);
  const y = (v) =>
    v >= 0
      ? zeroY - (v / upScale.top) * (zeroY - PAD.top)
      : zeroY + (-v / downScale.top) * (PAD.top + plotH - zeroY);
  yGrid(svg, width, y, upScale.top, upScale.step, 0, format);
  if (below.length) {
    for (let v = downScale.step; v <= downScale.top + 1e-9; v += downScale.step) {
      const yy = y(-v);
      svg.append(
        s('line', { x1: PAD.left, x2: width - PAD.right, y1: yy, y2: yy, class: 'grid' }),
        s('text', { x: PAD.left - 6, y: yy + 4, class: 'tick', 'text-anchor': 'end' }, (format || fmtTick)(v)),
      );
    }
  }
  const step = plotW / Math.max(n, 1);
  const band = Math.max(1, step * (n > 60 ? 0.9 : 0.72));
  const x = (i) => PAD.left + i * step + (step - band) / 2;
  for (let i = 0; i < n; i++) {
    const g = s('g', { class: 'bar' });
    let acc = 0;
    for (const se of series) {
      const v = se.values[i] || 0;
      if (v <= 0) continue;
      const y0 = y(acc);
      const y1 = y(acc + v);
      g.append(s('rect', { x: x(i), y: y1, width: band, height: Math.max(0.5, y0 - y1), class: se.cls }));
      acc += v;
    }
    acc = 0;
    for (const se of below) {
      const v = se.values[i] || 0;
      if (v <= 0) continue;
      const y0 = y(-acc);
      const y1 = y(-(acc + v));
      g.append(s('rect', { x: x(i), y: y0, width: band, height: Math.max(0.5, y1 - y0), class: se.cls }));
      acc += v;
    }
    // A full-height transparent target, so hovering anywhere in the column
    // shows the category's numbers.
    g.append(
      s('rect', { x: PAD.left + i * step, y: PAD.top, width: step, height: plotH, class: 'hit' },
        s('title', {}, titles[i] || labels[i] || '')),
    );
    svg.append(g);
  }
  xLabels(svg, labels, x, band, height, labelEvery(labels, plotW));
  return svg;
}

/** Lines over categories. `series`: [{name, cls, values[] (null = no data)}]. */
export function lineChart({ width = 600, height = 200, labels, series, titles = [], label, format }) {
  const svg = frame(width, height, label);
  const n = labels.length;
  const all = series.flatMap((se) => se.values.filter((v) => v !== null && v !== undefined));
  const { top, step } = niceScale(Math.max(0, ...all));
  const plotH = height - PAD.top - PAD.bottom;
  const plotW = width - PAD.left - PAD.right;
  const stepX = plotW / Math.max(n, 1);
  const x = (i) => PAD.left + i * stepX + stepX / 2;
  const y = (v) => PAD.top + plotH - (v / top) * plotH;
  yGrid(svg, width, y, top, step, 0, format);
  for (const se of series) {
    let d = '';
    let pen = false;
    // Empty buckets (null) are skipped: the line joins the measured points
    // around them, and only measured points get a dot.
    se.values.forEach((v, i) => {
      if (v === null || v === undefined) return;
      d += `${pen ? 'L' : 'M'}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
      pen = true;
    });
    if (d) svg.append(s('path', { d, class: `line ${se.cls}` }));
    se.values.forEach((v, i) => {
      if (v === null || v === undefined) return;
      svg.append(s('circle', { cx: x(i), cy: y(v), r: n > 60 ? 1.5 : 2.5, class: `dot ${se.cls}` }));
    });
  }
  for (let i = 0; i < n; i++) {
    svg.append(
      s('rect', { x: PAD.left + i * stepX, y: PAD.top, width: stepX, height: plotH, class: 'hit' },
        s('title', {}, titles[i] || labels[i] || '')),
    );
  }
  xLabels(svg, labels, (i) => x(i) - 0.5, 1, height, labelEvery(labels, plotW));
  return svg;
}

/** Horizontal bars, one per row: [{label, value, cls}]. */
export function hbarChart({ width = 360, rows, label, format = (v) => String(v) }) {
  const rowH = 22;
  const labelW = 86;
  const valueW = 48;
  const height = rows.length * rowH + 4;
  const svg = frame(width, height, label);
  const max = Math.max(1, ...rows.map((r) => r.value));
  rows.forEach((r, i) => {
    const yy = i * rowH + 2;
    const w = ((width - labelW - valueW) * r.value) / max;
    svg.append(
      s('text', { x: 0, y: yy + 15, class: 'tick label' }, r.label),
      s('rect', { x: labelW, y: yy + 3, width: width - labelW - valueW, height: rowH - 8, class: 'track', rx: 3 }),
      s('rect', { x: labelW, y: yy + 3, width: Math.max(r.value > 0 ? 2 : 0, w), height: rowH - 8, class: r.cls || 'fill', rx: 3 }),
      s('text', { x: width - valueW + 6, y: yy + 15, class: 'tick value' }, format(r.value)),
    );
  });
  return svg;
}

/** A 0..1 rate as a small inline bar with its own scale of 0..`max`. */
export function rateBar(rate, { cls = 'down', width = 90, max = 1, label } = {}) {
  const svg = s('svg', {
    class: 'ratebar',
    viewBox: `0 0 ${width} 10`,
    width,
    height: 10,
    role: 'img',
    'aria-label': label,
  });
  svg.append(s('rect', { x: 0, y: 1, width, height: 8, rx: 2, class: 'track' }));
  if (rate !== null && rate !== undefined && Number.isFinite(rate)) {
    const w = Math.min(1, rate / max) * width;
    svg.append(s('rect', { x: 0, y: 1, width: Math.max(rate > 0 ? 2 : 0, w), height: 8, rx: 2, class: cls }));
  }
  return svg;
}

/** A min–mean–max range on a 0..`max` scale: a band with a tick at the mean. */
export function rangeBar({ min, mean, max: hi }, { width = 90, max = 1, high = false, label } = {}) {
  const svg = s('svg', {
    class: 'rangebar',
    viewBox: `0 0 ${width} 12`,
    width,
    height: 12,
    role: 'img',
    'aria-label': label,
  });
  const x = (v) => Math.min(1, Math.max(0, v / max)) * width;
  svg.append(s('rect', { x: 0, y: 5, width, height: 2, class: 'track' }));
  if ([min, mean, hi].every(Number.isFinite)) {
    svg.append(
      s('rect', { x: x(min), y: 2, width: Math.max(2, x(hi) - x(min)), height: 8, rx: 2, class: high ? 'gap-high' : 'gap' }),
      s('rect', { x: x(mean) - 1, y: 0, width: 2, height: 12, class: 'mean' }),
    );
  }
  return svg;
}

/** Parts of a whole as one small horizontal stacked bar: [{value, cls}]. */
export function stackBar(parts, { width = 72, label } = {}) {
  const svg = s('svg', { class: 'stackbar', viewBox: `0 0 ${width} 10`, width, height: 10, role: 'img', 'aria-label': label });
  const total = parts.reduce((a, p) => a + p.value, 0) || 1;
  let x = 0;
  for (const p of parts) {
    const w = (p.value / total) * width;
    if (w > 0) svg.append(s('rect', { x, y: 1, width: w, height: 8, class: p.cls }));
    x += w;
  }
  return svg;
}
