// One job, followed live: GET /jobs/{id}?wait=25 answers as soon as the job is final (a long-poll,
// not a polling loop), so the page shows the result the moment it lands. Images are fetched with
// the bearer and shown from a blob: URL (an <img src> could not send the Authorization header).
import { field, formatTime, h, messageBox, pageHeading, plural, words } from "../dom.js";
import { describeError, describeJobError } from "../errors.js";
import { statusBadge } from "./jobs.js";

export const title = () => "Job";

const FINAL = new Set(["completed", "failed", "canceled"]);
const WAIT_SECONDS = 25;

function inputView(job) {
  if (job.deleted_at) return h("p", { class: "hint" }, "Deleted: the input and output are gone.");
  if (Array.isArray(job.input_data)) {
    return h("ol", { class: "chat" }, ...job.input_data.map((m) => h("li", {}, h("strong", {}, `${words(m.role)}: `), m.content)));
  }
  return h("p", { class: "text" }, String(job.input_data ?? ""));
}

export async function render(ctx) {
  const [jobId] = ctx.params;
  const { api, signal } = ctx;
  const message = messageBox();
  const live = h("p", { id: "job-status", role: "status", "aria-live": "polite" });
  const details = h("dl", { class: "details" });
  const input = h("div");
  const output = h("div", { id: "output" });
  const actions = h("div", { class: "actions" });
  const edit = h("div");
  let imageUrl = null;
  signal.addEventListener("abort", () => imageUrl && URL.revokeObjectURL(imageUrl));

  async function showImage(job) {
    if (imageUrl || !job.output?.image) return;
    const blob = await api.get(`/jobs/${job.job_id}/image`, { as: "blob", signal });
    imageUrl = URL.createObjectURL(blob);
    const prompt = typeof job.input_data === "string" ? job.input_data : "";
    output.replaceChildren(h("img", { src: imageUrl, class: "result", alt: `Generated image: ${prompt}`.slice(0, 300) }));
  }

  function show(job) {
    live.replaceChildren("Status: ", statusBadge(job.status), FINAL.has(job.status) ? "" : " — following it live…");
    const rows = [
      ["Task type", words(job.task_type)],
      ["Model", job.model || "—"],
      ["Cost", plural(job.cost, "credit")],
      ["Submitted", formatTime(job.created_at)],
      ["Updated", formatTime(job.updated_at)],
      ["Title", job.title || "—"],
      ["Tags", (job.tags || []).join(", ") || "—"],
    ];
    details.replaceChildren(...rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
    input.replaceChildren(inputView(job));
    if (job.status === "completed" && !job.deleted_at) {
      if (job.output?.text !== undefined) output.replaceChildren(h("p", { class: "text", id: "output-text" }, job.output.text));
      else if (job.output?.image) showImage(job).catch((error) => message.error(describeError(error)));
      else if (job.output?.image_url || job.output?.image_b64) output.replaceChildren(h("p", {}, "This image was stored before images moved to our storage; it is no longer shown here."));
    } else if (job.status === "failed") {
      output.replaceChildren(h("p", { class: "message error" }, describeJobError(job.error), " Its cost was refunded."));
    } else if (job.status === "canceled") {
      output.replaceChildren(h("p", {}, `Canceled: ${plural(job.cost, "credit")} refunded.`));
    } else {
      output.replaceChildren(h("p", { class: "hint" }, "The output appears here when the job is done."));
    }
    actions.replaceChildren();
    if (job.status === "queued") actions.append(h("button", { type: "button", onclick: () => cancel() }, "Cancel job"));
    if (FINAL.has(job.status) && !job.deleted_at) actions.append(deleteButton());
    edit.replaceChildren(job.deleted_at ? "" : editForm(job));
  }

  async function cancel() {
    message.clear();
    try {
      const job = await api.post(`/jobs/${jobId}/cancel`, undefined, { signal });
      show(job);
      message.ok(`Job canceled; ${plural(job.cost, "credit")} refunded.`);
      ctx.me().catch(() => {});
    } catch (error) {
      message.error(describeError(error));
    }
  }

  function deleteButton() {
    // Two steps instead of window.confirm: the confirmation is part of the page, reachable by keyboard.
    const box = h("span", { class: "confirm" });
    const ask = h("button", { type: "button", class: "danger" }, "Delete job");
    ask.addEventListener("click", () => {
      const yes = h("button", { type: "button", class: "danger" }, "Yes, delete its content");
      const no = h("button", { type: "button", class: "secondary" }, "Keep it");
      yes.addEventListener("click", async () => {
        try {
          await api.delete(`/jobs/${jobId}`, { signal });
          message.ok("Job deleted: its input and output are gone; its accounting stays.");
          show(await api.get(`/jobs/${jobId}`, { signal }));
        } catch (error) {
          message.error(describeError(error));
        }
      });
      no.addEventListener("click", () => box.replaceChildren(ask));
      box.replaceChildren(h("span", {}, "Delete this job's input and output for good? "), yes, no);
      yes.focus();
    });
    box.append(ask);
    return box;
  }

  function editForm(job) {
    const name = h("input", { type: "text", maxlength: "200", value: job.title || "" });
    const tags = h("input", { type: "text", value: (job.tags || []).join(", ") });
    return h(
      "form",
      {
        class: "inline",
        onsubmit: async (event) => {
          event.preventDefault();
          const body = {
            title: name.value.trim() || null,
            tags: tags.value.split(",").map((t) => t.trim()).filter(Boolean),
          };
          try {
            show(await api.call("PATCH", `/jobs/${jobId}`, { body, signal }));
            message.ok("Saved.");
          } catch (error) {
            message.error(describeError(error));
          }
        },
      },
      field("Title", name),
      field("Tags", tags, "Comma-separated, at most 10."),
      h("div", { class: "actions" }, h("button", { type: "submit", class: "secondary" }, "Save title and tags")),
    );
  }

  ctx.main.append(
    pageHeading(`Job ${jobId.slice(0, 8)}`),
    live,
    message.el,
    h("section", { "aria-labelledby": "output-h" }, h("h2", { id: "output-h" }, "Output"), output),
    actions,
    h("section", { "aria-labelledby": "details-h" }, h("h2", { id: "details-h" }, "Details"), details, edit),
    h("section", { "aria-labelledby": "input-h" }, h("h2", { id: "input-h" }, "Input"), input),
  );

  const job = await api.get(`/jobs/${jobId}`, { signal });
  show(job);
  follow(job);

  async function follow(seen) {
    let last = seen;
    let pause = 1000;
    while (!FINAL.has(last.status) && !signal.aborted) {
      try {
        last = await api.get(`/jobs/${jobId}`, { query: { wait: WAIT_SECONDS }, signal });
        pause = 1000;
        show(last);
        if (FINAL.has(last.status)) ctx.me().catch(() => {}); // a refund or the charge settles the balance
      } catch (error) {
        if (error.name === "AbortError") return;
        message.error(`${describeError(error)} Still following the job…`);
        await new Promise((resolve) => setTimeout(resolve, pause));
        pause = Math.min(pause * 2, 30_000);
      }
    }
  }
}
