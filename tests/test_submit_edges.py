"""Submit edges found by review: blank chats, replays and the rate limit, task types the
provider cannot serve."""

from __future__ import annotations

import time
from typing import Any

from conftest import Api, books, footprint


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


def test_the_submit_limit_holds_under_a_burst(api: Api, functions_server: Any) -> None:
    from conftest import at_once

    limited = Api(functions_server(SUBMIT_RATE_PER_MINUTE="5"))
    token, user = limited.signup()
    if 60 - time.time() % 60 < 15:  # keep the burst inside one clock minute
        time.sleep(60 - time.time() % 60 + 0.1)
    responses = at_once(20, lambda i: limited.submit(token, input_data=f"burst {i}"))
    codes = sorted(r.status_code for r in responses)
    assert codes == [202] * 5 + [429] * 15, codes
    assert all(r.headers.get("Retry-After") for r in responses if r.status_code == 429)
    for response in responses:
        if response.status_code == 202:
            limited.wait(token, response.json()["job_id"])
    assert books(user["id"])["balance"] == 5


def test_a_limit_split_over_counters_never_admits_more(api: Api, functions_server: Any) -> None:
    # 130 a minute: three counters with shares of 44, 43 and 43.
    limited = Api(functions_server(SUBMIT_RATE_PER_MINUTE="130", SIGNUP_CREDITS="400"))
    token, user = limited.signup()
    if 60 - time.time() % 60 < 40:
        time.sleep(60 - time.time() % 60 + 0.1)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda i: limited.submit(token, input_data=f"split {i}"), range(150)))
    accepted = [r for r in responses if r.status_code == 202]
    assert {r.status_code for r in responses} <= {202, 429}
    # Never more than the limit; a submit that meets full counters may be refused a little early.
    assert 100 <= len(accepted) <= 130, len(accepted)
    for response in accepted:
        limited.wait(token, response.json()["job_id"])
    assert books(user["id"])["balance"] == 400 - len(accepted)
