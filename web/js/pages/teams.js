// Teams (where the API has them): the caller's teams with their pools' balances, a new team, one
// team's members, moving credits into its pool, and a link to submit a job charged to it.
import { field, formatTime, h, messageBox, pageHeading, plural, words } from "../dom.js";
import { describeError } from "../errors.js";

export const title = (ctx) => (ctx.params[0] ? "Team" : "Teams");

export function render(ctx) {
  return ctx.params[0] ? one(ctx, ctx.params[0]) : list(ctx);
}

async function list(ctx) {
  const message = messageBox();
  const name = h("input", { type: "text", required: true, maxlength: "100" });
  const form = h(
    "form",
    {
      class: "inline",
      onsubmit: async (event) => {
        event.preventDefault();
        message.clear();
        try {
          const team = await ctx.api.post("/teams", { name: name.value.trim() }, { signal: ctx.signal });
          ctx.navigate(`/teams/${team.team_id}`);
        } catch (error) {
          message.error(describeError(error));
        }
      },
    },
    field("Name of the new team", name),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Create team")),
  );
  const { teams } = await ctx.api.get("/teams", { signal: ctx.signal });
  ctx.main.append(
    pageHeading("Teams"),
    h("p", { class: "lead" }, "A team has its own pool of credits; its members can submit jobs charged to it."),
    form,
    message.el,
    h(
      "table",
      { id: "teams" },
      h("caption", { class: "visually-hidden" }, "Your teams"),
      h("thead", {}, h("tr", {}, ...["Team", "Your role", "Balance", "Members"].map((c) => h("th", { scope: "col" }, c)))),
      h(
        "tbody",
        {},
        ...(teams.length
          ? teams.map((t) =>
              h(
                "tr",
                {},
                h("td", {}, h("a", { href: `#/teams/${t.team_id}` }, t.name)),
                h("td", {}, words(t.role)),
                h("td", { class: "num" }, plural(t.credits, "credit")),
                h("td", { class: "num" }, String(t.members)),
              ),
            )
          : [h("tr", {}, h("td", { colspan: "4" }, "You are in no team yet."))]),
      ),
    ),
  );
}

async function one(ctx, id) {
  const { api, signal } = ctx;
  const message = messageBox();
  const heading = pageHeading("Team");
  const summary = h("p", { class: "big", id: "team-balance" });
  const members = h("tbody");
  const amount = h("input", { type: "number", step: "1", min: "1", required: true, inputmode: "numeric" });

  async function reload() {
    const [team, list] = await Promise.all([
      api.get(`/teams/${id}`, { signal }),
      api.get(`/teams/${id}/members`, { signal }),
    ]);
    heading.textContent = team.name;
    summary.textContent = `Team balance: ${plural(team.credits, "credit")}. Your role: ${words(team.role)}. ${plural(team.members, "member")}.`;
    members.replaceChildren(
      ...list.members.map((m) =>
        h(
          "tr",
          {},
          h("td", {}, m.username),
          h("td", {}, words(m.role)),
          h("td", { class: "num" }, m.daily_limit === null ? "No limit" : String(m.daily_limit)),
          h("td", { class: "num" }, m.monthly_limit === null ? "No limit" : String(m.monthly_limit)),
          h("td", { class: "num" }, String(m.spent_today)),
          h("td", { class: "num" }, String(m.spent_this_month)),
          h("td", {}, formatTime(m.joined_at)),
        ),
      ),
    );
    return team;
  }

  // One transfer id per transfer the person means: a retry after a lost answer moves credits once.
  let transferId = crypto.randomUUID();
  const transfer = h(
    "form",
    {
      class: "inline",
      oninput: () => (transferId = crypto.randomUUID()),
      onsubmit: async (event) => {
        event.preventDefault();
        message.clear();
        const credits = Number.parseInt(amount.value, 10);
        try {
          const moved = await api.post(`/teams/${id}/credits`, { amount: credits, transfer_id: transferId }, { signal });
          transferId = crypto.randomUUID();
          message.ok(`Moved ${plural(moved.amount, "credit")} to the team. Its balance: ${plural(moved.team_credits, "credit")}.`);
          amount.value = "";
          await reload();
          ctx.me().catch(() => {});
        } catch (error) {
          const context = {};
          if (error.status === 402) {
            const balance = (await ctx.me().catch(() => ({ credits: 0 }))).credits;
            Object.assign(context, { cost: credits, balance, missing: credits - balance });
          }
          message.error(describeError(error, context));
        }
      },
    },
    field("Credits to move from your balance", amount),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Move credits")),
  );

  ctx.main.append(
    heading,
    h("p", {}, h("a", { href: "#/teams" }, "All teams")),
    summary,
    message.el,
    h("p", {}, h("a", { class: "button", href: `#/submit?team_id=${id}` }, "Submit a job charged to this team")),
    h("h2", {}, "Add credits"),
    transfer,
    h("h2", {}, "Members"),
    h(
      "table",
      { id: "members" },
      h("caption", { class: "visually-hidden" }, "Members of this team"),
      h(
        "thead",
        {},
        h("tr", {}, ...["Member", "Role", "Daily limit", "Monthly limit", "Spent today", "Spent this month", "Joined"].map((c) => h("th", { scope: "col" }, c))),
      ),
      members,
    ),
  );
  await reload();
}
