"""Each request's log line carries what it billed: Firestore reads, writes, deletes, Tasks calls.

The figures are checked two ways, neither of which hard-codes how many documents today's
code touches (the books' layout may change): against relations any correct service keeps
(a read-only request writes nothing, a refusal writes only its rate-limit slot, a replay
writes nothing), and against the wire: a functions server behind gRPC proxies that tally
what actually passed to the emulators must log exactly those totals.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import Api, internal
from google.cloud.firestore_v1.types import BatchGetDocumentsResponse, CommitRequest, RunQueryResponse
from grpc_proxy import GrpcProxy

from scripts.stack import Stack

FIELDS = ("firestore_reads", "firestore_writes", "firestore_deletes", "tasks_calls")


class Tally(GrpcProxy):  # type: ignore[misc]  # mypy sees tests/ modules as untyped here
    """The proxy, counting what passes as Firestore bills it (and every Cloud Tasks call)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.counts: Counter[str] = Counter()
        self._count_lock = threading.Lock()

    def _add(self, name: str, n: int = 1) -> None:
        with self._count_lock:
            self.counts[name] += n

    def unary(self, full_method: str, request: bytes, context: grpc.ServicerContext) -> bytes:
        reply = super().unary(full_method, request, context)  # raises if the call failed
        method = full_method.rsplit("/", 1)[-1]
        if method == "Commit":
            for write in CommitRequest.pb().FromString(request).writes:
                kind = write.WhichOneof("operation")
                self._add("firestore_deletes" if kind == "delete" else "firestore_writes")
        elif ".tasks." in full_method:
            self._add("tasks_calls")
        return reply

    def stream(self, full_method: str, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        # Counted as each reply is sent, not at the end: a client that stops reading (a
        # document get takes the first reply) cancels the call before this generator ends.
        method = full_method.rsplit("/", 1)[-1]
        documents = 0
        if method in ("RunQuery", "RunAggregationQuery"):
            self._add("firestore_reads")  # billed even when nothing matches
        for reply in super().stream(full_method, request, context):
            if method == "BatchGetDocuments":
                got = BatchGetDocumentsResponse.pb().FromString(reply)
                self._add("firestore_reads", got.HasField("found") or bool(got.missing))
            elif method == "RunQuery" and RunQueryResponse.pb().FromString(reply).HasField("document"):
                documents += 1
                self._add("firestore_reads", documents > 1)
            yield reply


def request_lines(log: Path, **match: str) -> list[dict[str, Any]]:
    """The request-line records (those with a meter) of ``log`` whose fields equal ``match``."""
    found = []
    for line in log.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        entry = json.loads(line)
        if "firestore_reads" in entry and all(entry.get(k) == v for k, v in match.items()):
            found.append(entry)
    return found


def meter(entry: dict[str, Any]) -> dict[str, int]:
    return {name: entry[name] for name in FIELDS}


def one(log: Path, message: str, **match: str) -> dict[str, int]:
    """The meter of the single request line that starts with ``message`` and matches ``match``."""
    lines = [e for e in request_lines(log, **match) if e["message"].startswith(message)]
    assert len(lines) == 1, lines
    return meter(lines[0])


@pytest.fixture
def log(stack: Stack) -> Path:
    return stack.log_dir / "functions.log"


def test_every_request_line_carries_its_meter(api: Api, log: Path) -> None:
    api.call("GET", "/health")
    entries = request_lines(log, function="health")
    assert entries, "no request line with a meter"
    assert all(isinstance(entries[-1][name], int) for name in FIELDS)


def test_reading_the_account_reads_and_never_writes(api: Api, log: Path) -> None:
    token, user = api.signup()
    assert api.call("GET", "/me", token).status_code == 200
    counts = one(log, "GET / -> 200", function="me", user_id=user["id"])
    assert counts["firestore_reads"] >= 1
    assert counts | {"firestore_reads": 0} == dict.fromkeys(FIELDS, 0)


def test_a_job_life_writes_on_submit_and_in_the_worker_never_on_a_poll(api: Api, log: Path) -> None:
    token, user = api.signup()
    job_id = api.submit(token).json()["job_id"]
    assert api.wait(token, job_id)["status"] == "completed"

    submit = one(log, "POST / -> 202", function="submit_job", job_id=job_id)
    assert submit["tasks_calls"] == 1 and submit["firestore_deletes"] == 0
    assert submit["firestore_reads"] >= 1  # the balance the charge is decided on
    # The rate-limit slot, and the job itself in the charge's commit, at the least.
    assert submit["firestore_writes"] >= 2
    worker = one(log, "POST / -> 200", function="worker", job_id=job_id)
    # The claim reads the job and writes it; the finish writes it, guarded by the claim's
    # own update time, with no second read. A new user's webhook endpoints (none) are one query
    # read, cached per instance for WEBHOOK_CACHE_SECONDS (shared.webhooks).
    assert worker["firestore_reads"] == 2 and worker["firestore_writes"] == 2
    assert worker["tasks_calls"] == 0 and worker["firestore_deletes"] == 0
    polls = [meter(e) for e in request_lines(log, function="jobs", user_id=user["id"])]
    assert polls and all(p["firestore_reads"] >= 1 for p in polls)
    assert all(p | {"firestore_reads": 0} == dict.fromkeys(FIELDS, 0) for p in polls)


def test_a_second_delivery_of_a_finished_job_writes_nothing(api: Api, stack: Stack, log: Path) -> None:
    token, _ = api.signup()
    job_id = api.submit(token).json()["job_id"]
    assert api.wait(token, job_id)["status"] == "completed"
    before = len(request_lines(log, function="worker", job_id=job_id))
    assert internal(stack, "worker", {"job_id": job_id}).json()["outcome"] == "completed"
    again = meter(request_lines(log, function="worker", job_id=job_id)[before])
    assert again["firestore_reads"] >= 1
    assert again | {"firestore_reads": 0} == dict.fromkeys(FIELDS, 0)


def test_a_refusal_writes_nothing(api: Api, log: Path) -> None:
    token, user = api.signup()
    for _ in range(user["credits"]):
        assert api.submit(token).status_code == 202
    assert api.submit(token).status_code == 402
    refused = one(log, "POST / -> 402", function="submit_job", user_id=user["id"])
    assert refused["firestore_reads"] >= 1
    # The submit limit is counted in the charge's own commit: a refusal commits nothing.
    assert refused | {"firestore_reads": 0} == dict.fromkeys(FIELDS, 0)


def test_a_replayed_key_writes_nothing(api: Api, log: Path) -> None:
    token, user = api.signup()
    key = {"Idempotency-Key": "meter-replay"}
    job_id = api.submit(token, headers=key).json()["job_id"]
    assert api.wait(token, job_id)["status"] == "completed"  # claimed: a replay enqueues nothing
    replay = api.submit(token, headers=key)
    assert replay.status_code == 202 and replay.headers.get("Idempotent-Replayed") == "true"
    first, again = (meter(e) for e in request_lines(log, function="submit_job", user_id=user["id"]))
    assert again["firestore_reads"] >= 1
    assert again | {"firestore_reads": 0} == dict.fromkeys(FIELDS, 0)
    # The first submit with a key also wrote the key's record.
    assert first["firestore_writes"] >= 3 and first["tasks_calls"] == 1


@pytest.fixture
def wired(stack: Stack, functions_stack: Callable[..., Stack]) -> Iterator[tuple[Stack, Tally, Tally]]:
    """A functions server whose Firestore and Cloud Tasks calls all pass through tallies."""
    with (
        Tally(f"127.0.0.1:{stack.firestore_port}") as firestore,
        Tally(f"127.0.0.1:{stack.tasks_port}") as tasks,
    ):
        server = functions_stack(FIRESTORE_EMULATOR_HOST=firestore.address, TASKS_EMULATOR_HOST=tasks.address)
        yield server, firestore, tasks


def test_the_logged_counts_are_what_passed_on_the_wire(wired: tuple[Stack, Tally, Tally]) -> None:
    server, firestore, tasks = wired
    api = Api(server.base_url)
    token, user = api.signup()
    keyed = api.submit(token, headers={"Idempotency-Key": "wire"}).json()["job_id"]
    plain = api.submit(token).json()["job_id"]
    for job_id in (keyed, plain):
        assert api.wait(token, job_id)["status"] == "completed"
    api.submit(token, headers={"Idempotency-Key": "wire"})
    api.call("POST", f"/jobs/{plain}/cancel", token)  # 409: already completed
    for path in ("/me", "/credits", "/jobs", "/usage?from=2026-01-01&to=2026-01-31"):
        assert api.call("GET", path, token).status_code == 200
    # A login reads the account, takes a slot and, on success, deletes its counter.
    assert api.call("POST", "/login", json={"username": user["username"], "password": "pass-word-123"}).ok

    logged: Counter[str] = Counter()
    for entry in request_lines(server.log_dir / "functions.log"):
        logged.update(meter(entry))
    wire = firestore.counts + tasks.counts
    assert {name: logged[name] for name in FIELDS} == {name: wire[name] for name in FIELDS}
    assert wire["firestore_deletes"] >= 1, "the login's reset did not reach the wire"
