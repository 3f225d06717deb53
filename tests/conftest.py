"""Fixtures: one real local stack per test session.

The Firestore emulator (started from ``emulator-export/``), the Cloud Tasks
emulator, the Firebase Auth emulator and the functions server run as real
processes on free loopback ports; the AI endpoint is ``FakeOpenAI``, a real
HTTP server speaking the OpenAI protocol. The test process talks to the same
emulators to check state.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fake_openai import FakeOpenAI  # noqa: E402

from scripts.stack import Process, Stack  # noqa: E402

PASSWORD = "pass-word-123"
AI_API_KEY = "sk-test-" + uuid.uuid4().hex
TERMINAL = {"completed", "failed", "canceled"}
T = TypeVar("T")


@pytest.fixture(scope="session")
def fake_ai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture(scope="session")
def stack(fake_ai: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    local = Stack(
        ai_base_url=fake_ai.base_url,
        log_dir=tmp_path_factory.mktemp("logs"),
        extra_env={
            # Distinctive, so test_security can prove it never reaches a log, a body or a document.
            "AI_API_KEY": AI_API_KEY,
            "CATALOG_CACHE_SECONDS": "0",
            "AI_TIMEOUT_SECONDS": "1",
            "JOB_MAX_ATTEMPTS": "3",
            "AI_MODEL": "fake-model",
            # Every test signs up from 127.0.0.1; the per-address limit has its own test.
            "SIGNUP_RATE_PER_HOUR": "1000000",
        },
    )
    local.start()
    os.environ.update(local.env())
    from shared.settings import get_settings

    get_settings.cache_clear()
    try:
        yield local
        drain()
        audit_books()
    finally:
        local.stop()


def audit_books() -> None:
    """The books must reconcile after every test run: a discrepancy fails the run."""
    from datetime import timedelta

    from scripts.audit import audit
    from shared.db import client, now

    report = audit(client(), now=now(), grace=timedelta(seconds=30))
    print(f"\n{report.summary()}")
    if report.discrepancies:
        pytest.fail("the books do not reconcile after the run:\n" + "\n".join(report.discrepancies))


@pytest.fixture(autouse=True)
def _clean_ai(request: pytest.FixtureRequest, fake_ai: FakeOpenAI) -> Iterator[None]:
    """Each test starts with an unscripted AI and an idle queue, whatever the last one left."""
    if "stack" in request.fixturenames:
        drain()
    fake_ai.reset()
    yield


def drain(timeout: float = 30.0) -> None:
    """Wait until no job is queued or running, so one test's jobs cannot eat another's AI script."""
    from google.cloud.firestore import FieldFilter

    from shared.db import client

    deadline = time.monotonic() + timeout
    busy = client().collection("jobs").where(filter=FieldFilter("status", "in", ["queued", "in_progress"]))
    while list(busy.limit(1).stream()):
        if time.monotonic() > deadline:
            pending = [d.id for d in busy.stream()]
            pytest.fail(f"jobs still pending after {timeout}s: {pending}")
        time.sleep(0.05)


class Api:
    """A small HTTP client for the functions server."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()

    def call(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return requests.request(method, self.base_url + path, headers=headers, timeout=30, **kwargs)

    def signup(self, username: str | None = None) -> tuple[str, dict[str, Any]]:
        username = username or f"u{uuid.uuid4().hex[:12]}"
        response = self.call("POST", "/signup", json={"username": username, "password": PASSWORD})
        assert response.status_code == 201, response.text
        body = response.json()
        return body["access_token"], body["user"]

    def submit(
        self,
        token: str,
        task_type: str = "summarize",
        input_data: Any = "Some text to work on.",
        options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        body = {"task_type": task_type, "input_data": input_data, "options": options or {}}
        return self.call("POST", "/submit_job", token, json=body, **kwargs)

    def wait(self, token: str, job_id: str, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            job = self.call("GET", f"/jobs/{job_id}", token).json()
            if job["status"] in TERMINAL or time.monotonic() > deadline:
                return dict(job)
            time.sleep(0.05)


STACK_SECRET = "<the stack's own secret>"


def internal(
    stack: Stack, function: str, body: Any = None, secret: str | None = STACK_SECRET
) -> requests.Response:
    """POST to an internal function as its local caller (the queue, the scheduler) would;
    ``secret=None`` sends none, another string sends that one instead."""
    secret = stack.worker_secret if secret == STACK_SECRET else secret
    headers = {} if secret is None else {"X-Aijobs-Worker-Secret": secret}
    return requests.post(f"{stack.base_url}/{function}", json=body, headers=headers, timeout=120)


@pytest.fixture
def api(stack: Stack) -> Api:
    return Api(stack.base_url)


def books(user_id: str) -> dict[str, Any]:
    """Everything a request could change for a user: balance, ledger, jobs, idempotency records."""
    from google.cloud.firestore import FieldFilter

    from shared.db import client

    db = client()
    user = db.collection("users").document(user_id).get()
    ledger = {
        d.id: d.to_dict() for d in db.collection("users").document(user_id).collection("ledger").stream()
    }
    jobs = {
        d.id: d.to_dict()
        for d in db.collection("jobs").where(filter=FieldFilter("user_id", "==", user_id)).stream()
    }
    keys = [
        d.id
        for d in db.collection("idempotency").where(filter=FieldFilter("user_id", "==", user_id)).stream()
    ]
    shards = [
        d.get("credits") for d in db.collection("users").document(user_id).collection("wallet").stream()
    ]
    assert all(c >= 0 for c in shards), f"a wallet shard is negative: {shards}"
    balance = sum(shards) if user.exists else None
    assert balance is None or balance == sum(e["amount"] for e in ledger.values()), (
        "ledger and balance disagree"
    )
    return {"balance": balance, "ledger": ledger, "jobs": jobs, "idempotency": sorted(keys)}


def footprint(user_id: str) -> dict[str, Any]:
    """What a refused request must leave as it was (job contents move on as the worker runs)."""
    state = books(user_id)
    return {**state, "jobs": sorted(state["jobs"])}


@pytest.fixture
def paused_queue(stack: Stack) -> Iterator[None]:
    """Hold deliveries, so a test can act on a job while it is still ``queued``."""
    from shared import queue

    client = queue._client()
    client.pause_queue(name=queue.queue_path())
    try:
        yield
    finally:
        client.resume_queue(name=queue.queue_path())


@pytest.fixture
def functions_stack(stack: Stack, tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    """Start another functions server on the same emulators with some settings changed
    (``FIRESTORE_EMULATOR_HOST``/``TASKS_EMULATOR_HOST`` may point it at a proxy)."""
    started: list[Stack] = []

    def start(**env: str) -> Stack:
        other = Stack(
            firestore_port=stack.firestore_port,
            tasks_port=stack.tasks_port,
            auth_port=stack.auth_port,
            storage_port=stack.storage_port,
            ai_base_url=stack.ai_base_url,
            log_dir=tmp_path / f"functions-{len(started)}",
            worker_secret=stack.worker_secret,
            extra_env={**stack.extra_env, **env},
        )
        started.append(other)
        other.start_functions(threads=8)
        return other

    yield start
    for other in started:
        other.stop()


@pytest.fixture
def functions_server(functions_stack: Callable[..., Stack]) -> Callable[..., str]:
    """Like ``functions_stack``, answering the new server's base URL."""
    return lambda **env: functions_stack(**env).base_url


def at_once(n: int, attempt: Callable[[int], T]) -> list[T]:
    """``attempt(i)`` for i in 0..n-1, from n threads released together."""
    barrier = threading.Barrier(n)

    def run(i: int) -> T:
        barrier.wait()
        return attempt(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


__all__ = [
    "PASSWORD",
    "STACK_SECRET",
    "Api",
    "Process",
    "at_once",
    "books",
    "drain",
    "footprint",
    "internal",
]


CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    # Without these Chromium calls Google's hosts at start, which this closed network refuses.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def launch_chromium(playwright: Any) -> Any:
    """Headless Debian chromium (Playwright's own download cannot work offline), or the
    browser ``CHROMIUM`` names (CI sets it to an installed Chrome)."""
    path = Path(os.environ.get("CHROMIUM") or "/usr/bin/chromium")
    if not path.exists():
        pytest.fail(f"no browser at {path}: scripts/_setup installs Debian's chromium, or set CHROMIUM")
    return playwright.chromium.launch(executable_path=str(path), args=CHROMIUM_ARGS)
