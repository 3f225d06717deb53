"""Usage counters per user, per day and per ISO week, kept in step with jobs and credits.

Documents (owned here; written only through the ``stage_*`` functions, each inside
the same atomic commit as the change it counts, so a counter can never drift from
the jobs and the ledger):

- ``users/{user_id}/usage_days/{YYYY-MM-DD}``: ``{user_id, day, jobs: {task_type: n},
  credits: {task_type: net credits spent}}``; read by ``GET /usage``.
- ``users/{user_id}/usage_weeks/{YYYY-Www}``: ``{user_id, week, jobs_total, submitted,
  completed, failed, canceled: {task_type: n}, charged, refunded, spent, granted,
  latency: {bucket: n}}``; read by the weekly report.

A job counts in the day and week it was submitted (its ``created_at``), also when it
finishes later; grants count when they are made. Counters use ``Increment``, which
needs no read and so adds no contention to the commits that carry them.
"""

from __future__ import annotations

import bisect
import re
from collections import Counter
from datetime import date, datetime
from typing import Annotated, Any

from google.cloud import firestore
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from shared.db import client

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


def _user(user_id: str) -> firestore.DocumentReference:
    return client().collection("users").document(user_id)


def week_ref(user_id: str, week: str) -> firestore.DocumentReference:
    return _user(user_id).collection("usage_weeks").document(week)


def days(user_id: str) -> firestore.CollectionReference:
    return _user(user_id).collection("usage_days")


def _bump(
    batch: firestore.WriteBatch,
    ref: firestore.DocumentReference,
    keys: dict[str, Any],
    counts: dict[str, int],
) -> None:
    # set(merge=True) creates the document on first use; Increment adds to what is there.
    fields: dict[str, Any] = dict(keys)
    for path, amount in counts.items():
        node = fields
        *parents, leaf = path.split(".")
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = firestore.Increment(amount)
    batch.set(ref, fields, merge=True)


def stage_submitted(
    batch: firestore.WriteBatch, user_id: str, task_type: str, cost: int, at: datetime
) -> None:
    week, day = week_of(at), day_of(at)
    _bump(
        batch,
        week_ref(user_id, week),
        {"user_id": user_id, "week": week},
        {"jobs_total": 1, f"submitted.{task_type}": 1, "charged": cost, "spent": cost},
    )
    _bump(
        batch,
        days(user_id).document(day),
        {"user_id": user_id, "day": day},
        {f"jobs.{task_type}": 1, f"credits.{task_type}": cost},
    )


def stage_finished(
    batch: firestore.WriteBatch,
    user_id: str,
    task_type: str,
    status: str,
    cost: int,
    created_at: datetime,
    at: datetime,
) -> None:
    """Count a job reaching ``status``; failed and canceled jobs were refunded ``cost``."""
    counts = {f"{status}.{task_type}": 1}
    if status == "completed":
        counts[f"latency.{latency_bucket((at - created_at).total_seconds())}"] = 1
    else:
        counts.update({"refunded": cost, "spent": -cost})
        day = day_of(created_at)
        _bump(
            batch,
            days(user_id).document(day),
            {"user_id": user_id, "day": day},
            {f"credits.{task_type}": -cost},
        )
    week = week_of(created_at)
    _bump(batch, week_ref(user_id, week), {"user_id": user_id, "week": week}, counts)


def stage_granted(batch: firestore.WriteBatch, user_id: str, amount: int, at: datetime) -> None:
    week = week_of(at)
    field = "granted" if amount >= 0 else "adjusted"
    _bump(batch, week_ref(user_id, week), {"user_id": user_id, "week": week}, {field: amount})


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


Day = Annotated[date, BeforeValidator(_day)]


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


def _totals(jobs: dict[str, int], credits: dict[str, int]) -> dict[str, Any]:
    return {
        "jobs": jobs,
        "credits": credits,
        "total_jobs": sum(jobs.values()),
        "total_credits": sum(credits.values()),
    }


def history(user_id: str, query: UsageQuery) -> dict[str, Any]:
    """Jobs and net credits spent per task type, per day with activity, and over the range."""
    docs = (
        days(user_id)
        .where(filter=firestore.FieldFilter("day", ">=", query.from_.isoformat()))
        .where(filter=firestore.FieldFilter("day", "<=", query.to.isoformat()))
        .order_by("day")
        .stream()
    )
    per_day, all_jobs, all_credits = [], Counter[str](), Counter[str]()
    for doc in docs:
        jobs, credits = doc.get("jobs") or {}, doc.get("credits") or {}
        per_day.append({"date": doc.get("day"), **_totals(jobs, credits)})
        all_jobs.update(jobs)
        all_credits.update(credits)
    return {
        "from": query.from_.isoformat(),
        "to": query.to.isoformat(),
        "days": per_day,
        "totals": _totals(dict(sorted(all_jobs.items())), dict(sorted(all_credits.items()))),
    }
