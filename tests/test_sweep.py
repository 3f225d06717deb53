"""The sweeper: expired leases re-queued or failed, stale queued jobs failed, each exactly once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from conftest import Api, books, internal
from fake_openai import FakeOpenAI

from scripts.stack import Stack

LONG_AGO = datetime.now(UTC) - timedelta(days=1)


def sweep(stack: Stack) -> requests.Response:
    return internal(stack, "sweep_jobs")


def deliver(stack: Stack, job_id: str) -> requests.Response:
    return internal(stack, "worker", {"job_id": job_id})


def job_ref(job_id: str) -> Any:
    from shared.db import client

    return client().collection("jobs").document(job_id)


def refunds(user_id: str) -> int:
    return sum(1 for e in books(user_id)["ledger"].values() if e["type"] == "refund")


def abandoned(api: Api, attempts: int = 1) -> tuple[str, str, str]:
    """A job whose worker claimed it and died: in_progress with an expired lease."""
    from shared import jobs

    token, user = api.signup()
    job_id = api.submit(token).json()["job_id"]
    claim = jobs._claim(job_id, "dead-worker")
    assert not isinstance(claim, str)
    job_ref(job_id).update({"lease_expires_at": LONG_AGO, "attempts": attempts})
    return token, user["id"], job_id


def test_sweep_requires_the_scheduler(stack: Stack) -> None:
    response = requests.post(f"{stack.base_url}/sweep_jobs", timeout=30)
    assert response.status_code == 401


def test_expired_lease_is_requeued_and_runs(api: Api, stack: Stack, paused_queue: None) -> None:
    from shared import queue

    token, user_id, job_id = abandoned(api)
    response = sweep(stack)
    assert response.status_code == 200 and response.json()["requeued"] >= 1
    job = job_ref(job_id).get().to_dict() or {}
    assert job["status"] == "queued" and job["error"]["code"] == "lease_expired" and job["lease_id"] is None
    queue._client().resume_queue(name=queue.queue_path())
    assert api.wait(token, job_id)["status"] == "completed"
    assert books(user_id)["balance"] == 9 and refunds(user_id) == 0


def test_expired_lease_on_the_last_attempt_fails_and_refunds(
    api: Api, stack: Stack, paused_queue: None
) -> None:
    token, user_id, job_id = abandoned(api, attempts=3)
    assert sweep(stack).json()["failed"] >= 1
    job = api.wait(token, job_id)
    assert job["status"] == "failed" and job["error"]["code"] == "attempts_exhausted"
    assert sweep(stack).status_code == 200
    assert books(user_id)["balance"] == 10 and refunds(user_id) == 1


def test_stale_queued_job_fails_once_even_against_a_late_delivery(
    api: Api, stack: Stack, fake_ai: FakeOpenAI, paused_queue: None
) -> None:
    token, user = api.signup()
    job_id = api.submit(token).json()["job_id"]
    job_ref(job_id).update({"updated_at": LONG_AGO})
    assert sweep(stack).json()["failed"] >= 1
    assert api.wait(token, job_id)["error"]["code"] == "queue_timeout"
    late = deliver(stack, job_id)
    assert late.status_code == 200 and late.json()["outcome"] == "failed"
    assert fake_ai.count() == 0 and books(user["id"])["balance"] == 10 and refunds(user["id"]) == 1


def test_recent_jobs_are_left_alone(api: Api, stack: Stack, paused_queue: None) -> None:
    token, user = api.signup()
    job_id = api.submit(token).json()["job_id"]
    sweep(stack)
    assert job_ref(job_id).get().get("status") == "queued" and books(user["id"])["balance"] == 9


@pytest.mark.parametrize("round_", range(4))
def test_sweeper_races_a_late_delivery(api: Api, stack: Stack, paused_queue: None, round_: int) -> None:
    token, user = api.signup()
    job_id = api.submit(token).json()["job_id"]
    job_ref(job_id).update({"updated_at": LONG_AGO})
    with ThreadPoolExecutor(4) as pool:
        calls = [
            pool.submit(sweep, stack),
            pool.submit(deliver, stack, job_id),
            pool.submit(sweep, stack),
            pool.submit(deliver, stack, job_id),
        ]
        statuses = [c.result().status_code for c in calls]
    assert set(statuses) <= {200, 409}, statuses
    job = api.wait(token, job_id)
    state = books(user["id"])
    if job["status"] == "completed":
        assert state["balance"] == 9 and refunds(user["id"]) == 0
    else:
        assert job["status"] == "failed" and state["balance"] == 10 and refunds(user["id"]) == 1


def test_concurrent_sweeps_refund_once(api: Api, stack: Stack, paused_queue: None) -> None:
    token, user = api.signup()
    ids = [api.submit(token).json()["job_id"] for _ in range(3)]
    for job_id in ids:
        job_ref(job_id).update({"updated_at": LONG_AGO})
    with ThreadPoolExecutor(5) as pool:
        assert {r.status_code for r in pool.map(lambda _: sweep(stack), range(5))} == {200}
    assert books(user["id"])["balance"] == 10 and refunds(user["id"]) == 3
