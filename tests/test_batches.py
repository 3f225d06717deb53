"""Batches: all or nothing, one charge, idempotent, canceled and refunded in one move."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from conftest import Api, at_once, books, footprint, internal
from fake_openai import FakeOpenAI, Status
from google.cloud.firestore import FieldFilter

from scripts.stack import Stack
from shared import batches
from shared.db import client

TEXT: dict[str, Any] = {"task_type": "summarize", "input_data": "Some text to work on."}


def _batch(api: Api, token: str, items: list[Any], key: str | None = None) -> Any:
    headers = {"Idempotency-Key": key} if key else {}
    return api.call("POST", "/batches", token, json={"jobs": items}, headers=headers)


def _grant(user_id: str, username: str, amount: int) -> None:
    from shared import credits

    order = credits.GrantCreate(
        username=username, amount=amount, reason="batch test", grant_id=uuid.uuid4().hex
    )
    credits.grant(order, "test-admin")


def _ledger(user_id: str) -> dict[str, Any]:
    return books(user_id)["ledger"]


def _wait_batch(api: Api, token: str, batch_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = api.call("GET", f"/batches/{batch_id}", token).json()
        if body["status"] != "in_progress" or time.monotonic() > deadline:
            return body
        time.sleep(0.2)


def test_a_batch_is_charged_once_and_its_jobs_run(api: Api) -> None:
    token, user = api.signup()
    items: list[Any] = [
        TEXT,
        {"task_type": "translate", "input_data": "Hallo", "options": {"target_language": "English"}},
        TEXT,
    ]
    response = _batch(api, token, items)
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert (accepted["cost"], accepted["credits"], len(accepted["job_ids"])) == (3, 7, 3)
    ledger = _ledger(user["id"])
    charges = [e for e in ledger.values() if e["type"] == "charge"]
    assert len(charges) == 1 and charges[0]["amount"] == -3 and charges[0]["batch_id"] == accepted["batch_id"]
    done = _wait_batch(api, token, accepted["batch_id"])
    assert done["status"] == "completed" and done["counts"]["completed"] == 3, done
    assert done["job_ids"] == accepted["job_ids"] and done["next_cursor"] is None
    for job_id in accepted["job_ids"]:
        assert api.call("GET", f"/jobs/{job_id}", token).json()["status"] == "completed"
    assert books(user["id"])["balance"] == 7
    listed = api.call("GET", "/batches", token).json()
    assert [b["batch_id"] for b in listed["batches"]] == [accepted["batch_id"]]


def test_a_balance_short_of_the_whole_batch_is_402_and_writes_nothing(api: Api) -> None:
    token, user = api.signup()
    before = footprint(user["id"])
    response = _batch(api, token, [TEXT] * 11)  # 10 credits
    assert response.status_code == 402 and response.json()["error"]["code"] == "insufficient_credits"
    assert "1 more than the balance" in response.json()["error"]["message"]
    assert footprint(user["id"]) == before
    mine = client().collection("batches").where(filter=FieldFilter("user_id", "==", user["id"]))
    assert not list(mine.stream())


def test_an_invalid_job_is_422_naming_its_index_and_writes_nothing(api: Api) -> None:
    token, user = api.signup()
    before = footprint(user["id"])
    cases = [
        ([TEXT, {"task_type": "nope", "input_data": "x"}], "jobs.1"),
        ([TEXT, TEXT, {"task_type": "translate", "input_data": "x"}], "jobs.2"),
        ([TEXT, {"task_type": "summarize", "input_data": "x", "extra": 1}], "jobs.1"),
        ([{"task_type": "summarize", "input_data": "   "}], "jobs.0"),
        ([], "jobs"),
        ([TEXT] * 501, "jobs"),
    ]
    for items, where in cases:
        response = _batch(api, token, items)
        assert response.status_code in (413, 422), (where, response.text)
        if response.status_code == 422:
            assert where in response.json()["error"]["message"], response.text
    assert footprint(user["id"]) == before


def test_an_idempotency_key_makes_racing_repeats_one_batch(api: Api) -> None:
    token, user = api.signup()
    key = f"b-{uuid.uuid4().hex}"
    answers = at_once(10, lambda _i: _batch(api, token, [TEXT, TEXT], key))
    assert {r.status_code for r in answers} == {202}, [r.text for r in answers]
    assert len({r.json()["batch_id"] for r in answers}) == 1
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in answers) == 9
    charges = [e for e in _ledger(user["id"]).values() if e["type"] == "charge"]
    assert len(charges) == 1 and charges[0]["amount"] == -2
    other = _batch(api, token, [TEXT], key)
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_key_reused"
    # Another user's same key is another batch.
    token2, _ = api.signup()
    assert _batch(api, token2, [TEXT, TEXT], key).json()["batch_id"] != answers[0].json()["batch_id"]


def test_cancel_refunds_every_queued_job_in_one_commit(api: Api, paused_queue: None) -> None:
    token, user = api.signup()
    accepted = _batch(api, token, [TEXT] * 5).json()
    assert books(user["id"])["balance"] == 5
    canceled = api.call("POST", f"/batches/{accepted['batch_id']}/cancel", token)
    assert canceled.status_code == 200, canceled.text
    assert canceled.json() == {"batch_id": accepted["batch_id"], "canceled": 5, "refunded": 5}
    assert books(user["id"])["balance"] == 10
    refunds = [e for e in _ledger(user["id"]).values() if e["type"] == "refund"]
    assert sorted(e["job_id"] for e in refunds) == sorted(accepted["job_ids"])
    got = api.call("GET", f"/batches/{accepted['batch_id']}", token).json()
    assert got["status"] == "canceled" and got["counts"]["canceled"] == 5 and got["canceled_at"]
    again = api.call("POST", f"/batches/{accepted['batch_id']}/cancel", token).json()
    assert (again["canceled"], again["refunded"]) == (0, 0)
    assert books(user["id"])["balance"] == 10


def test_a_worker_leaves_a_canceled_batchs_job_and_the_sweeper_settles_it(
    api: Api, stack: Stack, paused_queue: None
) -> None:
    """The canceling request died between marking the batch and refunding its jobs."""
    token, user = api.signup()
    accepted = _batch(api, token, [TEXT] * 3).json()
    ref = client().collection("batches").document(accepted["batch_id"])
    ref.update({"canceled_at": ref.get().get("created_at"), "cancel_pending": True})
    delivered = internal(stack, "worker", {"job_id": accepted["job_ids"][0]})
    assert delivered.status_code == 200 and delivered.json()["outcome"] == "batch_canceled"
    assert api.call("GET", f"/jobs/{accepted['job_ids'][0]}", token).json()["status"] == "queued"
    swept = internal(stack, "sweep_jobs")
    assert swept.status_code == 200 and swept.json()["batches_settled"] >= 1, swept.text
    assert books(user["id"])["balance"] == 10
    assert {api.call("GET", f"/jobs/{j}", token).json()["status"] for j in accepted["job_ids"]} == {
        "canceled"
    }


def test_a_failed_job_of_a_batch_is_refunded_alone(api: Api, fake_ai: FakeOpenAI) -> None:
    token, user = api.signup()
    fake_ai.script(Status(400))  # the first AI call fails for good; the others succeed
    accepted = _batch(api, token, [TEXT] * 3).json()
    done = _wait_batch(api, token, accepted["batch_id"])
    assert done["counts"]["failed"] == 1 and done["counts"]["completed"] == 2, done
    assert books(user["id"])["balance"] == 8
    failed = [
        j for j in accepted["job_ids"] if api.call("GET", f"/jobs/{j}", token).json()["status"] == "failed"
    ]
    assert [e["job_id"] for e in _ledger(user["id"]).values() if e["type"] == "refund"] == failed


def test_five_hundred_jobs_in_one_batch_and_one_cancel(api: Api, paused_queue: None) -> None:
    token, user = api.signup()
    _grant(user["id"], user["username"], 490)
    started = time.perf_counter()
    response = _batch(api, token, [TEXT] * batches.MAX_JOBS)
    took = time.perf_counter() - started
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert (accepted["cost"], accepted["credits"]) == (500, 0)
    print(f"a batch of 500 accepted in {took:.2f} s")
    page = api.call("GET", f"/batches/{accepted['batch_id']}?limit=100", token).json()
    assert page["counts"]["queued"] == 500 and len(page["job_ids"]) == 100 and page["next_cursor"]
    second = api.call("GET", f"/batches/{accepted['batch_id']}?limit=100&cursor={page['next_cursor']}", token)
    assert second.json()["job_ids"] == accepted["job_ids"][100:200]
    canceled = api.call("POST", f"/batches/{accepted['batch_id']}/cancel", token).json()
    assert (canceled["canceled"], canceled["refunded"]) == (500, 500)
    assert books(user["id"])["balance"] == 500


def test_someone_elses_batch_is_not_found(api: Api) -> None:
    owner, _ = api.signup()
    other, _ = api.signup()
    batch_id = _batch(api, owner, [TEXT]).json()["batch_id"]
    for method, path in (("GET", f"/batches/{batch_id}"), ("POST", f"/batches/{batch_id}/cancel")):
        response = api.call(method, path, other)
        assert response.status_code == 404 and response.json()["error"]["code"] == "batch_not_found"
    assert api.call("GET", "/batches/__x__", owner).status_code == 404
    assert api.call("GET", f"/batches/{batch_id}?cursor=nope", owner).status_code == 422


def test_the_last_job_sends_batch_completed_once(api: Api) -> None:
    from test_webhooks import Receiver, register, verified

    receiver = Receiver()
    try:
        token, _ = api.signup()
        hook = register(api, token, receiver.url, ["batch.completed"])
        accepted = _batch(api, token, [TEXT] * 4).json()
        got = receiver.wait_for(1)
        assert len(got) == 1, got
        event = verified(hook["secret"], got[0])
        assert event["type"] == "batch.completed"
        assert event["data"]["batch_id"] == accepted["batch_id"] and event["data"]["counts"]["completed"] == 4
        done = _wait_batch(api, token, accepted["batch_id"])
        assert done["completed_at"] is not None and done["status"] == "completed"
        time.sleep(1)
        assert len(receiver.received) == 1  # four last-job checks, one event
    finally:
        receiver.stop()


def test_the_client_submits_and_cancels_a_batch(api: Api, paused_queue: None) -> None:
    import aijobs
    from conftest import PASSWORD

    with aijobs.Client(api.base_url) as client_:
        client_.signup(f"b{uuid.uuid4().hex[:12]}", PASSWORD)
        accepted = client_.create_batch([TEXT, TEXT], idempotency_key="k1")
        assert client_.create_batch([TEXT, TEXT], idempotency_key="k1")["batch_id"] == accepted["batch_id"]
        assert client_.get_batch(accepted["batch_id"])["counts"]["queued"] == 2
        assert client_.cancel_batch(accepted["batch_id"])["refunded"] == 2
        assert client_.me()["credits"] == 10
        with pytest.raises(aijobs.BatchNotFound):
            client_.get_batch(uuid.uuid4().hex)
