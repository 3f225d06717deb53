"""Credits are exact under concurrency; Idempotency-Key repeats charge once, also when racing."""

from __future__ import annotations

from datetime import UTC, datetime

from conftest import Api, at_once, books, footprint


def test_fifty_concurrent_submits_on_ten_credits(api: Api) -> None:
    token, user = api.signup()
    responses = at_once(50, lambda i: api.submit(token, input_data=f"job {i}"))
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(202) == 10 and statuses.count(402) == 40, statuses
    for response in responses:
        if response.status_code == 402:
            assert response.json()["error"]["code"] == "insufficient_credits"
    state = books(user["id"])
    assert state["balance"] == 0
    assert len(state["jobs"]) == 10
    assert sorted(e["type"] for e in state["ledger"].values()) == ["charge"] * 10 + ["grant"]
    accepted = {r.json()["job_id"] for r in responses if r.status_code == 202}
    assert accepted == set(state["jobs"])
    # Each answer shows the balance as of its answer: after its own charge, and after any
    # other charge that had committed by then.
    assert all(0 <= r.json()["credits"] <= 9 for r in responses if r.status_code == 202)


def test_402_leaves_nothing_behind(api: Api) -> None:
    from shared.catalog import DEFAULT_CATALOG, catalog_ref

    token, user = api.signup()
    expensive = {
        "task_types": {**DEFAULT_CATALOG["task_types"], "generate_text": {"cost": 11, "options": {}}}
    }
    catalog_ref().set(expensive)
    try:
        before = footprint(user["id"])
        response = api.submit(token, "generate_text", "write", headers={"Idempotency-Key": "k-402"})
        assert response.status_code == 402
        assert response.json()["error"]["message"] == "this job costs 11 credits; the balance is 10"
        assert footprint(user["id"]) == before
    finally:
        catalog_ref().set(DEFAULT_CATALOG)


def test_idempotent_repeat_returns_the_first_job(api: Api) -> None:
    token, user = api.signup()
    first = api.submit(token, headers={"Idempotency-Key": "order-1"})
    again = api.submit(token, headers={"Idempotency-Key": "order-1"})
    assert first.status_code == 202 and again.status_code == 202
    assert again.json()["job_id"] == first.json()["job_id"]
    assert again.headers.get("Idempotent-Replayed") == "true"
    other = api.submit(token, headers={"Idempotency-Key": "order-2"})
    assert other.json()["job_id"] != first.json()["job_id"]
    state = books(user["id"])
    assert state["balance"] == 8 and len(state["jobs"]) == 2


def test_idempotency_key_race_charges_once(api: Api) -> None:
    token, user = api.signup()
    responses = at_once(12, lambda _: api.submit(token, headers={"Idempotency-Key": "racing-key"}))
    assert {r.status_code for r in responses} == {202}, [r.text for r in responses]
    assert len({r.json()["job_id"] for r in responses}) == 1
    state = books(user["id"])
    assert state["balance"] == 9 and len(state["jobs"]) == 1 and len(state["idempotency"]) == 1


def test_idempotency_key_is_per_user(api: Api) -> None:
    token_a, _ = api.signup()
    token_b, _ = api.signup()
    a = api.submit(token_a, headers={"Idempotency-Key": "shared-key"}).json()
    b = api.submit(token_b, headers={"Idempotency-Key": "shared-key"}).json()
    assert a["job_id"] != b["job_id"]


def test_idempotency_key_with_another_body_is_refused(api: Api) -> None:
    token, user = api.signup()
    assert api.submit(token, input_data="one", headers={"Idempotency-Key": "k"}).status_code == 202
    before = footprint(user["id"])
    reused = api.submit(token, input_data="two", headers={"Idempotency-Key": "k"})
    assert reused.status_code == 409 and reused.json()["error"]["code"] == "idempotency_key_reused"
    assert footprint(user["id"]) == before


def test_expired_idempotency_key_starts_a_new_job(api: Api) -> None:
    from shared.db import client

    token, user = api.signup()
    first = api.submit(token, headers={"Idempotency-Key": "old"}).json()
    (record,) = books(user["id"])["idempotency"]
    client().collection("idempotency").document(record).update(
        {"expires_at": datetime(2020, 1, 1, tzinfo=UTC)}
    )
    second = api.submit(token, headers={"Idempotency-Key": "old"})
    assert second.status_code == 202 and second.json()["job_id"] != first["job_id"]
    assert books(user["id"])["balance"] == 8


def test_bad_idempotency_key_is_refused(api: Api) -> None:
    token, user = api.signup()
    before = footprint(user["id"])
    response = api.submit(token, headers={"Idempotency-Key": "x" * 256})
    assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_idempotency_key"
    assert footprint(user["id"]) == before
