"""Usage counters per user and day, in shard documents, kept in step with jobs and credits.

Documents (owned here; written only through the ``stage_*`` functions, each inside the same
atomic commit as the change it counts, so a counter can never drift from the jobs and the
ledger): ``users/{user_id}/usage_days/{YYYY-MM-DD}-{shard}``: ``{user_id, day, week,
jobs_total, jobs: {task_type: n}, credits: {task_type: net credits spent}, charged,
refunded, spent, failed: {task_type: n}, canceled: {task_type: n}, granted, adjusted}``.
A day's figures are the sum over its shard documents.

Why shards: every job of a user is counted, so one counter document per user and day would
take every submit of a busy account (at 50 jobs/s, 50 writes/s on one document; Firestore
sustains about one). The caller names the shard, the wallet shard the job was charged from,
so the counters spread exactly as the wallet does. Each write is an ``Increment`` under
``set(merge=True)``: no read, no precondition, so it never makes a commit contend.

A job counts in the day (and ISO week) it was submitted, its ``created_at``, also when it
is refunded later; grants count when they are made. A completed job writes no counter:
submitted minus failed, canceled and still unfinished is completed, and the completion
times are on the jobs themselves (``latency_bucket``, see ``shared.reports``).
"""

from __future__ import annotations

import bisect
import re
from collections import Counter, defaultdict
from collections.abc import Mapping
from datetime import date, datetime
from typing import Annotated, Any, Literal

from google.cloud import firestore
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, model_validator

from shared.db import Snapshot, client, unchanged

# Upper bounds (seconds) of the submit-to-completion histogram: a 1-2-5 series.
LATENCY_BOUNDS = [b * m for m in (0.1, 1, 10, 100, 1000) for b in (1, 2, 5)] + [float("inf")]


def week_of(moment: datetime | date) -> str:
    year, week, _ = moment.isocalendar()
    return f"{year}-W{week:02d}"


def day_of(moment: datetime) -> str:
    return moment.date().isoformat()


def latency_bucket(seconds: float) -> str:
    """The histogram key for a latency: the index of its upper bound, zero-padded to sort."""
    return f"{bisect.bisect_left(LATENCY_BOUNDS, seconds):02d}"


def days(user_id: str) -> firestore.CollectionReference:
    return client().collection("users").document(user_id).collection("usage_days")


def day_ref(user_id: str, day: str, shard: int) -> firestore.DocumentReference:
    return days(user_id).document(f"{day}-{shard}")


def day_fields(keys: dict[str, str], at: datetime, counts: Mapping[str, int | str]) -> dict[str, Any]:
    """A day counter document's fields for ``set(merge=True)``: whose it is (``keys``), its day
    and week, and each count path (``"jobs.chat"``) as a nested ``Increment``; a string is set
    as it is (a name shown beside its counts). The teams' counters are written the same way."""
    fields: dict[str, Any] = {**keys, "day": day_of(at), "week": week_of(at)}
    for path, amount in counts.items():
        node = fields
        *parents, leaf = path.split(".")
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = amount if isinstance(amount, str) else firestore.Increment(amount)
    return fields


def _bump(
    batch: firestore.WriteBatch, user_id: str, at: datetime, shard: int, counts: dict[str, int]
) -> None:
    # set(merge=True) creates the document on first use; Increment adds to what is there.
    batch.set(day_ref(user_id, day_of(at), shard), day_fields({"user_id": user_id}, at, counts), merge=True)


def minute_of(at: datetime) -> str:
    """The key of ``at``'s minute in a day document's ``submits`` (``HHMM``, UTC)."""
    return at.strftime("%H%M")


def submits_in_minute(seen: Snapshot, at: datetime) -> int:
    """How many submits the day-shard document ``seen`` counted in ``at``'s minute."""
    return int(((seen.to_dict() or {}).get("submits") or {}).get(minute_of(at)) or 0)


def _submitted(task_type: str, cost: int, at: datetime) -> dict[str, int]:
    counts = {"jobs_total": 1, f"jobs.{task_type}": 1, f"credits.{task_type}": cost}
    return counts | {"charged": cost, "spent": cost, f"submits.{minute_of(at)}": 1}


def stage_submitted(
    batch: firestore.WriteBatch, user_id: str, task_type: str, cost: int, at: datetime, seen: Snapshot
) -> None:
    """Count a submitted job, and the submit in its minute, on the day-shard document ``seen``
    read, guarded by that read: the submit limit (``shared.limits``) was decided on it."""
    counts = _submitted(task_type, cost, at)
    if seen.exists:
        increments = {path: firestore.Increment(n) for path, n in counts.items()}
        batch.update(seen.reference, increments, option=unchanged(seen))
    else:
        batch.create(seen.reference, day_fields({"user_id": user_id}, at, counts))


def stage_batch_submitted(
    batch: firestore.WriteBatch, user_id: str, costs: list[tuple[str, int]], at: datetime, shard: int
) -> None:
    """Count the jobs of a batch (``(task_type, cost)`` each) in one write. A batch is one
    request: it takes no per-minute submit slots (its size is bounded instead)."""
    counts: Counter[str] = Counter()
    for task_type, cost in costs:
        counts.update({"jobs_total": 1, f"jobs.{task_type}": 1, f"credits.{task_type}": cost})
        counts.update({"charged": cost, "spent": cost})
    _bump(batch, user_id, at, shard, dict(counts))


def stage_submitted_unguarded(
    batch: firestore.WriteBatch, user_id: str, task_type: str, cost: int, at: datetime, shard: int
) -> None:
    """``stage_submitted`` with no read to guard it, for data written outside requests (seeds)."""
    _bump(batch, user_id, at, shard, _submitted(task_type, cost, at))


def stage_refunded(
    batch: firestore.WriteBatch,
    user_id: str,
    task_type: str,
    status: Literal["failed", "canceled"],
    cost: int,
    created_at: datetime,
    shard: int,
    jobs: int = 1,
) -> None:
    """Count a failed or canceled job, refunded ``cost``, on the day it was submitted; with
    ``jobs``, that many of them together (``cost`` is then their sum)."""
    counts = {f"{status}.{task_type}": jobs, f"credits.{task_type}": -cost}
    _bump(batch, user_id, created_at, shard, counts | {"refunded": cost, "spent": -cost})


def stage_granted(batch: firestore.WriteBatch, user_id: str, amount: int, at: datetime) -> None:
    """Count a grant or an adjustment on the day's first shard document: grants are rare, so one
    document takes them all."""
    _bump(batch, user_id, at, 0, {"granted" if amount >= 0 else "adjusted": amount})


def flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"jobs": {"chat": 2}}`` as ``{"jobs.chat": 2}``, zeros left out (as missing): counters
    compared key by key (the audit's)."""
    found: dict[str, Any] = {}
    for name, value in data.items():
        if isinstance(value, dict):
            found |= flat(value, f"{prefix}{name}.")
        elif value != 0:
            found[f"{prefix}{name}"] = value
    return found


def add(total: dict[str, Any], data: dict[str, Any]) -> None:
    """Add one shard document's counts into ``total`` (maps of counts added key by key)."""
    for name, value in data.items():
        if isinstance(value, dict):
            add(total.setdefault(name, {}), value)
        elif isinstance(value, int) and not isinstance(value, bool):
            total[name] = total.get(name, 0) + value


MAX_RANGE_DAYS = 366
FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(9998, 12, 31)
"""The days a query may name: far from ``date``'s limits, so arithmetic on them cannot overflow."""
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _day(value: object) -> date:
    # Strict: pydantic's own date parsing also takes 0 (1970-01-01), timestamps and datetimes
    # with an offset, and the value is echoed nowhere.
    if not isinstance(value, str) or not _DAY.fullmatch(value):
        raise ValueError("must be a date like 2026-01-31 (YYYY-MM-DD)")
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise ValueError("is not a calendar date") from None
    if not FIRST_DAY <= day <= LAST_DAY:
        raise ValueError(f"must be from {FIRST_DAY} to {LAST_DAY}")
    return day


Day = Annotated[
    date,
    BeforeValidator(_day),
    WithJsonSchema({"type": "string", "format": "date", "pattern": f"^{_DAY.pattern}$"}),
]


class UsageQuery(BaseModel):
    """Query of ``GET /usage``: an inclusive range of UTC days, at most 366 of them."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: Day = Field(alias="from")
    to: Day

    @model_validator(mode="after")
    def _range(self) -> UsageQuery:
        if self.to < self.from_:
            raise ValueError("'to' is before 'from'")
        if (self.to - self.from_).days + 1 > MAX_RANGE_DAYS:
            raise ValueError(f"the range is longer than {MAX_RANGE_DAYS} days")
        return self


class UsageTotals(BaseModel):
    jobs: dict[str, int]
    """Jobs submitted, per task type."""
    credits: dict[str, int]
    """Credits spent net of refunds, per task type."""
    total_jobs: int
    total_credits: int


class UsageDay(UsageTotals):
    date: date


class UsageHistory(BaseModel):
    """Answer to ``GET /usage``: the days of the range that had jobs, and the range's totals."""

    model_config = ConfigDict(populate_by_name=True)

    from_: date = Field(alias="from")
    to: date
    days: list[UsageDay]
    totals: UsageTotals


def _totals(jobs: dict[str, int], credits: dict[str, int]) -> dict[str, Any]:
    return {
        "jobs": jobs,
        "credits": credits,
        "total_jobs": sum(jobs.values()),
        "total_credits": sum(credits.values()),
    }


def history(user_id: str, query: UsageQuery) -> UsageHistory:
    """Jobs and net credits spent per task type, per day with jobs, and over the range.

    Reads every shard document of each day in the range: up to one per wallet shard a day.
    """
    docs = (
        days(user_id)
        .where(filter=firestore.FieldFilter("day", ">=", query.from_.isoformat()))
        .where(filter=firestore.FieldFilter("day", "<=", query.to.isoformat()))
        .order_by("day")
        .select(["day", "jobs", "credits"])
        .stream()
    )
    by_day: defaultdict[str, dict[str, Any]] = defaultdict(dict)
    for doc in docs:
        data = doc.to_dict() or {}  # a day shard of grants only has no jobs or credits
        add(by_day[data["day"]], {"jobs": data.get("jobs") or {}, "credits": data.get("credits") or {}})
    per_day, all_jobs, all_credits = [], Counter[str](), Counter[str]()
    for day, counts in sorted(by_day.items()):
        jobs, credits = dict(sorted(counts["jobs"].items())), dict(sorted(counts["credits"].items()))
        if not jobs:
            continue  # a day of grants only
        per_day.append({"date": day, **_totals(jobs, credits)})
        all_jobs.update(jobs)
        all_credits.update(credits)
    return UsageHistory.model_validate(
        {
            "from": query.from_,
            "to": query.to,
            "days": per_day,
            "totals": _totals(dict(sorted(all_jobs.items())), dict(sorted(all_credits.items()))),
        }
    )
