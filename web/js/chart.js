// The usage chart, drawn by hand as SVG: one stacked bar per day, one colour per task type.
// Each bar segment has a <title> (hover, and what assistive technology reads); the page puts the
// same numbers in a table next to it, so nothing is only visual.
import { h, svg, words } from "./dom.js";

// Dark enough for 3:1 against white (non-text contrast), distinct enough side by side.
const PALETTE = ["#1f4f99", "#b3541e", "#2e7d32", "#7b3fa0", "#9a1b3c", "#00677f", "#6b5b00", "#4a4a4a"];

export function colours(taskTypes) {
  return Object.fromEntries(taskTypes.map((t, i) => [t, PALETTE[i % PALETTE.length]]));
}

/** days: UsageDay[]; measure: "jobs" | "credits". Answers a <figure> with the chart and its legend. */
export function usageChart(days, measure, taskTypes) {
  const colour = colours(taskTypes);
  const width = 720;
  const height = 260;
  const left = 44;
  const bottom = 36;
  const top = 12;
  const plotHeight = height - bottom - top;
  const totals = days.map((d) => Object.values(d[measure] || {}).reduce((a, b) => a + b, 0));
  const max = Math.max(1, ...totals);
  const step = niceStep(max);
  const scaleMax = Math.ceil(max / step) * step;
  const slot = (width - left - 8) / Math.max(1, days.length);
  const barWidth = Math.max(2, Math.min(36, slot * 0.7));
  const y = (value) => top + plotHeight - (value / scaleMax) * plotHeight;

  const unit = measure === "jobs" ? "job" : "credit";
  const chart = svg("svg", {
    viewBox: `0 0 ${width} ${height}`,
    class: "chart",
    role: "img",
    "aria-labelledby": "chart-title",
  });
  chart.append(svg("title", { id: "chart-title" }, `${words(measure)} per day and task type, ${days[0]?.date ?? ""} to ${days.at(-1)?.date ?? ""}`));
  for (let v = 0; v <= scaleMax; v += step) {
    chart.append(
      svg("line", { x1: left, x2: width - 4, y1: y(v), y2: y(v), class: "grid" }),
      svg("text", { x: left - 6, y: y(v) + 4, "text-anchor": "end", class: "axis" }, String(v)),
    );
  }
  const labelEvery = Math.ceil(days.length / 10); // at most ~10 date labels, so they never overlap
  days.forEach((day, i) => {
    const x = left + i * slot + (slot - barWidth) / 2;
    let base = 0;
    for (const taskType of taskTypes) {
      const value = day[measure]?.[taskType] || 0;
      if (!value) continue;
      chart.append(
        svg(
          "rect",
          {
            x,
            y: y(base + value),
            width: barWidth,
            height: y(base) - y(base + value),
            fill: colour[taskType],
            class: "bar",
            "data-date": day.date,
            "data-task-type": taskType,
            "data-value": value,
          },
          svg("title", {}, `${day.date}, ${words(taskType)}: ${value} ${unit}${value === 1 ? "" : "s"}`),
        ),
      );
      base += value;
    }
    if (i % labelEvery === 0) {
      chart.append(svg("text", { x: x + barWidth / 2, y: height - bottom + 16, "text-anchor": "middle", class: "axis" }, day.date.slice(5)));
    }
  });
  chart.append(svg("line", { x1: left, x2: width - 4, y1: y(0), y2: y(0), class: "baseline" }));

  const legend = h(
    "ul",
    { class: "legend", "aria-label": "Task types" },
    ...taskTypes.map((t) => h("li", {}, h("span", { class: "swatch", "data-colour": colour[t] }), words(t))),
  );
  // Inline style attributes are refused by the page's CSP (style-src 'self'): colour set via CSSOM.
  legend.querySelectorAll(".swatch").forEach((el) => (el.style.background = el.dataset.colour));
  return h("figure", { class: "chart-box" }, chart, legend);
}

function niceStep(max) {
  const raw = Math.max(1, max / 4); // whole jobs and credits: never a tick at 0.5
  const power = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) || power * 10;
}
