"""CORS in a real browser: a page served from another localhost port signs up, submits a job
(a real preflight, because of ``Authorization``), long-polls it to completion and reads the
exposed ``Idempotent-Replayed`` header; a page from an origin that is not allowed cannot read
an answer at all. ``test_cors.py`` checks the headers themselves; this checks what Chromium does
with them."""

from __future__ import annotations

import functools
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from conftest import PASSWORD, Api, launch_chromium
from fake_openai import FakeOpenAI, Reply

from scripts.stack import Stack

SUMMARY = "A summary written for a browser page."

# The page: every call the issue names, each result written into the DOM as JSON.
FLOW_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>aijobs from another origin</title></head>
<body><pre id="out"></pre>
<script>
const params = new URLSearchParams(location.search);
const BASE = params.get("base");
const out = {origin: location.origin};
const json = {"Content-Type": "application/json"};
const terminal = ["completed", "failed", "canceled"];

async function main() {
  const signup = await fetch(BASE + "/signup", {
    method: "POST", headers: json,
    body: JSON.stringify({username: params.get("user"), password: params.get("password")}),
  });
  out.signup = signup.status;
  const token = (await signup.json()).access_token;
  const submitJob = () => fetch(BASE + "/submit_job", {
    method: "POST",
    headers: {...json, "Authorization": "Bearer " + token, "Idempotency-Key": params.get("key")},
    body: JSON.stringify({task_type: "summarize", input_data: "A text to summarize, sent from a page."}),
  });
  const submit = await submitJob();
  const accepted = await submit.json();
  out.submit = {status: submit.status, body: accepted, replayed: submit.headers.get("Idempotent-Replayed")};
  let job = null;
  out.polls = 0;
  while (out.polls < 5 && !(job && terminal.includes(job.status))) {
    out.polls += 1;
    const poll = await fetch(BASE + "/jobs/" + accepted.job_id + "?wait=20", {
      headers: {"Authorization": "Bearer " + token},
    });
    out.pollStatus = poll.status;
    job = await poll.json();
  }
  out.job = job;
  const replay = await submitJob();
  out.replay = {
    status: replay.status,
    jobId: (await replay.json()).job_id,
    replayed: replay.headers.get("Idempotent-Replayed"),
    contentType: replay.headers.get("Content-Type"),  // safelisted: always readable
    vary: replay.headers.get("Vary"),                  // not exposed: hidden from the page
  };
}
main()
  .catch((e) => { out.error = e.name + ": " + e.message; })
  .finally(() => {
    const el = document.getElementById("out");
    el.textContent = JSON.stringify(out);
    el.dataset.done = "1";
  });
</script></body></html>
"""

# Another page: one preflighted call (a JSON POST) and one simple call (a GET), each reported
# as the status the page read or the error fetch rejected with.
PROBE_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>aijobs probe</title></head>
<body><pre id="out"></pre>
<script>
const params = new URLSearchParams(location.search);
const BASE = params.get("base");
const out = {origin: location.origin};

async function attempt(name, call) {
  try {
    const response = await call();
    out[name] = {status: response.status, body: await response.text()};
  } catch (e) {
    out[name] = {error: e.name, message: e.message};
  }
}

(async () => {
  await attempt("signup", () => fetch(BASE + "/signup", {
    method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({username: params.get("user"), password: params.get("password")}),
  }));
  await attempt("health", () => fetch(BASE + "/health"));
  const el = document.getElementById("out");
  el.textContent = JSON.stringify(out);
  el.dataset.done = "1";
})();
</script></body></html>
"""


@pytest.fixture
def pages(tmp_path: Path) -> Iterator[int]:
    """A static HTTP server on 127.0.0.1 and a free port, serving the two pages; yields the port."""
    root = tmp_path / "site"
    root.mkdir()
    (root / "flow.html").write_text(FLOW_PAGE)
    (root / "probe.html").write_text(PROBE_PAGE)

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


Sent = list[dict[str, Any]]


def run_page(url: str) -> tuple[dict[str, Any], Sent, Sent]:
    """Open ``url`` in headless Chromium and wait for the page to write its results. Answers them,
    every request the browser started (preflights included) and every one that failed with the
    reason, both as the DevTools protocol reports them."""
    from playwright.sync_api import sync_playwright

    sent: Sent = []
    failed: Sent = []
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page()
            cdp = page.context.new_cdp_session(page)
            cdp.on("Network.requestWillBeSent", lambda event: sent.append(event))
            cdp.on("Network.loadingFailed", lambda event: failed.append(event))
            cdp.send("Network.enable")
            page.goto(url)
            page.wait_for_selector("#out[data-done]", state="attached", timeout=90_000)
            text = page.inner_text("#out")
        finally:
            browser.close()
    return json.loads(text), sent, failed


def page_url(host: str, port: int, page: str, base_url: str, user: str, **extra: str) -> str:
    query = urlencode({"base": base_url, "user": user, "password": PASSWORD, **extra})
    return f"http://{host}:{port}/{page}?{query}"


def preflights(sent: Sent, path: str) -> list[dict[str, Any]]:
    """The CORS preflights Chromium sent to ``path`` (the pages themselves never send OPTIONS)."""
    return [
        e["request"]
        for e in sent
        if e["request"]["method"] == "OPTIONS" and e["request"]["url"].split("?")[0].endswith(path)
    ]


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_a_page_on_another_port_submits_a_job_and_follows_it(
    stack: Stack, fake_ai: FakeOpenAI, pages: int, host: str
) -> None:
    fake_ai.script(Reply(SUMMARY))
    user = f"browser{uuid.uuid4().hex[:10]}"
    key = f"browser-{uuid.uuid4().hex}"
    url = page_url(host, pages, "flow.html", stack.base_url, user, key=key)
    out, sent, _ = run_page(url)

    origin = f"http://{host}:{pages}"
    assert out["origin"] == origin and origin != stack.base_url
    assert "error" not in out, out
    assert out["signup"] == 201
    assert out["submit"]["status"] == 202 and out["submit"]["body"]["status"] == "queued"
    assert out["submit"]["replayed"] is None
    job = out["job"]
    assert out["pollStatus"] == 200
    assert job["status"] == "completed" and job["output"] == {"text": SUMMARY}, job
    assert job["job_id"] == out["submit"]["body"]["job_id"]
    # The repeat with the same key answers the same job, and the page can read that it is a replay
    # (an exposed header) but not a header the API does not expose.
    replay = out["replay"]
    assert replay["status"] == 202 and replay["jobId"] == job["job_id"]
    assert replay["replayed"] == "true"
    assert replay["contentType"].startswith("application/json") and replay["vary"] is None

    # Chromium really asked first: the Authorization header makes /submit_job a preflighted call.
    asked = preflights(sent, "/submit_job")
    assert asked, [(e.get("type"), e["request"]["method"], e["request"]["url"]) for e in sent]
    headers = {k.lower(): v for k, v in asked[0]["headers"].items()}
    assert asked[0]["method"] == "OPTIONS" and headers["origin"] == origin
    assert headers["access-control-request-method"] == "POST"
    assert {"authorization", "content-type", "idempotency-key"} <= set(
        headers["access-control-request-headers"].split(",")
    )
    # The answer allows caching the preflight (Max-Age 600), so the repeat submit needed none.
    assert len(asked) == 1


def test_a_page_on_an_origin_not_allowed_cannot_read_an_answer(
    stack: Stack, functions_stack: Callable[..., Stack], pages: int
) -> None:
    allowed = f"http://localhost:{pages}"
    only_one = functions_stack(CORS_ORIGINS=allowed)

    # The allowed origin, as a control: the same probe reads both answers.
    user = f"allowed{uuid.uuid4().hex[:10]}"
    out, _, _ = run_page(page_url("localhost", pages, "probe.html", only_one.base_url, user))
    assert out["origin"] == allowed
    assert out["signup"]["status"] == 201, out
    assert out["health"]["status"] == 200, out

    # Same page, same port, other host: another origin, not in CORS_ORIGINS.
    user = f"refused{uuid.uuid4().hex[:10]}"
    out, sent, failed = run_page(page_url("127.0.0.1", pages, "probe.html", only_one.base_url, user))
    assert out["origin"] == f"http://127.0.0.1:{pages}"
    cors_errors = {
        e["requestId"]: e["corsErrorStatus"]["corsError"] for e in failed if "corsErrorStatus" in e
    }
    urls = {e["requestId"]: e["request"]["url"] for e in sent}
    refused = {urls[r].removeprefix(only_one.base_url): error for r, error in cors_errors.items()}
    # The preflight was refused, so fetch rejected and the POST itself never reached the server ...
    assert preflights(sent, "/signup")
    assert out["signup"]["error"] == "TypeError", out
    assert refused["/signup"] == "PreflightMissingAllowOriginHeader", refused
    assert Api(only_one.base_url).signup(user)[1]["username"] == user, "the username was not taken"
    # ... and a simple GET, which needs no preflight, was answered, but the page may not read it.
    assert not preflights(sent, "/health")
    assert out["health"]["error"] == "TypeError", out
    assert refused["/health"] == "MissingAllowOriginHeader", refused
