"""Lost replies, crashes and outages between the service and Firestore or Cloud Tasks.

Each test puts a real gRPC proxy (``grpc_proxy.py``) between a functions server and
an emulator and breaks the wire there; the service's code runs unchanged. After
each: the answer the client got must match the books.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
import requests
from conftest import Api, books, internal
from fake_openai import FakeOpenAI
from grpc_proxy import GrpcProxy

from scripts.stack import Stack

FUNCTIONS = ["signup", "login", "me", "credits", "submit_job", "jobs", "usage", "admin"]


@pytest.fixture
def proxies(stack: Stack) -> Iterator[tuple[GrpcProxy, GrpcProxy]]:
    """A proxy in front of the test stack's Firestore emulator and one in front of its queue."""
    with (
        GrpcProxy(f"127.0.0.1:{stack.firestore_port}") as firestore,
        GrpcProxy(f"127.0.0.1:{stack.tasks_port}") as tasks,
    ):
        yield firestore, tasks


def through(firestore: GrpcProxy | None = None, tasks: GrpcProxy | None = None) -> dict[str, str]:
    env = {}
    if firestore is not None:
        env["FIRESTORE_EMULATOR_HOST"] = firestore.address
    if tasks is not None:
        env["TASKS_EMULATOR_HOST"] = tasks.address
    return env


def ledger_types(user_id: str) -> list[str]:
    return sorted(e["type"] for e in books(user_id)["ledger"].values())


def ai_calls_for(fake_ai: FakeOpenAI, text: str) -> int:
    return sum(1 for r in fake_ai.requests if text in str(r.body))


def kill_hard(other: Stack) -> None:
    """``kill -9`` of the functions server: no cleanup, no reply."""
    for process in other.processes:
        os.killpg(process.popen.pid, signal.SIGKILL)
        process.popen.wait()


# ---- 1. a lost reply from Cloud Tasks ------------------------------------------------------------


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED])
def test_a_lost_queue_reply_is_accepted_and_runs_once(
    api: Api,
    proxies: tuple[GrpcProxy, GrpcProxy],
    functions_stack: Callable[..., Stack],
    fake_ai: FakeOpenAI,
    code: grpc.StatusCode,
) -> None:
    _, tasks = proxies
    lossy = Api(functions_stack(**through(tasks=tasks)).base_url)
    token, user = api.signup()
    tasks.fail_next("CreateTask", "lose_reply", code=code)
    text = f"lost reply {code.name}"
    response = lossy.submit(token, input_data=text)
    # The task was created: the truth is "accepted", and it must run once.
    assert response.status_code == 202, response.text
    assert tasks.seen == ["CreateTask"]
    job = api.wait(token, response.json()["job_id"])
    assert job["status"] == "completed"
    assert ai_calls_for(fake_ai, text) == 1
    assert books(user["id"])["balance"] == 9 and ledger_types(user["id"]) == ["charge", "grant"]


def test_a_queue_refusal_is_not_charged_and_nothing_runs(
    api: Api, proxies: tuple[GrpcProxy, GrpcProxy], functions_stack: Callable[..., Stack], fake_ai: FakeOpenAI
) -> None:
    _, tasks = proxies
    refusing = Api(functions_stack(**through(tasks=tasks)).base_url)
    token, user = api.signup()
    tasks.fail_next("CreateTask", "refuse", code=grpc.StatusCode.PERMISSION_DENIED)
    response = refusing.submit(token, input_data="refused task", headers={"Idempotency-Key": "k-refused"})
    assert response.status_code == 503 and "not charged" in response.json()["error"]["message"]
    assert "Retry-After" in response.headers
    state = books(user["id"])
    assert state["balance"] == 10 and state["idempotency"] == []
    (job,) = state["jobs"].values()
    assert job["status"] == "failed" and job["error"]["code"] == "enqueue_failed"
    time.sleep(0.5)
    assert ai_calls_for(fake_ai, "refused task") == 0


# ---- 2. a crash between the charge and the enqueue -----------------------------------------------


def crash_after_charge(
    api: Api, functions_stack: Callable[..., Stack], tasks: GrpcProxy, token: str, text: str, key: str | None
) -> str:
    """Submit through a server that dies (kill -9) while its CreateTask is on the wire; the
    task never reaches the queue. Returns the charged job's id."""
    doomed = functions_stack(**through(tasks=tasks))
    tasks.fail_next("CreateTask", "hold")
    headers = {"Idempotency-Key": key} if key else {}
    box: dict[str, Any] = {}

    def submit() -> None:
        try:
            box["response"] = Api(doomed.base_url).submit(token, input_data=text, headers=headers)
        except requests.RequestException as exc:
            box["error"] = exc

    thread = threading.Thread(target=submit)
    thread.start()
    assert tasks.held.wait(20), "the submit never reached the queue"
    kill_hard(doomed)
    thread.join(10)
    assert "error" in box, "the client got an answer from a killed server"
    from google.cloud.firestore import FieldFilter

    from shared.db import client

    (job,) = [
        d for d in client().collection("jobs").where(filter=FieldFilter("input_data", "==", text)).stream()
    ]
    assert job.get("status") == "queued" and job.get("attempts") == 0
    return str(job.id)


def test_a_crash_before_the_enqueue_is_sent_at_once_when_the_client_retries_its_key(
    api: Api, proxies: tuple[GrpcProxy, GrpcProxy], functions_stack: Callable[..., Stack], fake_ai: FakeOpenAI
) -> None:
    _, tasks = proxies
    token, user = api.signup()
    text = "crash then retry with key"
    job_id = crash_after_charge(api, functions_stack, tasks, token, text, "crash-key")
    retried = api.submit(token, input_data=text, headers={"Idempotency-Key": "crash-key"})
    assert retried.status_code == 202 and retried.headers.get("Idempotent-Replayed") == "true"
    assert retried.json()["job_id"] == job_id
    assert api.wait(token, job_id, timeout=15)["status"] == "completed"
    # Retried again, after it ran: nothing more is sent or charged.
    again = api.submit(token, input_data=text, headers={"Idempotency-Key": "crash-key"})
    assert again.json()["job_id"] == job_id and again.json()["status"] == "completed"
    time.sleep(0.5)
    assert ai_calls_for(fake_ai, text) == 1
    assert books(user["id"])["balance"] == 9 and ledger_types(user["id"]) == ["charge", "grant"]


def test_a_crash_before_the_enqueue_is_sent_by_the_sweeper_without_client_action(
    api: Api,
    stack: Stack,
    proxies: tuple[GrpcProxy, GrpcProxy],
    functions_stack: Callable[..., Stack],
    fake_ai: FakeOpenAI,
) -> None:
    _, tasks = proxies
    token, user = api.signup()
    text = "crash then the outbox"
    job_id = crash_after_charge(api, functions_stack, tasks, token, text, None)
    # The scheduler calls the sweeper every minute; it sends jobs unclaimed for OUTBOX_DELAY_SECONDS.
    early = internal(stack, "sweep_jobs")
    assert early.status_code == 200 and early.json()["enqueued"] == 0  # too young: may still be on its way
    sweeper = functions_stack(OUTBOX_DELAY_SECONDS="1")
    time.sleep(1.1)
    swept = requests.post(
        f"{sweeper.base_url}/sweep_jobs", headers={"X-Aijobs-Worker-Secret": stack.worker_secret}, timeout=30
    )
    assert swept.status_code == 200 and swept.json()["enqueued"] >= 1
    assert api.wait(token, job_id, timeout=15)["status"] == "completed"
    # A second sweep finds nothing to send; the job ran once.
    assert internal(stack, "sweep_jobs").json()["enqueued"] == 0
    assert ai_calls_for(fake_ai, text) == 1
    assert books(user["id"])["balance"] == 9 and ledger_types(user["id"]) == ["charge", "grant"]


# ---- 3. ambiguous Firestore commits --------------------------------------------------------------


def lose_commit_reply(firestore: GrpcProxy, marker: bytes) -> None:
    firestore.fail_next("Commit", "lose_reply", when=lambda request: marker in request)


def test_a_resent_submit_commit_is_a_success(
    api: Api, proxies: tuple[GrpcProxy, GrpcProxy], functions_stack: Callable[..., Stack], fake_ai: FakeOpenAI
) -> None:
    firestore, _ = proxies
    lossy = Api(functions_stack(**through(firestore=firestore)).base_url)
    token, user = api.signup()
    lose_commit_reply(firestore, b"charge-")
    response = lossy.submit(token, input_data="resent charge", headers={"Idempotency-Key": "resent"})
    assert firestore.pending() == 0, "the fault was not triggered"
    assert response.status_code == 202, response.text
    assert response.json()["credits"] == 9
    job = api.wait(token, response.json()["job_id"])
    assert job["status"] == "completed"
    assert books(user["id"])["balance"] == 9 and ledger_types(user["id"]) == ["charge", "grant"]


@pytest.mark.parametrize(
    ("marker", "outcome"),
    [(b"in_progress", "claim"), (b"completed", "finish")],
)
def test_resent_worker_commits_are_successes(
    api: Api,
    stack: Stack,
    proxies: tuple[GrpcProxy, GrpcProxy],
    functions_stack: Callable[..., Stack],
    fake_ai: FakeOpenAI,
    paused_queue: None,
    marker: bytes,
    outcome: str,
) -> None:
    firestore, _ = proxies
    lossy = functions_stack(**through(firestore=firestore))
    token, user = api.signup()
    text = f"resent {outcome}"
    job_id = api.submit(token, input_data=text).json()["job_id"]
    lose_commit_reply(firestore, marker)
    delivered = requests.post(
        f"{lossy.base_url}/worker",
        json={"job_id": job_id},
        headers={"X-Aijobs-Worker-Secret": stack.worker_secret},
        timeout=60,
    )
    assert firestore.pending() == 0, "the fault was not triggered"
    assert delivered.status_code == 200 and delivered.json()["outcome"] == "completed", delivered.text
    assert ai_calls_for(fake_ai, text) == 1
    state = books(user["id"])
    assert state["jobs"][job_id]["status"] == "completed" and state["jobs"][job_id]["attempts"] == 1
    assert state["balance"] == 9 and ledger_types(user["id"]) == ["charge", "grant"]


def test_a_resent_cancel_is_a_success_and_refunds_once(
    api: Api, proxies: tuple[GrpcProxy, GrpcProxy], functions_stack: Callable[..., Stack], paused_queue: None
) -> None:
    firestore, _ = proxies
    lossy = Api(functions_stack(**through(firestore=firestore)).base_url)
    token, user = api.signup()
    job_id = api.submit(token).json()["job_id"]
    lose_commit_reply(firestore, b"refund-")
    canceled = lossy.call("POST", f"/jobs/{job_id}/cancel", token)
    assert firestore.pending() == 0
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled", canceled.text
    assert books(user["id"])["balance"] == 10 and ledger_types(user["id"]) == ["charge", "grant", "refund"]


def test_a_resent_grant_is_a_success(
    api: Api, proxies: tuple[GrpcProxy, GrpcProxy], functions_stack: Callable[..., Stack]
) -> None:
    from shared import auth

    firestore, _ = proxies
    lossy = Api(functions_stack(**through(firestore=firestore)).base_url)
    admin_token, admin = api.signup()
    auth.set_role(admin["username"], "admin")
    _, user = api.signup()
    lose_commit_reply(firestore, b"grants/")
    body = {"username": user["username"], "amount": 5, "reason": "lost reply", "grant_id": "resent-grant"}
    granted = lossy.call("POST", "/admin/credits", admin_token, json=body)
    assert firestore.pending() == 0
    assert granted.status_code == 200 and granted.json()["credits"] == 15, granted.text
    assert granted.headers.get("Idempotent-Replayed") is None
    assert books(user["id"])["balance"] == 15


def test_a_resent_transfer_is_a_success_and_moves_once(
    api: Api, proxies: tuple[GrpcProxy, GrpcProxy], functions_stack: Callable[..., Stack]
) -> None:
    from shared.db import client

    firestore, _ = proxies
    lossy = Api(functions_stack(**through(firestore=firestore)).base_url)
    token, user = api.signup()
    team_id = api.call("POST", "/teams", token, json={"name": "Lossy"}).json()["team_id"]
    lose_commit_reply(firestore, b"transfers/")
    body = {"amount": 4, "transfer_id": "lost-reply"}
    moved = lossy.call("POST", f"/teams/{team_id}/credits", token, json=body)
    assert firestore.pending() == 0
    assert moved.status_code == 200 and moved.json()["team_credits"] == 4, moved.text
    assert moved.headers.get("Idempotent-Replayed") is None
    assert books(user["id"])["balance"] == 6
    team = client().collection("teams").document(team_id)
    assert sum(d.get("credits") for d in team.collection("wallet").stream()) == 4


def test_a_resent_team_charge_is_a_success(
    api: Api, proxies: tuple[GrpcProxy, GrpcProxy], functions_stack: Callable[..., Stack]
) -> None:
    from shared.db import client

    firestore, _ = proxies
    lossy = Api(functions_stack(**through(firestore=firestore)).base_url)
    token, user = api.signup()
    team_id = api.call("POST", "/teams", token, json={"name": "Lossy"}).json()["team_id"]
    api.call("POST", f"/teams/{team_id}/credits", token, json={"amount": 3, "transfer_id": "in"})
    lose_commit_reply(firestore, b"charge-")
    job = {"task_type": "summarize", "input_data": "resent team charge", "team_id": team_id}
    response = lossy.call("POST", "/submit_job", token, json=job)
    assert firestore.pending() == 0
    assert response.status_code == 202, response.text
    api.wait(token, response.json()["job_id"])
    ledger = client().collection("teams").document(team_id).collection("ledger").stream()
    assert sorted(d.get("type") for d in ledger) == ["charge", "transfer"]
    assert books(user["id"])["balance"] == 7


def test_a_resent_signup_is_a_success(
    proxies: tuple[GrpcProxy, GrpcProxy], functions_stack: Callable[..., Stack]
) -> None:
    firestore, _ = proxies
    lossy = Api(functions_stack(**through(firestore=firestore)).base_url)
    lose_commit_reply(firestore, b"grant-signup")
    username = "resent_" + os.urandom(4).hex()
    created = lossy.call("POST", "/signup", json={"username": username, "password": "pass-word-123"})
    assert firestore.pending() == 0
    assert created.status_code == 201, created.text
    assert books(created.json()["user"]["id"])["balance"] == 10


# ---- 5. Firestore unreachable --------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["refusing", "blackhole"])
def test_every_function_answers_503_within_10_s_when_firestore_is_down(
    api: Api,
    stack: Stack,
    proxies: tuple[GrpcProxy, GrpcProxy],
    functions_stack: Callable[..., Stack],
    mode: str,
) -> None:
    firestore, _ = proxies
    down = functions_stack(**through(firestore=firestore), CATALOG_CACHE_SECONDS="0")
    token, _ = api.signup()
    setattr(firestore, "all_down" if mode == "refusing" else "blackhole", True)
    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/signup", {"json": {"username": "down_user", "password": "pass-word-123"}}),
        ("POST", "/login", {"json": {"username": "down_user", "password": "pass-word-123"}}),
        ("GET", "/me", {}),
        ("GET", "/credits", {}),
        ("POST", "/submit_job", {"json": {"task_type": "summarize", "input_data": "x"}}),
        ("GET", "/jobs", {}),
        ("GET", "/usage?from=2026-01-01&to=2026-01-02", {}),
        ("GET", "/admin/users", {}),
    ]
    secret = {"X-Aijobs-Worker-Secret": stack.worker_secret}
    internal_calls: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/worker", {"json": {"job_id": "0" * 32}, "headers": secret}),
        ("POST", "/sweep_jobs", {"headers": secret}),
        ("POST", "/weekly_report", {"json": {"week": "2020-W01"}, "headers": secret}),
    ]
    client = Api(down.base_url)
    for method, path, kwargs in calls + internal_calls:
        started = time.monotonic()
        response = client.call(method, path, token, **kwargs)
        took = time.monotonic() - started
        assert response.status_code == 503, (path, response.status_code, response.text)
        assert response.json()["error"]["code"] in ("unavailable", "outcome_unknown"), path
        assert int(response.headers["Retry-After"]) >= 1, path
        assert took < 10, (path, took)
    started = time.monotonic()
    health = client.call("GET", "/health")
    assert time.monotonic() - started < 10
    assert health.status_code == 503 and health.json()["checks"]["firestore"].startswith("down")
    assert health.json()["checks"]["queue"] == "ok" and health.json()["checks"]["ai"] == "ok"
