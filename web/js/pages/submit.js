// Submit a job: the task types, their models and prices, and each model's options all come from
// /catalog, so a price change shows here without a new console. The price is shown before the
// job is sent; a 402 says how many credits are missing.
import { field, h, messageBox, pageHeading, plural, words } from "../dom.js";
import { describeError } from "../errors.js";

export const title = () => "Submit a job";

const INPUT_LABELS = {
  summarize: "Text to summarize",
  translate: "Text to translate",
  generate_text: "Prompt",
  chat: "Your message",
  generate_image: "Describe the image",
};

function optionControl(name, spec) {
  const label = `${words(name)}${spec.required ? "" : " (optional)"}`;
  let control;
  if (spec.enum) {
    control = h("select", { name, required: spec.required || null });
    if (!spec.required) control.append(h("option", { value: "" }, "Default"));
    for (const value of spec.enum) control.append(h("option", { value }, String(value)));
  } else if (spec.type === "integer" || spec.type === "number") {
    control = h("input", {
      type: "number",
      name,
      min: spec.min,
      max: spec.max,
      step: spec.type === "integer" ? "1" : "any",
      required: spec.required || null,
      inputmode: spec.type === "integer" ? "numeric" : "decimal",
    });
  } else {
    control = h("input", { type: "text", name, required: spec.required || null });
  }
  const range = spec.min !== null && spec.min !== undefined ? `From ${spec.min} to ${spec.max}.` : undefined;
  return { name, spec, control, el: field(label, control, range) };
}

function readOption({ spec, control }) {
  const raw = control.value.trim();
  if (raw === "") return undefined;
  if (spec.type === "integer") return Number.parseInt(raw, 10);
  if (spec.type === "number") return Number(raw);
  return raw;
}

export async function render(ctx) {
  // Teams are optional: an API without them answers 404, and the console offers own credits only.
  const [catalog, user, teamList] = await Promise.all([
    ctx.catalog(),
    ctx.me(),
    ctx.api.get("/teams", { signal: ctx.signal }).catch(() => ({ teams: [] })),
  ]);
  let ownBalance = user.credits;
  const teams = teamList.teams;
  const types = catalog.task_types;
  const preset = ctx.query.get("task_type");
  const payer = h("select", { name: "team_id", id: "team_id" }, h("option", { value: "" }, "My own credits"));
  for (const t of teams) {
    payer.append(h("option", { value: t.team_id, selected: t.team_id === ctx.query.get("team_id") }, `Team ${t.name}`));
  }
  const team = () => teams.find((t) => t.team_id === payer.value);
  const balanceOf = () => (team() ? team().credits : ownBalance);

  const taskType = h("select", { name: "task_type", id: "task_type" });
  for (const t of types) taskType.append(h("option", { value: t.task_type, selected: t.task_type === preset }, words(t.task_type)));
  const model = h("select", { name: "model", id: "model" });
  const optionsBox = h("fieldset", { class: "options" });
  const input = h("textarea", { name: "input", id: "input", rows: "6", required: true, maxlength: "20000" });
  const inputField = field("Text", input);
  const price = h("p", { id: "price", class: "price", "aria-live": "polite" });
  const message = messageBox();
  const send = h("button", { type: "submit" }, "Submit job");
  let options = [];
  // One key per job the person means to send: a retry after a lost answer reuses it, so the
  // job is charged once; any edit makes it a new job with a new key.
  let idempotencyKey = crypto.randomUUID();

  const current = () => types.find((t) => t.task_type === taskType.value);
  const chosenModel = () => current().models.find((m) => m.id === model.value);

  function showPrice() {
    const m = chosenModel();
    if (!m) return;
    const balance = balanceOf();
    const after = balance - m.cost;
    const whose = team() ? `Team ${team().name}'s balance` : "Your balance";
    price.textContent =
      `Price: ${plural(m.cost, "credit")}. ${whose}: ${plural(balance, "credit")}.` +
      (after >= 0 ? ` After this job: ${plural(after, "credit")}.` : ` You need ${plural(-after, "more credit")}.`);
    send.disabled = !m.available;
  }

  function showModels() {
    const t = current();
    model.replaceChildren();
    for (const m of t.models) {
      const label = `${m.id} — ${plural(m.cost, "credit")}${m.available ? "" : " (unavailable)"}${m.description ? ` — ${m.description}` : ""}`;
      model.append(h("option", { value: m.id, disabled: !m.available || null, selected: m.id === t.default_model }, label));
    }
    inputField.querySelector("label").textContent = INPUT_LABELS[t.task_type] || "Input";
    showOptions();
  }

  function showOptions() {
    const t = current();
    const m = chosenModel();
    const specs = (m && m.options) || t.options || {};
    options = Object.entries(specs).map(([name, spec]) => optionControl(name, spec));
    optionsBox.replaceChildren(h("legend", {}, "Options"), ...(options.length ? options.map((o) => o.el) : [h("p", { class: "hint" }, "This task type has no options.")]));
    showPrice();
  }

  const fresh = () => {
    idempotencyKey = crypto.randomUUID();
  };
  payer.addEventListener("change", () => (showPrice(), fresh()));
  taskType.addEventListener("change", () => (showModels(), fresh()));
  model.addEventListener("change", () => (showOptions(), fresh()));

  const form = h(
    "form",
    {
      class: "card wide",
      oninput: fresh,
      onsubmit: async (event) => {
        event.preventDefault();
        message.clear();
        const t = current();
        const m = chosenModel();
        const chosen = { model: m.id };
        for (const o of options) {
          const value = readOption(o);
          if (value !== undefined) chosen[o.name] = value;
        }
        const text = input.value;
        const inputData = t.task_type === "chat" ? [{ role: "user", content: text }] : text;
        send.disabled = true;
        try {
          const body = { task_type: t.task_type, input_data: inputData, options: chosen };
          if (team()) body.team_id = team().team_id;
          const accepted = await ctx.api.post(
            "/submit_job",
            body,
            { headers: { "Idempotency-Key": idempotencyKey } },
          );
          fresh();
          ctx.me().catch(() => {});
          ctx.navigate(`/jobs/${accepted.job_id}`);
        } catch (error) {
          const context = { cost: m.cost };
          if (error.code === "insufficient_credits") {
            // The balance may have moved since the page loaded: read it to say what is missing.
            if (team()) {
              const latest = await ctx.api.get(`/teams/${team().team_id}`).catch(() => team());
              team().credits = latest.credits;
            } else {
              ownBalance = (await ctx.me().catch(() => ({ credits: ownBalance }))).credits;
            }
            const balance = balanceOf();
            const whose = team() ? `team ${team().name}'s balance` : undefined;
            Object.assign(context, { balance, whose, missing: m.cost - balance });
            showPrice();
          }
          message.error(describeError(error, context));
        } finally {
          send.disabled = !chosenModel()?.available;
        }
      },
    },
    field("Task type", taskType),
    field("Model", model),
    teams.length ? field("Charge to", payer) : null,
    inputField,
    optionsBox,
    price,
    h("div", { class: "actions" }, send),
    message.el,
  );
  ctx.main.append(pageHeading("Submit a job"), form);
  showModels();
}
