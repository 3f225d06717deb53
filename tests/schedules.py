"""Seeded fault schedules over the money and job code, on the real Firestore emulator.

One schedule: a few users, then a random interleaving of submits (with and without
``Idempotency-Key``, repeated, racing), cancels, admin grants, worker deliveries
(duplicated, out of order, racing) with AI faults (retryable, permanent, slow past
the lease, a crash mid-run), queue faults (a lost reply, a refusal, a crash between
the charge and the enqueue), ambiguous Firestore commits (a proxy loses the reply
of a commit it forwarded) and sweeper runs. Then it drains: deliveries and sweeps
until every job is final. Then it checks: ``scripts/audit`` is clean, and every
answer a client got matches the books.

The queue is simulated with Cloud Tasks' contract (a task named after its job is
created once; a delivery answered with an error stays queued and is delivered
again), so the schedule decides delivery order and duplicates. Everything else is
the service's own code, called in-process, against the emulator behind
``GrpcProxy``. Thread interleavings are not reproducible; the schedule is: a
failure prints its seed and ``scripts/soak --seed N`` replays it.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from grpc_proxy import GrpcProxy

SIM_ENV = {
    # Short enough that a drained schedule ends in seconds: a slow AI call outlives its lease,
    # the sweeper sends unsent jobs after a second and fails jobs whose tasks were lost.
    "AI_TIMEOUT_SECONDS": "0.3",
    "LEASE_GRACE_SECONDS": "0.3",
    "STORAGE_TIMEOUT_SECONDS": "0.2",  # an image's upload must fit in the lease's grace
    "OUTBOX_DELAY_SECONDS": "1",
    "QUEUED_TIMEOUT_SECONDS": "6",
    "JOB_MAX_ATTEMPTS": "3",
    "SUBMIT_RATE_PER_MINUTE": "100000",
    "CATALOG_CACHE_SECONDS": "30",
}


class Crash(BaseException):
    """The process died here: nothing after this point of the request ran."""


@dataclass
class Answer:
    """What one client request was told."""

    op: str
    user: str
    key: str | None = None
    status: str = ""
    """``accepted``, ``replayed``, ``refused`` (4xx), ``not_charged`` (503 saying so),
    ``unavailable`` (503, nothing done), ``unknown`` (no answer, or OutcomeUnknown)."""
    job_id: str | None = None
    code: str | None = None


@dataclass
class SimQueue:
    """Cloud Tasks as the service sees it: task names are unique, delivery is at least once."""

    rng: random.Random
    tasks: dict[str, str] = field(default_factory=dict)
    """Task name -> job id, for tasks not yet acknowledged."""
    names: set[str] = field(default_factory=set)
    faults: Counter[str] = field(default_factory=Counter)
    enqueues: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self.plan: list[str] = []
        """Faults for the next enqueue calls, popped in order (``ok`` when empty)."""

    def enqueue(self, job_id: str, generation: int) -> None:
        from shared.errors import NotQueued, Unavailable

        name = f"job-{job_id}" + (f"-{generation}" if generation else "")
        with self._lock:
            fault = self.plan.pop(0) if self.plan else "ok"
            self.enqueues += 1
            self.faults[fault] += 1
        if fault == "crash":
            raise Crash
        if fault == "refuse":
            raise NotQueued("simulated refusal")
        if fault == "drop":  # the connection broke before the queue saw the call
            raise Unavailable("simulated dropped connection")
        with self._lock:
            if name not in self.names:
                self.names.add(name)
                self.tasks[name] = job_id
        if fault == "lose_reply":
            raise Unavailable("simulated lost reply")

    def pick(self) -> tuple[str, str] | None:
        with self._lock:
            if not self.tasks:
                return None
            name = self.rng.choice(sorted(self.tasks))
            return name, self.tasks[name]

    def ack(self, name: str) -> None:
        with self._lock:
            self.tasks.pop(name, None)


@dataclass
class SimAI:
    """The AI provider with faults chosen by the schedule."""

    plan: list[str] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)
    """Job input -> AI calls that completed or failed, to prove no job ran twice at once."""

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self.running: dict[str, str] = {}
        """Job input -> the fault of the call running it now."""
        self.overlaps: list[str] = []

    def __call__(self, task_type: str, input_data: Any, options: dict[str, Any]) -> dict[str, Any]:
        from shared.errors import PermanentProviderError, ProviderServerError

        with self._lock:
            fault = self.plan.pop(0) if self.plan else "ok"
            key = str(input_data)
            # Only a call that outlived its lease may be overtaken by another delivery.
            if self.running.get(key, "slow") != "slow":
                self.overlaps.append(key)
            self.running[key] = fault
        try:
            if fault == "crash":
                raise Crash
            if fault == "slow":  # outlives the lease: another delivery may take over
                time.sleep(0.8)
            if fault == "retryable":
                raise ProviderServerError("simulated 503")
            if fault == "permanent":
                raise PermanentProviderError("simulated 400")
            return {"text": f"done: {key}"}
        finally:
            with self._lock:
                if self.running.get(key) == fault:
                    del self.running[key]
                self.calls[key] += 1


@dataclass
class Schedule:
    seed: int
    users: int = 3
    steps: int = 40
    proxy: GrpcProxy | None = None
    answers: list[Answer] = field(default_factory=list)
    operations: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.queue = SimQueue(random.Random(self.seed + 1))
        self.ai = SimAI()
        self._lock = threading.Lock()
        self.ids: list[str] = []
        self.names: dict[str, str] = {}
        self.keys: dict[str, list[str]] = {}
        self.jobs: dict[str, list[str]] = {}

    # -- the operations ---------------------------------------------------------------------------

    def _record(self, answer: Answer) -> None:
        with self._lock:
            self.answers.append(answer)
            self.operations[answer.op] += 1
            if answer.job_id:
                self.jobs.setdefault(answer.user, []).append(answer.job_id)

    def _submit(self, user: str, key: str | None, text: str) -> None:
        from shared import jobs
        from shared.errors import AppError, NotQueued, OutcomeUnknown, Unavailable

        answer = Answer("submit", user, key)
        # Without a key every request is a new job; its input names it for the AI's bookkeeping.
        text = text if key else f"{text}-{uuid.uuid4().hex[:8]}"
        try:
            body = jobs.JobCreate(task_type="summarize", input_data=text)
            accepted = jobs.submit(user, body, key, self.queue.enqueue)
            answer.status, answer.job_id = ("replayed" if accepted.replayed else "accepted"), accepted.job_id
        except Crash:
            answer.status = "unknown"
        except OutcomeUnknown:
            answer.status = "unknown"
        except Unavailable as exc:
            # Only the queue's refusal says "not charged"; anything else said nothing was done.
            answer.status = "not_charged" if "not charged" in exc.message else "unavailable"
            answer.code = exc.code
            if isinstance(exc, NotQueued):
                answer.status = "not_charged"
        except AppError as exc:
            answer.status, answer.code = "refused", exc.code
        self._record(answer)

    def _cancel(self, user: str, job_id: str) -> None:
        from shared import jobs
        from shared.errors import AppError, OutcomeUnknown, Unavailable

        answer = Answer("cancel", user, job_id=None)
        try:
            job = jobs.cancel(user, job_id)
            answer.status, answer.code = "accepted", job.status
        except (OutcomeUnknown, Crash):
            answer.status = "unknown"
        except Unavailable:
            answer.status = "unavailable"
        except AppError as exc:
            answer.status, answer.code = "refused", exc.code
        answer.key = job_id
        self._record(answer)

    def _deliver(self) -> None:
        from shared import jobs
        from shared.errors import AppError

        picked = self.queue.pick()
        if picked is None:
            return
        name, job_id = picked
        with self._lock:
            self.operations["deliver"] += 1
        try:
            jobs.run(job_id, self.ai)
        except (AppError, Crash):
            return  # the queue delivers it again later (a crash: the lease runs out first)
        self.queue.ack(name)

    def _sweep(self) -> None:
        from shared import jobs
        from shared.errors import AppError

        with self._lock:
            self.operations["sweep"] += 1
        with contextlib.suppress(AppError, Crash):
            jobs.sweep(self.queue.enqueue)

    def _grant(self, user: str, grant_id: str) -> None:
        from shared import credits
        from shared.errors import AppError

        answer = Answer("grant", user, grant_id)
        try:
            order = credits.GrantCreate(
                username=self.names[user], amount=3, reason="schedule", grant_id=grant_id
            )
            result = credits.grant(order, "schedule-admin")
            answer.status = "replayed" if result.replayed else "accepted"
        except AppError as exc:
            answer.status, answer.code = "refused", exc.code
        self._record(answer)

    # -- the schedule -----------------------------------------------------------------------------

    def setup(self) -> None:
        from shared import auth

        for _ in range(self.users):
            name = f"s{self.seed}_{uuid.uuid4().hex[:8]}"
            user, _ = auth.signup(auth.UserCredentials(username=name, password="pass-word-123"))
            self.ids.append(user.id)
            self.names[user.id] = name

    def _one(self) -> Callable[[], None]:
        """The next operation, with its faults already planned."""
        rng = self.rng
        user = rng.choice(self.ids)
        kind = rng.choices(["submit", "cancel", "deliver", "sweep", "grant"], [10, 2, 8, 1, 1])[0]
        if kind == "submit":
            keys = self.keys.setdefault(user, [])
            roll = rng.random()
            key = None if roll < 0.3 else (rng.choice(keys) if keys and roll < 0.6 else uuid.uuid4().hex)
            if key is not None and key not in keys:
                keys.append(key)
            self.queue.plan.append(
                rng.choices(["ok", "lose_reply", "refuse", "crash", "drop"], [14, 2, 1, 2, 1])[0]
            )
            if self.proxy is not None and rng.random() < 0.15:
                self.proxy.fail_next("Commit", "lose_reply", when=lambda req: b"charge-" in req)
            text = f"{self.seed}-{user[:6]}-{key or 'new'}"
            return lambda: self._submit(user, key, text)
        if kind == "cancel":
            known = self.jobs.get(user) or []
            if not known:
                return self._deliver
            job_id = rng.choice(known)
            if self.proxy is not None and rng.random() < 0.2:
                self.proxy.fail_next("Commit", "lose_reply", when=lambda req: b"refund-" in req)
            return lambda: self._cancel(user, job_id)
        if kind == "deliver":
            self.ai.plan.append(
                rng.choices(["ok", "retryable", "permanent", "slow", "crash"], [12, 3, 1, 1, 1])[0]
            )
            if self.proxy is not None and rng.random() < 0.1:
                marker = rng.choice([b"in_progress", b"completed"])
                self.proxy.fail_next("Commit", "lose_reply", when=lambda req: marker in req)
            return self._deliver
        if kind == "sweep":
            return self._sweep
        grant_id = f"g{self.seed}-{rng.randrange(3)}"
        return lambda: self._grant(user, grant_id)

    def run(self) -> None:
        """The schedule: single steps and bursts of up to 8 operations at once."""
        with ThreadPoolExecutor(8) as pool:
            step = 0
            while step < self.steps:
                width = 1 if self.rng.random() < 0.6 else self.rng.randint(2, 8)
                batch = [self._one() for _ in range(width)]
                if self.rng.random() < 0.3:  # the same request, racing itself
                    batch += [batch[0]] * self.rng.randint(1, 4)
                list(pool.map(lambda op: op(), batch))
                step += width

    def drain(self, timeout: float = 60.0) -> None:
        """Deliver and sweep until every job of the schedule is final."""
        self.ai.plan.clear()
        self.queue.plan.clear()
        if self.proxy is not None:
            self.proxy.rules.clear()
        deadline = time.monotonic() + timeout
        while self.unfinished():
            if time.monotonic() > deadline:
                raise AssertionError(f"jobs still unfinished after {timeout:.0f}s: {self.unfinished()}")
            while self.queue.pick() is not None:
                self._deliver()
            self._sweep()
            time.sleep(0.2)

    def _jobs_of(self, user: str) -> dict[str, dict[str, Any]]:
        from google.cloud.firestore import FieldFilter

        from shared.db import client

        query = client().collection("jobs").where(filter=FieldFilter("user_id", "==", user))
        return {d.id: d.to_dict() or {} for d in query.stream()}

    def unfinished(self) -> list[str]:
        return [
            job_id
            for user in self.ids
            for job_id, job in self._jobs_of(user).items()
            if job["status"] in ("queued", "in_progress")
        ]

    # -- the checks -------------------------------------------------------------------------------

    def check(self) -> list[str]:
        """Every answer a client got, against the books; empty when they agree."""
        problems: list[str] = []
        for user in self.ids:
            stored = self._jobs_of(user)
            mine = [a for a in self.answers if a.user == user]
            accepted = {a.job_id for a in mine if a.op == "submit" and a.status in ("accepted", "replayed")}
            for job_id in accepted:
                if job_id not in stored:
                    problems.append(f"user {user}: job {job_id} was accepted but does not exist")
            by_key: dict[str, set[str]] = {}
            for a in mine:
                if a.op == "submit" and a.key and a.job_id:
                    by_key.setdefault(a.key, set()).add(a.job_id)
            released = {a.key for a in mine if a.op == "submit" and a.status == "not_charged"}
            for key, ids in by_key.items():
                if len(ids) > 1 and key not in released:
                    problems.append(
                        f"user {user}: key {key} answered {len(ids)} different jobs: {sorted(ids)}"
                    )
            # A job no client was told about must come from a request that was told "not
            # charged" (then it was failed and refunded) or that got no answer.
            silent = [j for j in stored if j not in accepted]
            refunded_refusals = [
                j for j in silent if (stored[j].get("error") or {}).get("code") == "enqueue_failed"
            ]
            not_charged = sum(1 for a in mine if a.op == "submit" and a.status == "not_charged")
            unknown = sum(1 for a in mine if a.op == "submit" and a.status == "unknown")
            if len(refunded_refusals) > not_charged:
                problems.append(f"user {user}: {len(refunded_refusals)} refused jobs, {not_charged} told so")
            if len(silent) - len(refunded_refusals) > unknown:
                problems.append(
                    f"user {user}: {len(silent) - len(refunded_refusals)} jobs nobody was told about,"
                    f" {unknown} requests without an answer"
                )
            for job_id, job in stored.items():
                if job["status"] in ("queued", "in_progress"):
                    problems.append(f"job {job_id}: still {job['status']} after the drain")
            for a in mine:
                if (
                    a.op == "cancel"
                    and a.status == "accepted"
                    and stored.get(a.key or "", {}).get("status") != "canceled"
                ):
                    problems.append(
                        f"job {a.key}: a cancel was answered 200 but it ended {stored[a.key or '']['status']}"
                    )
        if self.ai.overlaps:
            problems.append(f"jobs run by two deliveries at once: {sorted(set(self.ai.overlaps))}")
        return problems

    def summary(self) -> str:
        ops = ", ".join(f"{n} {k}" for k, n in sorted(self.operations.items()))
        faults = ", ".join(f"{n} {k}" for k, n in sorted(self.queue.faults.items()))
        return f"seed {self.seed}: {sum(self.operations.values())} operations ({ops}); queue calls: {faults}"
