// The job list with filters (status, task type, tag: combined with AND by the API), newest first.
// The filters live in the address (#/jobs?status=queued), so a filtered list can be bookmarked.
import { field, formatTime, h, pageHeading, words } from "../dom.js";
import { describeError } from "../errors.js";

export const title = () => "Jobs";

export const STATUSES = ["queued", "in_progress", "completed", "failed", "canceled"];

export function statusBadge(status) {
  return h("span", { class: `badge ${status}` }, words(status));
}

export async function render(ctx) {
  const catalog = await ctx.catalog();
  const filters = {
    status: ctx.query.get("status") || "",
    task_type: ctx.query.get("task_type") || "",
    tag: ctx.query.get("tag") || "",
  };
  const status = h("select", { name: "status" }, h("option", { value: "" }, "Any status"));
  for (const s of STATUSES) status.append(h("option", { value: s, selected: s === filters.status }, words(s)));
  const taskType = h("select", { name: "task_type" }, h("option", { value: "" }, "Any task type"));
  for (const t of catalog.task_types) {
    taskType.append(h("option", { value: t.task_type, selected: t.task_type === filters.task_type }, words(t.task_type)));
  }
  const tag = h("input", { type: "text", name: "tag", value: filters.tag, pattern: "[a-z0-9][a-z0-9_-]{0,31}" });
  const form = h(
    "form",
    {
      class: "filters",
      onsubmit: (event) => {
        event.preventDefault();
        const query = new URLSearchParams();
        for (const [name, control] of [["status", status], ["task_type", taskType], ["tag", tag]]) {
          if (control.value.trim()) query.set(name, control.value.trim());
        }
        ctx.navigate(`/jobs${query.size ? `?${query}` : ""}`);
      },
    },
    field("Status", status),
    field("Task type", taskType),
    field("Tag", tag, "Lower-case letters, digits, - and _."),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Filter")),
  );

  const rows = h("tbody");
  const note = h("p", { class: "message", role: "status" });
  const more = h("button", { type: "button", class: "secondary", hidden: true }, "Show older jobs");
  let cursor = null;
  async function load() {
    more.disabled = true;
    try {
      const page = await ctx.api.get("/jobs", { query: { ...filters, limit: 20, cursor }, signal: ctx.signal });
      for (const job of page.jobs) {
        rows.append(
          h(
            "tr",
            {},
            h("td", {}, h("a", { href: `#/jobs/${job.job_id}` }, job.title || `${words(job.task_type)} ${job.job_id.slice(0, 8)}`)),
            h("td", {}, words(job.task_type)),
            h("td", {}, statusBadge(job.status)),
            h("td", { class: "num" }, String(job.cost)),
            h("td", {}, (job.tags || []).join(", ") || "—"),
            h("td", {}, formatTime(job.created_at)),
          ),
        );
      }
      cursor = page.next_cursor;
      more.hidden = !cursor;
      note.textContent = rows.children.length ? `${rows.children.length} shown.` : "No jobs match.";
    } catch (error) {
      if (error.name !== "AbortError") note.textContent = describeError(error);
    } finally {
      more.disabled = false;
    }
  }
  more.addEventListener("click", load);
  ctx.main.append(
    pageHeading("Jobs"),
    form,
    h(
      "table",
      { id: "jobs" },
      h("caption", { class: "visually-hidden" }, "Your jobs, newest first"),
      h(
        "thead",
        {},
        h("tr", {}, ...["Job", "Task type", "Status", "Cost", "Tags", "Submitted"].map((c) => h("th", { scope: "col" }, c))),
      ),
      rows,
    ),
    note,
    more,
  );
  await load();
}
