"""Benchmarks on the local emulators: credit contention, submit and end-to-end latency, cold imports.

Run with ``scripts/bench``. Figures only, no assertions. Two stacks, one after the other, each with
its own Firestore emulator, Cloud Tasks emulator and functions server; the AI is an in-process
``FakeOpenAI`` that answers at once:

- stack A, default settings (10 signup credits): part 1;
- stack B, ``SIGNUP_CREDITS=25`` (each user pays for 20 jobs): parts 2 and 3.

Part 4 (cold imports) runs after both stacks are stopped, in fresh subprocesses.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
from fake_openai import FakeOpenAI  # noqa: E402
from scripts.stack import Stack  # noqa: E402

T = TypeVar("T")
PASSWORD = "bench-password-123"
TEXT = "Cloud Functions run code on demand and scale with the traffic they get. " * 4
TIMEOUT = 30.0  # any single request or wait
LOG_DIR = ROOT / ".run" / "bench-logs"
WATCHED = ("openai", "google.cloud.tasks_v2", "argon2")
BASE_ENV = dict(os.environ)  # for part 4, before any stack's settings are added
IMPORT_PROBE = """
import importlib.util, json, sys, time
name, path, watched = sys.argv[1], sys.argv[2], sys.argv[3:]
start = time.perf_counter()
spec = importlib.util.spec_from_file_location(name, path)
spec.loader.exec_module(importlib.util.module_from_spec(spec))
ms = (time.perf_counter() - start) * 1000
print(json.dumps({"ms": ms, "loaded": [m for m in watched if m in sys.modules]}))
"""


@dataclass(frozen=True)
class Outcome:
    label: str  # accepted, rejected, "HTTP <code>" or an exception's name
    seconds: float
    job_id: str | None = None


# -- plumbing ----------------------------------------------------------------------------------------


def table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  " + "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in
                                enumerate(zip(row, widths, strict=True))))


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] if ordered else float("nan")


def in_threads(n: int, work: Callable[[int, requests.Session], T], limit: float = 120.0) -> tuple[list[T], float]:
    """Run ``work(i, session)`` in n threads released together by a barrier; results and wall time."""
    barrier = threading.Barrier(n + 1, timeout=TIMEOUT)
    results: dict[int, T] = {}

    def run(i: int) -> None:
        with requests.Session() as session:
            barrier.wait()
            results[i] = work(i, session)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start, deadline = time.perf_counter(), time.monotonic() + limit
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return [results[i] for i in sorted(results)], time.perf_counter() - start


def call(session: requests.Session, method: str, url: str, token: str | None = None,
         **kwargs: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return session.request(method, url, headers=headers, timeout=TIMEOUT, **kwargs)


def signup(session: requests.Session, base: str) -> str:
    body = {"username": f"bench-{uuid.uuid4().hex[:12]}", "password": PASSWORD}
    response = call(session, "POST", f"{base}/signup", json=body)
    response.raise_for_status()
    return str(response.json()["access_token"])


def submit(session: requests.Session, base: str, token: str) -> Outcome:
    body = {"task_type": "summarize", "input_data": TEXT}
    start = time.perf_counter()
    try:
        response = call(session, "POST", f"{base}/submit_job", token, json=body)
    except requests.RequestException as exc:
        return Outcome(type(exc).__name__, time.perf_counter() - start)
    seconds = time.perf_counter() - start
    if response.status_code == 202:
        return Outcome("accepted", seconds, response.json()["job_id"])
    return Outcome("rejected" if response.status_code == 402 else f"HTTP {response.status_code}", seconds)


def wait_done(session: requests.Session, base: str, token: str, job_id: str) -> str:
    """Poll the job every 20 ms until it is finished; its status, or ``timeout``."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        status = str(call(session, "GET", f"{base}/jobs/{job_id}", token).json()["status"])
        if status in ("completed", "failed", "canceled"):
            return status
        time.sleep(0.02)
    return "timeout"


def balance(base: str, token: str) -> str:
    with requests.Session() as session:
        return str(call(session, "GET", f"{base}/me", token).json()["credits"])


def others(labels: Counter[str]) -> str:
    rest = [f"{label} x{n}" for label, n in labels.items() if label not in ("accepted", "rejected")]
    return ", ".join(rest) or "none"


def firestore_client() -> Any:
    """A client for the emulator named in os.environ (set from the running stack)."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import firestore

    return firestore.Client(project=os.environ["GOOGLE_CLOUD_PROJECT"], credentials=AnonymousCredentials())


@contextmanager
def running(fake: FakeOpenAI, name: str, **env: str) -> Iterator[Stack]:
    stack = Stack(ai_base_url=fake.base_url, log_dir=LOG_DIR / name, extra_env=env)
    start = time.perf_counter()
    try:
        stack.start()
        os.environ.update(stack.env())
        print(f"\n[stack {name} up in {time.perf_counter() - start:.1f}s: {stack.base_url}, {env or 'defaults'}]")
        warm_up(stack.base_url)
        yield stack
    finally:
        stack.stop()


def warm_up(base: str) -> None:
    """One job end to end, so the timed parts do not pay the functions' first-request work."""
    with requests.Session() as session:
        token = signup(session, base)
        outcome = submit(session, base, token)
        status = wait_done(session, base, token, outcome.job_id) if outcome.job_id else outcome.label
    print(f"[warm-up job: {status}]")


# -- the parts ---------------------------------------------------------------------------------------


def contention_http(stack: Stack, n: int) -> list[str]:
    with requests.Session() as session:
        token = signup(session, stack.base_url)
    outcomes, wall = in_threads(n, lambda _i, s: submit(s, stack.base_url, token))
    labels = Counter(o.label for o in outcomes)
    return ["HTTP submit_job (optimistic commit)", str(labels["accepted"]), str(labels["rejected"]),
            others(labels) + (f", {n - len(outcomes)} unfinished" if len(outcomes) < n else ""),
            f"{wall * 1000:.0f}", balance(stack.base_url, token)]


def contention_naive(n: int) -> list[str]:
    from google.cloud import firestore

    db = firestore_client()
    ref = db.collection("bench").document(uuid.uuid4().hex)
    ref.set({"credits": 10})

    @firestore.transactional
    def take(transaction: Any) -> bool:
        credits = int(ref.get(transaction=transaction).get("credits"))
        if credits < 1:
            return False
        transaction.update(ref, {"credits": credits - 1})
        return True

    def work(_i: int, _session: requests.Session) -> str:
        try:
            return "accepted" if take(db.transaction()) else "rejected"
        except Exception as exc:  # a figure, not a failure: Aborted and friends are counted
            return type(exc).__name__

    labels, wall = in_threads(n, work)
    counts = Counter(labels)
    return ["naive @firestore.transactional", str(counts["accepted"]), str(counts["rejected"]),
            others(counts), f"{wall * 1000:.0f}", str(ref.get().get("credits"))]


def part1(fake: FakeOpenAI, n: int = 50) -> None:
    with running(fake, "A") as stack:
        print(f"\n1. {n} concurrent charges of 1 credit on one account holding 10")
        rows = [contention_http(stack, n), contention_naive(n)]
    table(["", "accepted", "rejected", "other", "wall ms", "final balance"], rows)


def submit_latency(stack: Stack, users: int, jobs: int) -> None:
    with requests.Session() as session:
        tokens = [signup(session, stack.base_url) for _ in range(users)]
    batches, wall = in_threads(users, lambda i, s: [submit(s, stack.base_url, tokens[i]) for _ in range(jobs)])
    outcomes = [o for batch in batches for o in batch]
    ms = [o.seconds * 1000 for o in outcomes]
    labels = Counter(o.label for o in outcomes)
    print(f"\n2. submit_job latency: {users} users x {jobs} jobs, one thread per user")
    table(["requests", "accepted", "other", "p50 ms", "p99 ms", "max ms", "wall s", "submits/s"],
          [[str(len(outcomes)), str(labels["accepted"]), others(labels), f"{percentile(ms, 50):.0f}",
            f"{percentile(ms, 99):.0f}", f"{max(ms):.0f}", f"{wall:.1f}", f"{len(outcomes) / wall:.0f}"]])


def drain(limit: float = 90.0) -> str:
    """Wait until no job is queued or running, so part 3 does not share the queue with part 2."""
    from google.cloud.firestore import FieldFilter

    busy = firestore_client().collection("jobs").where(
        filter=FieldFilter("status", "in", ["queued", "in_progress"])).limit(1)
    start = time.perf_counter()
    while time.perf_counter() - start < limit:
        if not list(busy.stream()):
            return f"queue drained {time.perf_counter() - start:.1f}s after the last submit"
        time.sleep(0.2)
    return f"queue NOT drained after {limit:.0f}s; part 3 shares it"


def end_to_end(stack: Stack, jobs: int) -> None:
    base, results = stack.base_url, Counter[str]()
    ms: list[float] = []
    with requests.Session() as session:
        token = signup(session, base)
        for _ in range(jobs):
            start = time.perf_counter()
            outcome = submit(session, base, token)
            status = wait_done(session, base, token, outcome.job_id) if outcome.job_id else outcome.label
            results[status] += 1
            if status == "completed":
                ms.append((time.perf_counter() - start) * 1000)
    print(f"\n3. submit -> completed (Cloud Tasks emulator -> worker -> fake AI), {jobs} jobs in sequence")
    outcome_text = ", ".join(f"{k} x{v}" for k, v in results.items())
    table(["jobs", "outcomes", "p50 ms", "p99 ms", "max ms"],
          [[str(jobs), outcome_text, f"{percentile(ms, 50):.0f}", f"{percentile(ms, 99):.0f}",
            f"{max(ms, default=float('nan')):.0f}"]])


def parts2_3(fake: FakeOpenAI) -> None:
    with running(fake, "B", SIGNUP_CREDITS="25") as stack:
        submit_latency(stack, users=20, jobs=20)
        print(f"   [{drain()}]")
        end_to_end(stack, jobs=20)


def import_once(path: Path) -> dict[str, Any]:
    argv = [str(ROOT / ".venv" / "bin" / "python"), "-c", IMPORT_PROBE, path.stem, str(path), *WATCHED]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env={**BASE_ENV, "PYTHONPATH": str(ROOT)})
    if done.returncode != 0:
        return {"ms": float("nan"), "loaded": [], "error": done.stderr.strip().splitlines()[-1:]}
    return dict(json.loads(done.stdout))


def part4(runs: int = 3) -> None:
    print(f"\n4. cold import of each function module (fresh interpreter, best of {runs})")
    rows = []
    for path in sorted((ROOT / "functions").glob("*.py")):
        probes = [import_once(path) for _ in range(runs)]
        best = min(probes, key=lambda p: p["ms"])
        marks = ["yes" if m in best["loaded"] else "-" for m in WATCHED]
        error = next((" ".join(p["error"]) for p in probes if "error" in p), "")
        rows.append([path.stem, f"{best['ms']:.0f}", *marks, error])
    table(["function", "ms", *WATCHED, ""], rows)


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    started = time.perf_counter()
    fake = FakeOpenAI().start()
    try:
        part1(fake)
        parts2_3(fake)
    except KeyboardInterrupt:
        print("\ninterrupted; stacks stopped")
        return 130
    finally:
        fake.stop()
    part4()
    print(f"\n(total {time.perf_counter() - started:.0f}s; stack logs in {LOG_DIR.relative_to(ROOT)}/)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
