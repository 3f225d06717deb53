"""Reconcile the books against the data (see ``scripts/audit``).

    scripts/audit [--emulator HOST:PORT | --project PROJECT] [--grace SECONDS]
    scripts/audit --bench JOBS    # time it over JOBS synthetic jobs in a throwaway emulator

Checks every balance against its ledger, every job against its charge and refund, every
ledger entry against its job, the usage counters against the jobs and grants they count,
that no job is stuck past the sweeper's limits, and that idempotency and grant records
point at what they recorded; and the same of teams (``scripts/audit_teams.py``): their
wallets, transfers as matching pairs, and each member's counters against jobs and limits.
``audit()`` is the whole check; the test suite calls it.

It reads each collection once, all as of one instant (Firestore ``read_time``), so a commit
landing during the audit is either wholly in it or not at all; field projections and
collection-group queries make that one streamed query per collection, none per user.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import socket
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore
from google.cloud.firestore_v1.types import RunQueryRequest, RunQueryResponse, StructuredQuery
from pydantic import model_validator

from scripts import audit_teams
from scripts.stack import PROJECT, ROOT, Stack
from shared.credits.wallet import split
from shared.settings import Settings, get_settings
from shared.usage import add, day_of, flat, latency_bucket, week_of

GRACE = timedelta(minutes=5)
"""Default slack on the stuck-job checks: the sweeper that un-sticks them runs every minute."""

FINAL = ("completed", "failed", "canceled")
REFUNDED = ("failed", "canceled")
STATUSES = ("queued", "in_progress", *FINAL)
# Ledger entry ids are "<prefix>-<rest>"; an admin's negative grant is an "adjustment" under "grant-".
# A batch's jobs are charged together, by one "batch-<batch_id>" charge.
_ID_TYPES = {
    "grant": ("grant", "adjustment"),
    "charge": ("charge",),
    "refund": ("refund",),
    "batch": ("charge",),
    "transfer": ("transfer",),
}
_JOB_FIELDS = [
    "user_id",
    "task_type",
    "cost",
    "status",
    "created_at",
    "updated_at",
    "lease_expires_at",
    "completed_at",
    "latency_bucket",
    "batch_id",
    "team_id",
]
_ENTRY_FIELDS = ["type", "amount", "job_id", "created_at", "user_id"]  # user_id: a team entry's member
_DAY_FIELDS = ["user_id", "day", "week", "jobs_total", "jobs", "credits", "charged", "refunded", "spent"]
_DAY_FIELDS += ["failed", "canceled", "granted", "adjusted"]

CounterKey = tuple[str, str]
"""``(user_id, day)``: what a day's shard documents (``usage_days/{day}-{shard}``) add up to."""


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    user_id: str
    task_type: str
    cost: int
    status: str
    created_at: datetime
    updated_at: datetime
    lease_expires_at: datetime | None
    completed_at: datetime | None = None
    latency_bucket: str | None = None
    batch_id: str | None = None
    team_id: str | None = None
    """Charged to this team (its charge and refund are in the team's ledger)."""


@dataclass(frozen=True, slots=True)
class Entry:
    user_id: str
    id: str
    type: str
    amount: int
    job_id: str | None
    created_at: datetime


@dataclass
class Report:
    users: int = 0
    teams: int = 0
    jobs: int = 0
    ledger_entries: int = 0
    counters: int = 0
    records: int = 0
    """Idempotency and grant records."""
    discrepancies: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        return (
            f"audit: {self.users} users, {self.teams} teams, {self.jobs} jobs,"
            f" {self.ledger_entries} ledger entries,"
            f" {self.counters} counters, {self.records} records checked:"
            f" {len(self.discrepancies)} discrepancies ({self.seconds:.1f} s)"
        )


@dataclass
class _Books:
    users: dict[str, Any] = field(default_factory=dict)
    """User ids of the user documents."""
    shards: dict[str, dict[str, Any]] = field(default_factory=dict)
    """User id -> its wallet: shard id -> the shard's ``credits`` as stored."""
    jobs: dict[str, Job] = field(default_factory=dict)
    ledger: dict[tuple[str, str], Entry] = field(default_factory=dict)
    counters: dict[CounterKey, dict[str, Any]] = field(default_factory=dict)
    """The sum of each day's shard documents."""
    idempotency: dict[str, dict[str, Any]] = field(default_factory=dict)
    grants: dict[str, dict[str, Any]] = field(default_factory=dict)
    teams: audit_teams.TeamBooks = field(default_factory=audit_teams.TeamBooks)
    malformed: list[str] = field(default_factory=list)


def audit(
    db: firestore.Client,
    *,
    now: datetime,
    settings: Settings | None = None,
    grace: timedelta = GRACE,
) -> Report:
    """Reconcile everything in ``db`` as of ``now`` (not in the future: it is the read time).

    ``settings`` supplies ``JOB_RETENTION_DAYS`` and ``QUEUED_TIMEOUT_SECONDS`` (default: the
    process's). Counters of days that began before the retention horizon are not
    checked, nor charges and refunds whose jobs are that old: Firestore's TTL may have taken
    those jobs.
    """
    started = time.perf_counter()
    settings = settings or get_settings()
    horizon = now - timedelta(days=settings.job_retention_days)
    books, report = _read(db, now)
    lines = [
        *books.malformed,
        *_balances(books),
        *_charges(books),
        *_entries(books, horizon),
        *_counters(books, horizon),
        *_stuck(books, now, timedelta(seconds=settings.queued_timeout_seconds), grace),
        *_records(books),
        *audit_teams.check(books.teams, books.jobs, books.ledger, books.grants, horizon),
    ]
    report.discrepancies = sorted(lines)
    report.seconds = time.perf_counter() - started
    return report


# -- reading --------------------------------------------------------------------------------------


def _stream(
    db: firestore.Client, collection: str, fields: list[str], read_time: datetime, *, group: bool = False
) -> list[tuple[list[str], dict[str, Any]]]:
    """``(path segments, fields)`` of every document in ``collection`` (under any parent if
    ``group``), only ``fields`` of them, as of ``read_time``."""
    query = StructuredQuery(
        from_=[StructuredQuery.CollectionSelector(collection_id=collection, all_descendants=group)],
        select=StructuredQuery.Projection(
            fields=[StructuredQuery.FieldReference(field_path=f) for f in fields]
        ),
    )
    root = f"{db._database_string}/documents"
    request = RunQueryRequest(parent=root, structured_query=query, read_time=read_time)
    # The client's own query call (its channel, credentials and headers) read as raw protobuf:
    # building DocumentSnapshots costs 2.5 times the Python time per document (measured).
    found = []
    # An explicit timeout: the whole collection streams in one call, far past the service's
    # default bound on a Firestore call (shared.db), and past the library's own 300 s at scale.
    responses = db._firestore_api.run_query(request=request, metadata=db._rpc_metadata, timeout=3600)
    for response in responses:
        raw = RunQueryResponse.pb(response)
        if raw.HasField("document"):
            path = raw.document.name[len(root) + 1 :].split("/")
            found.append((path, {name: _value(v) for name, v in raw.document.fields.items()}))
    return found


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value_type")
    if kind == "map_value":
        return {name: _value(v) for name, v in value.map_value.fields.items()}
    if kind == "timestamp_value":
        return value.timestamp_value.ToDatetime(tzinfo=UTC)
    if kind == "null_value":
        return None
    return getattr(value, kind)  # integers, strings, doubles, booleans: the fields read here


def _read(db: firestore.Client, read_time: datetime) -> tuple[_Books, Report]:
    queries = {
        "users": (["created_at"], False),
        "wallet": (["credits"], True),
        "jobs": (_JOB_FIELDS, False),
        "ledger": (_ENTRY_FIELDS, True),
        "usage_days": (_DAY_FIELDS, True),
        "idempotency": (["user_id", "job_id"], False),
        "grants": (["user_id", "team_id", "amount"], False),
        **audit_teams.QUERIES,
    }
    # In parallel: a good part of each stream's time is the server's, not this process's.
    with ThreadPoolExecutor(len(queries)) as pool:
        futures = {
            name: pool.submit(_stream, db, name, fields, read_time, group=group)
            for name, (fields, group) in queries.items()
        }
        found = {name: future.result() for name, future in futures.items()}
    books = _Books()
    books.users = {path[-1]: None for path, _ in found["users"]}
    for path, data in found["wallet"]:
        if len(path) == 4 and path[0] == "users":
            books.shards.setdefault(path[1], {})[path[3]] = data.get("credits")
    for path, data in found["jobs"]:
        job = _job(path[-1], data)
        if isinstance(job, str):
            books.malformed.append(job)
        else:
            books.jobs[job.id] = job
    for path, data in found["ledger"]:
        if len(path) == 4 and path[0] == "users":
            entry = _entry(path[1], path[3], data)
            if isinstance(entry, str):
                books.malformed.append(entry)
            else:
                books.ledger[(entry.user_id, entry.id)] = entry
    for path, data in found["usage_days"]:
        if len(path) == 4 and path[0] == "users":
            day, problem = _counter_day(path[1], path[3], data)
            if problem is not None:
                books.malformed.append(problem)
            if day is not None:
                add(books.counters.setdefault((path[1], day), {}), data)
    books.idempotency = {path[-1]: data for path, data in found["idempotency"]}
    books.grants = {path[-1]: data for path, data in found["grants"]}
    books.teams = audit_teams.read(found)
    report = Report(
        users=len(books.users),
        teams=len(books.teams.teams),
        jobs=len(found["jobs"]),
        ledger_entries=len(found["ledger"]),
        counters=len(found["usage_days"]),
        records=len(books.idempotency) + len(books.grants) + len(books.teams.transfers),
    )
    return books, report


def _job(job_id: str, data: dict[str, Any]) -> Job | str:
    """The job, or what is wrong with it (then nothing else is checked about it)."""
    kinds = {"user_id": str, "task_type": str, "cost": int, "status": str}
    kinds |= {"created_at": datetime, "updated_at": datetime}
    bad = [name for name, kind in kinds.items() if not isinstance(data.get(name), kind)]
    if bad:
        return f"job {job_id}: {', '.join(bad)} missing or malformed"
    return Job(
        job_id,
        **{name: data[name] for name in kinds},
        lease_expires_at=data.get("lease_expires_at"),
        completed_at=data.get("completed_at"),
        latency_bucket=data.get("latency_bucket"),
        batch_id=data.get("batch_id"),
        team_id=data.get("team_id"),
    )


def _counter_day(user_id: str, doc_id: str, data: dict[str, Any]) -> tuple[str | None, str | None]:
    """The day a counter document counts (its id is ``{day}-{shard}``; None if it is not such an
    id) and what is wrong with its keys: the report finds a document by its ``week`` field,
    ``GET /usage`` by its ``day``."""
    day, _, shard = doc_id.rpartition("-")
    where = f"user {user_id} usage_days/{doc_id}"
    try:
        start = _day_start(day)
    except ValueError:
        start = None
    if start is None or not (shard.isdecimal() and shard.isascii()):
        return None, f"{where}: not a day shard id (YYYY-MM-DD-N)"
    wrong = [
        f"{name} is {data.get(name)!r}, expected {value!r}"
        for name, value in (("user_id", user_id), ("day", day), ("week", week_of(start)))
        if data.get(name) != value
    ]
    return day, (f"{where}: " + "; ".join(wrong) if wrong else None)


def _entry(user_id: str, entry_id: str, data: dict[str, Any]) -> Entry | str:
    kinds = {"type": str, "amount": int, "created_at": datetime}
    bad = [name for name, kind in kinds.items() if not isinstance(data.get(name), kind)]
    if bad:
        return f"user {user_id} ledger/{entry_id}: {', '.join(bad)} missing or malformed"
    return Entry(user_id, entry_id, data["type"], data["amount"], data.get("job_id"), data["created_at"])


# -- the checks -----------------------------------------------------------------------------------


def _balances(books: _Books) -> Iterator[str]:
    """Each balance is the sum of its ledger (the signup grant included) and not negative."""
    sums: Counter[str] = Counter()
    for entry in books.ledger.values():
        sums[entry.user_id] += entry.amount
    for user_id in books.users:
        wallet = books.shards.get(user_id, {})
        if not wallet:
            yield f"user {user_id}: no wallet shards"
        for shard, value in sorted(wallet.items()):
            if not isinstance(value, int) or value < 0:
                yield f"user {user_id}: wallet shard {shard} holds {value!r}, not a count of credits"
        credits = sum(v for v in wallet.values() if isinstance(v, int))
        if credits != sums[user_id]:
            yield f"user {user_id}: credits {credits}, but the ledger sums to {sums[user_id]}"
        if (user_id, "grant-signup") not in books.ledger:
            yield f"user {user_id}: no signup grant (ledger/grant-signup)"
    for user_id in sorted(sums.keys() - books.users.keys()):
        yield f"user {user_id}: ledger entries but no user document"
    for user_id in sorted(books.shards.keys() - books.users.keys()):
        yield f"user {user_id}: wallet shards but no user document"


def _charges(books: _Books) -> Iterator[str]:
    """Each job is charged once (a batch's jobs by their batch's one charge, which is the sum of
    their costs); failed and canceled ones are refunded once, the others never."""
    batches: defaultdict[tuple[str, str], int] = defaultdict(int)
    for job in books.jobs.values():
        if job.team_id is not None:
            continue  # charged to the team's ledger: audit_teams checks it
        who = f"job {job.id} (user {job.user_id})"
        charge = books.ledger.get((job.user_id, f"charge-{job.id}"))
        if job.batch_id is not None:
            batches[(job.user_id, job.batch_id)] += job.cost
            if charge is not None:
                yield f"{who}: charged alone (ledger/charge-{job.id}) and by batch {job.batch_id}"
        elif charge is None:
            yield f"{who}: not charged (no ledger/charge-{job.id})"
        elif charge.amount != -job.cost:
            yield f"{who}: charged {-charge.amount}, but it costs {job.cost}"
        refund = books.ledger.get((job.user_id, f"refund-{job.id}"))
        if job.status in REFUNDED:
            if refund is None:
                yield f"{who}: {job.status} but not refunded (no ledger/refund-{job.id})"
            elif refund.amount != job.cost:
                yield f"{who}: refunded {refund.amount}, but it costs {job.cost}"
        elif refund is not None:
            yield f"{who}: {job.status} but refunded (ledger/refund-{job.id})"
        if job.status not in STATUSES:
            yield f"{who}: unknown status {job.status!r}"
    for (user_id, batch_id), cost in sorted(batches.items()):
        entry = books.ledger.get((user_id, f"batch-{batch_id}"))
        if entry is None:
            yield f"batch {batch_id} (user {user_id}): not charged (no ledger/batch-{batch_id})"
        elif entry.amount != -cost:
            yield f"batch {batch_id} (user {user_id}): charged {-entry.amount}, but its jobs cost {cost}"


def _entries(books: _Books, horizon: datetime) -> Iterator[str]:
    """Each entry's type matches its id; each charge and refund belongs to a job of its user."""
    batches = {(j.user_id, j.batch_id) for j in books.jobs.values() if j.batch_id is not None}
    for entry in books.ledger.values():
        where = f"user {entry.user_id} ledger/{entry.id}"
        prefix, _, rest = entry.id.partition("-")
        if prefix not in _ID_TYPES or not rest:
            yield f"{where}: not an entry id this service writes"
            continue
        if entry.type not in _ID_TYPES[prefix]:
            yield f"{where}: type {entry.type!r} does not match its id"
        if (entry.type == "grant" and entry.amount < 0) or (entry.type == "adjustment" and entry.amount >= 0):
            yield f"{where}: {entry.type} of {entry.amount}"
        if prefix in ("grant", "transfer"):
            continue  # against their records: _records, audit_teams
        if prefix == "batch":
            if (entry.user_id, rest) not in batches and entry.created_at >= horizon:
                yield f"{where}: no job of batch {rest}"
            continue
        if entry.job_id != rest:
            yield f"{where}: job_id {entry.job_id!r}, but its id names job {rest}"
        job = books.jobs.get(rest)
        if job is None:
            # The charge is dated when the job was created, so it tells whether TTL may have taken it.
            charge = books.ledger.get((entry.user_id, f"charge-{rest}"), entry)
            if charge.created_at >= horizon:
                yield f"{where}: job {rest} does not exist"
        elif job.user_id != entry.user_id:
            yield f"{where}: job {rest} belongs to user {job.user_id}"


def job_counts(job: Job) -> dict[str, int]:
    """What a job adds to its day's counters, as ``shared.usage`` counts it (flattened:
    ``"jobs.chat"``)."""
    tt, cost = job.task_type, job.cost
    counts = {"jobs_total": 1, f"jobs.{tt}": 1, f"credits.{tt}": cost, "charged": cost, "spent": cost}
    if job.status in REFUNDED:
        counts |= {f"{job.status}.{tt}": 1, f"credits.{tt}": 0, "refunded": cost, "spent": 0}
    return counts


def grant_counts(entry: Entry) -> dict[str, int]:
    """What an admin's (or the signup) grant or adjustment adds to its day's counters."""
    if entry.type not in ("grant", "adjustment"):
        return {}
    return {"granted" if entry.amount >= 0 else "adjusted": entry.amount}


def expected_counters(
    jobs: Iterable[Job], entries: Iterable[Entry], horizon: datetime
) -> dict[CounterKey, Counter[str]]:
    """What each day's counters must add up to (over its shards), for the days that began at
    or after ``horizon``. A job counts on the day it was submitted; a grant when it was made."""
    want: defaultdict[CounterKey, Counter[str]] = defaultdict(Counter)
    for job in jobs:
        if _day_start(day_of(job.created_at)) >= horizon:
            want[(job.user_id, day_of(job.created_at))].update(job_counts(job))
    for entry in entries:
        if _day_start(day_of(entry.created_at)) >= horizon:
            want[(entry.user_id, day_of(entry.created_at))].update(grant_counts(entry))
    return want


def _counters(books: _Books, horizon: datetime) -> Iterator[str]:
    """Each day's counters, summed over its shards, hold exactly what the jobs and grants of the
    day add up to; each completed job's ``latency_bucket`` (the report's histogram) is its own."""
    want = expected_counters(books.jobs.values(), books.ledger.values(), horizon)
    for key in want.keys() | books.counters.keys():
        user_id, day = key
        if _day_start(day) < horizon:
            continue
        expected = {name: n for name, n in want.get(key, Counter()).items() if n != 0}
        stored = books.counters.get(key)
        found = flat(stored or {})
        wrong = [
            f"{name} is {found.get(name, 0)}, expected {expected.get(name, 0)}"
            for name in sorted(expected.keys() | found.keys())
            if found.get(name, 0) != expected.get(name, 0)
        ]
        if wrong:
            missing = " (missing)" if stored is None else ""
            yield f"user {user_id} usage_days/{day}-*{missing}: " + "; ".join(wrong)
    for job in books.jobs.values():
        # Jobs finished before the field existed have none: nothing to check.
        if job.status == "completed" and job.latency_bucket is not None:
            bucket = latency_bucket(((job.completed_at or job.updated_at) - job.created_at).total_seconds())
            if job.latency_bucket != bucket:
                who = f"job {job.id} (user {job.user_id})"
                yield f"{who}: latency_bucket {job.latency_bucket!r}, expected {bucket!r}"


def _stuck(books: _Books, now: datetime, queued_timeout: timedelta, grace: timedelta) -> Iterator[str]:
    """No job is left where the sweeper should already have moved it."""
    for job in books.jobs.values():
        who = f"job {job.id} (user {job.user_id})"
        if job.status == "queued" and job.updated_at < now - queued_timeout - grace:
            yield f"{who}: queued since {_iso(job.updated_at)}, past QUEUED_TIMEOUT_SECONDS"
        if job.status == "in_progress":
            lease = job.lease_expires_at
            if not isinstance(lease, datetime):
                yield f"{who}: in_progress without a lease"
            elif lease < now - grace:
                yield f"{who}: in_progress, but its lease expired at {_iso(lease)}"


def _records(books: _Books) -> Iterator[str]:
    """Idempotency records name a job of their user; grant records match their ledger entries."""
    for key, record in books.idempotency.items():
        user_id, job_id = record.get("user_id"), record.get("job_id")
        job = books.jobs.get(str(job_id))
        if job is None:
            yield f"idempotency/{key} (user {user_id}): job {job_id} does not exist"
        elif job.user_id != user_id:
            yield f"idempotency/{key} (user {user_id}): job {job_id} belongs to user {job.user_id}"
    for key, record in books.grants.items():
        if record.get("team_id") is not None:
            continue  # a team's grant: audit_teams checks it
        user_id = record.get("user_id")
        entry = books.ledger.get((str(user_id), f"grant-{key}"))
        if entry is None:
            yield f"grants/{key} (user {user_id}): no ledger/grant-{key}"
        elif entry.amount != record.get("amount"):
            amount = record.get("amount")
            yield f"grants/{key} (user {user_id}): amount {amount}, the ledger says {entry.amount}"
    for entry in books.ledger.values():
        if entry.id.startswith("grant-") and entry.id != "grant-signup":
            key = entry.id.removeprefix("grant-")
            if books.grants.get(key, {}).get("user_id") != entry.user_id:
                yield f"user {entry.user_id} ledger/{entry.id}: no grants/{key}"


@cache  # a few distinct days, parsed once per job otherwise
def _day_start(day: str) -> datetime:
    return datetime.combine(date.fromisoformat(day), datetime.min.time(), UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- synthetic books (tests, benchmark) -----------------------------------------------------------

_PATTERN = [
    "completed",
    "failed",
    "completed",
    "canceled",
    "completed",
    "completed",
    "queued",
    "completed",
    "in_progress",
    "completed",
]
_DELETED = 5
"""The position in each ten jobs that is older than the retention period, so TTL deleted it."""


def synthesize(
    db: firestore.Client,
    *,
    users: int,
    jobs_per_user: int,
    now: datetime,
    retention_days: int = 90,
    seed: int = 0,
) -> None:
    """Write consistent books, as the service would have left them, in batches of 500.

    Each user has a signup grant, an admin grant and ``jobs_per_user`` jobs of every status,
    spread over the retention period: of each ten, one is older than it (the job is gone, its
    ledger entries stay), one is queued and one running right now (the queued one under an
    idempotency key). The counters are written as ``expected_counters`` counts them, each
    job's on one of 4 day shards.
    """
    rng = random.Random(seed)
    docs: list[tuple[str, dict[str, Any]]] = []
    counted: list[Job] = []
    entries: list[Entry] = []
    for n in range(users):
        user_id = rng.randbytes(16).hex()
        opened = now - timedelta(days=rng.uniform(0, retention_days * 1.2))
        mine = [Entry(user_id, "grant-signup", "grant", 10, None, opened)]
        for i in range(jobs_per_user):
            status = _PATTERN[i % len(_PATTERN)]
            if status in ("queued", "in_progress"):
                age = timedelta(seconds=rng.uniform(1, 30))
            elif i % len(_PATTERN) == _DELETED:
                age = timedelta(days=retention_days + rng.uniform(1, 10))
            else:
                age = timedelta(days=rng.uniform(0, retention_days - 1))
            created = now - age
            updated = created + timedelta(seconds=rng.uniform(0.1, 90)) if status in FINAL else created
            lease = now + timedelta(minutes=2) if status == "in_progress" else None
            cost = rng.choice((1, 1, 2))
            job = Job(
                rng.randbytes(16).hex(), user_id, rng.choice(_TASKS), cost, status, created, updated, lease
            )
            counted.append(job)
            mine.append(Entry(user_id, f"charge-{job.id}", "charge", -cost, job.id, created))
            if status in REFUNDED:
                mine.append(Entry(user_id, f"refund-{job.id}", "refund", cost, job.id, updated))
            if i % len(_PATTERN) != _DELETED:
                docs.append((f"jobs/{job.id}", _job_doc(job, retention_days)))
            if status == "queued":
                key = f"{user_id}-{hashlib.sha256(job.id.encode()).hexdigest()}"
                record = {"user_id": user_id, "job_id": job.id, "request_hash": "0" * 64}
                docs.append((f"idempotency/{key}", {**record, "expires_at": created + timedelta(hours=24)}))
        amounts = [jobs_per_user * 2] + ([-1] if n % 5 == 0 else [])
        for k, amount in enumerate(amounts):
            grant = _grant(user_id, f"synthetic-{n}", f"synthetic-{n}-{k}", amount, now - timedelta(days=k))
            mine.append(grant[0])
            docs += grant[1]
        balance = sum(entry.amount for entry in mine)
        docs.append((f"users/{user_id}", _user_doc(f"synthetic-{n}", opened)))
        docs += [
            (f"users/{user_id}/wallet/{k}", {"credits": part}) for k, part in enumerate(split(balance, 4))
        ]
        entries += mine
    for entry in entries:
        docs.append((f"users/{entry.user_id}/ledger/{entry.id}", _entry_doc(entry)))
    # Each job's counts on one of 4 day shards, as its wallet shard would have picked.
    shards: defaultdict[tuple[str, date, int], Counter[str]] = defaultdict(Counter)
    for job in counted:
        shards[(job.user_id, job.created_at.date(), rng.randrange(4))].update(job_counts(job))
    for entry in entries:
        shards[(entry.user_id, entry.created_at.date(), 0)].update(grant_counts(entry))
    for (user_id, day, shard), counts in shards.items():
        keys = {"user_id": user_id, "day": day.isoformat(), "week": week_of(day)}
        docs.append((f"users/{user_id}/usage_days/{day}-{shard}", {**keys, **_nested(counts)}))
    _write(db, docs)


_TASKS = ["summarize", "translate", "generate_text", "chat"]


def _job_doc(job: Job, retention_days: int) -> dict[str, Any]:
    done = job.status in FINAL
    return {
        "user_id": job.user_id,
        "task_type": job.task_type,
        "input_data": "Synthetic input.",
        "options": {},
        "cost": job.cost,
        "status": job.status,
        "output": {"text": "Synthetic output."} if job.status == "completed" else None,
        "error": {"code": "synthetic", "message": "synthetic"} if job.status in REFUNDED else None,
        "attempts": 1 if done or job.status == "in_progress" else 0,
        "lease_id": "synthetic-lease" if job.status == "in_progress" else None,
        "lease_expires_at": job.lease_expires_at,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "expires_at": job.created_at + timedelta(days=retention_days),
        **(_completion(job) if job.status == "completed" else {}),
    }


def _completion(job: Job) -> dict[str, Any]:
    """What the worker's finish records on a completed job (its last write: ``updated_at``)."""
    took = (job.updated_at - job.created_at).total_seconds()
    return {"completed_at": job.updated_at, "latency_bucket": latency_bucket(took)}


def _entry_doc(entry: Entry) -> dict[str, Any]:
    return {
        "type": entry.type,
        "amount": entry.amount,
        "job_id": entry.job_id,
        "created_at": entry.created_at,
    }


def _user_doc(username: str, opened: datetime) -> dict[str, Any]:
    return {"username": username, "password_hash": "x", "role": "user", "created_at": opened}


def _grant(
    user_id: str, username: str, grant_id: str, amount: int, at: datetime
) -> tuple[Entry, list[tuple[str, dict[str, Any]]]]:
    """An admin grant as ``shared.credits.grant`` records it: ledger entry and grant record."""
    key = hashlib.sha256(grant_id.encode()).hexdigest()
    kind = "grant" if amount > 0 else "adjustment"
    entry = Entry(user_id, f"grant-{key}", kind, amount, None, at)
    why = {"reason": "synthetic", "admin_id": "synthetic"}
    record = {"grant_id": grant_id, "username": username, "amount": amount, "type": kind, "created_at": at}
    return entry, [(f"grants/{key}", {**record, **why, "user_id": user_id, "credits": 0})]


def _nested(flat: dict[str, int]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for path, amount in flat.items():
        *parents, leaf = path.split(".")
        node = nested
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = amount
    return nested


def _write(db: firestore.Client, docs: list[tuple[str, dict[str, Any]]]) -> None:
    def commit(chunk: list[tuple[str, dict[str, Any]]]) -> None:
        batch = db.batch()
        for path, data in chunk:
            batch.set(db.document(path), data)
        batch.commit()

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(commit, [docs[i : i + 500] for i in range(0, len(docs), 500)]))


# -- command line ---------------------------------------------------------------------------------


class AuditSettings(Settings):
    """The service's settings from the environment, without its start-up checks: the audit
    reads only the limits, never the secrets those checks guard."""

    @model_validator(mode="after")
    def _check(self) -> AuditSettings:
        return self


def emulator_client(host: str) -> firestore.Client:
    """A client of the Firestore emulator at ``host`` (``host:port``), as the dev stack's project."""
    # The client library takes the emulator's address only from the environment, when it is made.
    before = os.environ.get("FIRESTORE_EMULATOR_HOST")
    os.environ["FIRESTORE_EMULATOR_HOST"] = host
    try:
        return firestore.Client(project=PROJECT, credentials=AnonymousCredentials())
    finally:
        if before is None:
            del os.environ["FIRESTORE_EMULATOR_HOST"]
        else:
            os.environ["FIRESTORE_EMULATOR_HOST"] = before


def _dev_emulator() -> str:
    emulators = json.loads((ROOT / "firebase.json").read_text())["emulators"]
    return f"127.0.0.1:{emulators['firestore']['port']}"


def _reachable(host: str) -> bool:
    name, _, port = host.rpartition(":")
    try:
        with socket.create_connection((name, int(port)), timeout=2):
            return True
    except (OSError, ValueError):
        return False


def bench(jobs: int) -> int:
    """Write ``jobs`` synthetic jobs (100 per user) to a throwaway emulator and audit them."""
    stack = Stack(import_dir=None, log_dir=ROOT / ".run" / "audit-bench-logs")
    stack.start_firestore()
    try:
        db = emulator_client(f"127.0.0.1:{stack.firestore_port}")
        started = time.perf_counter()
        synthesize(db, users=max(1, jobs // 100), jobs_per_user=min(jobs, 100), now=datetime.now(UTC))
        print(f"bench: wrote the books of {jobs} jobs in {time.perf_counter() - started:.1f} s")
        report = audit(db, now=datetime.now(UTC), settings=AuditSettings())
        print("\n".join([*report.discrepancies[:20], report.summary()]))
        return 1 if report.discrepancies else 0
    finally:
        stack.stop()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scripts/audit",
        description="Reconcile balances, ledger, jobs and usage counters; exit 1 on any discrepancy.",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--emulator",
        metavar="HOST:PORT",
        help="a Firestore emulator (default: FIRESTORE_EMULATOR_HOST, else scripts/dev's from firebase.json)",
    )
    where.add_argument(
        "--project", help="real Firestore of this project, with application default credentials"
    )
    where.add_argument("--bench", type=int, metavar="JOBS", help="time it over JOBS synthetic jobs instead")
    parser.add_argument(
        "--grace",
        type=float,
        default=GRACE.total_seconds(),
        metavar="SECONDS",
        help="slack on the stuck-job checks (default: %(default).0f, the sweeper's interval)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 clean, 1 discrepancies, 2 not audited (bad arguments, nothing to read)."""
    args = _parser().parse_args(argv)
    if args.bench is not None:
        return bench(args.bench)
    try:
        if args.project:
            os.environ.pop("FIRESTORE_EMULATOR_HOST", None)  # --project means the real one
            db = firestore.Client(project=args.project)
        else:
            host = args.emulator or os.environ.get("FIRESTORE_EMULATOR_HOST") or _dev_emulator()
            if not _reachable(host):
                print(
                    f"audit: no Firestore emulator at {host}: start scripts/dev, or give --emulator/--project"
                )
                return 2
            db = emulator_client(host)
        report = audit(
            db, now=datetime.now(UTC), settings=AuditSettings(), grace=timedelta(seconds=args.grace)
        )
    except (gexc.GoogleAPIError, auth_exceptions.GoogleAuthError) as exc:
        print(f"audit: could not read Firestore: {exc}")
        return 2
    for line in report.discrepancies:
        print(line)
    print(report.summary())
    return 1 if report.discrepancies else 0


if __name__ == "__main__":
    sys.exit(main())
