"""Benchmarks on the local emulators: credit contention, submit and end-to-end latency, the
cost of a job, a hot account, cold imports.

Run with ``scripts/bench``; it prints figures, it asserts nothing. Three stacks run one after
the other, each with its own Firestore emulator, Cloud Tasks emulator and functions server,
and an in-process ``FakeOpenAI`` that answers at once as the AI:

- stack A, default settings (new users get 10 credits): part 1;
- stack B, ``SIGNUP_CREDITS=25`` (each user can pay for 20 jobs): parts 2, 3 and 4;
- stack C, credits and submit rate too high to refuse anything: parts 5, 6 and 7.

Each stack first runs one warm-up job end to end, so no timed request pays a first-request cost,
and is audited (``scripts/audit``) before it stops: the books must reconcile after every part.
Part 8 (cold imports) runs after the stacks are stopped, in fresh interpreters.
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
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
import grpc  # noqa: E402
from fake_openai import FakeOpenAI  # noqa: E402
from grpc_proxy import GrpcProxy  # noqa: E402

from scripts.stack import Stack  # noqa: E402

T = TypeVar("T")
PASSWORD = "bench-password-123"
JOB = {"task_type": "summarize", "input_data": "Cloud Functions run code on demand and scale. " * 6}
TIMEOUT = 30.0  # bound on any one request, barrier or job wait
LOG_DIR = ROOT / ".run" / "bench-logs"
PRICES = ROOT / "scripts" / "prices.json"
METER = ("firestore_reads", "firestore_writes", "firestore_deletes", "tasks_calls")
WATCHED = ("openai", "google.cloud.tasks_v2", "argon2")
BASE_ENV = dict(os.environ)  # part 8 runs without any stack's settings
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
    label: str  # accepted, rejected, "HTTP <status>" or an exception's name
    seconds: float
    job_id: str | None = None


def table(header: list[str], rows: list[list[str]]) -> None:
    """Print rows under header: first column left-aligned, the others right-aligned."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths], *rows]:
        cells = [c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        print("  " + "  ".join(cells).rstrip())


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (of 20 samples, p99 is the maximum)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] if ordered else math.nan


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}"


def spread(seconds: list[float]) -> list[str]:
    """p50, p99 and max, in ms."""
    return [ms(percentile(seconds, 50)), ms(percentile(seconds, 99)), ms(max(seconds, default=math.nan))]


def counts(labels: list[str], expected: int) -> tuple[str, str, str]:
    """Accepted, rejected, and everything else (statuses, exceptions, threads still running)."""
    found = Counter(labels)
    rest = [f"{label} x{n}" for label, n in found.items() if label not in ("accepted", "rejected")]
    if len(labels) < expected:
        rest.append(f"unfinished x{expected - len(labels)}")
    return str(found["accepted"]), str(found["rejected"]), ", ".join(rest) or "none"


def in_threads(n: int, work: Callable[[int, requests.Session], T]) -> tuple[list[T], float]:
    """Run ``work(i, session)`` in n threads released together: the results that came back, wall time."""
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
    start, deadline = time.perf_counter(), time.monotonic() + 120  # every thread's work is bounded
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return [results[i] for i in sorted(results)], time.perf_counter() - start


def call(session: requests.Session, method: str, url: str, token: str, **kwargs: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"}
    return session.request(method, url, headers=headers, timeout=TIMEOUT, **kwargs)


def signup(session: requests.Session, base: str) -> str:
    body = {"username": f"bench-{uuid.uuid4().hex[:12]}", "password": PASSWORD}
    response = session.post(f"{base}/signup", json=body, timeout=TIMEOUT)
    response.raise_for_status()
    return str(response.json()["access_token"])


def submit(session: requests.Session, base: str, token: str, job: dict[str, Any] = JOB) -> Outcome:
    start = time.perf_counter()
    try:
        response = call(session, "POST", f"{base}/submit_job", token, json=job)
    except requests.RequestException as exc:
        return Outcome(type(exc).__name__, time.perf_counter() - start)
    seconds, status = time.perf_counter() - start, response.status_code
    if status == 202:
        return Outcome("accepted", seconds, response.json()["job_id"])
    return Outcome("rejected" if status == 402 else f"HTTP {status}", seconds)


def wait_done(session: requests.Session, base: str, token: str, job_id: str) -> str:
    """Poll the job every 20 ms until it is finished: its final status, or why not."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        try:
            status = str(call(session, "GET", f"{base}/jobs/{job_id}", token).json()["status"])
        except (requests.RequestException, ValueError, KeyError) as exc:
            return type(exc).__name__
        if status in ("completed", "failed", "canceled"):
            return status
        time.sleep(0.02)
    return "timeout"


def firestore_client() -> Any:
    """A client for the emulator os.environ names (set from the running stack)."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import firestore

    return firestore.Client(project=os.environ["GOOGLE_CLOUD_PROJECT"], credentials=AnonymousCredentials())


@contextmanager
def running(fake: FakeOpenAI, name: str, **env: str) -> Iterator[Stack]:
    """A started stack (stopped on the way out, whatever happens) with os.environ pointing at it."""
    # Every signup here comes from 127.0.0.1: the per-address limit would stop the parts.
    env = {"SIGNUP_RATE_PER_HOUR": "1000000", **env}
    stack = Stack(ai_base_url=fake.base_url, log_dir=LOG_DIR / name, extra_env=env)
    start = time.perf_counter()
    try:
        stack.start()
        os.environ.update(stack.env())
        with requests.Session() as session:
            token = signup(session, stack.base_url)
            job_id = submit(session, stack.base_url, token).job_id
            warm = wait_done(session, stack.base_url, token, job_id) if job_id else "not accepted"
        took = time.perf_counter() - start
        print(f"\n[stack {name} ({env}) up in {took:.1f}s, warm-up job {warm}]")
        yield stack
        audit_books(name)
    finally:
        stack.stop()


def audit_books(name: str) -> None:
    """``scripts/audit`` over everything the stack's parts left in its emulator."""
    from scripts.audit import audit

    idle = drain(30.0)
    report = audit(firestore_client(), now=datetime.now(UTC))
    print(f"   [stack {name}: {idle}; {report.summary()}]")
    for line in report.discrepancies[:10]:
        print(f"     {line}")


def contention_http(base: str, n: int) -> list[str]:
    with requests.Session() as session:
        token = signup(session, base)
        outcomes, wall = in_threads(n, lambda _i, s: submit(s, base, token))
        final = call(session, "GET", f"{base}/me", token).json()["credits"]
    return ["HTTP POST /submit_job", *counts([o.label for o in outcomes], n), ms(wall), str(final)]


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
        except Exception as exc:  # counted, not raised: this is the figure
            cause = f" from {type(exc.__cause__).__name__}" if exc.__cause__ else ""
            return type(exc).__name__ + cause

    labels, wall = in_threads(n, work)
    final = ref.get().get("credits")
    return ["in-process @firestore.transactional", *counts(labels, n), ms(wall), str(final)]


def contention_team(base: str, n: int, daily_limit: int | None = None) -> list[str]:
    """``n`` members of one team submit at once against its pool of 10 credits (each with
    ``daily_limit``, and then each sends two)."""
    with requests.Session() as session:
        owner = signup(session, base)
        team_id = call(session, "POST", f"{base}/teams", owner, json={"name": "bench"}).json()["team_id"]
        members = [signup(session, base) for _ in range(n)]
        for token in members:
            name = call(session, "GET", f"{base}/me", token).json()["username"]
            member = {"username": name, "daily_limit": daily_limit}
            call(session, "POST", f"{base}/teams/{team_id}/members", owner, json=member).raise_for_status()
        pool = {"amount": 10, "transfer_id": "bench"}
        call(session, "POST", f"{base}/teams/{team_id}/credits", owner, json=pool).raise_for_status()
        job, each = {**JOB, "team_id": team_id}, 1 if daily_limit is None else 2
        outcomes, wall = in_threads(n * each, lambda i, s: submit(s, base, members[i % n], job))
        final = call(session, "GET", f"{base}/teams/{team_id}", owner).json()["credits"]
    label = f"HTTP, {n} team members" + ("" if daily_limit is None else f", limit {daily_limit}/day, 2 each")
    return [label, *counts([o.label for o in outcomes], n * each), ms(wall), str(final)]


def part1(fake: FakeOpenAI, n: int = 50) -> None:
    with running(fake, "A") as stack:
        rows = [contention_http(stack.base_url, n), contention_naive(n)]
        print(f"\n1. {n} concurrent charges of 1 credit on one account holding 10 (same Firestore emulator)")
        table(["", "accepted", "rejected", "other", "wall ms", "final balance"], rows)
        rows = [contention_team(stack.base_url, n), contention_team(stack.base_url, 10, daily_limit=1)]
        print("\n1b. concurrent charges of 1 credit on a team pool of 10 (rejected: 402 of any code)")
        table(["", "accepted", "rejected", "other", "wall ms", "final pool"], rows)


def submit_latency(base: str, users: int, jobs: int) -> None:
    with requests.Session() as session:
        tokens = [signup(session, base) for _ in range(users)]
    batches, wall = in_threads(users, lambda i, s: [submit(s, base, tokens[i]) for _ in range(jobs)])
    outcomes = [o for batch in batches for o in batch]
    took = [o.seconds for o in outcomes]
    accepted, _, other = counts([o.label for o in outcomes], users * jobs)
    print(f"\n2. POST /submit_job latency: {users} users x {jobs} jobs, one thread per user, all at once")
    header = ["requests", "accepted", "other", "p50 ms", "p99 ms", "max ms", "wall s", "submits/s"]
    rate = f"{len(outcomes) / wall:.0f}"
    table(header, [[str(len(outcomes)), accepted, other, *spread(took), f"{wall:.1f}", rate]])


def drain(limit: float = 90.0) -> str:
    """Wait until no job is queued or running, so the next part has the queue and the worker to
    itself."""
    from google.cloud.firestore import FieldFilter

    jobs = firestore_client().collection("jobs")
    busy = jobs.where(filter=FieldFilter("status", "in", ["queued", "in_progress"])).limit(1)
    start = time.perf_counter()
    while time.perf_counter() - start < limit:
        if not list(busy.stream()):
            return f"queue drained in {time.perf_counter() - start:.1f}s"
        time.sleep(0.2)
    return f"queue NOT drained in {limit:.0f}s"


def end_to_end(base: str, jobs: int) -> None:
    finished: Counter[str] = Counter()
    took: list[float] = []
    with requests.Session() as session:
        token = signup(session, base)
        for _ in range(jobs):
            start = time.perf_counter()
            outcome = submit(session, base, token)
            status = wait_done(session, base, token, outcome.job_id) if outcome.job_id else outcome.label
            finished[status] += 1
            if status == "completed":
                took.append(time.perf_counter() - start)
    print(f"\n3. submit -> completed (Cloud Tasks emulator -> worker -> fake AI), {jobs} jobs in sequence")
    outcomes = ", ".join(f"{status} x{n}" for status, n in finished.items())
    table(["jobs", "outcomes", "p50 ms", "p99 ms", "max ms"], [[str(jobs), outcomes, *spread(took)]])


def seed_week(week: str, users: int, per_user: int) -> None:
    """Complete books for a past week, written as the service writes them: each user signs up
    (signup grant) at the week's start and submits ``per_user`` jobs, each charged; the failed
    ones (one in ten) are refunded. ``scripts/audit`` reconciles them like real ones."""
    from google.cloud import firestore

    from shared import credits, usage
    from shared.db import client
    from shared.reports import week_start

    db, start, tasks = client(), week_start(week), ("summarize", "translate", "generate_text", "chat")
    for u in range(users):
        user_id, batch = f"bench-user-{u:04d}", db.batch()
        profile = {
            "username": f"bench-user-{u:04d}",
            "password_hash": "x",
            "role": "user",
            "created_at": start,
        }
        credits.stage_open_account(batch, user_id, profile, per_user, start)
        wallet = db.collection("users").document(user_id).collection("wallet")
        spread = credits.width(per_user)  # the shards the opening grant was split over
        for j in range(per_user):
            at = start + timedelta(seconds=(u * per_user + j) * 7 * 86400 // (users * per_user))
            task, status = tasks[j % 4], "failed" if j % 10 == 0 else "completed"
            job_id, shard = uuid.uuid4().hex, j % spread
            # credits.stage_charge without its read and precondition: nothing races a seed. In
            # turn over the shards, each gives exactly the part of the grant it was opened with.
            batch.update(wallet.document(str(shard)), {"credits": firestore.Increment(-1)})
            entry = {"type": "charge", "amount": -1, "job_id": job_id, "created_at": at}
            batch.create(
                db.collection("users").document(user_id).collection("ledger").document(f"charge-{job_id}"),
                entry,
            )
            usage.stage_submitted_unguarded(batch, user_id, task, 1, at, shard)
            seconds = 1 + j % 30
            done = at + timedelta(seconds=seconds)
            if status == "failed":
                credits.stage_refund(batch, user_id, 1, job_id, done, shard)
                usage.stage_refunded(batch, user_id, task, "failed", 1, at, shard)
                finished = {}
            else:  # what the worker's finish records: the report counts completions by it
                finished = {"completed_at": done, "latency_bucket": usage.latency_bucket(seconds)}
            batch.create(
                db.collection("jobs").document(job_id),
                {
                    "user_id": user_id,
                    "task_type": task,
                    "status": status,
                    "cost": 1,
                    "created_at": at,
                    "updated_at": done,
                    "input_data": "x",
                    "options": {},
                    "output": {"text": "x"} if status == "completed" else None,
                    "error": {"code": "synthetic", "message": "synthetic"} if status == "failed" else None,
                    "attempts": 1,
                    "lease_id": None,
                    "lease_expires_at": None,
                    "shard": shard,
                    **finished,
                },
            )
            if len(batch) > 400:
                batch.commit()
                batch = db.batch()
        if len(batch):
            batch.commit()


def report_week(stack: Stack, users: int = 400, per_user: int = 50) -> None:
    week = "2020-W10"
    start = time.perf_counter()
    seed_week(week, users, per_user)
    seeded = time.perf_counter() - start
    headers = {"X-Aijobs-Worker-Secret": stack.worker_secret}
    took = []
    for _ in range(3):
        start = time.perf_counter()
        response = requests.post(
            f"{stack.base_url}/weekly_report", json={"week": week}, headers=headers, timeout=300
        )
        took.append(time.perf_counter() - start)
    report = response.json() if response.ok else {"jobs": {"submitted": f"error {response.status_code}"}}
    print(
        f"\n4. weekly_report over a week of {users * per_user} jobs ({users} users; seeded in {seeded:.1f}s)"
    )
    table(
        ["jobs in report", "anomalies", "first run ms", "best of 3 ms"],
        [
            [
                str(report["jobs"]["submitted"]),
                str(len(report.get("anomalies", []))),
                ms(took[0]),
                ms(min(took)),
            ]
        ],
    )


def seen_after_final_commit(
    session: requests.Session, base: str, token: str, wait: bool
) -> tuple[float, int]:
    """Submit a job, then follow it by long-poll (``?wait=20``) or by polling every 20 ms: how
    long after the worker's final commit (the job's ``updated_at``) the client held the answer,
    and how many calls it made."""
    outcome = submit(session, base, token)
    assert outcome.job_id, outcome.label
    calls = 0
    while True:
        calls += 1
        path = f"{base}/jobs/{outcome.job_id}" + ("?wait=20" if wait else "")
        job = call(session, "GET", path, token).json()
        if job["status"] in ("completed", "failed", "canceled"):
            seen = datetime.now(UTC)
            return (seen - datetime.fromisoformat(job["updated_at"])).total_seconds(), calls
        if not wait:
            time.sleep(0.02)


def long_poll(fake: FakeOpenAI, base: str, jobs: int) -> None:
    fake.default_delay = 0.3  # the job is still running when the client starts to wait
    rows = []
    try:
        with requests.Session() as session:
            token = signup(session, base)
            for label, wait in (("long-poll GET /jobs/{id}?wait=20", True), ("poll every 20 ms", False)):
                runs = [seen_after_final_commit(session, base, token, wait) for _ in range(jobs)]
                lags = [lag for lag, _ in runs]
                calls = sum(n for _, n in runs) / jobs
                rows.append([label, ms(percentile(lags, 50)), ms(percentile(lags, 99)), f"{calls:.1f}"])
    finally:
        fake.default_delay = 0.0
    print(
        f"\n3b. following a job to its end: how long after the worker's final commit the client sees it"
        f" ({jobs} jobs, AI 0.3 s)"
    )
    table(["", "p50 ms", "p99 ms", "calls per job"], rows)
    print(
        "   a long-poll reads at most 3 documents (the listener's snapshots: queued, in_progress, final);"
        " each poll reads 1; target p50 within 100 ms"
    )


def parts2_3(fake: FakeOpenAI) -> None:
    with running(fake, "B", SIGNUP_CREDITS="60") as stack:
        submit_latency(stack.base_url, users=20, jobs=20)
        print(f"   [{drain()}]")
        end_to_end(stack.base_url, jobs=20)
        long_poll(fake, stack.base_url, jobs=15)
        report_week(stack)


def request_lines(stack: Stack) -> list[dict[str, Any]]:
    """The request-line records of the stack's functions log: the ones carrying a meter."""
    found = []
    for line in (stack.log_dir / "functions.log").read_text(errors="replace").splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if "firestore_reads" in entry:
                found.append(entry)
    return found


def prices() -> dict[str, float]:
    """US dollars per single operation, from the price table kept in the repo."""
    table = json.loads(PRICES.read_text())
    firestore = table["firestore"]["nam5"]
    return {
        "firestore_reads": firestore["reads_per_100k"] / 1e5,
        "firestore_writes": firestore["writes_per_100k"] / 1e5,
        "firestore_deletes": firestore["deletes_per_100k"] / 1e5,
        "tasks_operations": table["cloud_tasks"]["per_million_operations"] / 1e6,
        "invocations": table["functions"]["per_million_invocations"] / 1e6,
    }


def dollars_per_million(row: dict[str, float], price: dict[str, float]) -> float:
    """What a million of ``row`` cost past the free tiers; compute time is not priced."""
    tasks = row["tasks_calls"] + row["deliveries"]  # Cloud Tasks bills each push delivery too
    money = sum(row[name] * price[name] for name in METER[:3])
    return 1e6 * (money + tasks * price["tasks_operations"] + row["invocations"] * price["invocations"])


def job_cost(stack: Stack, jobs: int = 20) -> None:
    """Part 5: run ``jobs`` jobs one at a time and sum their requests' meters from the log."""
    with requests.Session() as session:
        token = signup(session, stack.base_url)
        user_id = str(call(session, "GET", f"{stack.base_url}/me", token).json()["id"])
        ids = []
        for _ in range(jobs):
            outcome = submit(session, stack.base_url, token)
            if outcome.job_id:
                ids.append(outcome.job_id)
                wait_done(session, stack.base_url, token, outcome.job_id)
    mine = set(ids)
    lines = request_lines(stack)
    kinds: dict[str, list[dict[str, Any]]] = {
        "submit (POST /submit_job)": [
            e for e in lines if e.get("function") == "submit_job" and e.get("job_id") in mine
        ],
        "worker (claim, run, finish)": [
            e for e in lines if e.get("function") == "worker" and e.get("job_id") in mine
        ],
        "poll (GET /jobs/{id})": [
            e for e in lines if e.get("function") == "jobs" and e.get("user_id") == user_id
        ],
    }
    price, rows, per_job = prices(), [], Counter[str]()
    for label, entries in kinds.items():
        n = len(entries) if label.startswith("poll") else len(ids)
        row = {name: sum(e[name] for e in entries) / max(n, 1) for name in METER}
        row["invocations"] = len(entries) / max(n, 1)
        row["deliveries"] = row["invocations"] if label.startswith("worker") else 0.0
        if not label.startswith("poll"):
            per_job.update(row)
        rows.append((label + (" each" if label.startswith("poll") else " per job"), row))
    rows.insert(2, ("one job, no polls", dict(per_job)))
    print(
        f"\n5. Cost of one job's life: {len(ids)} jobs one at a time, summed from the request lines' meters"
    )
    header = ["", "reads", "writes", "deletes", "tasks calls", "deliveries", "invocations", "$/million"]
    table(
        header,
        [
            [
                label,
                *(f"{row[k]:.2f}" for k in (*METER, "deliveries", "invocations")),
                f"{dollars_per_million(row, price):.2f}",
            ]
            for label, row in rows
        ],
    )
    print(
        f"   prices: {PRICES.relative_to(ROOT)} (Firestore nam5 Standard, Cloud Tasks and Cloud Run functions"
        " list prices past their free tiers); compute time (vCPU-s, GiB-s) is not included"
    )
    print(f"   {BEFORE['cost']}; target: a completed job at most 6 writes and 4 reads")


def hot_phase(base: str, tokens: list[str], clients: int, seconds: float) -> tuple[float, list[float], str]:
    """``clients`` threads submitting back to back for ``seconds``, client i as ``tokens[i % n]``:
    accepted jobs/s, the latencies of every submit, and what was not accepted."""

    def work(i: int, session: requests.Session) -> list[Outcome]:
        done, deadline = [], time.monotonic() + seconds
        while time.monotonic() < deadline:
            done.append(submit(session, base, tokens[i % len(tokens)]))
        return done

    batches, wall = in_threads(clients, work)
    outcomes = [o for batch in batches for o in batch]
    accepted = sum(o.label == "accepted" for o in outcomes)
    other = Counter(o.label for o in outcomes if o.label != "accepted")
    return (
        accepted / wall,
        [o.seconds for o in outcomes],
        ", ".join(f"{k} x{n}" for k, n in other.items()) or "none",
    )


def hot_account(stack: Stack, clients: int = 32, seconds: float = 8.0) -> None:
    """Part 6: the same load on one account and spread over one account per client."""
    with ThreadPoolExecutor(8) as pool:
        tokens = list(pool.map(lambda _: signup(requests.Session(), stack.base_url), range(clients)))
    results = {}
    for name, mine in (("one account", tokens[:1]), (f"{clients} accounts", tokens)):
        results[name] = hot_phase(stack.base_url, mine, clients, seconds)
        drain()
    print(
        f"\n6. Hot account: {clients} clients submitting back to back, {seconds:.0f}s each way (instant AI)"
    )
    rows = [
        [name, f"{rate:.0f}", ms(percentile(took, 50)), ms(percentile(took, 99)), str(len(took)), other]
        for name, (rate, took, other) in results.items()
    ]
    table(["", "accepted jobs/s", "p50 ms", "p99 ms", "submits", "not accepted"], rows)
    (one_rate, one_took, _), (all_rate, all_took, _) = results.values()
    rate_ratio = one_rate / all_rate if all_rate else math.nan
    p99_ratio = percentile(one_took, 99) / percentile(all_took, 99)
    met = {True: "met", False: "NOT met"}
    print(
        f"   one/spread: jobs/s {rate_ratio:.2f} (target >= 0.8: {met[rate_ratio >= 0.8]}),"
        f" p99 {p99_ratio:.2f}x (target <= 1.5x: {met[p99_ratio <= 1.5]})"
    )
    print(f"   {BEFORE['hot']}")


# Measured here on 2026-12-01 before the sharded wallet (one balance document per user, week and
# day counters, one submit counter per minute), printed beside today's figures.
BEFORE = {
    "cost": "before the sharded wallet: 3 reads, 9 writes, 1 Tasks call + 1 delivery, 2 invocations"
    " = $19.60/million",
    "hot": "before the sharded wallet: one account 87 jobs/s p99 1,745 ms, 32 accounts 249 jobs/s"
    " p99 206 ms (0.35, 8.5x)",
    "busiest": "before the sharded wallet: users/{user}/usage_weeks/{week}, 100 writes/s",
}


class CommitTally(GrpcProxy):  # type: ignore[misc]  # mypy sees tests/ modules as untyped here
    """The gRPC proxy, also counting the writes of every applied Commit per document.

    Here rather than in the service's meter: the service logs counts per request, and
    naming every document it wrote would put a bench's need into every production log line.
    """

    def __post_init__(self) -> None:
        super().__post_init__()
        self.writes: Counter[str] = Counter()
        self._tally = threading.Lock()

    def unary(self, full_method: str, request: bytes, context: grpc.ServicerContext) -> bytes:
        from google.cloud.firestore_v1.types import CommitRequest

        reply = super().unary(full_method, request, context)  # raises if the commit failed
        if full_method.endswith("/Commit"):
            names = []
            for write in CommitRequest.pb().FromString(request).writes:
                kind = write.WhichOneof("operation")
                names.append(
                    write.delete if kind == "delete" else write.update.name or write.transform.document
                )
            with self._tally:
                self.writes.update(name.split("/documents/", 1)[-1] for name in names)
        return reply


def busiest_document(stack: Stack, fake: FakeOpenAI, rate: float = 50.0, seconds: float = 8.0) -> None:
    """Part 7: one account paced at ``rate`` jobs/s; which document is written most, how often."""
    with CommitTally(f"127.0.0.1:{stack.firestore_port}") as tally:
        wired = Stack(
            firestore_port=stack.firestore_port,
            tasks_port=stack.tasks_port,
            ai_base_url=fake.base_url,
            log_dir=stack.log_dir / "through-tally",
            worker_secret=stack.worker_secret,
            extra_env={**stack.extra_env, "FIRESTORE_EMULATOR_HOST": tally.address},
        )
        try:
            wired.start_functions()
            with requests.Session() as session:
                token = signup(session, wired.base_url)
                user_id = str(call(session, "GET", f"{wired.base_url}/me", token).json()["id"])
            tally.writes.clear()
            total = int(rate * seconds)
            start = time.monotonic()
            with ThreadPoolExecutor(16) as pool:
                futures = []
                for i in range(total):
                    time.sleep(max(0.0, start + i / rate - time.monotonic()))
                    futures.append(pool.submit(submit, requests.Session(), wired.base_url, token))
                outcomes = [f.result() for f in futures]
            sent = time.monotonic() - start
            idle = drain()
            span = time.monotonic() - start
        finally:
            wired.stop()
    accepted = sum(o.label == "accepted" for o in outcomes)
    print(
        f"\n7. One account paced at {rate:.0f} jobs/s for {seconds:.0f}s: {accepted} of {total} accepted"
        f" ({accepted / sent:.0f}/s), writes per document from the applied Commits ({idle})"
    )
    rows = [
        [name.replace(user_id, "{user}"), str(n), f"{n / sent:.1f}", f"{n / span:.1f}"]
        for name, n in tally.writes.most_common(5)
    ]
    table(["document", "writes", "per s (submits)", f"per s (until drained, {span:.1f}s)"], rows)
    top = tally.writes.most_common(1)[0][1] / sent if tally.writes else 0.0
    print(f"   busiest document {top:.1f} writes/s (target <= 1: {'met' if top <= 1 else 'NOT met'})")
    print(f"   {BEFORE['busiest']}")


def batch_of_500(stack: Stack, runs: int = 3) -> None:
    """Part 9: accept batches of 500 jobs; the time to the 202 and the request's meter."""
    body = {"jobs": [{"task_type": "summarize", "input_data": "Some text to work on."}] * 500}
    with requests.Session() as session:
        token = signup(session, stack.base_url)
        took, ids = [], []
        for _ in range(runs):
            started = time.perf_counter()
            answer = call(session, "POST", f"{stack.base_url}/batches", token, json=body)
            took.append(time.perf_counter() - started)
            if answer.status_code != 202:
                print(f"\n9. batch of 500: answered {answer.status_code} {answer.text[:200]}")
                return
            ids.append(answer.json()["batch_id"])
    lines = [
        e for e in request_lines(stack) if e.get("function") == "batches" and "POST" in str(e.get("message"))
    ]
    mine = lines[-runs:]
    meter = {name: sum(e.get(name, 0) for e in mine) / max(len(mine), 1) for name in METER}
    print(f"\n9. POST /batches with 500 summarize jobs, {runs} times (the jobs then run through the queue)")
    print(
        f"   accepted in p50 {ms(percentile(took, 0.5))} ms, max {ms(max(took))} ms (target: under 2 s);"
        f" per batch: {meter['firestore_writes']:.0f} Firestore writes, {meter['firestore_reads']:.0f} reads,"
        f" {meter['tasks_calls']:.0f} Cloud Tasks calls (one per job, 16 at a time)"
    )


def parts5_7(fake: FakeOpenAI) -> None:
    huge = {"SIGNUP_CREDITS": "1000000", "SUBMIT_RATE_PER_MINUTE": "1000000"}
    with running(fake, "C", **huge) as stack:
        job_cost(stack)
        hot_account(stack)
        busiest_document(stack, fake)
        batch_of_500(stack)


def import_once(path: Path) -> dict[str, Any]:
    argv = [str(ROOT / ".venv" / "bin" / "python"), "-c", IMPORT_PROBE, path.stem, str(path), *WATCHED]
    env = {**BASE_ENV, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)
    if done.returncode != 0:
        return {"ms": math.nan, "loaded": [], "error": (done.stderr.strip().splitlines() or ["?"])[-1]}
    return dict(json.loads(done.stdout))


def part8(runs: int = 3) -> None:
    rows = []
    for path in sorted((ROOT / "functions").glob("*.py")):
        probes = [import_once(path) for _ in range(runs)]
        best = min(probes, key=lambda p: p["ms"] if not math.isnan(p["ms"]) else math.inf)
        loaded = ["yes" if module in best["loaded"] else "-" for module in WATCHED]
        errors = sorted({p["error"] for p in probes if "error" in p})
        rows.append([path.stem, f"{best['ms']:.0f}", *loaded, "; ".join(errors)])
    print(f"\n8. cold import of each function module (fresh interpreter, best of {runs}; yes = imported)")
    table(["function", "ms", *WATCHED, ""], rows)


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # through the finally blocks below
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
    started = time.perf_counter()
    fake = FakeOpenAI().start()
    try:
        part1(fake)
        parts2_3(fake)
        parts5_7(fake)
        fake.stop()
        part8()
    except KeyboardInterrupt:
        print("\ninterrupted; everything started here was stopped")
        return 130
    finally:
        fake.stop()
    print(f"\n(total {time.perf_counter() - started:.0f}s; stack logs in {LOG_DIR.relative_to(ROOT)}/)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
