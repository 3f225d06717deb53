"""Submit edges found by review: blank chats, replays and the rate limit, task types the
provider cannot serve."""

from __future__ import annotations

import time
from typing import Any

from conftest import Api, footprint


def test_a_chat_whose_content_is_blank_is_refused_uncharged(api: Api) -> None:
    token, user = api.signup()
    before = footprint(user["id"])
    for messages in (
        [{"role": "user", "content": "   "}],
        [{"role": "system", "content": "be brief"}, {"role": "user", "content": "\n\t "}],
    ):
        response = api.submit(token, "chat", messages)
        assert response.status_code == 422, response.text
        assert footprint(user["id"]) == before


def test_idempotency_key_replays_do_not_use_up_the_rate_limit(api: Api, functions_server: Any) -> None:
    limited = Api(functions_server(SUBMIT_RATE_PER_MINUTE="3"))
    token, _ = limited.signup()
    if 60 - time.time() % 60 < 15:  # keep every submit inside one clock minute
        time.sleep(60 - time.time() % 60 + 0.1)
    first = limited.submit(token, headers={"Idempotency-Key": "replayed-often"})
    assert first.status_code == 202
    for _ in range(5):
        replay = limited.submit(token, headers={"Idempotency-Key": "replayed-often"})
        assert replay.status_code == 202 and replay.headers.get("Idempotent-Replayed") == "true"
        assert replay.json()["job_id"] == first.json()["job_id"]
    more = [limited.submit(token) for _ in range(2)]
    assert [r.status_code for r in more] == [202, 202]
    refused = limited.submit(token)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "submit_rate_limited"
    # Their tasks name this server's worker, which stops with the test.
    for job_id in [first.json()["job_id"], *(r.json()["job_id"] for r in more)]:
        assert limited.wait(token, job_id)["status"] == "completed"


def test_a_catalog_task_type_without_a_provider_is_refused_uncharged(api: Api) -> None:
    from shared.catalog import DEFAULT_CATALOG, catalog_ref

    token, user = api.signup()
    catalog_ref().set({"task_types": {**DEFAULT_CATALOG["task_types"], "poem": {"cost": 1, "options": {}}}})
    try:
        before = footprint(user["id"])
        response = api.submit(token, "poem", "about queues")
        assert response.status_code == 422 and response.json()["error"]["code"] == "task_type_unsupported"
        assert footprint(user["id"]) == before
    finally:
        catalog_ref().set(DEFAULT_CATALOG)
