// The console's shell: loads config.json, keeps the session, and routes "#/path?query" to a page
// module. Hash routes need no server rewrites, so any static host (Firebase Hosting, the dev
// server) serves the console as plain files.
import { Api } from "./api.js";
import { h } from "./dom.js";
import { describeError } from "./errors.js";
import { Session } from "./session.js";
import * as conversations from "./pages/conversations.js";
import * as credits from "./pages/credits.js";
import * as job from "./pages/job.js";
import * as jobs from "./pages/jobs.js";
import * as keys from "./pages/keys.js";
import * as signin from "./pages/signin.js";
import * as submit from "./pages/submit.js";
import * as teams from "./pages/teams.js";
import * as usage from "./pages/usage.js";

const ROUTES = [
  [/^\/signin$/, signin],
  [/^\/(credits)?$/, credits],
  [/^\/submit$/, submit],
  [/^\/jobs$/, jobs],
  [/^\/jobs\/([A-Za-z0-9_-]+)$/, job],
  [/^\/usage$/, usage],
  [/^\/keys$/, keys],
  [/^\/conversations$/, conversations],
  [/^\/conversations\/([A-Za-z0-9_-]+)$/, conversations],
  [/^\/teams$/, teams],
  [/^\/teams\/([A-Za-z0-9_-]+)$/, teams],
];

const NAV = [
  ["#/credits", "Credits"],
  ["#/submit", "Submit a job"],
  ["#/jobs", "Jobs"],
  ["#/usage", "Usage"],
  ["#/keys", "API keys"],
  ["#/conversations", "Conversations"],
  ["#/teams", "Teams"],
];

let config;
let session;
let api;
let catalogCache = null;
let leave = new AbortController(); // aborted when the page changes: ends its long-polls

function navigate(path) {
  location.hash = `#${path}`;
}

async function me() {
  const user = await api.get("/me");
  const balance = document.getElementById("balance");
  if (balance) balance.textContent = `${user.credits} credit${user.credits === 1 ? "" : "s"}`;
  return user;
}

function catalog() {
  // Public and cacheable: read once per visit.
  catalogCache ??= api.get("/catalog", { auth: false }).catch((error) => {
    catalogCache = null;
    throw error;
  });
  return catalogCache;
}

function header(route) {
  const state = session.current;
  const bar = document.getElementById("account");
  const nav = document.getElementById("nav");
  nav.replaceChildren();
  bar.replaceChildren();
  if (!state) return;
  const list = h("ul");
  for (const [href, label] of NAV) {
    // A job's page is under Jobs, a conversation's under Conversations, and so on.
    const section = href.slice(1);
    const current = route === section || route.startsWith(`${section}/`) || (section === "/credits" && route === "/");
    list.append(h("li", {}, h("a", { href, "aria-current": current ? "page" : null }, label)));
  }
  nav.append(list);
  bar.append(
    h("span", { class: "who" }, "Signed in as ", h("strong", {}, state.label)),
    h("span", { class: "balance" }, "Balance: ", h("strong", { id: "balance" }, "…")),
    h("button", { type: "button", class: "secondary", onclick: () => session.signOut() }, "Sign out"),
  );
  me().catch(() => {}); // the page shows its own errors; the header just stays "…"
}

async function render() {
  const hash = location.hash || "#/";
  if (!hash.startsWith("#/")) return; // the skip link's "#main": not a route
  const [path, queryString] = hash.slice(1).split("?");
  const found = ROUTES.find(([pattern]) => pattern.test(path));
  if (!session.current && path !== "/signin") return navigate("/signin");
  if (session.current && path === "/signin") return navigate("/credits");
  leave.abort();
  leave = new AbortController();
  header(path);
  // Each page draws into a fresh container: a page still loading when the person moves on
  // appends to a detached element, never into the next page.
  const main = h("div", { class: "view" });
  document.getElementById("main").replaceChildren(main);
  const page = found ? found[1] : null;
  if (!page) {
    document.title = "Not found · aijobs";
    main.append(h("h1", { tabindex: "-1" }, "Page not found"), h("p", {}, h("a", { href: "#/" }, "Go to your credits")));
    focusHeading(main);
    return;
  }
  const ctx = {
    api,
    session,
    config,
    main,
    me,
    catalog,
    navigate,
    params: found[0].exec(path).slice(1),
    query: new URLSearchParams(queryString || ""),
    signal: leave.signal,
  };
  document.title = `${page.title(ctx)} · aijobs`;
  try {
    await page.render(ctx);
  } catch (error) {
    if (error.name === "AbortError") return;
    main.append(h("p", { class: "message error", role: "alert" }, describeError(error)));
  }
  focusHeading(main);
}

function focusHeading(main) {
  // Move focus to the new page's heading, so keyboard and screen-reader users start there.
  const heading = main.querySelector("h1");
  if (heading && !main.contains(document.activeElement)) heading.focus({ preventScroll: true });
}

async function start() {
  const response = await fetch("config.json", { cache: "no-store" });
  config = await response.json();
  session = new Session(config);
  api = new Api(config.api_base_url, session);
  session.addEventListener("change", () => {
    if (!session.current) navigate("/signin");
  });
  session.addEventListener("ended", (event) => {
    sessionStorage.setItem("aijobs.ended", describeError(event.detail));
    navigate("/signin");
  });
  // Another tab signed in or out: follow it.
  window.addEventListener("storage", (event) => {
    if (event.key === "aijobs.session") render();
  });
  window.addEventListener("hashchange", render);
  document.getElementById("skip").addEventListener("click", (event) => {
    event.preventDefault();
    document.querySelector("#main h1")?.focus();
  });
  await render();
}

start().catch((error) => {
  document.getElementById("main").append(
    h("p", { class: "message error", role: "alert" }, `The console could not start: ${error.message}`),
  );
});
