"""The web console (``web/``) in a real browser: Debian's Chromium driven by Playwright against
the test stack, the console served by the same static server ``scripts/dev`` runs.

A person's flows end to end (sign up, submit and watch a job, the balance and the ledger, cancel
and refund, usage chart, API keys, conversations, Firebase sign-in through the Auth emulator,
errors in words), axe-core on every page, and every request checked to go to the console or the
API (the Auth emulator too in the Firebase test: it stands in for Google's Identity Toolkit).
With ``AIJOBS_SCREENSHOTS=1`` the same tests write ``docs/screenshots/*.png`` for the README."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from conftest import PASSWORD, Api, drain
from fake_openai import Delay, FakeOpenAI, Image, Reply
from web_console import Tab, browser_session, new_tab, origin, png

from scripts.stack import ConsoleServer, Stack, console_config

SUMMARY = "Cloud Functions run code on demand and scale to zero when idle."
EXPENSIVE = 25


@pytest.fixture(scope="module")
def console(stack: Stack) -> Iterator[ConsoleServer]:
    server = ConsoleServer(console_config(stack.base_url, f"127.0.0.1:{stack.auth_port}")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from browser_session()


@pytest.fixture
def tab(browser: Any, console: ConsoleServer, stack: Stack) -> Iterator[Tab]:
    tab = new_tab(browser, console.url)
    try:
        yield tab
    finally:
        tab.page.context.close()
    # Checked after the test's own assertions, so a failure there is reported first.
    assert not tab.errors, tab.errors
    allowed = {console.url, stack.base_url, f"http://127.0.0.1:{stack.auth_port}"}
    assert tab.hosts() <= allowed, f"requests to other hosts: {tab.hosts() - allowed}"


def _set_catalog(change: Any) -> Iterator[None]:
    """The default catalog with ``change`` applied, for one test (the stack reads it uncached)."""
    import copy

    from shared.catalog import DEFAULT_CATALOG, catalog_ref

    catalog = copy.deepcopy(DEFAULT_CATALOG)
    change(catalog["task_types"])
    catalog_ref().set(catalog)
    try:
        yield
    finally:
        drain()
        catalog_ref().set(DEFAULT_CATALOG)


@pytest.fixture
def images_on(stack: Stack) -> Iterator[None]:
    """The image model routed to the fake (the stack sets no AI_IMAGE_MODEL), as test_images does."""

    def route(types: dict[str, Any]) -> None:
        types["generate_image"]["models"]["standard"]["model"] = "fake-image"

    yield from _set_catalog(route)


@pytest.fixture
def expensive_summaries(stack: Stack) -> Iterator[int]:
    """Summaries at more than a new account's 10 credits."""

    def price(types: dict[str, Any]) -> None:
        types["summarize"]["models"]["standard"]["cost"] = EXPENSIVE

    for _ in _set_catalog(price):
        yield EXPENSIVE


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def form(tab: Tab, heading: str) -> Any:
    return tab.page.locator("form", has=tab.page.get_by_role("heading", name=heading))


def sign_up(tab: Tab, username: str | None = None) -> str:
    username = username or f"web{uuid.uuid4().hex[:10]}"
    tab.open("/")
    accounts = form(tab, "Username and password")
    accounts.get_by_label("Username").fill(username)
    accounts.get_by_label("Password").fill(PASSWORD)
    accounts.get_by_role("button", name="Create account").click()
    expect(tab.page.get_by_role("heading", name="Credits", level=1)).to_be_visible()
    return username


def sign_in(tab: Tab, username: str, password: str = PASSWORD) -> None:
    accounts = form(tab, "Username and password")
    accounts.get_by_label("Username").fill(username)
    accounts.get_by_label("Password").fill(password)
    accounts.get_by_role("button", name="Sign in", exact=True).click()


def header_balance(tab: Tab) -> Any:
    return tab.page.locator("#balance")


def submit_summary(tab: Tab, text: str = "Cloud Functions run code on demand and scale to zero.") -> str:
    tab.go("/submit")
    expect(tab.page.get_by_role("heading", name="Submit a job")).to_be_visible()
    tab.page.get_by_label("Task type").select_option("summarize")
    tab.page.get_by_label("Text to summarize").fill(text)
    tab.page.get_by_role("button", name="Submit job").click()
    tab.page.wait_for_url(re.compile(r"#/jobs/[A-Za-z0-9_-]+$"))
    return tab.page.url.rsplit("/", 1)[1]


def test_sign_up_submit_watch_it_complete_and_see_the_cost(
    tab: Tab, stack: Stack, fake_ai: FakeOpenAI
) -> None:
    page = tab.page
    tab.open("/")
    page.wait_for_url(re.compile(r"#/signin$"))
    tab.axe("signin")
    tab.shot("signin")
    sign_up(tab)
    expect(page.locator("#credits-balance")).to_have_text("10 credits")
    expect(header_balance(tab)).to_have_text("10 credits")

    # The price, from /catalog, before anything is sent.
    tab.go("/submit")
    page.get_by_label("Task type").select_option("summarize")
    expect(page.locator("#price")).to_have_text(
        "Price: 1 credit. Your balance: 10 credits. After this job: 9 credits."
    )
    expect(page.get_by_label("Model")).to_contain_text("standard — 1 credit")
    expect(page.get_by_label("Max words (optional)")).to_have_attribute("max", "1000")
    page.get_by_label("Text to summarize").fill("Cloud Functions run code on demand and scale to zero.")
    tab.axe("submit")
    tab.shot("submit")

    # The worker waits a little on the AI, so the page is seen following the job before it lands.
    fake_ai.script(Delay(0.6, Reply(SUMMARY)))
    page.get_by_role("button", name="Submit job").click()
    page.wait_for_url(re.compile(r"#/jobs/[A-Za-z0-9_-]+$"))
    job_id = page.url.rsplit("/", 1)[1]
    expect(page.locator("#output-text")).to_have_text(SUMMARY, timeout=30_000)
    expect(page.locator("#job-status")).to_have_text("Status: Completed")
    expect(header_balance(tab)).to_have_text("9 credits")
    # It followed the job with long-polls, not a read loop.
    polls = [url for url in tab.requests if f"/jobs/{job_id}?wait=25" in url]
    assert polls, tab.requests
    tab.axe("job")
    tab.shot("job")

    # The ledger: the grant and the job's charge.
    tab.go("/credits")
    expect(page.locator("#credits-balance")).to_have_text("9 credits")
    ledger = page.locator("#ledger tbody tr")
    expect(ledger).to_have_count(2)
    expect(ledger.nth(0)).to_contain_text("Charge")
    expect(ledger.nth(0)).to_contain_text("-1")
    expect(ledger.nth(1)).to_contain_text("Grant")
    expect(ledger.nth(1)).to_contain_text("+10")
    expect(page.get_by_role("button", name="Show older entries")).to_be_hidden()  # no next page
    tab.axe("credits")
    tab.shot("credits")

    # The job list and its filters.
    tab.go("/jobs?status=completed&task_type=summarize")
    expect(page.locator("#jobs tbody tr")).to_have_count(1)
    expect(page.locator("#jobs tbody tr")).to_contain_text("Completed")
    expect(page.get_by_label("Status")).to_have_value("completed")
    page.get_by_label("Status").select_option("failed")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#jobs + p")).to_have_text("No jobs match.")
    page.get_by_label("Status").select_option("")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#jobs tbody tr")).to_have_count(1)
    tab.axe("jobs")
    tab.shot("jobs")

    # The usage chart for today (UTC): one summarize job, one credit.
    today = datetime.now(UTC).date().isoformat()
    tab.go("/usage")
    expect(page.locator("#usage-totals")).to_contain_text(": 1 job, 1 credit.")
    bar = page.locator(f'svg.chart rect.bar[data-date="{today}"][data-task-type="summarize"]')
    expect(bar).to_have_attribute("data-value", "1")
    expect(bar.locator("title")).to_have_text(f"{today}, Summarize: 1 credit")
    row = page.locator("#usage-table tbody tr")
    expect(row).to_have_count(1)
    expect(row.locator("th")).to_have_text(today)
    page.get_by_label("Show", exact=True).select_option("jobs")
    page.get_by_role("button", name="Show usage").click()
    expect(bar.locator("title")).to_have_text(f"{today}, Summarize: 1 job")
    tab.axe("usage")
    tab.shot("usage")

    # Everything went to the console and the API, nothing else.
    assert tab.hosts() == {tab.console_url, stack.base_url}, tab.hosts()


def test_cancel_a_queued_job_and_see_the_refund(tab: Tab, paused_queue: None) -> None:
    page = tab.page
    sign_up(tab)
    job_id = submit_summary(tab)
    # The queue is paused: the job stays queued, and the page offers to cancel it.
    expect(page.locator("#job-status")).to_contain_text("Queued")
    expect(header_balance(tab)).to_have_text("9 credits")
    page.get_by_role("button", name="Cancel job").click()
    expect(page.get_by_role("status").filter(has_text="Job canceled")).to_have_text(
        "Job canceled; 1 credit refunded."
    )
    expect(page.locator("#job-status")).to_have_text("Status: Canceled")
    expect(header_balance(tab)).to_have_text("10 credits")
    expect(page.get_by_role("button", name="Cancel job")).to_have_count(0)

    tab.go("/credits")
    ledger = page.locator("#ledger tbody tr")
    expect(ledger).to_have_count(3)
    expect(ledger.nth(0)).to_contain_text("Refund")
    expect(ledger.nth(0)).to_contain_text("+1")
    expect(ledger.nth(0).get_by_role("link", name="View job")).to_have_attribute("href", f"#/jobs/{job_id}")

    # A finished job can be deleted: its content goes, the accounting stays.
    tab.go(f"/jobs/{job_id}")
    page.get_by_role("button", name="Delete job").click()
    page.get_by_role("button", name="Yes, delete its content").click()
    expect(page.get_by_text("Deleted: the input and output are gone.")).to_be_visible()


def test_api_keys_create_copy_once_and_revoke(tab: Tab, stack: Stack) -> None:
    page = tab.page
    sign_up(tab)
    tab.go("/keys")
    expect(page.locator("#keys tbody")).to_have_text("No API keys.")
    page.get_by_label("Name of the new key").fill("laptop script")
    page.get_by_role("button", name="Create key").click()
    secret = page.get_by_label("API key", exact=True)
    key = secret.input_value()
    assert key.startswith("aij_live_"), key
    assert requests.get(f"{stack.base_url}/me", headers={"Authorization": f"Bearer {key}"}, timeout=30).ok
    page.get_by_role("button", name="Copy key").click()
    expect(page.get_by_text("Copied.")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == key
    row = page.locator("#keys tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text(key[:13])
    tab.axe("keys")
    tab.shot("keys")

    # Shown once: after a reload only the prefix is left.
    page.reload()
    expect(page.locator("#keys tbody tr")).to_have_count(1)
    assert key not in page.content()
    page.get_by_role("button", name="Revoke key laptop script").click()
    expect(page.get_by_role("status").filter(has_text="revoked")).to_contain_text("it stops working now")
    expect(page.locator("#keys tbody")).to_have_text("No API keys.")
    refused = requests.get(f"{stack.base_url}/me", headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert refused.status_code == 401, refused.text


def test_a_conversation_keeps_its_history(tab: Tab, fake_ai: FakeOpenAI) -> None:
    page = tab.page
    sign_up(tab)
    tab.go("/conversations")
    expect(page.get_by_text("None yet.")).to_be_visible()
    page.get_by_label("Title (optional)").fill("Trip")
    page.get_by_label("Instructions for the assistant (optional)").fill("You are a concise travel agent.")
    page.get_by_role("button", name="Start conversation").click()
    expect(page.get_by_role("heading", name="Trip", level=1)).to_be_visible()
    fake_ai.script(Reply("See the Alfama and the Belém tower."))
    page.get_by_label("Message").fill("Three days in Lisbon: what should I see?")
    page.get_by_role("button", name="Send").click()
    thread = page.locator("#thread li")
    expect(thread.nth(2)).to_have_text("Assistant: See the Alfama and the Belém tower.", timeout=30_000)
    expect(header_balance(tab)).to_have_text("9 credits")
    expect(page.get_by_text("Each message costs 1 credit. Your balance: 9 credits.")).to_be_visible()
    expect(page.get_by_role("link", name="Conversations", exact=True)).to_have_attribute(
        "aria-current", "page"
    )
    tab.axe("conversation")
    tab.shot("conversation")
    tab.go("/conversations")
    expect(page.locator("#conversations li")).to_contain_text("Trip")
    tab.axe("conversations")


def test_an_image_is_shown_inline_from_a_blob(tab: Tab, fake_ai: FakeOpenAI, images_on: None) -> None:
    page = tab.page
    sign_up(tab)
    tab.go("/submit")
    page.get_by_label("Task type").select_option("generate_image")
    page.get_by_label("Describe the image").fill("a sunset over a calm sea")
    page.get_by_label("Size (optional)").select_option("1024x1024")
    fake_ai.script(Image(png()))
    page.get_by_role("button", name="Submit job").click()
    image = page.get_by_role("img", name="Generated image: a sunset over a calm sea")
    expect(image).to_be_visible(timeout=30_000)
    assert image.get_attribute("src").startswith("blob:")
    assert page.evaluate("img => img.naturalWidth", image.element_handle()) == 320
    tab.axe("image job")
    tab.shot("image-job")


def test_a_team_pays_for_a_job_submitted_for_it(tab: Tab, fake_ai: FakeOpenAI) -> None:
    page = tab.page
    sign_up(tab)
    tab.go("/teams")
    expect(page.locator("#teams tbody")).to_have_text("You are in no team yet.")
    page.get_by_label("Name of the new team").fill("Research")
    page.get_by_role("button", name="Create team").click()
    expect(page.get_by_role("heading", name="Research", level=1)).to_be_visible()
    expect(page.locator("#team-balance")).to_have_text("Team balance: 0 credits. Your role: Owner. 1 member.")
    expect(page.locator("#members tbody tr")).to_have_count(1)
    page.get_by_label("Credits to move from your balance").fill("5")
    page.get_by_role("button", name="Move credits").click()
    expect(page.get_by_role("status").filter(has_text="Moved")).to_have_text(
        "Moved 5 credits to the team. Its balance: 5 credits."
    )
    expect(header_balance(tab)).to_have_text("5 credits")
    tab.axe("team")

    page.get_by_role("link", name="Submit a job charged to this team").click()
    expect(page.get_by_label("Charge to")).to_have_value(re.compile(r"^[0-9a-f]{32}$"))
    page.get_by_label("Task type").select_option("summarize")
    expect(page.locator("#price")).to_contain_text(
        "Team Research's balance: 5 credits. After this job: 4 credits."
    )
    page.get_by_label("Text to summarize").fill("A job the team pays for.")
    fake_ai.script(Reply(SUMMARY))
    page.get_by_role("button", name="Submit job").click()
    expect(page.locator("#output-text")).to_have_text(SUMMARY, timeout=30_000)
    expect(header_balance(tab)).to_have_text("5 credits")  # not the member's own credits
    tab.go("/teams")
    row = page.locator("#teams tbody tr")
    expect(row).to_contain_text("Research")
    expect(row).to_contain_text("4 credits")
    tab.axe("teams")


def test_an_owner_adds_changes_and_removes_a_member(
    tab: Tab, api: Api, browser: Any, console: ConsoleServer
) -> None:
    page = tab.page
    sign_up(tab)
    member = api.signup()[1]["username"]
    tab.go("/teams")
    page.get_by_label("Name of the new team").fill("Roster")
    page.get_by_role("button", name="Create team").click()
    expect(page.get_by_role("heading", name="Roster", level=1)).to_be_visible()

    # Add: an owner may give any role; limits are sent only when filled.
    add = page.locator("#add-member")
    expect(add.get_by_label("Role").locator("option")).to_have_text(["Member", "Admin", "Owner"])
    add.get_by_label("Username").fill(f"nobody{uuid.uuid4().hex[:8]}")
    add.get_by_role("button", name="Add member").click()
    added = page.locator("#add-member-message")
    expect(added).to_have_role("alert")
    expect(added).to_have_text("There is no account with that username.")  # 422
    add.get_by_label("Username").fill(member)
    add.get_by_label("Daily limit (credits, optional)").fill("1")
    with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/members")) as sent:
        add.get_by_role("button", name="Add member").click()
    assert sent.value.post_data_json == {"username": member, "role": "member", "daily_limit": 1}
    expect(added).to_have_role("status")
    expect(added).to_have_text(f"Added {member} as member.")
    row = tab.member_row(member)
    expect(row.locator("td")).to_have_text(
        [member, "Member", "1", "No limit", "0", "0", re.compile(r" UTC$"), re.compile(r"^Edit.*Remove$")]
    )
    expect(page.locator("#team-balance")).to_contain_text("2 members.")

    # Change the role in the page's own form: only the changed field is sent.
    row.get_by_role("button", name=f"Edit {member}").click()
    edit = page.locator("form", has=page.get_by_role("heading", name=f"Change {member}"))
    expect(edit.get_by_label("Role")).to_be_focused()
    expect(edit.get_by_label("Daily limit (credits)")).to_have_value("1")
    edit.get_by_label("Role").select_option("admin")
    tab.axe("team with its member forms open")
    tab.shot("team")
    with page.expect_request(lambda r: r.method == "PATCH") as changed:
        edit.get_by_role("button", name="Save changes").click()
    assert changed.value.post_data_json == {"role": "admin"}
    roster = page.locator("#roster-message")
    expect(roster).to_have_text(f"Saved {member}: Admin; daily limit 1 credit; monthly limit none.")
    expect(roster).to_have_role("status")
    expect(row.locator("td").nth(1)).to_have_text("Admin")
    expect(row.get_by_role("button", name=f"Edit {member}")).to_be_focused()
    add.get_by_label("Username").fill(member)
    add.get_by_role("button", name="Add member").click()
    expect(added).to_have_text("That person is already a member of this team.")  # 409

    # The new admin's view: no controls on the owner's row, no owner role to give.
    admin = new_tab(browser, console.url)
    try:
        admin.open("/signin")
        sign_in(admin, member)
        expect(admin.page.get_by_role("heading", name="Credits", level=1)).to_be_visible()
        admin.go(page.url.split("#", 1)[1])
        expect(admin.member_row(member).get_by_role("button", name="Leave team")).to_be_visible()
        expect(admin.member_row(member).get_by_role("button", name=f"Edit {member}")).to_be_visible()
        # Only owners move the team's money: an admin is not offered the form.
        expect(admin.page.get_by_role("button", name="Move credits")).to_have_count(0)
        owner_row = admin.page.locator("#members tbody tr", has_text="Owner")
        expect(owner_row.get_by_role("button")).to_have_count(0)
        expect(admin.page.locator("#add-member").get_by_label("Role").locator("option")).to_have_text(
            ["Member", "Admin"]
        )
    finally:
        admin.page.context.close()
    assert not admin.errors, admin.errors

    # The only owner cannot leave: 409 last_owner, in words.
    me = page.locator("#members tbody tr", has_text="(you)")
    me.get_by_role("button", name="Leave team").click()
    me.get_by_role("button", name="Yes, leave").click()
    expect(roster).to_have_text("A team needs an owner: make someone else owner first.")
    expect(roster).to_have_role("alert")
    expect(me.get_by_role("button", name="Leave team")).to_be_focused()

    # Remove, confirmed in the page, by keyboard.
    row.get_by_role("button", name=f"Remove {member}").click()
    expect(row.get_by_role("button", name=f"Yes, remove {member}")).to_be_focused()
    page.keyboard.press("Enter")
    expect(roster).to_have_text(f"{member} was removed from the team.")
    expect(page.locator("#members tbody tr")).to_have_count(1)
    expect(page.locator("#team-balance")).to_contain_text("1 member.")

    # With another owner, leaving is allowed, and the page goes back to the list.
    add.get_by_label("Username").fill(member)
    add.get_by_label("Role").select_option("owner")
    add.get_by_role("button", name="Add member").click()
    expect(tab.member_row(member).locator("td").nth(1)).to_have_text("Owner")
    me.get_by_role("button", name="Leave team").click()
    me.get_by_role("button", name="Yes, leave").click()
    page.wait_for_url(re.compile(r"#/teams$"))
    expect(page.locator("#teams tbody")).to_have_text("You are in no team yet.")


def test_firebase_sign_in_through_the_auth_emulator(tab: Tab, stack: Stack) -> None:
    page = tab.page
    email = f"ada{uuid.uuid4().hex[:8]}@example.com"
    tab.open("/")
    firebase = form(tab, "Email (Firebase)")
    firebase.get_by_label("Email").fill(email)
    firebase.get_by_label("Password").fill("correct-horse")
    firebase.get_by_role("button", name="Create email account").click()
    expect(page.get_by_role("heading", name="Credits", level=1)).to_be_visible()
    expect(page.locator(".who")).to_have_text(f"Signed in as {email}")
    expect(page.locator("#credits-balance")).to_have_text("10 credits")  # the first call opened the account
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r"#/signin$"))

    firebase = form(tab, "Email (Firebase)")
    firebase.get_by_label("Email").fill(email)
    firebase.get_by_label("Password").fill("wrong-horse")
    firebase.get_by_role("button", name="Sign in with email").click()
    expect(firebase.get_by_role("alert")).to_have_text("That email and password do not match an account.")
    firebase.get_by_label("Password").fill("correct-horse")
    firebase.get_by_role("button", name="Sign in with email").click()
    expect(page.locator("#credits-balance")).to_have_text("10 credits")
    auth = f"http://127.0.0.1:{stack.auth_port}"
    assert any(
        url.startswith(f"{auth}/identitytoolkit.googleapis.com/v1/accounts:signUp") for url in tab.requests
    )
    assert tab.hosts() == {tab.console_url, stack.base_url, auth}


def test_the_session_is_renewed_with_the_refresh_token(tab: Tab, stack: Stack) -> None:
    page = tab.page
    sign_up(tab)
    # As if the 30 minutes were over: the next call renews the token first (one /refresh).
    page.evaluate(
        "() => { const s = JSON.parse(localStorage.getItem('aijobs.session'));"
        " s.expires_at = Date.now() - 1000; localStorage.setItem('aijobs.session', JSON.stringify(s)); }"
    )
    page.reload()
    expect(page.locator("#credits-balance")).to_have_text("10 credits")
    assert sum(url == f"{stack.base_url}/refresh" for url in tab.requests) == 1, tab.requests
    # A revoked session (here: its refresh token used elsewhere) sends the person to sign in.
    state = page.evaluate("JSON.parse(localStorage.getItem('aijobs.session'))")
    renewed = requests.post(
        f"{stack.base_url}/refresh", json={"refresh_token": state["refresh_token"]}, timeout=30
    )
    assert renewed.ok, renewed.text
    again = requests.post(
        f"{stack.base_url}/refresh", json={"refresh_token": state["refresh_token"]}, timeout=30
    )
    assert again.json()["error"]["code"] == "refresh_token_reused"
    page.evaluate(
        "() => { const s = JSON.parse(localStorage.getItem('aijobs.session'));"
        " s.expires_at = Date.now() - 1000; localStorage.setItem('aijobs.session', JSON.stringify(s)); }"
    )
    tab.go("/jobs")
    page.wait_for_url(re.compile(r"#/signin$"))
    expect(page.get_by_role("alert")).to_contain_text("Sign in again.")


def test_errors_are_shown_in_words(tab: Tab, api: Api, expensive_summaries: int) -> None:
    page = tab.page
    sign_up(tab)
    # 402: the price is shown first, and the refusal says how many credits are missing.
    tab.go("/submit")
    page.get_by_label("Task type").select_option("summarize")
    cost, missing = expensive_summaries, expensive_summaries - 10
    expect(page.locator("#price")).to_have_text(
        f"Price: {cost} credits. Your balance: 10 credits. You need {missing} more credits."
    )
    page.get_by_label("Text to summarize").fill("Too dear for this account.")
    page.get_by_role("button", name="Submit job").click()
    expect(page.get_by_role("alert")).to_have_text(
        f"You need {missing} more credits for this. It costs {cost} and your balance is 10."
    )
    tab.shot("error-402")

    # 401 and then 429 with when to try again (Retry-After, which CORS exposes to the page).
    username = api.signup()[1]["username"]
    page.get_by_role("button", name="Sign out").click()
    for _attempt in range(5):
        sign_in(tab, username, "not-the-password")
        expect(form(tab, "Username and password").get_by_role("alert")).to_have_text(
            "That username and password do not match an account."
        )
    with page.expect_response(lambda r: r.url.endswith("/login") and r.status == 429) as refused:
        sign_in(tab, username, "not-the-password")
    seconds = int(refused.value.headers["retry-after"])
    wait = f"{seconds} seconds" if seconds < 90 else f"{-(-seconds // 60)} minutes"
    alert = form(tab, "Username and password").get_by_role("alert")
    expect(alert).to_contain_text(f"Too many failed sign-ins for this account. Try again in {wait} (at ")
    assert re.search(r"\(at \d\d:\d\d:\d\d\)\.$", alert.inner_text()), alert.inner_text()


def test_every_page_passes_axe_and_is_usable_by_keyboard(tab: Tab) -> None:
    page = tab.page
    sign_up(tab)
    for route in ("/credits", "/submit", "/jobs", "/usage", "/keys", "/conversations", "/teams", "/nowhere"):
        tab.go(route)
        expect(page.locator("main h1")).to_be_focused()
        tab.axe(route)
    # Keyboard only: the skip link comes first (just before the brand link, the first thing after
    # it), then the navigation, each link reachable by Tab.
    tab.go("/credits")
    expect(page.locator("main h1")).to_be_focused()
    page.get_by_role("link", name="aijobs").focus()
    page.keyboard.press("Shift+Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("main h1")).to_be_focused()
    page.locator("nav a").first.focus()
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Submit a job").first).to_be_focused()
    # The focus ring is drawn (the :focus-visible outline, 3px).
    assert page.evaluate("getComputedStyle(document.activeElement).outlineWidth") == "3px"
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Submit a job")).to_be_visible()


def test_the_console_is_served_with_a_policy_naming_only_our_hosts(
    console: ConsoleServer, stack: Stack
) -> None:
    index = requests.get(f"{console.url}/", timeout=10)
    assert index.ok and "js/app.js" in index.text
    policy = index.headers["Content-Security-Policy"]
    connect = next(part for part in policy.split("; ") if part.startswith("connect-src"))
    assert connect.split()[1:] == ["'self'", stack.base_url, f"http://127.0.0.1:{stack.auth_port}"]
    assert "script-src 'self'" in policy and "default-src 'none'" in policy
    config = requests.get(f"{console.url}/config.json", timeout=10).json()
    assert config["api_base_url"] == stack.base_url
    assert origin(config["firebase"]["identity_toolkit_url"]) == f"http://127.0.0.1:{stack.auth_port}"
    assert requests.get(f"{console.url}/js/app.js", timeout=10).headers["Content-Type"] == "text/javascript"


def test_the_console_works_from_localhost_too(browser: Any, console: ConsoleServer, stack: Stack) -> None:
    """Unset CORS_ORIGINS, the local stack allows http://localhost:<port> as well as 127.0.0.1."""
    tab = new_tab(browser, console.url.replace("127.0.0.1", "localhost"))
    try:
        sign_up(tab)
        expect(tab.page.locator("#credits-balance")).to_have_text("10 credits")
    finally:
        tab.page.context.close()
    assert not tab.errors, tab.errors
    assert tab.hosts() == {tab.console_url, stack.base_url}, tab.hosts()
