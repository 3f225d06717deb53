"""Admin endpoints: only admins get in; grants are exact and idempotent, also when racing."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from conftest import Api, books, footprint, internal

from scripts.stack import Stack, free_port

STATUSES = ["queued", "in_progress", "completed", "failed", "canceled"]


@dataclass(frozen=True)
class Account:
    token: str
    id: str
    username: str


def _account(api: Api, username: str | None = None) -> Account:
    token, user = api.signup(username)
    return Account(token, user["id"], user["username"])


@pytest.fixture
def admin(api: Api) -> Account:
    """A fresh account made admin the way ``scripts/grant --make-admin`` does it."""
    from shared import auth

    account = _account(api)
    auth.set_role(account.username, "admin")
    return account


def _grant(api: Api, token: str | None, **body: Any) -> requests.Response:
    return api.call("POST", "/admin/credits", token, json=body)


def _order(username: str, amount: int = 25, **overrides: Any) -> dict[str, Any]:
    return {
        "username": username,
        "amount": amount,
        "reason": "support ticket 42",
        "grant_id": f"g-{uuid.uuid4().hex}",
        **overrides,
    }


def _code(response: requests.Response) -> str:
    return str(response.json()["error"]["code"])


def _ledger_entries(user_id: str, type_: str) -> list[dict[str, Any]]:
    return [e for e in books(user_id)["ledger"].values() if e["type"] == type_]


# ---- who gets in ---------------------------------------------------------------------------------


def _routes(username: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    return [
        ("POST", "/admin/credits", _order(username)),
        ("GET", "/admin/users", None),
        ("GET", "/admin/users?limit=1", None),
        ("GET", f"/admin/users/{username}", None),
        ("GET", "/admin/no-such-route", None),
    ]


def test_non_admins_get_403_and_nothing_changes(api: Api) -> None:
    user = _account(api)
    before = footprint(user.id)
    for method, path, body in _routes(user.username):
        response = api.call(method, path, user.token, json=body)
        assert response.status_code == 403, (path, response.text)
        assert _code(response) == "admin_only"
    assert footprint(user.id) == before


def test_no_token_gets_401_and_nothing_changes(api: Api) -> None:
    user = _account(api)
    before = footprint(user.id)
    for method, path, body in _routes(user.username):
        response = api.call(method, path, json=body)
        assert response.status_code == 401, (path, response.text)
        assert response.headers["WWW-Authenticate"] == "Bearer"
    assert footprint(user.id) == before


def test_revoking_the_role_takes_effect_at_once(api: Api, admin: Account) -> None:
    from shared import auth

    assert api.call("GET", "/admin/users", admin.token).status_code == 200
    auth.set_role(admin.username, "user")
    response = api.call("GET", "/admin/users", admin.token)  # the same, still valid token
    assert response.status_code == 403 and _code(response) == "admin_only"


def test_set_role_of_unknown_user_is_not_found(stack: Stack) -> None:
    from shared import auth
    from shared.errors import NotFound

    with pytest.raises(NotFound) as caught:
        auth.set_role(f"nobody-{uuid.uuid4().hex[:8]}", "admin")
    assert caught.value.code == "user_not_found"


def test_routes_and_methods(api: Api, admin: Account) -> None:
    assert api.call("GET", "/admin/credits", admin.token).status_code == 405
    assert api.call("POST", "/admin/users", admin.token, json={}).status_code == 405
    assert api.call("PUT", "/admin/users", admin.token, json={}).status_code == 405
    for path in ("/admin", "/admin/nope", "/admin/users/a/b", "/admin/credits/x"):
        response = api.call("GET", path, admin.token)
        assert response.status_code == 404 and _code(response) == "route_not_found", path


# ---- grants ----------------------------------------------------------------------------------------


def test_grant_adds_credits_with_a_ledger_entry(api: Api, admin: Account) -> None:
    user = _account(api)
    order = _order(user.username.upper(), 25)  # usernames are case-insensitive
    response = _grant(api, admin.token, **order)
    assert response.status_code == 200, response.text
    assert "Idempotent-Replayed" not in response.headers
    body = response.json()
    assert body == {
        "grant_id": order["grant_id"],
        "username": user.username,
        "team_id": None,
        "amount": 25,
        "type": "grant",
        "credits": 35,
        "created_at": body["created_at"],
    }
    state = books(user.id)  # also asserts that the ledger adds up to the balance
    assert state["balance"] == 35
    (entry,) = [e for e in state["ledger"].values() if e.get("admin_id")]
    assert entry["type"] == "grant" and entry["amount"] == 25 and entry["job_id"] is None
    assert entry["reason"] == "support ticket 42" and entry["admin_id"] == admin.id
    history = api.call("GET", "/credits", user.token).json()
    assert history["credits"] == 35
    assert history["transactions"][0]["reason"] == "support ticket 42"


def test_negative_amount_is_an_adjustment(api: Api, admin: Account) -> None:
    user = _account(api)
    response = _grant(api, admin.token, **_order(user.username, -4, reason="duplicate signup bonus"))
    assert response.status_code == 200, response.text
    assert response.json()["type"] == "adjustment" and response.json()["credits"] == 6
    (entry,) = _ledger_entries(user.id, "adjustment")
    assert entry["amount"] == -4 and entry["reason"] == "duplicate signup bonus"
    assert books(user.id)["balance"] == 6


def test_adjustment_may_empty_the_balance_but_not_go_below(api: Api, admin: Account) -> None:
    user = _account(api)
    before = footprint(user.id)
    refused = _grant(api, admin.token, **_order(user.username, -11, grant_id="to-minus-one"))
    assert refused.status_code == 409 and _code(refused) == "balance_too_low"
    assert "the balance is 10" in refused.json()["error"]["message"]
    assert footprint(user.id) == before
    # Nothing was recorded for the refused grant_id, so it can carry a valid request.
    response = _grant(api, admin.token, **_order(user.username, -10, grant_id="to-minus-one"))
    assert response.status_code == 200 and response.json()["credits"] == 0
    assert books(user.id)["balance"] == 0


def test_replay_returns_the_first_result_and_changes_nothing(api: Api, admin: Account) -> None:
    user = _account(api)
    order = _order(user.username, 5)
    first = _grant(api, admin.token, **order)
    assert _grant(api, admin.token, **_order(user.username, 3)).json()["credits"] == 18
    before = footprint(user.id)
    again = _grant(api, admin.token, **order)
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()  # credits 15: the balance right after the first time
    assert footprint(user.id) == before


def test_replay_by_another_admin_is_still_a_replay(api: Api, admin: Account) -> None:
    from shared import auth

    other = _account(api)
    auth.set_role(other.username, "admin")
    user = _account(api)
    order = _order(user.username, 2)
    first = _grant(api, admin.token, **order).json()
    again = _grant(api, other.token, **order)
    assert again.json() == first and again.headers["Idempotent-Replayed"] == "true"
    assert books(user.id)["balance"] == 12


@pytest.mark.parametrize(
    "change", [{"amount": 6}, {"amount": -5}, {"reason": "another reason"}, {"username": "other"}]
)
def test_grant_id_reused_for_another_grant_is_refused(
    api: Api, admin: Account, change: dict[str, Any]
) -> None:
    user, other = _account(api), _account(api)
    order = _order(user.username, 5)
    assert _grant(api, admin.token, **order).status_code == 200
    before = footprint(user.id), footprint(other.id)
    changed = {**order, **change}
    if "username" in change:
        changed["username"] = other.username
    response = _grant(api, admin.token, **changed)
    assert response.status_code == 409 and _code(response) == "grant_id_reused"
    assert (footprint(user.id), footprint(other.id)) == before


def test_concurrent_repeats_of_one_grant_apply_it_once(api: Api, admin: Account) -> None:
    user = _account(api)
    order = _order(user.username, 7)
    barrier = threading.Barrier(10)

    def go(_: int) -> requests.Response:
        barrier.wait()
        return _grant(api, admin.token, **order)

    with ThreadPoolExecutor(10) as pool:
        responses = list(pool.map(go, range(10)))
    assert [r.status_code for r in responses] == [200] * 10, [r.text for r in responses]
    assert len({r.text for r in responses}) == 1  # byte-identical bodies
    replayed = [r.headers.get("Idempotent-Replayed") for r in responses]
    assert replayed.count("true") == 9 and replayed.count(None) == 1  # exactly one did the work
    assert responses[0].json()["credits"] == 17
    state = books(user.id)
    assert state["balance"] == 17
    assert len(_ledger_entries(user.id, "grant")) == 2  # the signup grant and this one


def test_grant_to_unknown_user_is_404(api: Api, admin: Account) -> None:
    response = _grant(api, admin.token, **_order(f"nobody-{uuid.uuid4().hex[:8]}"))
    assert response.status_code == 404 and _code(response) == "user_not_found"


@pytest.mark.parametrize(
    "change",
    [
        {"amount": 0},
        {"amount": 1_000_001},
        {"amount": -1_000_001},
        {"amount": "5"},
        {"amount": 5.5},
        {"amount": 1e300},
        {"amount": True},
        {"amount": None},
        {"reason": ""},
        {"reason": "   "},
        {"reason": "r" * 201},
        {"grant_id": ""},
        {"grant_id": "has space"},
        {"grant_id": "g/1"},
        {"grant_id": "g" * 129},
        {"username": "ab"},
        {"username": "has space"},
        {"extra": "field"},
    ],
)
def test_invalid_grant_bodies_are_422(api: Api, admin: Account, change: dict[str, Any]) -> None:
    user = _account(api)
    before = footprint(user.id)
    response = _grant(api, admin.token, **{**_order(user.username), **change})
    assert response.status_code == 422, response.text
    assert _code(response) == "invalid_request"
    assert footprint(user.id) == before


@pytest.mark.parametrize("missing", ["username", "amount", "reason", "grant_id"])
def test_grant_body_fields_are_required(api: Api, admin: Account, missing: str) -> None:
    body = _order(admin.username)
    del body[missing]
    response = _grant(api, admin.token, **body)
    assert response.status_code == 422 and _code(response) == "invalid_request"


def test_largest_grant_and_awkward_grant_ids(api: Api, admin: Account) -> None:
    user = _account(api)
    # "signup" would meet the signup grant's ledger id and "__x__" is no valid document id
    # if grant ids were used as document ids as they are; both must just work.
    for grant_id in ("signup", "__x__", "g" * 128):
        response = _grant(api, admin.token, **_order(user.username, 1_000_000, grant_id=grant_id))
        assert response.status_code == 200, response.text
    assert books(user.id)["balance"] == 3_000_010
    # The history pages through the grants (their ledger ids are valid cursors).
    page = api.call("GET", "/credits?limit=1", user.token).json()
    assert api.call("GET", f"/credits?limit=1&cursor={page['next_cursor']}", user.token).status_code == 200


# ---- users -----------------------------------------------------------------------------------------


def _all_users(api: Api, token: str, limit: int) -> list[dict[str, Any]]:
    users: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        query = f"?limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        response = api.call("GET", "/admin/users" + query, token)
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["users"]) <= limit
        users += body["users"]
        cursor = body["next_cursor"]
        if cursor is None:
            return users
        assert len(body["users"]) == limit


def test_users_list_pages_in_username_order(api: Api, admin: Account) -> None:
    prefix = f"pg{uuid.uuid4().hex[:8]}"
    mine = [_account(api, f"{prefix}.{i}") for i in range(3)]  # '.' is fine in a username
    everyone = _all_users(api, admin.token, 100)
    names = [u["username"] for u in everyone]
    assert names == sorted(names) and len(set(names)) == len(names)
    assert {a.username for a in mine} <= set(names)
    assert _all_users(api, admin.token, 2) == everyone  # small pages: same users, same order
    first = next(u for u in everyone if u["id"] == mine[0].id)
    assert set(first) == {"id", "username", "role", "credits", "created_at"}  # no password hash
    assert first["role"] == "user" and first["credits"] == 10
    assert next(u for u in everyone if u["id"] == admin.id)["role"] == "admin"


@pytest.mark.parametrize(
    ("query", "code"),
    [("limit=0", "invalid_limit"), ("limit=101", "invalid_limit"), ("cursor=nope", "invalid_cursor")],
)
def test_users_list_refuses_bad_paging(api: Api, admin: Account, query: str, code: str) -> None:
    response = api.call("GET", f"/admin/users?{query}", admin.token)
    assert response.status_code == 422 and _code(response) == code


def test_user_detail_has_balance_role_and_job_counts(api: Api, admin: Account) -> None:
    user = _account(api)
    jobs = [api.submit(user.token, input_data=f"text {i}").json()["job_id"] for i in range(2)]
    assert [api.wait(user.token, job)["status"] for job in jobs] == ["completed"] * 2
    assert _grant(api, admin.token, **_order(user.username, 4)).status_code == 200
    response = api.call("GET", f"/admin/users/{user.username.upper()}", admin.token)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == user.id and body["username"] == user.username and body["role"] == "user"
    assert body["credits"] == 12 == books(user.id)["balance"]
    assert body["jobs"] == {status: (2 if status == "completed" else 0) for status in STATUSES}
    assert api.call("GET", f"/admin/users/{admin.username}", admin.token).json()["role"] == "admin"


@pytest.mark.parametrize("name", ["nobody-here-at-all", "__x__", "ab", "x" * 33, "bad%20name"])
def test_user_detail_of_unknown_user_is_404(api: Api, admin: Account, name: str) -> None:
    response = api.call("GET", f"/admin/users/{name}", admin.token)
    assert response.status_code == 404 and _code(response) == "user_not_found"


def test_reserved_document_ids_are_no_usernames(api: Api) -> None:
    # usernames/{username} is a document: Firestore refuses ids like __x__ (it was a 500).
    body = {"username": "__x__", "password": "pass-word-123"}
    response = api.call("POST", "/signup", json=body)
    assert response.status_code == 422 and _code(response) == "invalid_request"


# ---- scripts/grant ---------------------------------------------------------------------------------


def test_grant_script_makes_admins_and_grants(
    api: Api, stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    from scripts import grant as cli

    port = ["--firestore-port", str(stack.firestore_port)]
    user = _account(api)
    assert cli.main(["--make-admin", user.username.upper(), *port]) == 0
    assert api.call("GET", "/admin/users", user.token).status_code == 200
    order = [user.username, "7", "--reason", "from the cli", "--grant-id", f"cli-{uuid.uuid4().hex}", *port]
    assert cli.main(order) == 0
    state = books(user.id)
    assert state["balance"] == 17
    (entry,) = [e for e in state["ledger"].values() if e.get("admin_id") == "cli"]
    assert entry["reason"] == "from the cli"
    assert cli.main(order) == 0 and "nothing changed" in capsys.readouterr().out
    assert footprint(user.id)["balance"] == 17
    assert cli.main(["nobody-at-all", "1", "--reason", "x", *port]) == 1
    assert cli.main([user.username, "0", "--reason", "x", *port]) == 1
    assert "user_not_found" in capsys.readouterr().err


def test_grant_script_says_when_no_emulator_runs(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    from scripts import grant as cli

    assert cli.main(["--make-admin", "someone", "--firestore-port", str(free_port())]) == 1
    assert "no Firestore emulator" in capsys.readouterr().err


def test_admin_reads_stored_reports(api: Api, admin: Account, stack: Stack) -> None:
    token = admin.token
    for week in ("2019-W05", "2019-W06", "2019-W07"):
        response = internal(stack, "weekly_report", {"week": week})
        assert response.status_code == 200
    one = api.call("GET", "/admin/reports/2019-W06", token)
    assert one.status_code == 200 and one.json()["week"] == "2019-W06"
    missing = api.call("GET", "/admin/reports/2019-W08", token)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "report_not_found"
    weeks: list[str] = []
    cursor = ""
    for _ in range(50):
        page = api.call("GET", f"/admin/reports?limit=2{cursor}", token).json()
        weeks += [r["week"] for r in page["reports"]]
        if page["next_cursor"] is None:
            break
        cursor = f"&cursor={page['next_cursor']}"
    assert weeks == sorted(weeks, reverse=True) and {"2019-W05", "2019-W06", "2019-W07"} <= set(weeks)


def test_reports_are_admin_only(api: Api) -> None:
    token, _ = api.signup()
    for path in ("/admin/reports", "/admin/reports/2019-W06"):
        response = api.call("GET", path, token)
        assert response.status_code == 403 and response.json()["error"]["code"] == "admin_only"
