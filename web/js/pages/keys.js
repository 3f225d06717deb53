// API keys: create one (its secret is shown this once, with a copy button), list, revoke.
import { field, formatTime, h, messageBox, pageHeading } from "../dom.js";
import { describeError } from "../errors.js";

export const title = () => "API keys";

export async function render(ctx) {
  const { api, signal } = ctx;
  const message = messageBox();
  const reveal = h("div", { id: "new-key" });
  const rows = h("tbody");
  const name = h("input", { type: "text", name: "name", required: true, maxlength: "100" });

  async function load() {
    const page = await api.get("/api_keys", { query: { limit: 100 }, signal });
    rows.replaceChildren(
      ...page.api_keys.map((key) =>
        h(
          "tr",
          {},
          h("td", {}, key.name),
          h("td", {}, h("code", {}, `${key.prefix}…`)),
          h("td", {}, formatTime(key.created_at)),
          h("td", {}, key.last_used_at ? formatTime(key.last_used_at) : "Never"),
          h("td", {}, h("button", { type: "button", class: "danger", "aria-label": `Revoke key ${key.name}`, onclick: () => revoke(key) }, "Revoke")),
        ),
      ),
    );
    if (!page.api_keys.length) rows.append(h("tr", {}, h("td", { colspan: "5" }, "No API keys.")));
  }

  async function revoke(key) {
    message.clear();
    try {
      await api.delete(`/api_keys/${key.id}`, { signal });
      message.ok(`Key “${key.name}” revoked: it stops working now.`);
      await load();
    } catch (error) {
      message.error(describeError(error));
    }
  }

  function showSecret(created) {
    const secret = h("input", { type: "text", readonly: true, value: created.key, class: "secret", spellcheck: "false" });
    const copied = h("span", { role: "status", class: "hint" });
    const copy = h("button", { type: "button" }, "Copy key");
    copy.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(created.key);
        copied.textContent = "Copied.";
      } catch {
        // No clipboard permission: select it, so Ctrl+C copies it.
        secret.select();
        copied.textContent = "Selected: press Ctrl+C to copy.";
      }
    });
    reveal.replaceChildren(
      h(
        "div",
        { class: "card notice" },
        h("h2", {}, `Your new key “${created.name}”`),
        h("p", {}, "Copy it now: it is shown only this once. Send it as ", h("code", {}, "Authorization: Bearer <key>"), "."),
        field("API key", secret),
        h("div", { class: "actions" }, copy, copied),
      ),
    );
    secret.focus();
    secret.select();
  }

  const form = h(
    "form",
    {
      class: "inline",
      onsubmit: async (event) => {
        event.preventDefault();
        message.clear();
        try {
          const created = await api.post("/api_keys", { name: name.value.trim() }, { signal });
          name.value = "";
          showSecret(created);
          await load();
        } catch (error) {
          message.error(describeError(error));
        }
      },
    },
    field("Name of the new key", name, "So you can tell your keys apart, e.g. “laptop script”."),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Create key")),
  );

  ctx.main.append(
    pageHeading("API keys"),
    h("p", { class: "lead" }, "A key works like your sign-in for scripts and the aijobs command. It cannot manage keys."),
    form,
    message.el,
    reveal,
    h(
      "table",
      { id: "keys" },
      h("caption", { class: "visually-hidden" }, "Your API keys"),
      h("thead", {}, h("tr", {}, ...["Name", "Starts with", "Created", "Last used", "Action"].map((c) => h("th", { scope: "col" }, c)))),
      rows,
    ),
  );
  await load();
}
