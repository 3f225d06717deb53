"""Conversations over HTTP on the real emulators: the server keeps the history, each message is
a charged chat job, its reply lands on it in the job's own final commit."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
import requests
from conftest import PASSWORD, Api, at_once, books, footprint
from fake_openai import FakeOpenAI, Reply, Status


def _create(api: Api, token: str, **body: Any) -> dict[str, Any]:
    response = api.call("POST", "/conversations", token, json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def _post(api: Api, token: str, conversation_id: str, content: str, **kwargs: Any) -> requests.Response:
    body = {"content": content, **kwargs.pop("body", {})}
    return api.call("POST", f"/conversations/{conversation_id}/messages", token, json=body, **kwargs)


def _turn(api: Api, token: str, conversation_id: str, content: str) -> dict[str, Any]:
    """Post a message and wait for its job to be final; answers the message as stored then."""
    response = _post(api, token, conversation_id, content)
    assert response.status_code == 202, response.text
    accepted = response.json()
    api.wait(token, accepted["job_id"])
    return _message(api, token, conversation_id, accepted["message_id"])


def _get(api: Api, token: str, conversation_id: str) -> dict[str, Any]:
    response = api.call("GET", f"/conversations/{conversation_id}", token)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _message(api: Api, token: str, conversation_id: str, message_id: str) -> dict[str, Any]:
    messages = _get(api, token, conversation_id)["messages"]
    return next(m for m in messages if m["message_id"] == message_id)


def _sent(fake_ai: FakeOpenAI) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in fake_ai.requests[-1].body["messages"]]


def test_create_list_get_delete(api: Api) -> None:
    token, _ = api.signup()
    first = _create(api, token, title="Trip", system="Be brief.")
    assert (first["title"], first["system"]) == ("Trip", "Be brief.")
    bare = api.call("POST", "/conversations", token, json={})  # no title, no system
    assert bare.status_code == 201 and bare.json()["title"] is None and bare.json()["system"] is None
    blank = _create(api, token, system="   ")
    assert blank["system"] is None  # a blank system message would be refused by every chat job

    page = api.call("GET", "/conversations?limit=2", token).json()
    assert [c["conversation_id"] for c in page["conversations"]] == [
        blank["conversation_id"],
        bare.json()["conversation_id"],
    ]
    rest = api.call("GET", f"/conversations?limit=2&cursor={page['next_cursor']}", token).json()
    assert [c["conversation_id"] for c in rest["conversations"]] == [first["conversation_id"]]
    assert rest["next_cursor"] is None

    detail = _get(api, token, first["conversation_id"])
    assert detail["messages"] == [] and detail["system"] == "Be brief."
    assert api.call("DELETE", f"/conversations/{first['conversation_id']}", token).status_code == 204
    gone = api.call("GET", f"/conversations/{first['conversation_id']}", token)
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "conversation_not_found"
    again = api.call("DELETE", f"/conversations/{first['conversation_id']}", token)
    assert again.status_code == 404
    listed = api.call("GET", "/conversations", token).json()["conversations"]
    assert first["conversation_id"] not in [c["conversation_id"] for c in listed]


def test_three_turns_keep_the_history_on_the_server(api: Api, fake_ai: FakeOpenAI) -> None:
    token, user = api.signup()
    conversation = _create(api, token, system="You are terse.")["conversation_id"]
    fake_ai.script(Reply("Paris."), Reply("About 2.1 million."), Reply("The Seine."))
    one = _turn(api, token, conversation, "Capital of France?")
    assert _sent(fake_ai) == [("system", "You are terse."), ("user", "Capital of France?")]
    two = _turn(api, token, conversation, "How many people live there?")
    assert _sent(fake_ai) == [
        ("system", "You are terse."),
        ("user", "Capital of France?"),
        ("assistant", "Paris."),
        ("user", "How many people live there?"),
    ]
    three = _turn(api, token, conversation, "Its river?")
    assert _sent(fake_ai)[-3:] == [
        ("user", "How many people live there?"),
        ("assistant", "About 2.1 million."),
        ("user", "Its river?"),
    ]
    assert len(_sent(fake_ai)) == 6
    assert [(m["seq"], m["status"], m["reply"]) for m in (one, two, three)] == [
        (1, "completed", "Paris."),
        (2, "completed", "About 2.1 million."),
        (3, "completed", "The Seine."),
    ]
    messages = _get(api, token, conversation)["messages"]
    assert [m["message_id"] for m in messages] == ["1", "2", "3"]
    assert all(m["job_id"] and m["error"] is None for m in messages)
    job = api.call("GET", f"/jobs/{three['job_id']}", token).json()
    assert job["task_type"] == "chat" and job["cost"] == 1
    assert books(user["id"])["balance"] == 7  # each message charged like any job


def test_history_is_cut_to_the_budget_keeping_the_system_message(
    api: Api, fake_ai: FakeOpenAI, functions_server: Callable[..., str]
) -> None:
    small = Api(functions_server(CONVERSATION_HISTORY_CHARS="100"))
    token, user = small.signup()
    conversation = _create(small, token, system="S" * 10)["conversation_id"]
    fake_ai.script(Reply("a" * 20), Reply("b" * 20), Reply("c" * 20))
    for content in ("1" * 20, "2" * 20, "3" * 20):
        assert _turn(small, token, conversation, content)["status"] == "completed"
    # 10 (system) + 20 (new) leave 70: the newest exchange (40) fits, the one before does not.
    assert _sent(fake_ai) == [
        ("system", "S" * 10),
        ("user", "2" * 20),
        ("assistant", "b" * 20),
        ("user", "3" * 20),
    ]

    before = footprint(user["id"])
    too_big = _post(small, token, conversation, "x" * 91)  # 91 + 10 > 100
    assert too_big.status_code == 413 and too_big.json()["error"]["code"] == "input_too_large"
    assert footprint(user["id"]) == before
    assert len(_get(small, token, conversation)["messages"]) == 3


def test_a_failed_job_is_refunded_shown_and_left_out_of_history(api: Api, fake_ai: FakeOpenAI) -> None:
    token, user = api.signup()
    conversation = _create(api, token)["conversation_id"]
    fake_ai.script(Reply("Hello!"), Status(400, "bad request"))
    assert _turn(api, token, conversation, "Hi")["status"] == "completed"
    failed = _turn(api, token, conversation, "Say something odd")
    assert failed["status"] == "failed" and failed["reply"] is None
    assert failed["error"]["code"] == "ai_rejected"
    assert books(user["id"])["balance"] == 9  # two charges, one refund
    _turn(api, token, conversation, "Again?")
    assert _sent(fake_ai) == [("user", "Hi"), ("assistant", "Hello!"), ("user", "Again?")]


def test_a_refused_charge_leaves_no_message_and_charges_nothing(api: Api) -> None:
    token, user = api.signup()
    conversation = _create(api, token)["conversation_id"]
    for i in range(10):
        assert api.submit(token, input_data=f"spend {i}").status_code == 202
    before = footprint(user["id"])
    refused = _post(api, token, conversation, "Hello?", headers={"Idempotency-Key": "broke-1"})
    assert refused.status_code == 402 and refused.json()["error"]["code"] == "insufficient_credits"
    assert footprint(user["id"]) == before
    assert _get(api, token, conversation)["messages"] == []
    from shared.db import client

    doc = client().collection("conversations").document(conversation)
    assert doc.get().get("next_seq") == 1  # the number was given back
    assert list(doc.collection("idempotency").stream()) == []  # and the key released


def test_a_job_the_queue_refused_leaves_no_message_and_frees_the_key(
    api: Api, functions_server: Callable[..., str]
) -> None:
    broken = Api(functions_server(TASKS_QUEUE="no-such-queue"))
    token, user = api.signup()
    conversation = _create(api, token)["conversation_id"]
    headers = {"Idempotency-Key": "unqueued-1"}
    refused = _post(broken, token, conversation, "Hello?", headers=headers)
    assert refused.status_code == 503 and "not charged" in refused.json()["error"]["message"]
    assert _get(api, token, conversation)["messages"] == []
    assert books(user["id"])["balance"] == 10  # charged and refunded in the job's own commits
    retried = _post(api, token, conversation, "Hello?", headers=headers)
    assert retried.status_code == 202 and "Idempotent-Replayed" not in retried.headers
    assert retried.json()["seq"] == 1  # the number was given back too


def test_an_idempotency_key_replays_the_same_message_and_job(api: Api) -> None:
    token, user = api.signup()
    conversation = _create(api, token)["conversation_id"]
    headers = {"Idempotency-Key": "message-key-1"}
    first = _post(api, token, conversation, "Once only", headers=headers)
    assert first.status_code == 202 and "Idempotent-Replayed" not in first.headers
    again = _post(api, token, conversation, "Once only", headers=headers)
    assert again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true"
    keys = ("conversation_id", "message_id", "seq", "job_id", "cost")
    assert {k: again.json()[k] for k in keys} == {k: first.json()[k] for k in keys}
    api.wait(token, first.json()["job_id"])
    late = _post(api, token, conversation, "Once only", headers=headers)  # after the reply landed
    assert late.json()["job_id"] == first.json()["job_id"] and late.json()["status"] == "completed"
    other = _post(api, token, conversation, "Something else", headers=headers)
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_key_reused"
    assert len(_get(api, token, conversation)["messages"]) == 1
    assert books(user["id"])["balance"] == 9


def test_messages_posted_at_once_get_distinct_gap_free_numbers_and_their_own_replies(api: Api) -> None:
    token, _ = api.signup()
    conversation = _create(api, token)["conversation_id"]
    answers = at_once(10, lambda i: _post(api, token, conversation, f"message number {i}"))
    assert [a.status_code for a in answers] == [202] * 10, [a.text for a in answers]
    assert sorted(a.json()["seq"] for a in answers) == list(range(1, 11))
    for answer in answers:
        assert api.wait(token, answer.json()["job_id"])["status"] == "completed"
    messages = _get(api, token, conversation)["messages"]
    assert [m["seq"] for m in messages] == list(range(1, 11))
    by_job = {a.json()["job_id"]: a.json()["seq"] for a in answers}
    for message in messages:
        # The fake AI answers "fake reply: " and the last message it was sent: this one's own.
        assert message["reply"] == f"fake reply: {message['content']}"
        assert by_job[message["job_id"]] == message["seq"]


def test_another_users_conversation_is_not_found(api: Api) -> None:
    token, _ = api.signup()
    conversation = _create(api, token, title="mine")["conversation_id"]
    intruder, other = api.signup()
    before = footprint(other["id"])
    for method, path, body in (
        ("GET", f"/conversations/{conversation}", None),
        ("DELETE", f"/conversations/{conversation}", None),
        ("POST", f"/conversations/{conversation}/messages", {"content": "hi"}),
    ):
        response = api.call(method, path, intruder, json=body)
        assert response.status_code == 404 and response.json()["error"]["code"] == "conversation_not_found"
    assert api.call("GET", "/conversations", intruder).json()["conversations"] == []
    assert footprint(other["id"]) == before
    assert _get(api, token, conversation)["title"] == "mine"


def test_bad_input_is_refused_and_changes_nothing(api: Api) -> None:
    token, user = api.signup()
    conversation = _create(api, token)["conversation_id"]
    before = footprint(user["id"])
    cases: list[tuple[str, str, Any, int, str]] = [
        ("POST", "/conversations", {"title": "t" * 201}, 422, "invalid_request"),
        ("POST", "/conversations", {"system": "s" * 4001}, 422, "invalid_request"),
        ("POST", "/conversations", {"owner": "someone"}, 422, "invalid_request"),
        ("POST", f"/conversations/{conversation}/messages", {"content": ""}, 422, "invalid_request"),
        ("POST", f"/conversations/{conversation}/messages", {"content": "   "}, 422, "invalid_request"),
        ("POST", f"/conversations/{conversation}/messages", {"content": "x" * 8001}, 422, "invalid_request"),
        ("POST", f"/conversations/{conversation}/messages", {}, 422, "invalid_request"),
        (
            "POST",
            f"/conversations/{conversation}/messages",
            {"content": "hi", "options": {"max_tokens": 0}},
            422,
            "invalid_option",
        ),
        (
            "POST",
            f"/conversations/{conversation}/messages",
            {"content": "hi", "history": []},
            422,
            "invalid_request",
        ),
        ("POST", "/conversations/not-an-id/messages", {"content": "hi"}, 404, "conversation_not_found"),
        ("GET", "/conversations/__x__", None, 404, "conversation_not_found"),
        ("GET", f"/conversations/{conversation}/messages", None, 405, "method_not_allowed"),
        ("GET", f"/conversations/{conversation}/other", None, 404, "route_not_found"),
        ("GET", "/conversations?cursor=__x__", None, 422, "invalid_cursor"),
    ]
    for method, path, body, status, code in cases:
        response = api.call(method, path, token, json=body)
        assert (response.status_code, response.json()["error"]["code"]) == (status, code), (path, body)
    bad_key = _post(api, token, conversation, "hi", headers={"Idempotency-Key": "é"})
    assert bad_key.status_code == 422 and bad_key.json()["error"]["code"] == "invalid_idempotency_key"
    unauthenticated = api.call("GET", "/conversations")
    assert unauthenticated.status_code == 401
    assert footprint(user["id"]) == before
    assert len(api.call("GET", "/conversations", token).json()["conversations"]) == 1
    assert _get(api, token, conversation)["messages"] == []


def test_a_conversation_waiting_for_a_reply_is_not_deleted(api: Api, paused_queue: None) -> None:
    token, user = api.signup()
    conversation = _create(api, token)["conversation_id"]
    accepted = _post(api, token, conversation, "Wait for me").json()
    busy = api.call("DELETE", f"/conversations/{conversation}", token)
    assert busy.status_code == 409 and busy.json()["error"]["code"] == "conversation_busy"
    canceled = api.call("POST", f"/jobs/{accepted['job_id']}/cancel", token)
    assert canceled.status_code == 200
    message = _message(api, token, conversation, accepted["message_id"])
    assert message["status"] == "canceled" and message["error"]["code"] == "canceled"
    assert api.call("DELETE", f"/conversations/{conversation}", token).status_code == 204
    assert books(user["id"])["balance"] == 10


def test_limits_per_account_and_per_conversation(api: Api, functions_server: Callable[..., str]) -> None:
    small = Api(functions_server(CONVERSATIONS_PER_USER="2", CONVERSATION_MAX_MESSAGES="2"))
    token, _ = small.signup()
    created = at_once(5, lambda _: small.call("POST", "/conversations", token, json={}))
    assert sorted(c.status_code for c in created) == [201, 201, 422, 422, 422]
    refused = next(c for c in created if c.status_code == 422)
    assert refused.json()["error"]["code"] == "too_many_conversations"
    conversation = next(c for c in created if c.status_code == 201).json()["conversation_id"]
    for content in ("one", "two"):
        assert (
            small.wait(token, _post(small, token, conversation, content).json()["job_id"])["status"]
            == "completed"
        )
    full = _post(small, token, conversation, "three")
    assert full.status_code == 422 and full.json()["error"]["code"] == "conversation_full"
    assert small.call("DELETE", f"/conversations/{conversation}", token).status_code == 204
    assert small.call("POST", "/conversations", token, json={}).status_code == 201


def test_the_python_client_keeps_a_conversation(api: Api, fake_ai: FakeOpenAI) -> None:
    from aijobs import Client, ConversationNotFound

    with Client(api.base_url) as client:
        client.signup(f"c{uuid.uuid4().hex[:12]}", PASSWORD)
        talk = client.create_conversation("Trip", "Be brief.")["conversation_id"]
        fake_ai.script(Reply("Lisbon."))
        sent = client.send_message(talk, "Where to?", {"max_tokens": 20}, idempotency_key="trip-1")
        again = client.send_message(talk, "Where to?", {"max_tokens": 20}, idempotency_key="trip-1")
        assert (again["job_id"], again["seq"]) == (sent["job_id"], 1)
        assert client.wait(sent["job_id"], timeout=30)["status"] == "completed"
        (message,) = client.get_conversation(talk)["messages"]
        assert (message["reply"], message["status"]) == ("Lisbon.", "completed")
        assert client.list_conversations(limit=1)["conversations"][0]["conversation_id"] == talk
        client.delete_conversation(talk)
        with pytest.raises(ConversationNotFound):
            client.get_conversation(talk)
