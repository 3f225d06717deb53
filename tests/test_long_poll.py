"""``GET /jobs/{id}?wait=N``: answered when the job is final, or as it is after N seconds."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from conftest import Api


def test_a_wait_answers_as_soon_as_the_job_is_final(api: Api, paused_queue: None) -> None:
    from shared import queue

    token, _ = api.signup()
    job_id = api.submit(token).json()["job_id"]
    box: dict[str, Any] = {}

    def wait() -> None:
        started = time.monotonic()
        box["response"] = api.call("GET", f"/jobs/{job_id}?wait=20", token)
        box["took"] = time.monotonic() - started

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(1.0)
    assert "response" not in box, "the wait answered before the job was final"
    queue._client().resume_queue(name=queue.queue_path())
    waiter.join(25)
    assert box["response"].status_code == 200 and box["response"].json()["status"] == "completed"
    assert box["took"] < 10


def test_a_wait_on_a_job_that_stays_queued_answers_after_n_seconds(api: Api, paused_queue: None) -> None:
    token, _ = api.signup()
    job_id = api.submit(token).json()["job_id"]
    started = time.monotonic()
    response = api.call("GET", f"/jobs/{job_id}?wait=2", token)
    took = time.monotonic() - started
    assert response.status_code == 200 and response.json()["status"] == "queued"
    assert 1.9 <= took < 6


def test_a_wait_on_a_final_job_answers_at_once(api: Api) -> None:
    token, _ = api.signup()
    job_id = api.submit(token).json()["job_id"]
    assert api.wait(token, job_id)["status"] == "completed"
    started = time.monotonic()
    assert api.call("GET", f"/jobs/{job_id}?wait=20", token).json()["status"] == "completed"
    assert time.monotonic() - started < 3


def test_a_wait_on_another_users_job_is_not_found(api: Api, paused_queue: None) -> None:
    token, _ = api.signup()
    other, _ = api.signup()
    job_id = api.submit(token).json()["job_id"]
    response = api.call("GET", f"/jobs/{job_id}?wait=5", other)
    assert response.status_code == 404 and response.json()["error"]["code"] == "job_not_found"


@pytest.mark.parametrize("wait", ["26", "-1", "1.5", "²", "abc", "999"])
def test_a_bad_wait_is_refused(api: Api, wait: str) -> None:
    token, _ = api.signup()
    job_id = api.submit(token).json()["job_id"]
    response = api.call("GET", f"/jobs/{job_id}", token, params={"wait": wait})
    assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_wait"
