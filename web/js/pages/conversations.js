// Conversations: the server keeps the history; each message is a chat job, charged and followed
// like any job. #/conversations lists and creates them; #/conversations/{id} is one of them.
import { field, formatTime, h, messageBox, pageHeading, plural, words } from "../dom.js";
import { describeError, describeJobError } from "../errors.js";

export const title = (ctx) => (ctx.params[0] ? "Conversation" : "Conversations");

export function render(ctx) {
  return ctx.params[0] ? one(ctx, ctx.params[0]) : list(ctx);
}

async function list(ctx) {
  const message = messageBox();
  const titleInput = h("input", { type: "text", maxlength: "200" });
  const system = h("textarea", { rows: "3", maxlength: "4000" });
  const form = h(
    "form",
    {
      class: "card",
      onsubmit: async (event) => {
        event.preventDefault();
        try {
          const body = { title: titleInput.value.trim() || null, system: system.value.trim() || null };
          const created = await ctx.api.post("/conversations", body, { signal: ctx.signal });
          ctx.navigate(`/conversations/${created.conversation_id}`);
        } catch (error) {
          message.error(describeError(error));
        }
      },
    },
    h("h2", {}, "New conversation"),
    field("Title (optional)", titleInput),
    field("Instructions for the assistant (optional)", system, "The system message, e.g. “You are a concise travel agent.”"),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Start conversation")),
    message.el,
  );
  const page = await ctx.api.get("/conversations", { query: { limit: 50 }, signal: ctx.signal });
  ctx.main.append(
    pageHeading("Conversations"),
    form,
    h("h2", {}, "Your conversations"),
    page.conversations.length
      ? h(
          "ul",
          { class: "plain", id: "conversations" },
          ...page.conversations.map((c) =>
            h("li", {}, h("a", { href: `#/conversations/${c.conversation_id}` }, c.title || "Untitled"), ` — started ${formatTime(c.created_at)}`),
          ),
        )
      : h("p", {}, "None yet."),
  );
}

async function one(ctx, id) {
  const { api, signal } = ctx;
  const message = messageBox();
  const thread = h("ol", { class: "thread", id: "thread", "aria-live": "polite" });
  const content = h("textarea", { rows: "3", required: true, maxlength: "8000" });
  const price = h("p", { class: "price" });
  const heading = pageHeading("Conversation");
  const [catalog, user] = await Promise.all([ctx.catalog(), ctx.me()]);
  const chat = catalog.task_types.find((t) => t.task_type === "chat");
  const cost = chat?.models.find((m) => m.id === chat.default_model)?.cost ?? 1;
  const showPrice = (credits) => {
    price.textContent = `Each message costs ${plural(cost, "credit")}. Your balance: ${plural(credits, "credit")}.`;
  };
  showPrice(user.credits);

  function show(conversation) {
    heading.textContent = conversation.title || "Untitled conversation";
    thread.replaceChildren(
      ...(conversation.system ? [h("li", { class: "system" }, h("strong", {}, "Instructions: "), conversation.system)] : []),
      ...conversation.messages.flatMap((m) => [
        h("li", { class: "user" }, h("strong", {}, "You: "), m.content),
        h(
          "li",
          { class: "assistant" },
          h("strong", {}, "Assistant: "),
          m.status === "completed" ? m.reply : m.status === "pending" ? "…thinking" : `${words(m.status)}. ${describeJobError(m.error)}`,
        ),
      ]),
    );
  }

  async function reload() {
    const conversation = await api.get(`/conversations/${id}`, { signal });
    show(conversation);
    return conversation;
  }

  const form = h(
    "form",
    {
      class: "card wide",
      onsubmit: async (event) => {
        event.preventDefault();
        message.clear();
        const send = form.querySelector("button[type=submit]");
        send.disabled = true;
        try {
          const accepted = await api.post(
            `/conversations/${id}/messages`,
            { content: content.value },
            { headers: { "Idempotency-Key": crypto.randomUUID() }, signal },
          );
          content.value = "";
          await reload();
          // Follow the message's job to its end (long-poll), then show the reply in the thread.
          let job = { status: accepted.status };
          while (!["completed", "failed", "canceled"].includes(job.status)) {
            job = await api.get(`/jobs/${accepted.job_id}`, { query: { wait: 25 }, signal });
          }
          await reload();
          showPrice((await ctx.me()).credits);
        } catch (error) {
          if (error.name === "AbortError") return;
          const context = { cost };
          if (error.status === 402) {
            const balance = (await ctx.me().catch(() => user)).credits;
            Object.assign(context, { balance, missing: cost - balance });
          }
          message.error(describeError(error, context));
        } finally {
          send.disabled = false;
        }
      },
    },
    field("Message", content),
    price,
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Send")),
    message.el,
  );
  const remove = h("button", { type: "button", class: "danger" }, "Delete conversation");
  remove.addEventListener("click", async () => {
    try {
      await api.delete(`/conversations/${id}`, { signal });
      ctx.navigate("/conversations");
    } catch (error) {
      message.error(describeError(error));
    }
  });
  ctx.main.append(heading, h("p", {}, h("a", { href: "#/conversations" }, "All conversations")), thread, form, h("div", { class: "actions" }, remove));
  await reload();
}
