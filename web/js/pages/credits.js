// The balance and the credit ledger: every grant, charge and refund, newest first.
import { formatTime, h, pageHeading } from "../dom.js";
import { describeError } from "../errors.js";

export const title = () => "Credits";

const KINDS = { grant: "Grant", charge: "Charge", refund: "Refund" };

export async function render(ctx) {
  const user = await ctx.me();
  const rows = h("tbody");
  const more = h("button", { type: "button", class: "secondary", hidden: true }, "Show older entries");
  const status = h("p", { class: "message", role: "status" });
  let cursor = null;

  async function load() {
    more.disabled = true;
    try {
      const page = await ctx.api.get("/credits", { query: { limit: 20, cursor }, signal: ctx.signal });
      for (const entry of page.transactions) {
        const amount = entry.amount > 0 ? `+${entry.amount}` : String(entry.amount);
        rows.append(
          h(
            "tr",
            {},
            h("td", {}, formatTime(entry.created_at)),
            h("td", {}, KINDS[entry.type] || entry.type),
            h("td", { class: `num ${entry.amount < 0 ? "minus" : "plus"}` }, amount),
            h("td", {}, entry.job_id ? h("a", { href: `#/jobs/${entry.job_id}` }, "View job") : entry.reason || "—"),
          ),
        );
      }
      cursor = page.next_cursor;
      more.hidden = !cursor;
      if (!rows.children.length) status.textContent = "No entries yet.";
    } catch (error) {
      if (error.name !== "AbortError") status.textContent = describeError(error);
    } finally {
      more.disabled = false;
    }
  }
  more.addEventListener("click", load);

  ctx.main.append(
    pageHeading("Credits"),
    h(
      "p",
      { class: "big" },
      "Your balance: ",
      h("strong", { id: "credits-balance" }, `${user.credits} credit${user.credits === 1 ? "" : "s"}`),
    ),
    h("p", {}, h("a", { class: "button", href: "#/submit" }, "Submit a job")),
    h("h2", {}, "Ledger"),
    h(
      "table",
      { id: "ledger" },
      h("caption", { class: "visually-hidden" }, "Credit ledger, newest first"),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "When"), h("th", { scope: "col" }, "Kind"), h("th", { scope: "col" }, "Credits"), h("th", { scope: "col" }, "For"))),
      rows,
    ),
    status,
    more,
  );
  await load();
}
