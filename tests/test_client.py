"""The Python client and the ``aijobs`` command (client/), as pip installed them into .venv.

The library and the command run against the real local stack; the retry rules run against
an injected ``httpx.MockTransport`` and a real loopback HTTP server that count attempts.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import aijobs
import httpx
import pytest
from aijobs import errors
from aijobs.cli import parse_option
from conftest import PASSWORD, ROOT, Api, books
from fake_openai import FakeOpenAI, Reply

from scripts.stack import Stack

# -- the package is the installed one ---------------------------------------------------------


def test_the_installed_package_is_the_source_in_client() -> None:
    installed = Path(aijobs.__file__).parent
    assert "site-packages" in installed.parts, f"aijobs imported from {installed}, not the installed copy"
    assert (installed / "py.typed").is_file()
    sources = sorted(p.name for p in (ROOT / "client" / "aijobs").glob("*.py"))
    assert sorted(p.name for p in installed.glob("*.py")) == sources
    for name in sources:
        assert (installed / name).read_text() == (ROOT / "client" / "aijobs" / name).read_text(), (
            f"the installed aijobs/{name} is not client/aijobs/{name}: run scripts/_setup"
        )


# -- errors -----------------------------------------------------------------------------------


def _error_body(code: str, message: str = "m") -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (400, "malformed_json", errors.MalformedJson),
        (400, "invalid_unicode", errors.InvalidUnicode),
        (401, "unauthenticated", errors.Unauthenticated),
        (401, "invalid_credentials", errors.InvalidCredentials),
        (401, "invalid_token", errors.InvalidToken),
        (401, "token_expired", errors.TokenExpired),
        (402, "insufficient_credits", errors.InsufficientCredits),
        (402, "member_daily_limit", errors.MemberDailyLimit),
        (402, "member_monthly_limit", errors.MemberMonthlyLimit),
        (403, "admin_only", errors.AdminOnly),
        (403, "origin_not_allowed", errors.OriginNotAllowed),
        (403, "team_role_required", errors.TeamRoleRequired),
        (404, "job_not_found", errors.JobNotFound),
        (404, "user_not_found", errors.UserNotFound),
        (404, "report_not_found", errors.ReportNotFound),
        (404, "route_not_found", errors.RouteNotFound),
        (404, "webhook_not_found", errors.WebhookNotFound),
        (404, "image_not_found", errors.ImageNotFound),
        (404, "team_not_found", errors.TeamNotFound),
        (404, "member_not_found", errors.MemberNotFound),
        (405, "method_not_allowed", errors.MethodNotAllowed),
        (409, "username_taken", errors.UsernameTaken),
        (409, "idempotency_key_reused", errors.IdempotencyKeyReused),
        (409, "job_not_cancelable", errors.JobNotCancelable),
        (409, "job_in_progress", errors.JobInProgress),
        (409, "grant_id_reused", errors.GrantIdReused),
        (409, "balance_too_low", errors.BalanceTooLow),
        (409, "already_member", errors.AlreadyMember),
        (409, "team_full", errors.TeamFull),
        (409, "too_many_teams", errors.TooManyTeams),
        (409, "last_owner", errors.LastOwner),
        (409, "team_not_empty", errors.TeamNotEmpty),
        (409, "team_busy", errors.TeamBusy),
        (409, "transfer_id_reused", errors.TransferIdReused),
        (413, "payload_too_large", errors.PayloadTooLarge),
        (413, "input_too_large", errors.InputTooLarge),
        (415, "unsupported_media_type", errors.UnsupportedMediaType),
        (422, "invalid_request", errors.InvalidRequest),
        (422, "invalid_limit", errors.InvalidLimit),
        (422, "invalid_cursor", errors.InvalidCursor),
        (422, "invalid_wait", errors.InvalidWait),
        (422, "invalid_option", errors.InvalidOption),
        (422, "unknown_task_type", errors.UnknownTaskType),
        (422, "task_type_unsupported", errors.TaskTypeUnsupported),
        (422, "invalid_idempotency_key", errors.InvalidIdempotencyKey),
        (422, "invalid_role", errors.InvalidRole),
        (422, "week_not_complete", errors.WeekNotComplete),
        (422, "invalid_webhook_url", errors.InvalidWebhookUrl),
        (422, "invalid_webhook_events", errors.InvalidWebhookEvents),
        (422, "too_many_webhooks", errors.TooManyWebhooks),
        (422, "unknown_user", errors.UnknownUser),
        (429, "rate_limited", errors.RateLimited),
        (429, "signup_rate_limited", errors.SignupRateLimited),
        (429, "too_many_login_attempts", errors.TooManyLoginAttempts),
        (429, "submit_rate_limited", errors.SubmitRateLimited),
        (500, "internal", errors.ServerError),
        (503, "unavailable", errors.Unavailable),
        (503, "enqueue_failed", errors.EnqueueFailed),
        (503, "outcome_unknown", errors.OutcomeUnknown),
        (503, "unhealthy", errors.Unhealthy),
        (503, "storage_unavailable", errors.StorageUnavailable),
    ],
)
def test_every_code_has_its_exception(status: int, code: str, cls: type[errors.AijobsError]) -> None:
    body = _error_body(code, "the message")
    error = errors.error_for(status, body, {"Retry-After": "7"})
    assert type(error) is cls
    assert (error.status, error.code, error.message, error.body) == (status, code, "the message", body)
    assert error.retryable == (status in (429, 503))
    assert isinstance(error, errors.RetryableError) == (status in (429, 503))
    if isinstance(error, errors.RetryableError):
        assert error.retry_after == 7.0
    assert getattr(aijobs, cls.__name__) is cls
    assert cls.__name__ in errors.__all__


def test_a_members_limit_is_a_lack_of_credits() -> None:
    for code in ("member_daily_limit", "member_monthly_limit"):
        assert isinstance(errors.error_for(402, _error_body(code)), errors.InsufficientCredits)


def test_every_code_the_server_answers_has_its_own_exception() -> None:
    """Each error code in shared/ and functions/ (the classes' and each ``code="..."``) maps to a
    class of that very code."""
    import re

    from shared import errors as server

    classes: list[type[server.AppError]] = [server.AppError]
    for cls in classes:
        classes.extend(cls.__subclasses__())
    codes = {cls.code for cls in classes}
    for path in [*(ROOT / "shared").rglob("*.py"), *(ROOT / "functions").rglob("*.py")]:
        for a, b in re.findall(r'\bcode="([a-z_]+)"|"code": "([a-z_]+)"', path.read_text()):
            codes.add(a or b)
    assert {"invalid_token", "job_not_found", "enqueue_failed", "outcome_unknown", "unhealthy"} <= codes
    unmapped = sorted(c for c in codes if type(errors.error_for(500, _error_body(c))).error_code != c)
    assert unmapped == []


def test_every_exception_is_exported_by_the_package() -> None:
    classes: list[type[errors.AijobsError]] = [errors.AijobsError]
    for cls in classes:
        classes.extend(cls.__subclasses__())
    assert len(classes) > 40
    assert [c.__name__ for c in classes if getattr(aijobs, c.__name__, None) is not c] == []


def test_unknown_codes_fall_back_by_status() -> None:
    assert type(errors.error_for(404, _error_body("shelf_not_found"))) is errors.NotFound
    assert type(errors.error_for(409, _error_body("new_conflict"))) is errors.Conflict
    assert type(errors.error_for(429, _error_body("slow_down"))) is errors.RateLimited
    assert type(errors.error_for(503, _error_body("ai_timeout"))) is errors.Unavailable
    assert type(errors.error_for(502, "<html>bad gateway</html>")) is errors.ServerError
    assert type(errors.error_for(418, None)) is errors.AijobsError
    proxy = errors.error_for(502, "<html>bad gateway</html>")
    assert proxy.code == "http_502" and proxy.status == 502


# -- retries, on an injected transport --------------------------------------------------------


class Script:
    """An ``httpx.MockTransport`` answering from a list, recording every request."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []
        self.transport = httpx.MockTransport(self.handle)
        self.sleeps: list[float] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def client(self, **kwargs: Any) -> aijobs.Client:
        return aijobs.Client(
            "http://aijobs.test", token="tok", transport=self.transport, sleep=self.sleeps.append, **kwargs
        )


def _refusal(status: int, code: str, retry_after: str | None = "2") -> httpx.Response:
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    return httpx.Response(status, json=_error_body(code), headers=headers)


ACCEPTED = {"job_id": "j1", "status": "queued", "cost": 1, "credits": 9}


@pytest.mark.parametrize(
    ("status", "code"),
    [(503, "unavailable"), (503, "enqueue_failed"), (503, "outcome_unknown"), (429, "submit_rate_limited")],
)
def test_a_submit_is_retried_with_the_same_idempotency_key(status: int, code: str) -> None:
    script = Script(
        _refusal(status, code, "2"), _refusal(status, code, "3"), httpx.Response(202, json=ACCEPTED)
    )
    answer = script.client().submit("summarize", "text", {"max_words": 20})
    assert answer == ACCEPTED
    assert len(script.requests) == 3 and script.sleeps == [2.0, 3.0]
    keys = {r.headers["Idempotency-Key"] for r in script.requests}
    assert len(keys) == 1
    assert uuid.UUID(keys.pop()).version == 4
    assert all(r.headers["Authorization"] == "Bearer tok" for r in script.requests)
    assert json.loads(script.requests[0].content) == {
        "task_type": "summarize",
        "input_data": "text",
        "options": {"max_words": 20},
    }


def test_each_submit_has_its_own_key_and_a_callers_key_is_sent() -> None:
    script = Script(*[httpx.Response(202, json=ACCEPTED)] * 3)
    client = script.client()
    client.submit("summarize", "a")
    client.submit("summarize", "a")
    client.submit("summarize", "a", idempotency_key="my-key-1")
    keys = [r.headers["Idempotency-Key"] for r in script.requests]
    assert keys[0] != keys[1] and keys[2] == "my-key-1"


def test_a_transfer_is_retried_with_the_same_transfer_id() -> None:
    moved = {"transfer_id": "x", "team_id": "t1", "amount": 5, "team_credits": 5, "created_at": "now"}
    script = Script(
        _refusal(503, "outcome_unknown", "1"), httpx.ReadTimeout("slow"), httpx.Response(200, json=moved)
    )
    assert script.client().transfer_to_team("t1", 5) == moved
    bodies = [json.loads(r.content) for r in script.requests]
    assert len(bodies) == 3 and all(b == bodies[0] for b in bodies)
    assert bodies[0]["amount"] == 5 and uuid.UUID(bodies[0]["transfer_id"]).version == 4

    script = Script(*[httpx.Response(200, json=moved)] * 2)
    script.client().transfer_to_team("t1", -2, transfer_id="back-1")
    script.client().transfer_to_team("t1", 5)
    assert json.loads(script.requests[0].content) == {"amount": -2, "transfer_id": "back-1"}
    assert json.loads(script.requests[1].content)["transfer_id"] != "back-1"


def test_team_calls_send_what_was_given() -> None:
    csv_text = "member,jobs,credits,refunded\r\nada,1,1,0\r\n"
    member = {"username": "ada", "role": "member"}
    script = Script(
        httpx.Response(201, json=member),
        httpx.Response(201, json=member),
        httpx.Response(200, json=member),
        httpx.Response(204),
        httpx.Response(200, text=csv_text, headers={"Content-Type": "text/csv; charset=utf-8"}),
        *[httpx.Response(202, json=ACCEPTED)] * 3,
    )
    client = script.client()
    client.add_team_member("t/1", "ada")
    client.add_team_member("t1", "ada", "admin", daily_limit=0, monthly_limit=30)
    client.update_team_member("t1", "ada", daily_limit=None)
    client.remove_team_member("t1", "ada")
    assert client.team_usage_csv("t1", "2026-01-01", "2026-01-31", group_by="member") == csv_text
    client.submit("summarize", "a", team_id="t1")
    client.submit("summarize", "a")
    client.create_batch([{"task_type": "summarize", "input_data": "a"}], team_id="t1")
    sent = [(r.method, r.url.raw_path.decode(), r.content) for r in script.requests]
    assert sent[0][:2] == ("POST", "/teams/t%2F1/members")
    assert json.loads(sent[0][2]) == {"username": "ada", "role": "member"}  # no limits unless given
    assert json.loads(sent[1][2]) == {
        "username": "ada",
        "role": "admin",
        "daily_limit": 0,
        "monthly_limit": 30,
    }
    assert sent[2][:2] == ("PATCH", "/teams/t1/members/ada")
    assert json.loads(sent[2][2]) == {"daily_limit": None}
    assert sent[3][:2] == ("DELETE", "/teams/t1/members/ada")
    usage = script.requests[4]
    assert usage.url.path == "/teams/t1/usage" and usage.headers["Accept"] == "text/csv"
    assert dict(usage.url.params) == {
        "from": "2026-01-01",
        "to": "2026-01-31",
        "group_by": "member",
        "format": "csv",
    }
    assert json.loads(sent[5][2])["team_id"] == "t1" and "team_id" not in json.loads(sent[6][2])
    assert json.loads(sent[7][2])["team_id"] == "t1"
    with pytest.raises(ValueError):
        client.get_team("")


def test_retries_are_bounded_by_attempts() -> None:
    script = Script(*[_refusal(503, "unavailable", "1")] * 3)
    with pytest.raises(errors.Unavailable) as caught:
        script.client(retry=aijobs.RetryPolicy(max_attempts=3)).me()
    assert len(script.requests) == 3 and script.sleeps == [1.0, 1.0]
    assert caught.value.retry_after == 1.0


def test_a_retry_after_past_the_max_wait_is_not_waited_for() -> None:
    script = Script(_refusal(429, "too_many_login_attempts", "900"))
    with pytest.raises(errors.TooManyLoginAttempts) as caught:
        script.client(retry=aijobs.RetryPolicy(max_wait=60)).login("alice", "password-1")
    assert len(script.requests) == 1 and script.sleeps == []
    assert caught.value.retry_after == 900.0


def test_the_total_wait_is_bounded() -> None:
    script = Script(*[_refusal(503, "unavailable", "4")] * 5)
    with pytest.raises(errors.Unavailable):
        script.client(retry=aijobs.RetryPolicy(max_attempts=10, max_wait=10)).me()
    assert script.sleeps == [4.0, 4.0] and len(script.requests) == 3


def test_without_retry_after_the_pause_backs_off() -> None:
    script = Script(*[_refusal(503, "unavailable", None)] * 3, httpx.Response(200, json={"id": "u"}))
    script.client(retry=aijobs.RetryPolicy(backoff=0.5, max_backoff=1.5)).me()
    assert script.sleeps == [0.5, 1.0, 1.5]


def test_errors_that_are_not_retryable_are_raised_at_once() -> None:
    script = Script(_refusal(402, "insufficient_credits"), _refusal(409, "idempotency_key_reused"))
    client = script.client()
    with pytest.raises(errors.InsufficientCredits):
        client.submit("summarize", "a")
    with pytest.raises(errors.IdempotencyKeyReused):
        client.submit("summarize", "a")
    assert len(script.requests) == 2 and script.sleeps == []


def test_outcome_unknown_is_retried_only_where_a_repeat_is_safe() -> None:
    script = Script(_refusal(503, "outcome_unknown"), _refusal(503, "outcome_unknown"))
    client = script.client()
    with pytest.raises(errors.OutcomeUnknown):
        client.cancel_job("j1")
    with pytest.raises(errors.OutcomeUnknown):
        client.signup("alice", "password-1")
    assert len(script.requests) == 2 and script.sleeps == []


def test_connection_errors_are_retried_for_idempotent_calls_only() -> None:
    job: dict[str, Any] = {"job_id": "j1", "status": "queued"}
    script = Script(
        httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("cut"), httpx.Response(200, json=job)
    )
    assert script.client().get_job("j1") == job
    assert len(script.requests) == 3

    script = Script(httpx.ReadTimeout("slow"), httpx.Response(202, json=ACCEPTED))
    assert script.client().submit("summarize", "a") == ACCEPTED
    assert len({r.headers["Idempotency-Key"] for r in script.requests}) == 1

    script = Script(httpx.ReadTimeout("slow"))
    with pytest.raises(errors.NetworkError) as caught:
        script.client().cancel_job("j1")
    assert len(script.requests) == 1 and caught.value.status == 0 and not caught.value.unsent
    assert isinstance(caught.value.__cause__, httpx.ReadTimeout)

    # Refused before sending: even a call that is not safe to repeat may go again.
    script = Script(httpx.ConnectError("refused"), httpx.Response(200, json=job))
    assert script.client().cancel_job("j1") == job


def test_a_long_poll_asks_for_at_most_25_seconds_with_a_longer_read_timeout() -> None:
    queued: dict[str, Any] = {"job_id": "j1", "status": "queued"}
    done: dict[str, Any] = {"job_id": "j1", "status": "completed", "output": {"text": "ok"}}
    script = Script(httpx.Response(200, json=queued), httpx.Response(200, json=done))
    seen: list[str] = []
    job = script.client().wait("j1", timeout=None, on_progress=lambda j: seen.append(j["status"]))
    assert job == done and seen == ["queued", "completed"]
    assert [r.url.params["wait"] for r in script.requests] == ["25", "25"]
    assert script.requests[0].extensions["timeout"]["read"] >= 40
    with pytest.raises(ValueError):
        script.client().get_job("j1", wait=26)


# -- retries, over real HTTP ------------------------------------------------------------------


class Loopback:
    """A real HTTP server on 127.0.0.1 answering scripted (status, headers, body) in turn."""

    def __init__(self, answers: list[tuple[int, dict[str, str], Any]]) -> None:
        self.answers = answers
        self.seen: list[tuple[float, dict[str, str], Any]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                owner.seen.append((time.monotonic(), dict(self.headers), json.loads(body or b"null")))
                status, headers, doc = owner.answers.pop(0)
                data = json.dumps(doc).encode()
                self.send_response(status)
                for name, value in {**headers, "Content-Type": "application/json"}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> Loopback:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_retry_after_is_honored_over_real_http() -> None:
    answers = [
        (503, {"Retry-After": "1"}, _error_body("outcome_unknown")),
        (429, {"Retry-After": "1"}, _error_body("submit_rate_limited")),
        (202, {}, ACCEPTED),
    ]
    with Loopback(answers) as server, aijobs.Client(server.base_url, token="tok") as client:
        assert client.submit("summarize", "text") == ACCEPTED
    assert len(server.seen) == 3
    times = [t for t, _, _ in server.seen]
    assert times[1] - times[0] >= 0.95 and times[2] - times[1] >= 0.95
    assert len({headers["Idempotency-Key"] for _, headers, _ in server.seen}) == 1
    assert all(body["task_type"] == "summarize" for _, _, body in server.seen)


def test_an_http_client_can_be_injected() -> None:
    with Loopback([(202, {}, ACCEPTED)]) as server, httpx.Client(headers={"X-Trace": "t-1"}) as http:
        client = aijobs.Client(server.base_url, token="tok", http=http)
        client.submit("summarize", "text")
        client.close()  # the caller's client stays open
        assert not http.is_closed
    assert server.seen[0][1]["X-Trace"] == "t-1"


# -- the library against the stack ------------------------------------------------------------


@pytest.fixture
def client(api: Api) -> Iterator[aijobs.Client]:
    with aijobs.Client(api.base_url) as c:
        yield c


def _name() -> str:
    return f"c{uuid.uuid4().hex[:12]}"


def test_the_library_from_signup_to_a_completed_job(client: aijobs.Client, fake_ai: FakeOpenAI) -> None:
    name = _name()
    signed = client.signup(name, PASSWORD)
    assert signed["user"]["username"] == name and signed["user"]["credits"] == 10
    client.token = None
    token = client.login(name.upper(), PASSWORD)
    assert token["token_type"] == "bearer" and client.token == token["access_token"]
    me = client.me()
    assert me["username"] == name and me["credits"] == 10 and me["id"] == signed["user"]["id"]

    fake_ai.script(Reply("A short summary."))
    accepted = client.submit("summarize", "A long text. " * 20, {"max_words": 50})
    assert accepted["status"] == "queued" and accepted["cost"] == 1 and accepted["credits"] == 9
    seen: list[str] = []
    job = client.wait(accepted["job_id"], timeout=30, on_progress=lambda j: seen.append(j["status"]))
    assert job["status"] == "completed" and job["output"] == {"text": "A short summary."}
    assert seen and seen[-1] == "completed" and len(seen) <= 2  # a long-poll, not a read loop
    assert client.get_job(accepted["job_id"]) == job

    credits = client.credits()
    assert credits["credits"] == 9
    assert [(t["type"], t["amount"]) for t in credits["transactions"]] == [("charge", -1), ("grant", 10)]
    assert [t["type"] for t in client.iter_transactions(page_size=1)] == ["charge", "grant"]
    assert [j["job_id"] for j in client.list_jobs()["jobs"]] == [accepted["job_id"]]

    today = datetime.now(UTC).date()
    usage = client.usage(today, today.isoformat())
    assert (usage["from"], usage["to"]) == (today.isoformat(), today.isoformat())
    assert usage["totals"]["jobs"] == {"summarize": 1} and usage["totals"]["total_credits"] == 1
    assert [d["date"] for d in usage["days"]] == [today.isoformat()]
    assert client.health()["status"] == "ok"


def test_a_repeated_key_answers_the_first_job_and_charges_once(client: aijobs.Client) -> None:
    user = client.signup(_name(), PASSWORD)["user"]
    first = client.submit("summarize", "Once.", idempotency_key="the-key")
    again = client.submit("summarize", "Once.", idempotency_key="the-key")
    assert again["job_id"] == first["job_id"]
    with pytest.raises(errors.IdempotencyKeyReused) as caught:
        client.submit("summarize", "Another text.", idempotency_key="the-key")
    assert caught.value.status == 409 and caught.value.code == "idempotency_key_reused"
    client.wait(first["job_id"], timeout=30)
    assert books(user["id"])["balance"] == 9


def test_list_get_and_cancel_a_queued_job(client: aijobs.Client, paused_queue: None) -> None:
    client.signup(_name(), PASSWORD)
    ids = [client.submit("summarize", f"Text {i}.")["job_id"] for i in range(3)]
    assert client.get_job(ids[0])["status"] == "queued"
    page = client.list_jobs(limit=2)
    assert [j["job_id"] for j in page["jobs"]] == ids[:0:-1] and page["next_cursor"]
    rest = client.list_jobs(limit=2, cursor=page["next_cursor"])
    assert [j["job_id"] for j in rest["jobs"]] == [ids[0]] and rest["next_cursor"] is None
    assert [j["job_id"] for j in client.iter_jobs(page_size=1)] == ids[::-1]

    started = time.monotonic()
    with pytest.raises(errors.WaitTimeout) as caught:
        client.wait(ids[0], timeout=2)
    assert 1.9 <= time.monotonic() - started < 8 and caught.value.job["status"] == "queued"

    canceled = client.cancel_job(ids[0])
    assert canceled["status"] == "canceled" and canceled["job_id"] == ids[0]
    assert client.wait(ids[0], timeout=5)["status"] == "canceled"
    with pytest.raises(errors.JobNotCancelable) as refused:
        client.cancel_job(ids[0])
    assert refused.value.status == 409
    assert client.me()["credits"] == 8  # 3 charged, 1 refunded


def test_api_errors_raise_their_exceptions(client: aijobs.Client, paused_queue: None) -> None:
    with pytest.raises(errors.Unauthenticated) as no_token:
        client.me()
    assert no_token.value.status == 401
    client.token = "not-a-token"
    with pytest.raises(errors.InvalidToken) as bad:
        client.me()
    assert bad.value.status == 401 and bad.value.headers.get("www-authenticate") == "Bearer"
    with pytest.raises(errors.InvalidCredentials):
        client.login(_name(), PASSWORD)

    name = _name()
    client.signup(name, PASSWORD)
    with pytest.raises(errors.UsernameTaken):
        client.signup(name, PASSWORD)
    with pytest.raises(errors.UnknownTaskType) as unknown:
        client.submit("juggle", "balls")
    assert unknown.value.status == 422 and isinstance(unknown.value, errors.InvalidRequest)
    with pytest.raises(errors.InvalidOption):
        client.submit("summarize", "text", {"max_words": "many"})
    with pytest.raises(errors.InvalidRequest):
        client.usage("2026-02-01", "2026-01-01")
    with pytest.raises(errors.InputTooLarge):
        client.submit("summarize", "x" * 20_001)
    with pytest.raises(errors.JobNotFound) as missing:
        client.get_job("0" * 32)
    assert missing.value.status == 404
    with pytest.raises(errors.InvalidLimit):
        client.list_jobs(limit=0)

    for i in range(10):
        client.submit("summarize", f"Job {i}.")
    with pytest.raises(errors.InsufficientCredits) as broke:
        client.submit("summarize", "One too many.")
    assert broke.value.status == 402 and broke.value.code == "insufficient_credits"
    assert not broke.value.retryable


def _signed_up(api: Api) -> tuple[aijobs.Client, str]:
    """A new account's own client (closed at the end of the test by ``_close``) and its username."""
    c = aijobs.Client(api.base_url)
    name = _name()
    c.signup(name, PASSWORD)
    return c, name


def _fund(team_id: str, amount: int) -> None:
    """An admin's grant to the team, in-process."""
    from shared import credits

    credits.grant(
        credits.GrantCreate(team_id=team_id, amount=amount, reason="t", grant_id=uuid.uuid4().hex), "test"
    )


def test_a_team_from_a_transfer_to_a_members_job_and_its_usage(api: Api, fake_ai: FakeOpenAI) -> None:
    (owner, owner_name), (member, member_name) = _signed_up(api), _signed_up(api)
    with owner, member:
        team = owner.create_team("Research")
        team_id = team["team_id"]
        assert (team["name"], team["role"], team["credits"], team["members"]) == ("Research", "owner", 0, 1)
        assert [t["team_id"] for t in owner.list_teams()["teams"]] == [team_id]
        assert owner.rename_team(team_id, "Research (EU)")["name"] == "Research (EU)"

        added = owner.add_team_member(team_id, member_name)
        assert (added["username"], added["role"], added["daily_limit"], added["monthly_limit"]) == (
            member_name,
            "member",
            None,
            None,
        )
        roster = owner.list_team_members(team_id)["members"]
        assert sorted((m["username"], m["role"]) for m in roster) == sorted(
            [(owner_name, "owner"), (member_name, "member")]
        )
        assert member.get_team(team_id)["role"] == "member"

        moved = owner.transfer_to_team(team_id, 5, transfer_id="topup-1")
        assert (moved["amount"], moved["team_credits"], moved["transfer_id"]) == (5, 5, "topup-1")
        again = owner.transfer_to_team(team_id, 5, transfer_id="topup-1")
        assert again["team_credits"] == 5 and again["created_at"] == moved["created_at"]
        with pytest.raises(errors.TransferIdReused) as reused:
            owner.transfer_to_team(team_id, 4, transfer_id="topup-1")
        assert reused.value.status == 409 and isinstance(reused.value, errors.Conflict)
        assert owner.me()["credits"] == 5 and owner.get_team(team_id)["credits"] == 5

        fake_ai.script(Reply("The team's summary."))
        accepted = member.submit("summarize", "A text for the team. " * 10, team_id=team_id)
        done = member.wait(accepted["job_id"], timeout=30)
        assert done["status"] == "completed" and done["output"] == {"text": "The team's summary."}
        cost = accepted["cost"]
        assert cost >= 1
        assert owner.get_team(team_id)["credits"] == 5 - cost
        assert member.me()["credits"] == 10  # the team paid, not the member

        ledger = owner.team_credits(team_id)
        assert ledger["credits"] == 5 - cost
        assert [(t["type"], t["amount"], t.get("username")) for t in ledger["transactions"]] == [
            ("charge", -cost, member_name),
            ("transfer", 5, owner_name),
        ]
        spent = {m["username"]: m["spent_today"] for m in owner.list_team_members(team_id)["members"]}
        assert spent == {owner_name: 0, member_name: cost}

        today = datetime.now(UTC).date()
        usage = owner.team_usage(team_id, today, today.isoformat(), group_by="member")
        assert (usage["team_id"], usage["from"], usage["group_by"]) == (team_id, today.isoformat(), "member")
        assert usage["rows"] == [{"key": member_name, "jobs": 1, "credits": cost, "refunded": 0}]
        assert (usage["total_jobs"], usage["total_credits"]) == (1, cost)
        by_day = owner.team_usage(team_id, today, today)
        assert [r["key"] for r in by_day["rows"]] == [today.isoformat()]
        text = owner.team_usage_csv(team_id, today, today, group_by="member")
        assert text.splitlines() == ["member,jobs,credits,refunded", f"{member_name},1,{cost},0"]


def test_team_errors_raise_their_exceptions(api: Api, paused_queue: None) -> None:
    (owner, owner_name), (member, member_name), (stranger, stranger_name) = (
        _signed_up(api),
        _signed_up(api),
        _signed_up(api),
    )
    with owner, member, stranger:
        team_id = owner.create_team("Limits")["team_id"]
        owner.add_team_member(team_id, member_name, daily_limit=0)
        _fund(team_id, 3)

        with pytest.raises(errors.TeamNotFound) as hidden:
            stranger.get_team(team_id)
        assert hidden.value.status == 404 and isinstance(hidden.value, errors.NotFound)
        with pytest.raises(errors.TeamNotFound):
            stranger.submit("summarize", "Not my team.", team_id=team_id)
        with pytest.raises(errors.TeamRoleRequired) as role:
            member.add_team_member(team_id, stranger_name)
        assert role.value.status == 403 and isinstance(role.value, errors.Forbidden)
        with pytest.raises(errors.TeamRoleRequired):
            member.transfer_to_team(team_id, 1)
        with pytest.raises(errors.AlreadyMember):
            owner.add_team_member(team_id, member_name)
        with pytest.raises(errors.MemberNotFound):
            owner.remove_team_member(team_id, stranger_name)

        with pytest.raises(errors.MemberDailyLimit) as daily:
            member.submit("summarize", "Over my limit.", team_id=team_id)
        assert daily.value.status == 402 and isinstance(daily.value, errors.InsufficientCredits)
        owner.update_team_member(team_id, member_name, daily_limit=None, monthly_limit=0)
        with pytest.raises(errors.MemberMonthlyLimit):
            member.submit("summarize", "Over my limit.", team_id=team_id)
        assert owner.get_team(team_id)["credits"] == 3  # refused: nothing charged

        with pytest.raises(errors.LastOwner) as last:
            owner.remove_team_member(team_id, owner_name)
        assert last.value.status == 409 and isinstance(last.value, errors.Conflict)
        with pytest.raises(errors.LastOwner):
            owner.update_team_member(team_id, owner_name, role="admin")

        with pytest.raises(errors.TeamNotEmpty):
            owner.delete_team(team_id)
        owner.update_team_member(team_id, member_name, monthly_limit=None)
        queued = member.submit("summarize", "Held in the queue.", team_id=team_id)
        left = owner.get_team(team_id)["credits"]
        assert left == 3 - queued["cost"]
        owner.transfer_to_team(team_id, -left)
        with pytest.raises(errors.TeamBusy):
            owner.delete_team(team_id)
        member.cancel_job(queued["job_id"])  # refunded to the team
        with pytest.raises(errors.TeamNotEmpty):
            owner.delete_team(team_id)
        owner.transfer_to_team(team_id, -queued["cost"])
        assert owner.me()["credits"] == 13
        owner.delete_team(team_id)
        with pytest.raises(errors.TeamNotFound):
            owner.get_team(team_id)
        assert owner.list_teams()["teams"] == []


# -- the command, as a real process -----------------------------------------------------------


class Cli:
    """Runs ``python -m aijobs`` in its own process, with its own config directory."""

    def __init__(self, home: Path, base_url: str) -> None:
        self.home = home
        self.base_url = base_url
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AIJOBS_")}
        self.env.update(
            {"XDG_CONFIG_HOME": str(home / "config"), "HOME": str(home), "AIJOBS_BASE_URL": base_url}
        )

    @property
    def config_file(self) -> Path:
        return self.home / "config" / "aijobs" / "config.json"

    def __call__(
        self, *args: str, stdin: str = "", env: dict[str, str] | None = None, ok: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "aijobs", *args],
            input=stdin,
            capture_output=True,
            text=True,
            cwd=self.home,
            env={**self.env, **(env or {})},
            timeout=120,
        )
        if ok:
            assert result.returncode == 0, f"aijobs {' '.join(args)}: {result.returncode}\n{result.stderr}"
        return result

    def json(self, *args: str, **kwargs: Any) -> Any:
        result = self(*args, "--json", **kwargs)
        return json.loads(result.stdout)


@pytest.fixture
def cli(stack: Stack, tmp_path: Path) -> Cli:
    return Cli(tmp_path, stack.base_url)


def test_the_command_signs_up_logs_in_and_keeps_the_token_private(cli: Cli) -> None:
    name = _name()
    signed = cli("signup", name, "--password", PASSWORD)
    assert name in signed.stdout and "10 credits" in signed.stdout
    assert stat.S_IMODE(cli.config_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(cli.config_file.parent.stat().st_mode) == 0o700
    saved = json.loads(cli.config_file.read_text())
    assert saved["base_url"] == cli.base_url and saved["username"] == name
    first_token = saved["access_token"]

    cli.config_file.unlink()
    logged = cli.json("login", name.upper(), env={"AIJOBS_PASSWORD": PASSWORD})
    assert logged["token_type"] == "bearer"
    assert stat.S_IMODE(cli.config_file.stat().st_mode) == 0o600
    saved = json.loads(cli.config_file.read_text())
    assert saved["access_token"] == logged["access_token"] and first_token
    assert not list(cli.config_file.parent.glob("*.tmp"))

    me = cli.json("me")
    assert me["username"] == name and me["credits"] == 10
    human = cli("me")
    assert name in human.stdout and "10 credits" in human.stdout

    wrong = cli("login", name, "--password", "wrong-password-1", ok=False)
    assert wrong.returncode == 1 and "invalid_credentials" in wrong.stderr and wrong.stdout == ""
    wrong_json = cli("login", name, "--password", "wrong-password-1", "--json", ok=False)
    assert json.loads(wrong_json.stdout)["error"]["code"] == "invalid_credentials"

    assert cli.json("logout") == {"logged_out": True}
    assert not cli.config_file.exists()
    after = cli("me", ok=False)
    assert after.returncode == 2 and "not logged in" in after.stderr


def test_the_command_submits_waits_and_prints_the_summary(cli: Cli, fake_ai: FakeOpenAI) -> None:
    cli("signup", _name(), "--password", PASSWORD)
    fake_ai.script(Reply("The summary of it all."))
    # max_words=20 reaches the server as the number 20: as a string it would be refused.
    done = cli("submit", "summarize", "A long text to summarize. " * 10, "--option", "max_words=20", "--wait")
    assert done.stdout.strip() == "The summary of it all."
    assert "completed" in done.stderr and "s)" in done.stderr

    fake_ai.script(Reply("Bonjour."))
    job = cli.json("submit", "translate", "-", "-o", "target_language=French", "--wait", stdin="Hello.")
    assert job["status"] == "completed" and job["output"] == {"text": "Bonjour."}
    assert job["input_data"] == "Hello."

    queued = cli.json("submit", "summarize", "Later.")
    assert queued["status"] == "queued" and queued["cost"] == 1
    got = cli.json("jobs", "get", queued["job_id"], "--wait")
    assert got["status"] == "completed"

    listed = cli("jobs", "list")
    assert queued["job_id"] in listed.stdout and job["job_id"] in listed.stdout and "STATUS" in listed.stdout
    page = cli.json("jobs", "list", "--limit", "2")
    assert len(page["jobs"]) == 2 and page["next_cursor"]
    everything = cli.json("jobs", "list", "--all", "--limit", "2")
    assert len(everything["jobs"]) == 3

    credits = cli.json("credits")
    assert credits["credits"] == 7 and len(credits["transactions"]) == 4
    assert "Balance: 7 credits" in cli("credits").stdout

    today = datetime.now(UTC).date().isoformat()
    usage = cli.json("usage", "--from", today, "--to", today)
    assert usage["totals"]["jobs"] == {"summarize": 2, "translate": 1}
    table = cli("usage", "--from", today, "--to", today).stdout.splitlines()
    assert table[1].split() == ["DATE", "TASK", "JOBS", "CREDITS"]
    assert [line.split() for line in table[2:4]] == [
        [today, "summarize", "2", "2"],
        [today, "translate", "1", "1"],
    ]
    assert table[-1].split() == ["total", "3", "3"]


def test_the_command_cancels_a_queued_job(cli: Cli, paused_queue: None) -> None:
    cli("signup", _name(), "--password", PASSWORD)
    job_id = cli.json("submit", "summarize", "Wait for me.")["job_id"]
    assert cli.json("jobs", "get", job_id)["status"] == "queued"
    canceled = cli("jobs", "cancel", job_id)
    assert "canceled" in canceled.stdout
    again = cli("jobs", "cancel", job_id, ok=False)
    assert again.returncode == 1 and "job_not_cancelable" in again.stderr
    assert cli.json("me")["credits"] == 10


def test_the_command_creates_lists_and_submits_to_a_team(cli: Cli, fake_ai: FakeOpenAI) -> None:
    cli("signup", _name(), "--password", PASSWORD)
    assert cli("teams", "list").stdout.strip() == "No teams."
    created = cli("teams", "create", "Research")
    assert "created" in created.stdout and "Research" in created.stdout
    team = cli.json("teams", "list")["teams"][0]
    assert (team["name"], team["role"], team["credits"]) == ("Research", "owner", 0)
    table = cli("teams", "list").stdout.splitlines()
    assert table[0].split() == ["TEAM_ID", "NAME", "ROLE", "MEMBERS", "CREDITS"]
    assert table[1].split() == [team["team_id"], "Research", "owner", "1", "0"]

    broke = cli("submit", "summarize", "On the team.", "--team", team["team_id"], ok=False)
    assert broke.returncode == 1 and "insufficient_credits" in broke.stderr
    _fund(team["team_id"], 2)
    fake_ai.script(Reply("Paid by the team."))
    done = cli("submit", "summarize", "On the team.", "--team", team["team_id"], "--wait")
    assert done.stdout.strip() == "Paid by the team."
    assert cli.json("teams", "list")["teams"][0]["credits"] == 1 and cli.json("me")["credits"] == 10


def test_the_command_exit_codes(cli: Cli) -> None:
    assert cli(ok=False).returncode == 2
    assert cli("submit", ok=False).returncode == 2
    assert cli("frobnicate", ok=False).returncode == 2
    not_logged_in = cli("me", ok=False)
    assert not_logged_in.returncode == 2 and "aijobs login" in not_logged_in.stderr

    cli("signup", _name(), "--password", PASSWORD)
    bad_option = cli("submit", "summarize", "text", "--option", "max_words", ok=False)
    assert bad_option.returncode == 2 and "KEY=VALUE" in bad_option.stderr
    unknown = cli("submit", "juggle", "balls", ok=False)
    assert unknown.returncode == 1 and "unknown_task_type" in unknown.stderr and unknown.stdout == ""
    unknown_json = cli("submit", "juggle", "balls", "--json", ok=False)
    assert unknown_json.returncode == 1
    assert json.loads(unknown_json.stdout) == {
        "error": {
            "status": 422,
            "code": "unknown_task_type",
            "message": json.loads(unknown_json.stdout)["error"]["message"],
        }
    }
    missing = cli("jobs", "get", "0" * 32, ok=False)
    assert missing.returncode == 1 and "job_not_found" in missing.stderr
    expired = cli("me", env={"AIJOBS_TOKEN": "not-a-token"}, ok=False)
    assert expired.returncode == 1 and "invalid_token" in expired.stderr


def test_the_base_url_comes_from_the_flag_then_the_environment(cli: Cli, stack: Stack) -> None:
    cli("signup", _name(), "--password", PASSWORD)
    nowhere = "http://127.0.0.1:9"
    # AIJOBS_BASE_URL beats the saved login's URL: the token saved for the stack is not sent there.
    elsewhere = cli("me", env={"AIJOBS_BASE_URL": nowhere}, ok=False)
    assert elsewhere.returncode == 2 and nowhere in elsewhere.stderr
    # --base-url beats AIJOBS_BASE_URL, before or after the command.
    assert cli.json("me", "--base-url", stack.base_url, env={"AIJOBS_BASE_URL": nowhere})["credits"] == 10
    assert cli.json("--base-url", stack.base_url, "me", env={"AIJOBS_BASE_URL": nowhere})["credits"] == 10
    health = cli.json("health", env={"AIJOBS_BASE_URL": stack.base_url})
    assert health["status"] == "ok"
    down = cli("health", "--base-url", nowhere, ok=False)
    assert down.returncode == 1 and "network_error" in down.stderr and "127.0.0.1:9" in down.stderr


def test_the_installed_script_runs(cli: Cli) -> None:
    script = Path(sys.executable).parent / "aijobs"
    result = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, env=cli.env, timeout=30
    )
    assert result.returncode == 0 and result.stdout.strip() == f"aijobs {aijobs.__version__}"
    health = subprocess.run(
        [str(script), "health", "--json"], capture_output=True, text=True, env=cli.env, timeout=30
    )
    assert health.returncode == 0 and json.loads(health.stdout)["status"] == "ok"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("max_words=20", ("max_words", 20)),
        ("temperature=0.5", ("temperature", 0.5)),
        ("target_language=French", ("target_language", "French")),
        ('code="42"', ("code", "42")),
        ("flag=true", ("flag", True)),
        ("empty=", ("empty", "")),
        ("eq=a=b", ("eq", "a=b")),
    ],
)
def test_options_are_json_when_they_parse(text: str, expected: tuple[str, Any]) -> None:
    assert parse_option(text) == expected
