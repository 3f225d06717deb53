"""Webhooks end to end: jobs' final events reach a real HTTP receiver on loopback, signed per
Standard Webhooks and checked by an independent verifier (``standardwebhooks`` from PyPI);
retries keep one ``webhook-id``; the sweeper delivers what never reached the queue; rotation,
disabling, ownership, the URL checks against SSRF, and what a job costs without webhooks.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import Api, internal
from fake_openai import FakeOpenAI, Status
from grpc_proxy import GrpcProxy
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from test_metering import request_lines

from scripts.stack import Stack
from shared import webhooks

ALL_JOB_EVENTS = ["job.completed", "job.failed", "job.canceled"]


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    path: str


@dataclass
class Receiver:
    """A real HTTP server on loopback that records each POST and answers the next scripted status."""

    script: list[int] = field(default_factory=list)
    default: int = 200
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._changed:
                    status = receiver.script.pop(0) if receiver.script else receiver.default
                    receiver.received.append(Received(dict(self.headers.items()), body, self.path))
                    receiver._changed.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/aijobs"

    def wait_for(self, count: int, timeout: float = 20.0) -> list[Received]:
        with self._changed:
            self._changed.wait_for(lambda: len(self.received) >= count, timeout)
            return list(self.received)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    got = Receiver()
    yield got
    got.stop()


def register(api: Api, token: str, url: str, events: Sequence[str] = ALL_JOB_EVENTS) -> dict[str, Any]:
    response = api.call("POST", "/webhooks", token, json={"url": url, "events": list(events)})
    assert response.status_code == 201, response.text
    return dict(response.json())


def verified(secret: str, got: Received) -> dict[str, Any]:
    """The payload, if the independent verifier accepts the delivery (it raises otherwise)."""
    return dict(Webhook(secret).verify(got.body, got.headers))


def deliveries(api: Api, token: str, webhook_id: str) -> list[dict[str, Any]]:
    response = api.call("GET", f"/webhooks/{webhook_id}/deliveries", token)
    assert response.status_code == 200, response.text
    return list(response.json()["deliveries"])


def settled(api: Api, token: str, webhook_id: str, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
    """The endpoint's deliveries once ``count`` of them are final (delivered or failed)."""
    deadline = time.monotonic() + timeout
    while True:
        found = deliveries(api, token, webhook_id)
        if sum(d["status"] != "pending" for d in found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def finished_job(api: Api, token: str, **submit: Any) -> dict[str, Any]:
    response = api.submit(token, **submit)
    assert response.status_code == 202, response.text
    return api.wait(token, response.json()["job_id"])


# ---- delivered, signed, once -------------------------------------------------------------------


def test_a_completed_job_is_delivered_once_and_verifies(api: Api, receiver: Receiver) -> None:
    token, _ = api.signup()
    hook = register(api, token, receiver.url)
    assert hook["secret"].startswith("whsec_") and len(hook["secret"]) >= len("whsec_") + 32
    job = finished_job(api, token)
    assert job["status"] == "completed"

    (got,) = receiver.wait_for(1)
    payload = verified(hook["secret"], got)
    assert payload["type"] == "job.completed" and payload["timestamp"]
    assert payload["data"] == {
        k: job[k]
        for k in ("job_id", "task_type", "status", "cost", "output", "error", "created_at", "updated_at")
    }
    assert got.path == "/hooks/aijobs" and got.headers["Content-Type"] == "application/json"
    assert got.headers["webhook-id"].startswith("msg_")

    (delivery,) = settled(api, token, hook["id"], 1)
    assert delivery["id"] == got.headers["webhook-id"] and delivery["status"] == "delivered"
    assert delivery["attempts"] == 1 and delivery["last_status"] == 200 and delivery["last_error"] is None
    assert delivery["event_type"] == "job.completed" and delivery["delivered_at"]
    time.sleep(1.0)
    assert len(receiver.received) == 1, "delivered once"
    # The secret is shown on creation only.
    assert "secret" not in api.call("GET", f"/webhooks/{hook['id']}", token).json()


def test_failed_and_canceled_jobs_are_delivered(
    api: Api, receiver: Receiver, fake_ai: FakeOpenAI, stack: Stack
) -> None:
    token, _ = api.signup()
    hook = register(api, token, receiver.url)
    fake_ai.script(Status(400))
    failed = finished_job(api, token)
    assert failed["status"] == "failed"
    (got,) = receiver.wait_for(1)
    payload = verified(hook["secret"], got)
    assert payload["type"] == "job.failed" and payload["data"]["error"] == failed["error"]

    from shared import queue

    tasks = queue._client()
    tasks.pause_queue(name=queue.queue_path())
    try:
        job_id = api.submit(token).json()["job_id"]
        assert api.call("POST", f"/jobs/{job_id}/cancel", token).status_code == 200
    finally:
        tasks.resume_queue(name=queue.queue_path())
    got = receiver.wait_for(2)[1]
    payload = verified(hook["secret"], got)
    assert payload["type"] == "job.canceled" and payload["data"]["job_id"] == job_id
    assert payload["data"]["status"] == "canceled"


def test_unsubscribed_events_are_not_sent(api: Api, receiver: Receiver, fake_ai: FakeOpenAI) -> None:
    token, _ = api.signup()
    hook = register(api, token, receiver.url, ["job.failed"])
    assert finished_job(api, token)["status"] == "completed"
    fake_ai.script(Status(400))
    failed = finished_job(api, token)
    (got,) = receiver.wait_for(1)
    assert verified(hook["secret"], got)["data"]["job_id"] == failed["job_id"]
    time.sleep(1.0)
    assert len(receiver.received) == 1
    assert [d["event_type"] for d in deliveries(api, token, hook["id"])] == ["job.failed"]


def test_retries_keep_one_webhook_id_until_delivered(api: Api, receiver: Receiver) -> None:
    receiver.script = [500, 500, 200]
    token, _ = api.signup()
    hook = register(api, token, receiver.url)
    finished_job(api, token)
    attempts = receiver.wait_for(3)
    assert len({a.headers["webhook-id"] for a in attempts}) == 1, "the same webhook-id every attempt"
    for attempt in attempts:
        verified(hook["secret"], attempt)  # each attempt is signed anew, and verifies
    (delivery,) = settled(api, token, hook["id"], 1)
    assert delivery["status"] == "delivered" and delivery["attempts"] == 3
    time.sleep(1.0)
    assert len(receiver.received) == 3, "delivered once: no attempt after the 200"


def test_a_delivery_failing_every_attempt_ends_failed(
    api: Api, receiver: Receiver, functions_stack: Callable[..., Stack]
) -> None:
    other = Api(functions_stack(WEBHOOK_MAX_ATTEMPTS="3").base_url)
    receiver.default = 503
    token, _ = api.signup()
    hook = register(other, token, receiver.url)
    finished_job(other, token)
    receiver.wait_for(3)
    (delivery,) = settled(api, token, hook["id"], 1)
    assert delivery["status"] == "failed" and delivery["attempts"] == 3
    assert delivery["last_status"] == 503 and delivery["last_error"] == "answered HTTP 503"
    time.sleep(1.0)
    assert len(receiver.received) == 3


# ---- the outbox: what never reached the queue -------------------------------------------------


@pytest.fixture
def tasks_proxy(stack: Stack) -> Iterator[GrpcProxy]:
    with GrpcProxy(f"127.0.0.1:{stack.tasks_port}") as proxy:
        yield proxy


def _to_webhooks_queue(request: bytes) -> bool:
    return b"aijobs-webhooks" in request


def test_an_enqueue_that_never_happened_is_delivered_by_the_sweeper(
    api: Api, receiver: Receiver, tasks_proxy: GrpcProxy, functions_stack: Callable[..., Stack], stack: Stack
) -> None:
    lossy = Api(functions_stack(TASKS_EMULATOR_HOST=tasks_proxy.address).base_url)
    sweeper = functions_stack(WEBHOOK_SWEEP_DELAY_SECONDS="1")
    token, _ = api.signup()
    hook = register(api, token, receiver.url)
    # The job's final commit lands, then every attempt to create the delivery's task fails
    # before it reaches the queue: as if the process had died between the two.
    tasks_proxy.fail_next("CreateTask", "refuse", when=_to_webhooks_queue, times=5)
    finished_job(lossy, token)
    time.sleep(1.5)
    assert receiver.received == [] and tasks_proxy.pending() < 5
    (pending,) = deliveries(api, token, hook["id"])
    assert pending["status"] == "pending" and pending["attempts"] == 0

    swept = internal(sweeper, "sweep_jobs")
    assert swept.status_code == 200 and swept.json()["webhooks_enqueued"] >= 1, swept.text
    (got,) = receiver.wait_for(1)
    assert got.headers["webhook-id"] == pending["id"]
    verified(hook["secret"], got)
    assert settled(api, token, hook["id"], 1)[0]["status"] == "delivered"
    # Delivered: a later sweep sends nothing again.
    internal(sweeper, "sweep_jobs")
    time.sleep(0.5)
    assert len(receiver.received) == 1


def test_a_lost_enqueue_reply_is_delivered_once(
    api: Api, receiver: Receiver, tasks_proxy: GrpcProxy, functions_stack: Callable[..., Stack]
) -> None:
    lossy = Api(functions_stack(TASKS_EMULATOR_HOST=tasks_proxy.address).base_url)
    sweeper = functions_stack(WEBHOOK_SWEEP_DELAY_SECONDS="1")
    token, _ = api.signup()
    hook = register(api, token, receiver.url)
    # The task is created, but its reply is lost: the delivery happens anyway, and the sweeper
    # (which would step in if it had not) finds nothing to do.
    tasks_proxy.fail_next("CreateTask", "lose_reply", when=_to_webhooks_queue)
    finished_job(lossy, token)
    (got,) = receiver.wait_for(1)
    verified(hook["secret"], got)
    assert settled(api, token, hook["id"], 1)[0]["status"] == "delivered"
    time.sleep(1.2)
    assert internal(sweeper, "sweep_jobs").status_code == 200
    time.sleep(0.5)
    assert len(receiver.received) == 1 and tasks_proxy.pending() == 0


# ---- endpoints: ownership, rotation, disabling, limits -------------------------------------


def test_another_users_endpoint_is_not_found(api: Api, receiver: Receiver) -> None:
    owner, _ = api.signup()
    stranger, _ = api.signup()
    hook = register(api, owner, receiver.url)
    for method, path in (
        ("GET", f"/webhooks/{hook['id']}"),
        ("DELETE", f"/webhooks/{hook['id']}"),
        ("POST", f"/webhooks/{hook['id']}/rotate"),
        ("GET", f"/webhooks/{hook['id']}/deliveries"),
        ("GET", "/webhooks/0123456789abcdef0123456789abcdef"),
        ("GET", "/webhooks/not-an-id"),
    ):
        response = api.call(method, path, stranger)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["error"]["code"] == "webhook_not_found", path
    assert api.call("GET", "/webhooks", stranger).json() == {"webhooks": [], "next_cursor": None}
    assert api.call("GET", f"/webhooks/{hook['id']}", owner).status_code == 200
    assert api.call("GET", "/webhooks/x/y", owner).json()["error"]["code"] == "route_not_found"
    assert api.call("GET", "/webhooks", None).status_code == 401


def test_list_get_and_delete(api: Api, receiver: Receiver) -> None:
    token, _ = api.signup()
    first = register(api, token, receiver.url)
    second = register(api, token, receiver.url + "?second=1", ["job.completed"])
    page = api.call("GET", "/webhooks?limit=1", token).json()
    assert [h["id"] for h in page["webhooks"]] == [second["id"]] and page["next_cursor"] == second["id"]
    rest = api.call("GET", f"/webhooks?limit=1&cursor={page['next_cursor']}", token).json()
    assert [h["id"] for h in rest["webhooks"]] == [first["id"]] and rest["next_cursor"] is None
    shown = api.call("GET", f"/webhooks/{first['id']}", token).json()
    assert shown == {k: v for k, v in first.items() if k != "secret"}
    assert shown["disabled"] is False and shown["disabled_reason"] is None
    deleted = api.call("DELETE", f"/webhooks/{first['id']}", token)
    assert deleted.status_code == 204 and deleted.content == b""
    assert api.call("GET", f"/webhooks/{first['id']}", token).status_code == 404
    assert api.call("DELETE", f"/webhooks/{first['id']}", token).status_code == 404
    # Deleted: nothing more is sent there.
    finished_job(api, token)
    (got,) = receiver.wait_for(1)
    assert got.path == "/hooks/aijobs?second=1"


def test_rotation_signs_with_both_secrets_within_the_window(api: Api, receiver: Receiver) -> None:
    token, _ = api.signup()
    hook = register(api, token, receiver.url)
    rotated = api.call("POST", f"/webhooks/{hook['id']}/rotate", token)
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["secret"]
    assert new != hook["secret"] and new.startswith("whsec_")
    finished_job(api, token)
    (got,) = receiver.wait_for(1)
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    verified(new, got)
    verified(hook["secret"], got)  # a receiver still on the old secret loses nothing


def test_after_the_rotation_window_the_old_secret_no_longer_verifies(
    api: Api, receiver: Receiver, functions_stack: Callable[..., Stack]
) -> None:
    short = Api(functions_stack(WEBHOOK_ROTATION_WINDOW_SECONDS="1").base_url)
    token, _ = api.signup()
    hook = register(api, token, receiver.url)
    new = short.call("POST", f"/webhooks/{hook['id']}/rotate", token).json()["secret"]
    time.sleep(1.2)
    finished_job(api, token)
    (got,) = receiver.wait_for(1)
    assert len(got.headers["webhook-signature"].split(" ")) == 1
    verified(new, got)
    with pytest.raises(WebhookVerificationError):
        verified(hook["secret"], got)


def test_an_endpoint_failing_continuously_is_disabled(
    api: Api, receiver: Receiver, functions_stack: Callable[..., Stack]
) -> None:
    # Two seconds of continuous failure disable it here (the default is days).
    other = Api(functions_stack(WEBHOOK_DISABLE_AFTER_DAYS=str(2 / 86400), WEBHOOK_MAX_ATTEMPTS="2").base_url)
    receiver.default = 500
    token, _ = api.signup()
    hook = register(other, token, receiver.url)
    finished_job(other, token)
    receiver.wait_for(2)
    assert settled(api, token, hook["id"], 1)[0]["status"] == "failed"
    assert other.call("GET", f"/webhooks/{hook['id']}", token).json()["disabled"] is False
    time.sleep(2.2)
    finished_job(other, token)
    receiver.wait_for(3)
    settled(api, token, hook["id"], 2)
    shown = other.call("GET", f"/webhooks/{hook['id']}", token).json()
    assert shown["disabled"] is True, shown
    assert "failed" in shown["disabled_reason"] and "HTTP 500" in shown["disabled_reason"]
    seen = len(receiver.received)
    # Disabled: no more events are staged or sent (the instance that disabled it knows at once).
    finished_job(other, token)
    time.sleep(1.0)
    assert len(receiver.received) == seen
    assert len(deliveries(api, token, hook["id"])) == 2


def test_registration_is_bounded(api: Api, receiver: Receiver, functions_stack: Callable[..., Stack]) -> None:
    token, _ = api.signup()
    bad_events: list[list[str]] = [[], ["job.started"], ["job.completed", "job.completed"]]
    bad_urls = [
        "ftp://127.0.0.1/x",
        "http://127.0.0.1/" + "x" * webhooks.MAX_URL_LENGTH,
        "http://10.0.0.7/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[fd00:ec2::254]/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://user:pass@127.0.0.1/x",
        "http://no-such-host.invalid/hook",
    ]
    bodies = [("invalid_webhook_events", {"url": receiver.url, "events": e}) for e in bad_events]
    bodies += [("invalid_webhook_url", {"url": u, "events": ["job.completed"]}) for u in bad_urls]
    for code, body in bodies:
        response = api.call("POST", "/webhooks", token, json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"]["code"] == code, (body, response.text)
    assert api.call("GET", "/webhooks", token).json()["webhooks"] == []
    small = Api(functions_stack(WEBHOOK_MAX_ENDPOINTS="2").base_url)
    for _ in range(2):
        register(small, token, receiver.url)
    over = small.call("POST", "/webhooks", token, json={"url": receiver.url, "events": ["job.failed"]})
    assert over.status_code == 422 and over.json()["error"]["code"] == "too_many_webhooks"
    assert len(api.call("GET", "/webhooks", token).json()["webhooks"]) == 2


def test_the_endpoint_limit_holds_under_racing_creates(
    api: Api, receiver: Receiver, functions_stack: Callable[..., Stack]
) -> None:
    from conftest import at_once

    small = Api(functions_stack(WEBHOOK_MAX_ENDPOINTS="3").base_url)
    token, _ = api.signup()
    body = {"url": receiver.url, "events": ["job.completed"]}
    statuses = at_once(8, lambda _: small.call("POST", "/webhooks", token, json=body).status_code)
    assert sorted(statuses) == [201] * 3 + [422] * 5
    assert len(api.call("GET", "/webhooks", token).json()["webhooks"]) == 3


# ---- batches (later): the generic event -------------------------------------------------------


def test_stage_event_delivers_any_event_after_its_commit(api: Api, receiver: Receiver) -> None:
    from shared.db import Batch, client, now

    token, user = api.signup()
    hook = register(api, token, receiver.url, ["batch.completed"])
    batch = Batch(client())
    data = {"batch_id": "b" * 32, "counts": {"completed": 2}}
    ids = webhooks.stage_event(batch, user["id"], "batch.completed", data, now())
    again = webhooks.stage_event(Batch(client()), user["id"], "batch.completed", data, now())
    assert len(ids) == 1 and ids == again, "one delivery per endpoint and event, whatever the retries"
    batch.commit()
    webhooks.send(ids)
    (got,) = receiver.wait_for(1)
    payload = verified(hook["secret"], got)
    assert payload["type"] == "batch.completed" and payload["data"] == data
    assert webhooks.stage_event(Batch(client()), user["id"], "job.completed", {"job_id": "j"}, now()) == []
    with pytest.raises(ValueError):
        webhooks.stage_event(Batch(client()), user["id"], "batch.started", data, now())


# ---- SSRF: refused at registration and at delivery, with an injected resolver --------------


def resolving(*answers: Sequence[str]) -> Callable[[str, int], Sequence[str]]:
    """A resolver answering ``answers`` in turn (the last one again after that)."""
    calls: list[str] = []

    def resolve(host: str, port: int) -> Sequence[str]:
        calls.append(host)
        return answers[min(len(calls), len(answers)) - 1]

    return resolve


PUBLIC = "93.184.216.34"


@pytest.mark.parametrize(
    "address",
    [
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "127.0.0.1",
        "169.254.169.254",
        "169.254.1.1",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "::1",
        "fd00:ec2::254",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "ff02::1",
    ],
)
def test_production_refuses_hosts_that_resolve_to_internal_addresses(address: str) -> None:
    with pytest.raises(webhooks.Refused):
        webhooks.check_url("https://hooks.example.com/x", resolving([address]), local=False)
    with pytest.raises(webhooks.Refused):  # a public address beside it does not make it safe
        webhooks.check_url("https://hooks.example.com/x", resolving([PUBLIC, address]), local=False)


def test_production_url_rules() -> None:
    public = resolving([PUBLIC])
    assert webhooks.check_url("https://hooks.example.com/x?y=1", public, local=False) == (
        "hooks.example.com",
        443,
    )
    assert webhooks.check_url("https://hooks.example.com:8443/x", public, local=False)[1] == 8443
    assert webhooks.check_url(f"https://{PUBLIC}/x", resolving(), local=False)[0] == PUBLIC
    for url in (
        "http://hooks.example.com/x",  # https only
        "https://127.0.0.1/x",  # an address literal is checked too
        "https://[::1]/x",
        "https://metadata.google.internal/x",
        "https://metadata.google.internal./x",
        "https://user:pw@hooks.example.com/x",
        "https:///x",
        "https://hooks.example.com/x#frag",
        "https://hooks.example.com:99999/x",
        "https://hooks.exämple.com/x",
        "https://hooks.example.com/" + "x" * webhooks.MAX_URL_LENGTH,
    ):
        with pytest.raises(webhooks.Refused):
            webhooks.check_url(url, public, local=False)

    def unresolvable(host: str, port: int) -> Sequence[str]:
        raise OSError("no such host")

    with pytest.raises(webhooks.Refused, match="does not resolve"):
        webhooks.check_url("https://hooks.example.com/x", unresolvable, local=False)


def test_the_local_stack_allows_loopback_and_http_only() -> None:
    assert webhooks.check_url("http://localhost:9000/h", resolving(["127.0.0.1", "::1"]), local=True)
    for address in ("10.0.0.1", "169.254.169.254", "192.168.0.2"):
        with pytest.raises(webhooks.Refused):
            webhooks.check_url("http://dev.box/h", resolving([address]), local=True)


def test_delivery_connects_to_the_address_it_checked(receiver: Receiver) -> None:
    # The name resolves (through the injected resolver) to the receiver on loopback: the POST
    # reaches it by that address, with the name in Host.
    post = webhooks.http_post(resolving(["127.0.0.1"]), local=True)
    attempt = post(f"http://receiver.test:{receiver.port}/h", b"{}", {"webhook-id": "msg_x"})
    assert attempt.ok and attempt.status == 200, attempt
    (got,) = receiver.wait_for(1)
    assert got.headers["Host"] == f"receiver.test:{receiver.port}"


def test_delivery_refuses_a_name_that_rebinds_to_an_internal_address(receiver: Receiver) -> None:
    # Checked once at the start of the attempt (public), then the name answers an internal
    # address when the connection is made: refused, and nothing is connected to.
    rebinding = resolving([PUBLIC], ["10.0.0.5"])
    attempt = webhooks.http_post(rebinding, local=True)(f"http://rebind.test:{receiver.port}/h", b"{}", {})
    assert not attempt.ok and attempt.status is None
    assert attempt.error is not None and "private" in attempt.error
    prod = webhooks.http_post(resolving(["169.254.169.254"]), local=False)
    refused = prod("https://hooks.example.com/h", b"{}", {})
    assert refused.status is None and refused.error is not None and "metadata" in refused.error
    assert receiver.received == []


def test_a_redirect_is_not_followed(receiver: Receiver) -> None:
    receiver.default = 307
    attempt = webhooks.http_post(resolving(["127.0.0.1"]), local=True)(receiver.url, b"{}", {})
    assert attempt.status == 307 and not attempt.ok and attempt.error == "answered HTTP 307"
    assert len(receiver.wait_for(1)) == 1


def test_signatures_are_the_specifications() -> None:
    secret = webhooks.new_secret()
    headers = webhooks.signature_headers("msg_1", int(time.time()), '{"a":1}', [secret])
    assert Webhook(secret).verify('{"a":1}', headers) == {"a": 1}
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify('{"a":2}', headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(webhooks.new_secret()).verify('{"a":1}', headers)


# ---- cost: nothing for users without webhooks -----------------------------------------------


def worker_meter(log: Path, job_id: str) -> dict[str, int]:
    lines = [e for e in request_lines(log, function="worker", job_id=job_id) if "-> 200" in e["message"]]
    assert len(lines) == 1, lines
    return {
        k: lines[0][k] for k in ("firestore_reads", "firestore_writes", "firestore_deletes", "tasks_calls")
    }


def test_a_user_without_webhooks_adds_no_write_and_at_most_one_cached_read(
    api: Api, stack: Stack, receiver: Receiver
) -> None:
    log = stack.log_dir / "functions.log"
    token, _ = api.signup()
    first = finished_job(api, token)["job_id"]
    second = finished_job(api, token)["job_id"]
    time.sleep(0.3)  # the request line is logged after the answer
    # The worker claims (1 read, 1 write) and finishes (1 write, no read); the endpoint list is
    # one query read the first time, then cached.
    assert worker_meter(log, first) == {
        "firestore_reads": 2,
        "firestore_writes": 2,
        "firestore_deletes": 0,
        "tasks_calls": 0,
    }
    assert worker_meter(log, second)["firestore_reads"] == 1
    assert worker_meter(log, second)["firestore_writes"] == 2

    hooked, _ = api.signup()
    register(api, hooked, receiver.url)
    with_hook = finished_job(api, hooked)["job_id"]
    receiver.wait_for(1)
    time.sleep(0.3)
    meter = worker_meter(log, with_hook)
    assert meter["firestore_writes"] == 3 and meter["tasks_calls"] == 1, "+1 delivery, +1 task"


def test_the_deploy_queue_matches_the_retry_horizon() -> None:
    from scripts import deploy

    assert deploy.WEBHOOK_QUEUE.name == "aijobs-webhooks" != deploy.QUEUE.name
    assert webhooks.RETRY_HORIZON.total_seconds() > int(deploy.WEBHOOK_QUEUE.max_backoff.removesuffix("s"))
    assert deploy.WEBHOOK_QUEUE.max_attempts > deploy.WEBHOOK_MAX_ATTEMPTS
    payload = json.dumps(
        deploy.function_env(deploy.Config("p", "r", "r", Path("b")), deploy.FUNCTIONS["worker"])
    )
    assert '"WEBHOOK_QUEUE": "aijobs-webhooks"' in payload
