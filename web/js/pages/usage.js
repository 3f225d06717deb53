// Usage over a chosen date range (UTC days), per day and task type, from /usage: the chart, and the
// same numbers as a table.
import { usageChart } from "../chart.js";
import { field, h, messageBox, pageHeading, plural, words } from "../dom.js";
import { describeError } from "../errors.js";

export const title = () => "Usage";

const iso = (date) => date.toISOString().slice(0, 10);

export async function render(ctx) {
  const today = new Date();
  const to = ctx.query.get("to") || iso(today);
  const from = ctx.query.get("from") || iso(new Date(today.getTime() - 13 * 86_400_000));
  const measure = ctx.query.get("measure") === "jobs" ? "jobs" : "credits";

  const fromInput = h("input", { type: "date", name: "from", value: from, required: true });
  const toInput = h("input", { type: "date", name: "to", value: to, required: true });
  const measureSelect = h(
    "select",
    { name: "measure" },
    h("option", { value: "credits", selected: measure === "credits" }, "Credits spent"),
    h("option", { value: "jobs", selected: measure === "jobs" }, "Jobs submitted"),
  );
  const message = messageBox();
  const form = h(
    "form",
    {
      class: "filters",
      onsubmit: (event) => {
        event.preventDefault();
        const query = new URLSearchParams({ from: fromInput.value, to: toInput.value, measure: measureSelect.value });
        ctx.navigate(`/usage?${query}`);
      },
    },
    field("From", fromInput),
    field("To", toInput),
    field("Show", measureSelect),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Show usage")),
  );
  const result = h("div", { id: "usage" });
  ctx.main.append(pageHeading("Usage"), form, message.el, result);

  let usage;
  try {
    usage = await ctx.api.get("/usage", { query: { from, to }, signal: ctx.signal });
  } catch (error) {
    if (error.name !== "AbortError") message.error(describeError(error));
    return;
  }
  const catalog = await ctx.catalog();
  const seen = new Set(usage.days.flatMap((d) => [...Object.keys(d.jobs || {}), ...Object.keys(d.credits || {})]));
  const taskTypes = [...new Set([...catalog.task_types.map((t) => t.task_type), ...seen])].filter((t) => seen.has(t));

  const totals = usage.totals || {};
  result.append(
    h(
      "p",
      { class: "big", id: "usage-totals" },
      `${usage.from} to ${usage.to}: ${plural(totals.total_jobs, "job")}, ${plural(totals.total_credits, "credit")}.`,
    ),
    taskTypes.length ? usageChart(usage.days, measure, taskTypes) : h("p", {}, "No usage in this range."),
    table(usage.days, taskTypes, measure),
  );
}

function table(days, taskTypes, measure) {
  const active = days.filter((d) => d.total_jobs || d.total_credits);
  return h(
    "table",
    { id: "usage-table" },
    h("caption", {}, `${measure === "jobs" ? "Jobs" : "Credits"} per day (days without usage left out)`),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Day"), ...taskTypes.map((t) => h("th", { scope: "col" }, words(t))), h("th", { scope: "col" }, "Total"))),
    h(
      "tbody",
      {},
      ...active.map((d) =>
        h(
          "tr",
          {},
          h("th", { scope: "row" }, d.date),
          ...taskTypes.map((t) => h("td", { class: "num" }, String(d[measure]?.[t] || 0))),
          h("td", { class: "num" }, String(measure === "jobs" ? d.total_jobs : d.total_credits)),
        ),
      ),
    ),
  );
}
