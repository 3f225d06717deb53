"""Teams: the shared pool is exact under concurrency, roles and limits hold, usage adds up."""

from __future__ import annotations

import csv
import io
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from conftest import Api, at_once, books, drain
from fake_openai import FakeOpenAI, Status

from scripts.stack import Stack

JSON = {"Content-Type": "application/json"}


def team_books(team_id: str) -> dict[str, Any]:
    """The team's balance and ledger, checked against each other."""
    from shared.db import client

    team = client().collection("teams").document(team_id)
    shards = [d.get("credits") for d in team.collection("wallet").stream()]
    assert all(c >= 0 for c in shards), f"a team wallet shard is negative: {shards}"
    ledger = {d.id: d.to_dict() for d in team.collection("ledger").stream()}
    assert sum(shards) == sum(e["amount"] for e in ledger.values()), "team ledger and balance disagree"
    return {"balance": sum(shards), "ledger": ledger, "shards": len(shards)}


def new_team(api: Api, token: str, name: str = "Research") -> str:
    response = api.call("POST", "/teams", token, json={"name": name})
    assert response.status_code == 201, response.text
    return str(response.json()["team_id"])


def add(api: Api, token: str, team_id: str, username: str, role: str = "member", **limits: int) -> None:
    body = {"username": username, "role": role, **limits}
    response = api.call("POST", f"/teams/{team_id}/members", token, json=body)
    assert response.status_code == 201, response.text


def fund(team_id: str, amount: int) -> None:
    """An admin's grant to the team (the path finance uses for a large pool)."""
    from shared import credits

    order = credits.GrantCreate(team_id=team_id, amount=amount, reason="test", grant_id=uuid.uuid4().hex)
    credits.grant(order, "test-admin")


def members(api: Api, n: int) -> list[tuple[str, dict[str, Any]]]:
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda _: api.signup(), range(n)))


def submit(api: Api, token: str, team_id: str, **body: Any) -> requests.Response:
    job = {"task_type": "summarize", "input_data": "Some text.", "team_id": team_id, **body}
    return api.call("POST", "/submit_job", token, json=job)


def code(response: requests.Response) -> str:
    return str(response.json()["error"]["code"])


# -- teams and members --------------------------------------------------------------------------------


def test_create_list_get_rename(api: Api) -> None:
    token, _ = api.signup()
    team_id = new_team(api, token, "  Research  ")
    team = api.call("GET", f"/teams/{team_id}", token).json()
    assert team | {"created_at": None} == {
        "team_id": team_id,
        "name": "Research",
        "role": "owner",
        "credits": 0,
        "members": 1,
        "created_at": None,
    }
    other = new_team(api, token, "Alpha")
    assert [t["name"] for t in api.call("GET", "/teams", token).json()["teams"]] == ["Alpha", "Research"]
    renamed = api.call("PATCH", f"/teams/{other}", token, json={"name": "Beta"})
    assert renamed.status_code == 200 and renamed.json()["name"] == "Beta"


def test_strangers_and_bad_ids_are_not_found(api: Api) -> None:
    token, _ = api.signup()
    stranger, _ = api.signup()
    team_id = new_team(api, token)
    for path in (f"/teams/{team_id}", f"/teams/{team_id}/members", f"/teams/{team_id}/credits"):
        response = api.call("GET", path, stranger)
        assert response.status_code == 404 and code(response) == "team_not_found", path
    for bad in ("__x__", "%C2%B2", "0" * 32, "a" * 300):
        assert api.call("GET", f"/teams/{bad}", token).status_code == 404
    assert submit(api, stranger, team_id).status_code == 404
    assert books(api.call("GET", "/me", stranger).json()["id"])["balance"] == 10


def test_bad_bodies_are_refused_and_change_nothing(api: Api) -> None:
    token, _ = api.signup()
    team_id = new_team(api, token)
    for body in (
        {"name": ""},
        {"name": "a\nb"},
        {"name": "x" * 101},
        {"name": "ok", "extra": 1},
        {"name": 5},
    ):
        assert api.call("POST", "/teams", token, json=body).status_code == 422, body
    huge = api.call("POST", "/teams", token, data=b'{"name": "' + b"x" * 65536 + b'"}', headers=JSON)
    assert huge.status_code in (413, 422)
    unknown = api.call("POST", f"/teams/{team_id}/members", token, json={"username": "nobody-12345"})
    assert unknown.status_code == 422 and code(unknown) == "unknown_user"
    bad_members = (
        {"username": "x", "role": "king"},
        {"username": "abc", "daily_limit": -1},
        {"username": "abc", "daily_limit": 1.5},
    )
    for body in bad_members:
        response = api.call("POST", f"/teams/{team_id}/members", token, json=body)
        assert response.status_code == 422, (body, response.text)
    for body in ({"amount": 0, "transfer_id": "t"}, {"amount": 1, "transfer_id": "²"}, {"amount": "1"}):
        assert api.call("POST", f"/teams/{team_id}/credits", token, json=body).status_code == 422
    nan = api.call(
        "POST", f"/teams/{team_id}/credits", token, data=b'{"amount": NaN, "transfer_id": "t"}', headers=JSON
    )
    assert nan.status_code in (400, 422)
    assert [t["name"] for t in api.call("GET", "/teams", token).json()["teams"]] == ["Research"]
    assert team_books(team_id)["ledger"] == {}


def test_roles_decide_who_manages(api: Api) -> None:
    owner, _ = api.signup()
    (admin, a), (member, m), (late, x) = members(api, 3)
    team_id = new_team(api, owner)
    add(api, owner, team_id, a["username"], "admin")
    add(api, owner, team_id, m["username"])
    # A member manages no one; an admin manages members but makes no owner.
    refused = api.call("POST", f"/teams/{team_id}/members", member, json={"username": x["username"]})
    assert refused.status_code == 403 and code(refused) == "team_role_required"
    as_owner = {"username": x["username"], "role": "owner"}
    assert api.call("POST", f"/teams/{team_id}/members", admin, json=as_owner).status_code == 403
    add(api, admin, team_id, x["username"])
    again = api.call("POST", f"/teams/{team_id}/members", admin, json={"username": x["username"]})
    assert again.status_code == 409 and code(again) == "already_member"
    # Only owners move money.
    moved = api.call("POST", f"/teams/{team_id}/credits", admin, json={"amount": 1, "transfer_id": "t1"})
    assert moved.status_code == 403
    # The last owner may neither leave nor be demoted; a member may leave.
    owner_name = api.call("GET", "/me", owner).json()["username"]
    leave = api.call("DELETE", f"/teams/{team_id}/members/{owner_name}", owner)
    assert leave.status_code == 409 and code(leave) == "last_owner"
    demote = api.call("PATCH", f"/teams/{team_id}/members/{owner_name}", owner, json={"role": "admin"})
    assert demote.status_code == 409
    assert api.call("DELETE", f"/teams/{team_id}/members/{x['username']}", late).status_code == 204
    assert api.call("GET", f"/teams/{team_id}", late).status_code == 404
    roster = api.call("GET", f"/teams/{team_id}/members", member).json()["members"]
    assert sorted((r["username"], r["role"]) for r in roster) == sorted(
        [(owner_name, "owner"), (a["username"], "admin"), (m["username"], "member")]
    )
    assert api.call("GET", f"/teams/{team_id}", owner).json()["members"] == 3


def test_two_owners_demoting_each_other_at_once_keep_one(api: Api) -> None:
    (first, f), (second, s) = members(api, 2)
    team_id = new_team(api, first)
    add(api, first, team_id, s["username"], "owner")
    names = [s["username"], f["username"]]
    tokens = [first, second]
    results = at_once(
        2,
        lambda i: api.call(
            "PATCH", f"/teams/{team_id}/members/{names[i]}", tokens[i], json={"role": "admin"}
        ),
    )
    # The loser finds itself an admin now (403), or the other the last owner (409).
    assert sorted(r.status_code for r in results) in ([200, 403], [200, 409])
    roster = api.call("GET", f"/teams/{team_id}/members", first).json()["members"]
    assert [r["role"] for r in roster].count("owner") == 1


# -- money ------------------------------------------------------------------------------------------


def test_transfer_moves_both_sides_once(api: Api) -> None:
    token, user = api.signup()
    team_id = new_team(api, token)
    body = {"amount": 7, "transfer_id": "topup-1"}
    first = api.call("POST", f"/teams/{team_id}/credits", token, json=body)
    assert first.status_code == 200, first.text
    assert first.json()["team_credits"] == 7
    again = api.call("POST", f"/teams/{team_id}/credits", token, json=body)
    assert again.status_code == 200 and again.headers.get("Idempotent-Replayed") == "true"
    assert again.json()["created_at"] == first.json()["created_at"]
    reused = api.call(
        "POST", f"/teams/{team_id}/credits", token, json={"amount": 3, "transfer_id": "topup-1"}
    )
    assert reused.status_code == 409 and code(reused) == "transfer_id_reused"
    assert books(user["id"])["balance"] == 3 and team_books(team_id)["balance"] == 7
    too_much = api.call("POST", f"/teams/{team_id}/credits", token, json={"amount": 4, "transfer_id": "t2"})
    assert too_much.status_code == 402
    back = api.call("POST", f"/teams/{team_id}/credits", token, json={"amount": -5, "transfer_id": "back"})
    assert back.status_code == 200 and back.json()["team_credits"] == 2
    assert books(user["id"])["balance"] == 8 and team_books(team_id)["balance"] == 2
    over = api.call("POST", f"/teams/{team_id}/credits", token, json={"amount": -3, "transfer_id": "b2"})
    assert over.status_code == 402
    # Each transfer is a pair: the same id in both ledgers, opposite amounts.
    mine = {k: v["amount"] for k, v in books(user["id"])["ledger"].items() if k.startswith("transfer-")}
    theirs = {k: v["amount"] for k, v in team_books(team_id)["ledger"].items()}
    assert mine.keys() == theirs.keys() and all(mine[k] == -theirs[k] for k in mine)
    page = api.call("GET", f"/teams/{team_id}/credits?limit=1", token).json()
    assert page["credits"] == 2 and len(page["transactions"]) == 1 and page["next_cursor"]
    rest = api.call("GET", f"/teams/{team_id}/credits?cursor={page['next_cursor']}", token).json()
    assert sorted(e["amount"] for e in page["transactions"] + rest["transactions"]) == [-5, 7]


def test_the_same_transfer_thirty_times_at_once_moves_once(api: Api) -> None:
    token, user = api.signup()
    team_id = new_team(api, token)
    body = {"amount": 4, "transfer_id": "burst"}
    results = at_once(30, lambda _: api.call("POST", f"/teams/{team_id}/credits", token, json=body))
    assert {r.status_code for r in results} == {200}
    assert sum(r.headers.get("Idempotent-Replayed") != "true" for r in results) == 1
    assert books(user["id"])["balance"] == 6 and team_books(team_id)["balance"] == 4


def test_admin_grant_to_a_team(api: Api) -> None:
    from shared import auth, credits
    from shared.errors import NotFound

    token, _ = api.signup()
    admin_token, admin = api.signup()
    auth.set_role(admin["username"], "admin")
    team_id = new_team(api, token)
    order = {"team_id": team_id, "amount": 50, "reason": "pilot", "grant_id": f"team-{team_id}"}
    granted = api.call("POST", "/admin/credits", admin_token, json=order)
    assert granted.status_code == 200, granted.text
    assert granted.json() | {"created_at": None} == {
        "grant_id": order["grant_id"],
        "username": None,
        "team_id": team_id,
        "amount": 50,
        "type": "grant",
        "credits": 50,
        "created_at": None,
    }
    again = api.call("POST", "/admin/credits", admin_token, json=order)
    assert again.headers.get("Idempotent-Replayed") == "true" and again.json()["credits"] == 50
    assert api.call("GET", f"/teams/{team_id}", token).json()["credits"] == 50
    both = {**order, "username": admin["username"], "grant_id": "both"}
    assert api.call("POST", "/admin/credits", admin_token, json=both).status_code == 422
    removal = {**order, "amount": -60, "grant_id": "too-much"}
    assert api.call("POST", "/admin/credits", admin_token, json=removal).status_code == 409
    with pytest.raises(NotFound):
        credits.grant(credits.GrantCreate(team_id="f" * 32, amount=1, reason="r", grant_id="g-x"), "a")
    with pytest.raises(ValueError):
        credits.GrantCreate(team_id=team_id, username="abc", amount=1, reason="r", grant_id="g")


# -- jobs charged to a team ---------------------------------------------------------------------------


def test_a_team_job_is_charged_and_refunded_to_the_team(api: Api, fake_ai: FakeOpenAI) -> None:
    owner, o = api.signup()
    member, m = api.signup()
    team_id = new_team(api, owner)
    add(api, owner, team_id, m["username"])
    fund(team_id, 5)
    ok = submit(api, member, team_id)
    assert ok.status_code == 202 and ok.json()["credits"] == 4
    assert api.wait(member, ok.json()["job_id"])["status"] == "completed"
    fake_ai.script(Status(400))
    failing = submit(api, member, team_id)
    job = api.wait(member, failing.json()["job_id"])
    assert job["status"] == "failed" and job["team_id"] == team_id
    state = team_books(team_id)
    assert state["balance"] == 4
    entries = state["ledger"]
    assert entries[f"charge-{ok.json()['job_id']}"]["username"] == m["username"]
    assert entries[f"refund-{failing.json()['job_id']}"]["user_id"] == m["id"]
    assert books(m["id"])["balance"] == 10  # the member's own credits are untouched
    spent = api.call("GET", f"/teams/{team_id}/members", owner).json()["members"]
    assert {r["username"]: r["spent_today"] for r in spent}[m["username"]] == 1
    assert books(o["id"])["balance"] == 10


def test_a_team_batch_is_charged_to_the_team_and_its_cancel_refunds_it(api: Api, paused_queue: None) -> None:
    owner, _ = api.signup()
    team_id = new_team(api, owner)
    fund(team_id, 3)
    items = [{"task_type": "summarize", "input_data": f"text {i}"} for i in range(3)]
    accepted = api.call("POST", "/batches", owner, json={"jobs": items, "team_id": team_id})
    assert accepted.status_code == 202, accepted.text
    assert team_books(team_id)["balance"] == 0
    in_job = {"jobs": [{**items[0], "team_id": team_id}]}
    assert api.call("POST", "/batches", owner, json=in_job).status_code == 422
    canceled = api.call("POST", f"/batches/{accepted.json()['batch_id']}/cancel", owner).json()
    assert canceled["refunded"] == 3
    assert team_books(team_id)["balance"] == 3


def test_fifty_members_at_once_on_ten_team_credits(api: Api) -> None:
    owner, _ = api.signup()
    team_id = new_team(api, owner)
    crowd = members(api, 50)
    for _, user in crowd:
        add(api, owner, team_id, user["username"])
    fund(team_id, 10)
    responses = at_once(50, lambda i: submit(api, crowd[i][0], team_id, input_data=f"job {i}"))
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(202) == 10 and statuses.count(402) == 40, statuses
    assert {code(r) for r in responses if r.status_code == 402} == {"insufficient_credits"}
    state = team_books(team_id)
    assert state["balance"] == 0
    charges = [e for e in state["ledger"].values() if e["type"] == "charge"]
    assert len(charges) == 10 and sum(e["amount"] for e in state["ledger"].values()) == 0
    assert all(books(user["id"])["balance"] == 10 for _, user in crowd)
    drain()


def test_member_limits_hold_under_concurrent_submits(api: Api) -> None:
    owner, _ = api.signup()
    team_id = new_team(api, owner)
    daily = members(api, 10)
    monthly = members(api, 10)
    for _, user in daily:
        add(api, owner, team_id, user["username"], daily_limit=2)
    for _, user in monthly:
        add(api, owner, team_id, user["username"], monthly_limit=1)
    fund(team_id, 1000)
    people = [token for token, _ in daily + monthly]
    # Each member sends three at once: 60 submits, all in the same instant.
    responses = at_once(60, lambda i: submit(api, people[i % 20], team_id, input_data=f"job {i}"))
    by_member: dict[int, list[int]] = {}
    for i, response in enumerate(responses):
        by_member.setdefault(i % 20, []).append(response.status_code)
    for i, statuses in by_member.items():
        want = 2 if i < 10 else 1
        assert statuses.count(202) == want and statuses.count(402) == 3 - want, (i, statuses)
    refused = {code(r) for r in responses if r.status_code == 402}
    assert refused == {"member_daily_limit", "member_monthly_limit"}
    assert team_books(team_id)["balance"] == 1000 - 30
    roster = {r["username"]: r for r in api.call("GET", f"/teams/{team_id}/members", owner).json()["members"]}
    for _, user in daily:
        assert roster[user["username"]]["spent_today"] == 2
    for _, user in monthly:
        assert roster[user["username"]]["spent_this_month"] == 1
    # Raising a limit lets the member spend again; the message says what is left.
    name = daily[0][1]["username"]
    refusal = submit(api, daily[0][0], team_id)
    assert refusal.status_code == 402 and "0 left" in refusal.json()["error"]["message"]
    raised = api.call("PATCH", f"/teams/{team_id}/members/{name}", owner, json={"daily_limit": 3})
    assert raised.status_code == 200 and raised.json()["daily_limit"] == 3
    assert submit(api, daily[0][0], team_id).status_code == 202
    drain()


def test_a_removal_racing_a_members_submits_charges_only_the_accepted(api: Api) -> None:
    owner, _ = api.signup()
    member, m = api.signup()
    team_id = new_team(api, owner)
    add(api, owner, team_id, m["username"])
    fund(team_id, 100)

    def attempt(i: int) -> requests.Response:
        if i == 0:
            return api.call("DELETE", f"/teams/{team_id}/members/{m['username']}", owner)
        return submit(api, member, team_id, input_data=f"job {i}")

    results = at_once(11, attempt)
    assert results[0].status_code == 204
    submits = [r.status_code for r in results[1:]]
    assert set(submits) <= {202, 404}, submits
    state = team_books(team_id)
    charges = [e for e in state["ledger"].values() if e["type"] == "charge"]
    assert len(charges) == submits.count(202) and state["balance"] == 100 - len(charges)
    assert submit(api, member, team_id).status_code == 404
    drain()


def test_a_delete_racing_a_transfer_in_leaves_no_credit_behind(api: Api) -> None:
    for attempt_no in range(3):
        _delete_racing_a_transfer(api, f"race-{attempt_no}")


def _delete_racing_a_transfer(api: Api, transfer_id: str) -> None:
    token, user = api.signup()
    team_id = new_team(api, token)
    body = {"amount": 5, "transfer_id": transfer_id}
    moved, deleted = at_once(
        2,
        lambda i: (
            api.call("POST", f"/teams/{team_id}/credits", token, json=body)
            if i == 0
            else api.call("DELETE", f"/teams/{team_id}", token)
        ),
    )
    state = team_books(team_id)
    if deleted.status_code == 204:
        # The delete won: the transfer found no team (404) and moved nothing.
        assert moved.status_code == 404 and state["balance"] == 0 and state["shards"] == 0
        assert books(user["id"])["balance"] == 10
    else:
        assert deleted.status_code == 409 and code(deleted) == "team_not_empty"
        assert moved.status_code == 200 and state["balance"] == 5
        assert books(user["id"])["balance"] == 5


# -- deleting ----------------------------------------------------------------------------------------


def test_delete_only_an_empty_idle_team(api: Api, stack: Stack) -> None:
    from shared import queue

    owner, user = api.signup()
    member, m = api.signup()
    team_id = new_team(api, owner)
    add(api, owner, team_id, m["username"])
    api.call("POST", f"/teams/{team_id}/credits", owner, json={"amount": 2, "transfer_id": "in"})
    full = api.call("DELETE", f"/teams/{team_id}", owner)
    assert full.status_code == 409 and code(full) == "team_not_empty"
    assert api.call("DELETE", f"/teams/{team_id}", member).status_code == 403
    client = queue._client()
    client.pause_queue(name=queue.queue_path())
    try:
        queued = submit(api, member, team_id)
        api.call("POST", f"/teams/{team_id}/credits", owner, json={"amount": -1, "transfer_id": "out"})
        busy = api.call("DELETE", f"/teams/{team_id}", owner)
        assert busy.status_code == 409 and code(busy) == "team_busy"
        assert api.call("POST", f"/jobs/{queued.json()['job_id']}/cancel", member).status_code == 200
    finally:
        client.resume_queue(name=queue.queue_path())
    api.call("POST", f"/teams/{team_id}/credits", owner, json={"amount": -1, "transfer_id": "out2"})
    assert api.call("DELETE", f"/teams/{team_id}", owner).status_code == 204
    assert api.call("GET", f"/teams/{team_id}", owner).status_code == 404
    assert api.call("GET", "/teams", member).json()["teams"] == []
    assert submit(api, member, team_id).status_code == 404
    assert books(user["id"])["balance"] == 10
    state = team_books(team_id)
    assert state["balance"] == 0 and state["shards"] == 0 and state["ledger"]


# -- usage --------------------------------------------------------------------------------------------


def test_team_usage_by_member_task_type_and_day_also_as_csv(api: Api, fake_ai: FakeOpenAI) -> None:
    owner, o = api.signup()
    member, m = api.signup()
    team_id = new_team(api, owner)
    add(api, owner, team_id, m["username"])
    fund(team_id, 20)
    first = submit(api, owner, team_id).json()["job_id"]
    api.wait(owner, first)
    translate = {"task_type": "translate", "options": {"target_language": "German"}}
    second = submit(api, member, team_id, **translate).json()["job_id"]
    api.wait(member, second)
    fake_ai.script(Status(400))
    third = submit(api, member, team_id).json()["job_id"]
    assert api.wait(member, third)["status"] == "failed"
    today = datetime.now(UTC).date().isoformat()
    base = f"/teams/{team_id}/usage?from={today}&to={today}"
    by_member = api.call("GET", base + "&group_by=member", owner).json()
    rows = {r["key"]: (r["jobs"], r["credits"], r["refunded"]) for r in by_member["rows"]}
    assert rows[o["username"]] == (1, 1, 0)
    # The member's translate job is charged its price; the failed summarize is refunded.
    left = team_books(team_id)["balance"]
    assert rows[m["username"]] == (2, 20 - 1 - left, 1)
    assert by_member["total_credits"] == 20 - left
    by_type = api.call("GET", base + "&group_by=task_type", owner).json()
    assert {r["key"] for r in by_type["rows"]} == {"summarize", "translate"}
    by_day = api.call("GET", base, owner).json()
    assert [r["key"] for r in by_day["rows"]] == [today] and by_day["rows"][0]["jobs"] == 3
    as_csv = api.call("GET", base + "&group_by=member&format=csv", owner)
    assert as_csv.headers["Content-Type"].startswith("text/csv")
    assert "attachment" in as_csv.headers["Content-Disposition"]
    table = list(csv.reader(io.StringIO(as_csv.text)))
    assert table[0] == ["member", "jobs", "credits", "refunded"]
    assert sorted(row[0] for row in table[1:]) == sorted([o["username"], m["username"]])
    accepted = api.call("GET", base, owner, headers={"Accept": "text/csv"})
    assert accepted.text.splitlines()[0] == "day,jobs,credits,refunded"
    assert api.call("GET", base, member).status_code == 403  # finance is for owners and admins
    bad = api.call("GET", f"/teams/{team_id}/usage?from={today}&to={today}&group_by=user", owner)
    assert bad.status_code == 422


def test_weekly_report_has_a_section_per_team(api: Api, stack: Stack) -> None:
    from shared import reports, usage

    owner, _ = api.signup()
    team_id = new_team(api, owner, "Reported")
    fund(team_id, 3)
    job_id = submit(api, owner, team_id).json()["job_id"]
    api.wait(owner, job_id)
    report = reports.build(usage.week_of(datetime.now(UTC)))
    section = next(t for t in report["teams"] if t["team_id"] == team_id)
    assert section["name"] == "Reported" and section["jobs"] == 1 and section["credits_spent"] == 1


# -- the audit ---------------------------------------------------------------------------------------


def test_the_audit_finds_each_kind_of_damage_to_a_teams_books(api: Api) -> None:
    """Each damage, made in the suite's emulator and undone at once, is reported."""
    from google.cloud import firestore

    from scripts.audit import audit
    from shared.db import client

    owner, o = api.signup()
    member, m = api.signup()
    team_id = new_team(api, owner)
    add(api, owner, team_id, m["username"], daily_limit=5)
    moved = api.call("POST", f"/teams/{team_id}/credits", owner, json={"amount": 6, "transfer_id": "a"})
    assert moved.status_code == 200
    job_id = submit(api, member, team_id).json()["job_id"]
    api.wait(member, job_id)
    team = client().collection("teams").document(team_id)
    member_ref = client().collection("memberships").document(f"{team_id}-{m['id']}")
    day = datetime.now(UTC)
    key = "d" + day.strftime("%Y%m%d")
    [usage_doc] = list(team.collection("team_usage").stream())
    [transfer_entry] = [d for d in team.collection("ledger").stream() if d.id.startswith("transfer-")]

    def problems() -> list[str]:
        lines = audit(client(), now=datetime.now(UTC)).discrepancies
        return [line for line in lines if team_id in line or transfer_entry.id[9:] in line]

    assert problems() == []
    damages: list[tuple[firestore.DocumentReference, dict[str, Any], dict[str, Any], str]] = [
        (
            team.collection("wallet").document("0"),
            {"credits": firestore.Increment(1)},
            {"credits": firestore.Increment(-1)},
            "credits 6, but the ledger sums to 5",
        ),
        (
            member_ref,
            {f"spent.{key}": firestore.Increment(1)},
            {f"spent.{key}": firestore.Increment(-1)},
            f"spent.{key} is 2, but their jobs since joining cost 1",
        ),
        (
            member_ref,
            {"daily_limit": 0},
            {"daily_limit": 5},
            f"spent.{key} is 1, past the limit of 0",
        ),
        (
            usage_doc.reference,
            {"jobs_total": firestore.Increment(1)},
            {"jobs_total": firestore.Increment(-1)},
            "jobs_total is 2, expected 1",
        ),
        (transfer_entry.reference, {"amount": 5}, {"amount": 6}, "the team's side is 5, expected 6"),
    ]
    for ref, damage, repair, expected in damages:
        ref.update(damage)
        try:
            found = problems()
            assert any(expected in line for line in found), (expected, found)
        finally:
            ref.update(repair)
    assert problems() == []
    # An owner lowering the limit below what was spent today is not the member overspending.
    lowered = api.call("PATCH", f"/teams/{team_id}/members/{m['username']}", owner, json={"daily_limit": 0})
    assert lowered.status_code == 200 and problems() == []
    assert submit(api, member, team_id).status_code == 402
    assert books(o["id"])["balance"] == 4


def test_csv_cells_that_a_spreadsheet_would_run_are_marked_as_text() -> None:
    from shared.teams import TeamUsage
    from shared.teams.usage import as_csv

    rows = [
        {"key": "-1+2", "jobs": 1, "credits": 1, "refunded": 0},
        {"key": "ada", "jobs": 2, "credits": 2, "refunded": 0},
    ]
    report = TeamUsage.model_validate(
        {
            "team_id": "t",
            "from": "2026-12-01",
            "to": "2026-12-01",
            "group_by": "member",
            "rows": rows,
            "total_jobs": 3,
            "total_credits": 3,
        }
    )
    assert as_csv(report).splitlines() == ["member,jobs,credits,refunded", "'-1+2,1,1,0", "ada,2,2,0"]
