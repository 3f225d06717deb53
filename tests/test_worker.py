"""The worker under at-least-once delivery, AI faults, cancel, and enqueue failure."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from conftest import STACK_SECRET, Api, books, footprint, internal
from fake_openai import (
    Delay,
    Disconnect,
    EmptyChoices,
    FakeOpenAI,
    Malformed,
    Reply,
    Status,
    content_policy_violation,
)

from scripts.stack import Stack

pytestmark = pytest.mark.usefixtures("stack")


def deliver(stack: Stack, job_id: str, secret: str | None = STACK_SECRET) -> requests.Response:
    """POST to the worker as the queue would."""
    return internal(stack, "worker", {"job_id": job_id}, secret)


def ledger_types(user_id: str) -> list[str]:
    return sorted(e["type"] for e in books(user_id)["ledger"].values())


@pytest.mark.usefixtures("paused_queue")
def test_worker_refuses_unknown_callers(api: Api, stack: Stack, fake_ai: FakeOpenAI) -> None:
    token, user = api.signup()
    job_id = api.submit(token).json()["job_id"]
    before = books(user["id"])
    missing = deliver(stack, job_id, secret=None)
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "unauthenticated"
    wrong = deliver(stack, job_id, secret="not-the-secret")
    assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "forbidden"
    assert books(user["id"]) == before and fake_ai.count() == 0


@pytest.mark.usefixtures("paused_queue")
def test_duplicate_delivery_runs_the_ai_once(api: Api, stack: Stack, fake_ai: FakeOpenAI) -> None:
    token, user = api.signup()
    job_id = api.submit(token).json()["job_id"]
    first = deliver(stack, job_id)
    assert first.status_code == 200 and first.json()["outcome"] == "completed"
    again = deliver(stack, job_id)
    assert again.status_code == 200 and again.json()["outcome"] == "completed"
    assert fake_ai.count() == 1
    assert books(user["id"])["balance"] == 9 and ledger_types(user["id"]) == ["charge", "grant"]


@pytest.mark.usefixtures("paused_queue")
def test_concurrent_deliveries_run_the_ai_once(api: Api, stack: Stack, fake_ai: FakeOpenAI) -> None:
    token, user = api.signup()
    job_id = api.submit(token).json()["job_id"]
    fake_ai.default_delay = 0.5
    barrier = threading.Barrier(6)

    def go(_: int) -> requests.Response:
        barrier.wait()
        return deliver(stack, job_id)

    with ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(go, range(6)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 409, 409, 409, 409, 409], [r.text for r in responses]
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 409} == {"job_in_progress"}
    assert fake_ai.count() == 1
    assert api.wait(token, job_id)["status"] == "completed"
    assert books(user["id"])["balance"] == 9


@pytest.mark.usefixtures("paused_queue")
def test_cancel_refunds_once_and_the_job_never_runs(api: Api, stack: Stack, fake_ai: FakeOpenAI) -> None:
    token, user = api.signup()
    job_id = api.submit(token).json()["job_id"]
    canceled = api.call("POST", f"/jobs/{job_id}/cancel", token)
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    assert books(user["id"])["balance"] == 10
    assert ledger_types(user["id"]) == ["charge", "grant", "refund"]
    again = api.call("POST", f"/jobs/{job_id}/cancel", token)
    assert again.status_code == 409 and again.json()["error"]["code"] == "job_not_cancelable"
    delivered = deliver(stack, job_id)
    assert delivered.status_code == 200 and delivered.json()["outcome"] == "canceled"
    assert fake_ai.count() == 0 and books(user["id"])["balance"] == 10


def test_cancel_after_completion_is_refused(api: Api) -> None:
    token, user = api.signup()
    job_id = api.submit(token).json()["job_id"]
    assert api.wait(token, job_id)["status"] == "completed"
    before = footprint(user["id"])
    response = api.call("POST", f"/jobs/{job_id}/cancel", token)
    assert response.status_code == 409 and response.json()["error"]["code"] == "job_not_cancelable"
    assert footprint(user["id"]) == before


def test_another_users_job_is_not_found(api: Api) -> None:
    owner, _ = api.signup()
    stranger, stranger_user = api.signup()
    job_id = api.submit(owner).json()["job_id"]
    before = footprint(stranger_user["id"])
    for method, path in (
        ("GET", f"/jobs/{job_id}"),
        ("POST", f"/jobs/{job_id}/cancel"),
        ("GET", "/jobs/0123456789abcdef0123456789abcdef"),
        ("GET", "/jobs/not-an-id"),
    ):
        response = api.call(method, path, stranger)
        assert response.status_code == 404 and response.json()["error"]["code"] == "job_not_found", path
    assert footprint(stranger_user["id"]) == before
    assert api.wait(owner, job_id)["status"] == "completed"


# Each case: what the AI endpoint does per attempt, the final status, error code, AI calls, refunded?
FAULTS: dict[str, tuple[list[Any], str, str | None, int]] = {
    "429 then success": ([Status(429), Reply("ok")], "completed", None, 2),
    "500 then success": ([Status(500), Reply("ok")], "completed", None, 2),
    "timeout then success": ([Delay(2.0), Reply("ok")], "completed", None, 2),
    "disconnect then success": ([Disconnect(), Reply("ok")], "completed", None, 2),
    "500 until exhausted": ([Status(500), Status(503), Status(500)], "failed", "ai_server_error", 3),
    "timeouts until exhausted": ([Delay(2.0), Delay(2.0), Delay(2.0)], "failed", "ai_timeout", 3),
    "malformed body": ([Malformed()], "failed", "ai_bad_output", 1),
    "no choices": ([EmptyChoices()], "failed", "ai_bad_output", 1),
    "empty answer": ([Reply("  ")], "failed", "ai_bad_output", 1),
    "content refused": ([content_policy_violation()], "failed", "content_refused", 1),
    "filtered answer": ([Reply("x", finish_reason="content_filter")], "failed", "content_refused", 1),
    "bad request": ([Status(400)], "failed", "ai_rejected", 1),
}


@pytest.mark.parametrize("case", list(FAULTS))
def test_ai_faults(case: str, api: Api, stack: Stack, fake_ai: FakeOpenAI) -> None:
    steps, status, code, calls = FAULTS[case]
    fake_ai.script(*steps)
    token, user = api.signup()
    job_id = api.submit(token).json()["job_id"]
    job = api.wait(token, job_id)
    assert job["status"] == status, job
    assert fake_ai.count() == calls
    if status == "completed":
        assert job["output"] == {"text": "ok"} and job["error"] is None
        assert books(user["id"])["balance"] == 9 and ledger_types(user["id"]) == ["charge", "grant"]
    else:
        assert job["error"]["code"] == code and job["error"]["message"] and job["output"] is None
        assert books(user["id"])["balance"] == 10
        assert ledger_types(user["id"]) == ["charge", "grant", "refund"]
        # A late duplicate delivery of a failed job changes nothing.
        late = deliver(stack, job_id)
        assert late.status_code == 200 and late.json()["outcome"] == "failed"
        assert books(user["id"])["balance"] == 10 and fake_ai.count() == calls
    assert books(user["id"])["jobs"][job_id]["attempts"] == calls


def test_enqueue_failure_refunds_and_answers_503(api: Api, functions_server: Any) -> None:
    broken = Api(functions_server(TASKS_QUEUE="no-such-queue"))
    token, user = api.signup()
    response = broken.submit(token, headers={"Idempotency-Key": "retry-me"})
    assert response.status_code == 503 and response.json()["error"]["code"] == "unavailable"
    state = books(user["id"])
    assert state["balance"] == 10 and state["idempotency"] == []
    (job,) = state["jobs"].values()
    assert job["status"] == "failed" and job["error"]["code"] == "enqueue_failed"
    assert ledger_types(user["id"]) == ["charge", "grant", "refund"]
    # The client's retry with the same key goes through once the queue is back.
    retried = api.submit(token, headers={"Idempotency-Key": "retry-me"})
    assert retried.status_code == 202 and retried.headers.get("Idempotent-Replayed") is None
    assert api.wait(token, retried.json()["job_id"])["status"] == "completed"


@pytest.mark.usefixtures("paused_queue")
def test_expired_lease_is_taken_over_and_the_stale_run_cannot_finish(api: Api, fake_ai: FakeOpenAI) -> None:
    from shared import jobs
    from shared.db import client

    token, user = api.signup()
    job_id = api.submit(token).json()["job_id"]
    stale = jobs._claim(job_id, "stale-lease")
    assert not isinstance(stale, str) and stale.attempt == 1
    ref = client().collection("jobs").document(job_id)
    ref.update({"lease_expires_at": datetime.now(UTC) - timedelta(seconds=1)})  # its worker died

    def provider(task_type: str, input_data: Any, options: dict[str, Any]) -> dict[str, Any]:
        return {"text": "taken over"}

    assert jobs.run(job_id, provider) == "completed"
    assert jobs._finish(job_id, "stale-lease", "failed", error={"code": "x", "message": "late"}) is None
    job = ref.get().to_dict() or {}
    assert job["status"] == "completed" and job["attempts"] == 2 and job["output"] == {"text": "taken over"}
    assert books(user["id"])["balance"] == 9 and ledger_types(user["id"]) == ["charge", "grant"]
