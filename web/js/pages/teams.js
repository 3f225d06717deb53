// Teams (where the API has them): the caller's teams with their pools' balances, a new team, one
// team's members (added, changed and removed by owners and admins; anyone may leave), moving
// credits into its pool, and a link to submit a job charged to it.
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

const ROLES = ["member", "admin", "owner"];

/** A limit input's value as the API takes it: empty is no limit (null), else whole credits. */
function limitValue(input) {
  const text = input.value.trim();
  return text === "" ? null : Number.parseInt(text, 10);
}

function limitInput(value = null) {
  return h("input", {
    type: "number",
    step: "1",
    min: "0",
    max: "1000000000",
    inputmode: "numeric",
    value: value === null ? undefined : String(value),
  });
}

function limitWords(limit) {
  return limit === null ? "none" : plural(limit, "credit");
}

/** The roles the caller may give: owners any, admins admins and members (the API's rule). */
function roleSelect(callerRole, current = "member") {
  const offered = ROLES.filter((r) => r !== "owner" || callerRole === "owner" || current === "owner");
  return h(
    "select",
    {},
    ...offered.map((r) => h("option", { value: r, selected: r === current }, words(r))),
  );
}

async function one(ctx, id) {
  const { api, signal } = ctx;
  const message = messageBox();
  const rosterMessage = messageBox();
  const addMessage = messageBox();
  rosterMessage.el.id = "roster-message";
  addMessage.el.id = "add-member-message";
  const heading = pageHeading("Team");
  const summary = h("p", { class: "big", id: "team-balance" });
  const members = h("tbody");
  const amount = h("input", { type: "number", step: "1", min: "1", required: true, inputmode: "numeric" });
  const membersHeading = h("h2", { tabindex: "-1" }, "Members");
  const editArea = h("div", { id: "member-edit" });
  const addArea = h("section", { "aria-labelledby": "add-member-heading", hidden: true });
  const creditsArea = h("section", { "aria-labelledby": "add-credits-heading", hidden: true });
  const me = await ctx.me();
  let callerRole = "member";
  let editing = null; // the username whose edit form is open

  const manages = (m) => callerRole === "owner" || (callerRole === "admin" && m.role !== "owner");

  async function reload() {
    const [team, list] = await Promise.all([
      api.get(`/teams/${id}`, { signal }),
      api.get(`/teams/${id}/members`, { signal }),
    ]);
    callerRole = team.role;
    creditsArea.hidden = callerRole !== "owner";
    heading.textContent = team.name;
    summary.textContent = `Team balance: ${plural(team.credits, "credit")}. Your role: ${words(team.role)}. ${plural(team.members, "member")}.`;
    members.replaceChildren(...list.members.map((m) => memberRow(m)));
    const open = list.members.find((m) => m.username === editing && manages(m));
    if (open) showEdit(open, false);
    else closeEdit(false);
    if (callerRole === "owner" || callerRole === "admin") {
      if (addArea.hidden || addArea.dataset.role !== callerRole) addArea.replaceChildren(...addForm());
      addArea.dataset.role = callerRole;
      addArea.hidden = false;
    } else {
      addArea.hidden = true;
      addArea.replaceChildren();
    }
    return team;
  }

  function memberRow(m) {
    const self = m.username === me.username;
    const cell = h("div", { class: "row-actions" });
    const buttons = [];
    if (manages(m)) {
      buttons.push(
        h(
          "button",
          {
            type: "button",
            class: "secondary small",
            "aria-label": `Edit ${m.username}`,
            "aria-expanded": editing === m.username ? "true" : "false",
            "aria-controls": "member-edit",
            dataset: { edit: m.username },
            onclick: () => showEdit(m, true),
          },
          "Edit",
        ),
      );
    }
    if (self || manages(m)) buttons.push(removeButton(m, self, cell, () => cell.replaceChildren(...buttons)));
    cell.append(...buttons);
    return h(
      "tr",
      { dataset: { username: m.username } },
      h("td", {}, m.username, self ? " (you)" : ""),
      h("td", {}, words(m.role)),
      h("td", { class: "num" }, m.daily_limit === null ? "No limit" : String(m.daily_limit)),
      h("td", { class: "num" }, m.monthly_limit === null ? "No limit" : String(m.monthly_limit)),
      h("td", { class: "num" }, String(m.spent_today)),
      h("td", { class: "num" }, String(m.spent_this_month)),
      h("td", {}, formatTime(m.joined_at)),
      h("td", {}, cell),
    );
  }

  // Two steps instead of window.confirm (as a job's delete): the question is part of the page.
  function removeButton(m, self, cell, restore) {
    const label = self ? "Leave team" : "Remove";
    const ask = h(
      "button",
      { type: "button", class: "danger small", "aria-label": self ? null : `Remove ${m.username}` },
      label,
    );
    ask.addEventListener("click", () => {
      const yes = h("button", { type: "button", class: "danger small" }, self ? "Yes, leave" : `Yes, remove ${m.username}`);
      const no = h("button", { type: "button", class: "secondary small" }, self ? "Stay" : "Keep");
      yes.addEventListener("click", async () => {
        rosterMessage.clear();
        try {
          await api.delete(`/teams/${id}/members/${encodeURIComponent(m.username)}`, { signal });
          if (self) {
            ctx.navigate("/teams");
            return;
          }
          if (editing === m.username) editing = null;
          await reload();
          rosterMessage.ok(`${m.username} was removed from the team.`);
          membersHeading.focus();
        } catch (error) {
          rosterMessage.error(describeError(error));
          restore();
          cell.querySelector("button.danger")?.focus();
        }
      });
      no.addEventListener("click", () => {
        restore();
        cell.querySelector("button.danger")?.focus();
      });
      cell.replaceChildren(
        h("span", {}, self ? "Leave this team? " : `Remove ${m.username} from this team? `),
        yes,
        no,
      );
      yes.focus();
    });
    return ask;
  }

  function closeEdit(focusBack) {
    const was = editing;
    editing = null;
    editArea.replaceChildren();
    for (const b of members.querySelectorAll("button[data-edit]")) b.setAttribute("aria-expanded", "false");
    if (focusBack && was) members.querySelector(`button[data-edit="${CSS.escape(was)}"]`)?.focus();
  }

  function showEdit(m, focus) {
    editing = m.username;
    for (const b of members.querySelectorAll("button[data-edit]")) {
      b.setAttribute("aria-expanded", b.dataset.edit === m.username ? "true" : "false");
    }
    const role = roleSelect(callerRole, m.role);
    const daily = limitInput(m.daily_limit);
    const monthly = limitInput(m.monthly_limit);
    const editMessage = messageBox();
    const headingId = "edit-member-heading";
    const form = h(
      "form",
      {
        "aria-labelledby": headingId,
        onsubmit: async (event) => {
          event.preventDefault();
          editMessage.clear();
          const body = {};
          if (role.value !== m.role) body.role = role.value;
          if (limitValue(daily) !== m.daily_limit) body.daily_limit = limitValue(daily);
          if (limitValue(monthly) !== m.monthly_limit) body.monthly_limit = limitValue(monthly);
          if (!Object.keys(body).length) {
            editMessage.ok("Nothing changed.");
            return;
          }
          try {
            const saved = await api.patch(`/teams/${id}/members/${encodeURIComponent(m.username)}`, body, { signal });
            editing = null;
            await reload();
            rosterMessage.ok(
              `Saved ${saved.username}: ${words(saved.role)}; daily limit ${limitWords(saved.daily_limit)}; monthly limit ${limitWords(saved.monthly_limit)}.`,
            );
            members.querySelector(`button[data-edit="${CSS.escape(saved.username)}"]`)?.focus();
          } catch (error) {
            editMessage.error(describeError(error));
          }
        },
      },
      h("h3", { id: headingId }, `Change ${m.username}`),
      h(
        "div",
        { class: "inline-fields" },
        field("Role", role),
        field("Daily limit (credits)", daily, "Empty: no limit."),
        field("Monthly limit (credits)", monthly, "Empty: no limit."),
      ),
      h(
        "div",
        { class: "actions" },
        h("button", { type: "submit" }, "Save changes"),
        h("button", { type: "button", class: "secondary", onclick: () => closeEdit(true) }, "Cancel"),
      ),
      editMessage.el,
    );
    form.addEventListener("keydown", (event) => {
      if (event.key === "Escape") closeEdit(true);
    });
    editArea.replaceChildren(h("div", { class: "card wide" }, form));
    if (focus) role.focus();
  }

  function addForm() {
    const username = h("input", {
      type: "text",
      required: true,
      minlength: "3",
      maxlength: "32",
      autocomplete: "off",
      spellcheck: "false",
    });
    const role = roleSelect(callerRole);
    const daily = limitInput();
    const monthly = limitInput();
    const form = h(
      "form",
      {
        id: "add-member",
        "aria-labelledby": "add-member-heading",
        onsubmit: async (event) => {
          event.preventDefault();
          addMessage.clear();
          const body = { username: username.value.trim(), role: role.value };
          // Limits only when filled: left out, the member has none.
          if (limitValue(daily) !== null) body.daily_limit = limitValue(daily);
          if (limitValue(monthly) !== null) body.monthly_limit = limitValue(monthly);
          try {
            const added = await api.post(`/teams/${id}/members`, body, { signal });
            username.value = "";
            daily.value = "";
            monthly.value = "";
            await reload();
            addMessage.ok(`Added ${added.username} as ${words(added.role).toLowerCase()}.`);
          } catch (error) {
            addMessage.error(describeError(error));
          }
        },
      },
      h(
        "div",
        { class: "inline-fields" },
        field("Username", username),
        field("Role", role),
        field("Daily limit (credits, optional)", daily, "Empty: no limit."),
        field("Monthly limit (credits, optional)", monthly, "Empty: no limit."),
      ),
      h("div", { class: "actions" }, h("button", { type: "submit" }, "Add member")),
    );
    return [h("h2", { id: "add-member-heading" }, "Add a member"), form, addMessage.el];
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

  // Only owners move a team's money (the API refuses others): the form is theirs alone.
  creditsArea.append(h("h2", { id: "add-credits-heading" }, "Add credits"), transfer);

  ctx.main.append(
    heading,
    h("p", {}, h("a", { href: "#/teams" }, "All teams")),
    summary,
    message.el,
    h("p", {}, h("a", { class: "button", href: `#/submit?team_id=${id}` }, "Submit a job charged to this team")),
    creditsArea,
    membersHeading,
    h(
      "table",
      { id: "members" },
      h("caption", { class: "visually-hidden" }, "Members of this team"),
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          ...["Member", "Role", "Daily limit", "Monthly limit", "Spent today", "Spent this month", "Joined", "Actions"].map((c) =>
            h("th", { scope: "col" }, c),
          ),
        ),
      ),
      members,
    ),
    rosterMessage.el,
    editArea,
    addArea,
  );
  await reload();
}
