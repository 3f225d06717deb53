"""Odd input everywhere: every one is a short 4xx JSON error that changes nothing.

Each case is a request a client (or an attacker) can send: characters that look like
digits, Firestore's reserved ids, JSON that Python reads but JSON does not allow,
unpaired surrogates, deep nesting, huge values that used to be echoed back, and
dates at the edges of the calendar.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from conftest import PASSWORD, Api, footprint, internal

from scripts.stack import Stack

HUGE = "x" * 20_000
GOOD_JOB = {"task_type": "summarize", "input_data": "Some text to work on."}


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    status: int
    code: str
    body: str | None = None
    """Sent as is, with Content-Type: application/json (JSON escapes such as \\ud800 stay raw)."""
    headers: dict[str, str] = field(default_factory=dict)
    auth: str = "user"
    """Whose token goes with it: ``user``, ``admin``, ``none`` (or ``internal`` for the scheduler)."""


def raw(data: dict[str, Any], **replace: str) -> str:
    """``data`` as JSON text, then each ``"@name@"`` string replaced by raw JSON text."""
    text = json.dumps(data)
    for name, value in replace.items():
        text = text.replace(f'"@{name}@"', value)
    return text


def job(**fields: Any) -> str:
    return json.dumps({**GOOD_JOB, **fields})


def creds(password: str = json.dumps(PASSWORD), username: str = '"odd_input_user"') -> str:
    return f'{{"username": {username}, "password": {password}}}'


def grant(**fields: str) -> str:
    """A grant to the test's user, with ``fields`` as raw JSON text."""
    base = {"username": "@target@", "amount": "@amount@", "reason": "@reason@", "grant_id": "g-odd-input"}
    return raw(base, **{"amount": "5", "reason": '"odd input"', **fields})


DEEP = "[" * 5_000 + "]" * 5_000
NESTED_33 = "[" * 33 + "]" * 33
CASES: dict[str, Case] = {
    # Query parameters: digits that are not ASCII, huge numbers, Firestore's reserved ids.
    **{
        f"{path} limit={limit[:8]}": Case("GET", f"{path}?limit={limit}", 422, "invalid_limit", auth=who)
        for path, who in [
            ("/credits", "user"),
            ("/jobs", "user"),
            ("/admin/users", "admin"),
            ("/admin/reports", "admin"),
        ]
        for limit in ("²", "٣", "9" * 3_000, "+5", " 5", "1.0", "-1")
    },
    **{
        f"{path} cursor=__x__": Case("GET", f"{path}?cursor=__x__", 422, "invalid_cursor", auth=who)
        for path, who in [
            ("/credits", "user"),
            ("/jobs", "user"),
            ("/admin/users", "admin"),
            ("/admin/reports", "admin"),
        ]
    },
    **{
        f"usage {name}": Case("GET", f"/usage?{query}", 422, "invalid_request")
        for name, query in {
            "epoch zero": "from=0&to=2026-01-01",
            "offset datetime": "from=2026-01-01T00:00:00%2B05:00&to=2026-01-02",
            "compact date": "from=20260101&to=20260102",
            "arabic-indic digits": "from=٢٠٢٦-01-01&to=2026-01-02",
            "year 9999": "from=9999-12-31&to=9999-12-31",
            "year 1": "from=0001-01-01&to=0001-01-01",
            "no such day": "from=2026-02-30&to=2026-03-01",
            "huge": f"from={HUGE[:4000]}&to=2026-01-01",
        }.items()
    },
    # Path segments.
    "job id NUL": Case("GET", "/jobs/%00", 404, "job_not_found"),
    "job id huge": Case("GET", "/jobs/" + "a" * 4_000, 404, "job_not_found"),
    "cancel id reserved": Case("POST", "/jobs/__x__/cancel", 404, "job_not_found"),
    "admin user reserved": Case("GET", "/admin/users/__x__", 404, "user_not_found", auth="admin"),
    "admin user huge": Case("GET", "/admin/users/" + "a" * 4_000, 404, "user_not_found", auth="admin"),
    "admin report arabic digits": Case(
        "GET", "/admin/reports/٢٠٢٦-W01", 404, "report_not_found", auth="admin"
    ),
    "admin report reserved": Case("GET", "/admin/reports/__x__", 404, "report_not_found", auth="admin"),
    "admin report huge": Case("GET", "/admin/reports/" + "W" * 4_000, 404, "report_not_found", auth="admin"),
    # Headers.
    "authorization latin-1 bytes": Case(
        "GET", "/me", 401, "invalid_token", headers={"Authorization": "Bearer \xff\xfe.\xe9.x"}, auth="none"
    ),
    "authorization huge": Case(
        "GET", "/me", 401, "invalid_token", headers={"Authorization": "Bearer " + "a" * 6_000}, auth="none"
    ),
    "content-type form": Case(
        "POST", "/submit_job", 415, "unsupported_media_type", job(), {"Content-Type": "text/plain"}
    ),
    # JSON that Python's json module reads but JSON (RFC 8259) does not allow.
    "NaN option": Case(
        "POST",
        "/submit_job",
        400,
        "malformed_json",
        raw({**GOOD_JOB, "task_type": "generate_text", "options": {"temperature": "@n@"}}, n="NaN"),
    ),
    "Infinity option": Case(
        "POST",
        "/submit_job",
        400,
        "malformed_json",
        raw({**GOOD_JOB, "options": {"max_words": "@n@"}}, n="Infinity"),
    ),
    "-Infinity amount": Case(
        "POST", "/admin/credits", 400, "malformed_json", grant(amount="-Infinity"), auth="admin"
    ),
    "1e999 option": Case(
        "POST",
        "/submit_job",
        400,
        "malformed_json",
        raw(
            {
                **GOOD_JOB,
                "task_type": "chat",
                "input_data": [{"role": "user", "content": "hi"}],
                "options": {"temperature": "@n@"},
            },
            n="1e999",
        ),
    ),
    "NaN week": Case("POST", "/weekly_report", 400, "malformed_json", '{"week": NaN}', auth="internal"),
    "NaN login": Case("POST", "/login", 400, "malformed_json", creds(password="NaN"), auth="none"),
    "repeated key": Case(
        "POST",
        "/submit_job",
        400,
        "malformed_json",
        '{"task_type": "summarize", "task_type": "chat", "input_data": "x"}',
    ),
    "huge integer": Case(
        "POST",
        "/submit_job",
        400,
        "malformed_json",
        raw({**GOOD_JOB, "options": {"max_words": "@n@"}}, n="9" * 5_000),
    ),
    # Unpaired surrogates: no UTF-8 form, so argon2, Firestore and the AI would fail later.
    "surrogate password signup": Case(
        "POST", "/signup", 400, "invalid_unicode", creds(password='"pass-word-\\ud800"'), auth="none"
    ),
    "surrogate password login": Case(
        "POST", "/login", 400, "invalid_unicode", creds(password='"pass-word-\\udfff"'), auth="none"
    ),
    "surrogate input": Case(
        "POST",
        "/submit_job",
        400,
        "invalid_unicode",
        raw({**GOOD_JOB, "input_data": "@s@"}, s='"text \\ud800 more"'),
    ),
    "surrogate chat": Case(
        "POST",
        "/submit_job",
        400,
        "invalid_unicode",
        raw({"task_type": "chat", "input_data": [{"role": "user", "content": "@s@"}]}, s='"\\ud83d"'),
    ),
    "surrogate option key": Case(
        "POST", "/submit_job", 400, "invalid_unicode", raw({**GOOD_JOB, "options": {"@k@": 1}}, k='"\\udc00"')
    ),
    "utf-8 encoded surrogate": Case(
        "POST",
        "/submit_job",
        400,
        "invalid_unicode",
        '{"task_type": "summarize", "input_data": "\xed\xa0\x80"}',
    ),
    "surrogate grant reason": Case(
        "POST", "/admin/credits", 400, "invalid_unicode", grant(reason='"support \\ud800"'), auth="admin"
    ),
    "surrogate week": Case(
        "POST", "/weekly_report", 400, "invalid_unicode", '{"week": "2021-W10\\ud800"}', auth="internal"
    ),
    # Nesting: deep enough to break Python's recursion, or just deeper than any request needs.
    "deep signup": Case("POST", "/signup", 400, "malformed_json", DEEP, auth="none"),
    "deep submit": Case("POST", "/submit_job", 400, "malformed_json", DEEP),
    "deep option": Case(
        "POST",
        "/submit_job",
        400,
        "malformed_json",
        raw({**GOOD_JOB, "options": {"max_words": "@d@"}}, d=NESTED_33),
    ),
    "deep grant": Case(
        "POST", "/admin/credits", 400, "malformed_json", grant(reason=NESTED_33), auth="admin"
    ),
    "deep week": Case(
        "POST", "/weekly_report", 400, "malformed_json", f'{{"week": {NESTED_33}}}', auth="internal"
    ),
    # Huge values must not come back in the error.
    "huge task_type": Case("POST", "/submit_job", 422, "unknown_task_type", job(task_type=HUGE)),
    "huge option name": Case("POST", "/submit_job", 422, "invalid_option", job(options={HUGE: 1})),
    "huge unknown field": Case("POST", "/submit_job", 422, "invalid_request", job(**{HUGE: 1})),
    "many bad messages": Case(
        "POST",
        "/submit_job",
        422,
        "invalid_request",
        job(task_type="chat", input_data=[{"role": "robot", "content": ""}] * 1_000),
    ),
    "huge week": Case(
        "POST", "/weekly_report", 422, "invalid_request", json.dumps({"week": HUGE}), auth="internal"
    ),
    # Weeks: non-ASCII digits, and the calendar's edges (the baselines shift by weeks).
    "week arabic digits": Case(
        "POST", "/weekly_report", 422, "invalid_request", '{"week": "٢٠٢٦-W٤٧"}', auth="internal"
    ),
    "week 9999-W52": Case(
        "POST", "/weekly_report", 422, "invalid_request", '{"week": "9999-W52"}', auth="internal"
    ),
    "week 0001-W01": Case(
        "POST", "/weekly_report", 422, "invalid_request", '{"week": "0001-W01"}', auth="internal"
    ),
}


@pytest.fixture(scope="module")
def people(stack: Stack) -> dict[str, Any]:
    """A user (whose books must not move) and an admin."""
    from shared import auth

    api = Api(stack.base_url)
    token, user = api.signup()
    admin_token, admin = api.signup()
    auth.set_role(admin["username"], "admin")
    return {
        "user": token,
        "admin": admin_token,
        "user_id": user["id"],
        "admin_id": admin["id"],
        "username": user["username"],
    }


def world(people: dict[str, Any]) -> Any:
    from shared.db import client

    db = client()
    return (
        footprint(people["user_id"]),
        footprint(people["admin_id"]),
        sorted(d.id for d in db.collection("usernames").stream()),
        sorted(d.id for d in db.collection("reports").stream()),
        sorted(d.id for d in db.collection("grants").stream()),
    )


def send(stack: Stack, people: dict[str, Any], case: Case) -> requests.Response:
    headers = dict(case.headers)
    if case.auth in ("user", "admin"):
        headers.setdefault("Authorization", f"Bearer {people[case.auth]}")
    if case.auth == "internal":
        headers["X-Aijobs-Worker-Secret"] = stack.worker_secret
    body = None
    if case.body is not None:
        headers.setdefault("Content-Type", "application/json")
        text = case.body.replace('"@target@"', json.dumps(people["username"]))
        # latin-1 keeps "\xed\xa0\x80" as those three bytes: UTF-8's form of a lone surrogate.
        body = text.encode("latin-1") if "\xed" in text else text.encode()
    return requests.request(case.method, stack.base_url + case.path, data=body, headers=headers, timeout=60)


@pytest.mark.parametrize("name", list(CASES))
def test_odd_input_is_a_short_4xx_that_changes_nothing(
    stack: Stack, people: dict[str, Any], name: str
) -> None:
    case = CASES[name]
    before = world(people)
    response = send(stack, people, case)
    assert response.headers["Content-Type"].startswith("application/json"), response.text[:300]
    error = response.json()["error"]
    assert (response.status_code, error["code"]) == (case.status, case.code), response.text[:300]
    assert 0 < len(error["message"]) < 300, error["message"][:300]
    assert world(people) == before


def test_a_good_request_still_works(stack: Stack, people: dict[str, Any]) -> None:
    """The checks above refuse only what is odd: ordinary paging, usage and bodies pass."""
    api = Api(stack.base_url)
    token, _ = api.signup()
    assert api.call("GET", "/credits?limit=100", token).status_code == 200
    assert api.call("GET", "/usage?from=2026-01-01&to=2026-01-31", token).status_code == 200
    # Escaped as a surrogate pair, as json.dumps does: that is one character, and fine.
    message = {"role": "user", "content": "é ü 漢字 \U0001f600"}
    response = api.submit(token, "chat", [message], {"temperature": 0.5})
    assert response.status_code == 202, response.text


def test_trace_ids_are_ascii_hex_only() -> None:
    from shared import logs

    for header, kept in [
        ("0123456789abcdef0123456789ABCDEF/1;o=1", True),
        ("٠١٢٣٤٥٦٧٨٩abcdef0123456789abcdef/1", False),
        ("zzzz456789abcdef0123456789abcdef", False),
        ("abc", False),
        ("", False),
    ]:
        logs.start_request("f", header, "p")
        assert ("logging.googleapis.com/trace" in (logs._context.get() or {})) is kept, header


def test_transient_google_errors_are_503_with_retry_after(stack: Stack) -> None:
    """A Firestore or queue failure that escaped is temporary: 503 with Retry-After, not 500."""
    import flask
    import grpc
    from google.api_core import exceptions

    from shared.errors import OutcomeUnknown, Unavailable
    from shared.web import endpoint

    class RpcFailure(grpc.RpcError):  # type: ignore[misc]  # grpc ships no types
        def __init__(self, code: grpc.StatusCode) -> None:
            self._code = code

        def code(self) -> grpc.StatusCode:
            return self._code

    transient: list[Exception] = [
        exceptions.ServiceUnavailable("down"),
        exceptions.DeadlineExceeded("slow"),
        exceptions.InternalServerError("oops"),
        exceptions.Aborted("contended"),
        exceptions.ResourceExhausted("quota"),
        exceptions.RetryError("gave up", None),
        RpcFailure(grpc.StatusCode.UNAVAILABLE),
        Unavailable(),
        OutcomeUnknown(),
    ]
    app = flask.Flask(__name__)
    bugs: list[Exception] = [exceptions.InvalidArgument("bug"), RpcFailure(grpc.StatusCode.INVALID_ARGUMENT)]
    for exc in transient + bugs:

        def fail(request: flask.Request, exc: Exception = exc) -> flask.Response:
            raise exc

        with app.test_request_context("/", method="GET"):
            response = endpoint("GET")(fail)(flask.request)
        body = json.loads(response.get_data())
        if exc in transient:
            assert response.status_code == 503 and response.headers["Retry-After"] == "5", repr(exc)
            assert body["error"]["code"] in {"unavailable", "outcome_unknown"}
        else:
            assert response.status_code == 500 and body["error"]["code"] == "internal", repr(exc)


def test_health_503_carries_retry_after(functions_server: Any) -> None:
    base = functions_server(AI_BASE_URL="http://127.0.0.1:9/v1")
    response = requests.get(f"{base}/health", timeout=60)
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"


def test_chunked_report_body_is_read(stack: Stack) -> None:
    """A body without Content-Length (chunked) is the body, not "no body, default week"."""
    chunks = iter([b'{"week": ', b'"2021-W10"}'])
    response = requests.post(
        f"{stack.base_url}/weekly_report",
        data=chunks,
        headers={"Content-Type": "application/json", "X-Aijobs-Worker-Secret": stack.worker_secret},
        timeout=60,
    )
    assert response.status_code == 200 and response.json()["week"] == "2021-W10", response.text[:300]
    assert internal(stack, "weekly_report").status_code == 200
