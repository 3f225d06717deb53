"""The weekly usage report, computed from the usage counters of ``shared.usage`` and a few
aggregations over the jobs.

Why counters and not the jobs: a week may hold any number of jobs, and the report needs
figures per user (top spenders, per-user spikes), which Firestore's aggregation queries
cannot group. The counters are kept exact by the commits that change jobs and credits.
The report reads the day-shard documents of the week (``usage_days`` where ``week`` is
it: per active user at most one a day per wallet shard), sums them per user, and asks the
server for the rest: four ``sum`` aggregations for the service's baseline, four per user
busy enough to be flagged for theirs, one ``count`` per histogram bucket for the completion
times, and one small query for the week's jobs still unfinished. Its cost grows with active
users (and how many shards each spreads over), never with jobs.

A completed job writes no counter (a busy account would make its counters hot): completed
is submitted minus failed, canceled and still unfinished, and each completed job carries its
``latency_bucket``. Both are read a moment apart from the counters, so a job finishing in
between can move one figure by one; the scheduled run comes hours after the week ended,
when every job of it is final. Jobs go after ``JOB_RETENTION_DAYS`` (TTL), so a report first
run later than that has no completion times; counters stay.

Stored at ``reports/{week}``. The content depends only on the data, so running it
again for the same week rewrites the same document.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from google.cloud import firestore
from pydantic import BaseModel, ConfigDict, field_validator

from shared import usage
from shared.db import Snapshot, client, now
from shared.errors import InvalidRequest, NotFound
from shared.settings import get_settings
from shared.teams import usage as team_usage

STATUSES = ("submitted", "completed", "failed", "canceled")
BASELINE_WEEKS = 4
# The report reads one document per active user, in pages and chunks: each call stays within
# the bound on a Firestore call (``shared.db``), so an outage still fails fast.
_PAGE = 500
_WEEK = re.compile(r"([0-9]{4})-W([0-9]{2})")  # ASCII: \d would take "٢٠٢٦-W٤٧"
# Far enough from date's limits that every shift (the baselines, the week's end) stays in range.
FIRST_YEAR, LAST_YEAR = 2000, 9998


class Anomaly(BaseModel):
    scope: str
    user_id: str | None
    value: int
    baseline: float
    ratio: float | None
    """``value / baseline``; null when there was no baseline (a first busy week)."""
    message: str


class WeeklyReport(BaseModel):
    """A stored weekly report. Fields added in later versions are null in older reports."""

    model_config = ConfigDict(extra="allow")

    week: str
    start: str
    end: str
    jobs: dict[str, Any]
    """Jobs submitted, completed, failed, canceled and unfinished, and the same ``by_task_type``."""
    credits: dict[str, int]
    active_users: int | None = None
    new_signups: int | None = None
    top_users: list[dict[str, Any]] | None = None
    failure_rate: float | None = None
    completion_seconds: dict[str, Any] | None = None
    anomalies: list[Anomaly] = []
    thresholds: dict[str, Any] | None = None
    teams: list[dict[str, Any]] | None = None
    """Per team with jobs that week, busiest first: its jobs and credits spent and refunded,
    by task type, and its top members (``shared.teams.usage``)."""


class ReportSummary(BaseModel):
    week: str
    jobs: int | None
    """Jobs submitted that week."""
    anomalies: int


class ReportPage(BaseModel):
    """Stored reports, newest week first; ``next_cursor`` is null on the last page."""

    reports: list[ReportSummary]
    next_cursor: str | None


class ReportRequest(BaseModel):
    """Body of ``weekly_report``; without ``week``, the last complete ISO week (UTC)."""

    model_config = ConfigDict(extra="forbid")

    week: str | None = None

    @field_validator("week")
    @classmethod
    def _week(cls, value: str | None) -> str | None:
        if value is not None:
            week_start(value)
        return value


def week_start(week: str) -> datetime:
    """Monday 00:00 UTC of an ISO week like ``2026-W47``."""
    match = _WEEK.fullmatch(week)
    try:
        if match is None or not FIRST_YEAR <= int(match[1]) <= LAST_YEAR:
            raise ValueError
        monday = date.fromisocalendar(int(match[1]), int(match[2]), 1)
    except ValueError:
        # Not echoed: the value may be anything, of any length.
        raise ValueError(
            f"week must be an ISO week like 2026-W47, of a year from {FIRST_YEAR} to {LAST_YEAR}"
        ) from None
    return datetime.combine(monday, time(), UTC)


def is_week(week: str) -> bool:
    try:
        week_start(week)
    except ValueError:
        return False
    return True


def shift(week: str, weeks: int) -> str:
    return usage.week_of(week_start(week) + timedelta(weeks=weeks))


def last_complete_week(at: datetime) -> str:
    return usage.week_of(at - timedelta(weeks=1))


def _reports() -> firestore.CollectionReference:
    return client().collection("reports")


def _percentile(histogram: Counter[str], q: float) -> float | None:
    """Upper bound (seconds) of the bucket holding the q-quantile; None if unmeasured or open-ended."""
    total = sum(histogram.values())
    if total == 0:
        return None
    rank, seen = math.ceil(q * total), 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen >= rank:
            bound = usage.LATENCY_BOUNDS[int(bucket)]
            return None if math.isinf(bound) else bound
    return None


def _pages(query: Any) -> Iterator[Snapshot]:
    """Every document ``query`` matches, read a page at a time (by document name)."""
    query = query.order_by("__name__")
    last = None
    while True:
        page = list((query.start_after(last) if last else query).limit(_PAGE).stream())
        yield from page
        if len(page) < _PAGE:
            return
        last = page[-1]


def _get_all(refs: list[Any], field_paths: list[str] | None = None) -> Iterator[Snapshot]:
    for start in range(0, len(refs), _PAGE):
        yield from client().get_all(refs[start : start + _PAGE], field_paths=field_paths)


def _aggregate(query: Any) -> int:
    """The single value of a one-aggregation query (count or sum), run on the server."""
    results: Any = query.get()
    return int(results[0][0].value or 0)


def _service_baseline(week: str) -> list[int]:
    totals = []
    for back in range(1, BASELINE_WEEKS + 1):
        query = (
            client()
            .collection_group("usage_days")
            .where(filter=firestore.FieldFilter("week", "==", shift(week, -back)))
        )
        totals.append(_aggregate(query.sum("jobs_total")))
    return totals


def _user_baselines(week: str, user_ids: list[str]) -> dict[str, list[int]]:
    """Each user's job count in each of the previous weeks, from one paged read of each week's
    day shards (a ``sum`` per user and week would be a round trip each)."""
    wanted = set(user_ids)
    history: dict[str, list[int]] = {u: [] for u in user_ids}
    for back in range(1, BASELINE_WEEKS + 1):
        query = (
            client()
            .collection_group("usage_days")
            .where(filter=firestore.FieldFilter("week", "==", shift(week, -back)))
            .select(["user_id", "jobs_total"])
        )
        totals: Counter[str] = Counter()
        for doc in _pages(query):
            data = doc.to_dict() or {}
            if data.get("user_id") in wanted:
                totals[data["user_id"]] += int(data.get("jobs_total") or 0)
        for user_id in user_ids:
            history[user_id].append(totals[user_id])
    return history


def _per_user(week: str) -> list[dict[str, Any]]:
    """The week's counters summed per user: every day-shard document of the week, once."""
    query = client().collection_group("usage_days").where(filter=firestore.FieldFilter("week", "==", week))
    users: dict[str, dict[str, Any]] = {}
    for doc in _pages(query):
        data = doc.to_dict() or {}
        usage.add(users.setdefault(data["user_id"], {"user_id": data["user_id"]}), data)
    return [users[u] for u in sorted(users)]


def _of_week(start: datetime, status: firestore.FieldFilter) -> firestore.And:
    """The filter of the week's jobs in a status (a filter, not a query: each caller runs its own)."""
    return firestore.And(
        [
            status,
            firestore.FieldFilter("created_at", ">=", start),
            firestore.FieldFilter("created_at", "<", start + timedelta(weeks=1)),
        ]
    )


def _unfinished(start: datetime) -> Counter[str]:
    """Jobs of the week still queued or running, per task type (few: the sweeper ends them)."""
    running = firestore.FieldFilter("status", "in", ["queued", "in_progress"])
    query = client().collection("jobs").where(filter=_of_week(start, running))
    return Counter(str(d.get("task_type")) for d in query.select(["task_type"]).stream())


def _latencies(start: datetime) -> Counter[str]:
    """The completion-time histogram of the week's jobs: one ``count`` per bucket."""
    completed = (
        client()
        .collection("jobs")
        .where(filter=_of_week(start, firestore.FieldFilter("status", "==", "completed")))
    )
    histogram: Counter[str] = Counter()
    for index in range(len(usage.LATENCY_BOUNDS)):
        bucket = f"{index:02d}"
        query = completed.where(filter=firestore.FieldFilter("latency_bucket", "==", bucket))
        histogram[bucket] = _aggregate(query.count())
    return +histogram


def _anomaly(
    scope: str, user_id: str | None, label: str, value: int, past: list[int]
) -> dict[str, Any] | None:
    """Flag ``value`` against the mean of ``past``: more than RATIO times it, and at least MIN jobs."""
    settings = get_settings()
    baseline = sum(past) / len(past)
    if value < settings.anomaly_min_jobs:
        return None
    if baseline == 0:
        message = f"{label}: {value} jobs with none in the previous {len(past)} weeks"
        return {
            "scope": scope,
            "user_id": user_id,
            "value": value,
            "baseline": 0.0,
            "ratio": None,
            "message": message,
        }
    ratio = value / baseline
    if ratio <= settings.anomaly_ratio:
        return None
    message = (
        f"{label}: {value} jobs, {ratio:.1f}x the mean of {baseline:g} over the previous {len(past)} weeks"
    )
    return {
        "scope": scope,
        "user_id": user_id,
        "value": value,
        "baseline": baseline,
        "ratio": round(ratio, 2),
        "message": message,
    }


def _usernames(user_ids: list[str]) -> dict[str, str]:
    refs = [client().collection("users").document(u) for u in user_ids]
    return {s.id: s.get("username") for s in _get_all(refs, ["username"]) if s.exists}


def build(week: str) -> dict[str, Any]:
    """Compute the report for ``week`` from the counters and the jobs (nothing is stored)."""
    settings = get_settings()
    start = week_start(week)
    rows = _per_user(week)
    unfinished = _unfinished(start)
    latency = _latencies(start)

    by_type: dict[str, Counter[str]] = {}
    credits: Counter[str] = Counter()
    for row in rows:
        for field, status in (("jobs", "submitted"), ("failed", "failed"), ("canceled", "canceled")):
            for task_type, n in (row.get(field) or {}).items():
                by_type.setdefault(task_type, Counter())[status] += n
        for field in ("charged", "refunded", "granted", "adjusted"):
            credits[field] += row.get(field) or 0
    for task_type, counts in by_type.items():
        ended = counts["failed"] + counts["canceled"] + unfinished[task_type]
        counts["completed"] = counts["submitted"] - ended
    jobs = {status: sum(c[status] for c in by_type.values()) for status in STATUSES}
    finished = jobs["completed"] + jobs["failed"]

    active = [r for r in rows if (r.get("jobs_total") or 0) > 0]
    top = sorted(active, key=lambda r: (-(r.get("spent") or 0), -r["jobs_total"], r["user_id"]))[:10]
    busy = [r for r in active if r["jobs_total"] >= settings.anomaly_min_jobs]
    names = _usernames(sorted({r["user_id"] for r in top + busy}))

    service = _anomaly("service", None, "service", jobs["submitted"], _service_baseline(week))
    anomalies = [service] if service else []
    history = _user_baselines(week, sorted(r["user_id"] for r in busy))
    for row in busy:
        label = f"user {names.get(row['user_id'], row['user_id'])}"
        found = _anomaly("user", row["user_id"], label, row["jobs_total"], history[row["user_id"]])
        if found:
            anomalies.append(found)
    anomalies.sort(key=lambda a: (a["scope"] != "service", -a["value"], a["user_id"] or ""))

    signups: Any = (
        client()
        .collection("users")
        .where(filter=firestore.FieldFilter("created_at", ">=", start))
        .where(filter=firestore.FieldFilter("created_at", "<", start + timedelta(weeks=1)))
    )
    return {
        "week": week,
        "start": start.isoformat().replace("+00:00", "Z"),
        "end": (start + timedelta(weeks=1)).isoformat().replace("+00:00", "Z"),
        "jobs": {
            **jobs,
            "by_task_type": {t: {s: c[s] for s in STATUSES} for t, c in sorted(by_type.items())},
        },
        "credits": {f: credits[f] for f in ("charged", "refunded", "granted", "adjusted")},
        "active_users": len(active),
        "new_signups": _aggregate(signups.count()),
        "top_users": [
            {
                "user_id": r["user_id"],
                "username": names.get(r["user_id"]),
                "credits_spent": r.get("spent") or 0,
                "jobs": r["jobs_total"],
            }
            for r in top
        ],
        "failure_rate": round(jobs["failed"] / finished, 4) if finished else None,
        "completion_seconds": {
            "p50": _percentile(latency, 0.5),
            "p95": _percentile(latency, 0.95),
            "measured": sum(latency.values()),
        },
        "anomalies": anomalies,
        "thresholds": {
            "ratio": settings.anomaly_ratio,
            "min_jobs": settings.anomaly_min_jobs,
            "baseline_weeks": BASELINE_WEEKS,
        },
        "teams": team_usage.week(week),
    }


def run(week: str | None) -> dict[str, Any]:
    """Compute and store the report for ``week`` (default: the last complete week)."""
    at = now()
    week = week or last_complete_week(at)
    if week_start(week) + timedelta(weeks=1) > at:
        raise InvalidRequest(f"{week} has not ended yet", code="week_not_complete")
    report = build(week)
    _reports().document(week).set(report)
    return report


def get(week: str) -> WeeklyReport:
    snapshot = _reports().document(week).get() if is_week(week) else None
    if snapshot is None or not snapshot.exists:
        raise NotFound("no report for this week", code="report_not_found")
    return WeeklyReport.model_validate(snapshot.to_dict() or {})


def list_weeks(limit: int, cursor: str | None) -> ReportPage:
    """Stored reports, newest week first, as summaries; ``cursor`` is the last week of the previous page."""
    # By the stored ``week`` field: Firestore cannot scan document ids in descending order.
    query = _reports().order_by("week", direction=firestore.Query.DESCENDING)
    if cursor:
        if not is_week(cursor):
            raise InvalidRequest("unknown cursor", code="invalid_cursor")
        query = query.start_after({"week": cursor})
    docs = list(query.limit(limit + 1).stream())
    summaries = [
        ReportSummary(
            week=d.id,
            jobs=(d.get("jobs") or {}).get("submitted"),
            anomalies=len(d.get("anomalies") or []),
        )
        for d in docs[:limit]
    ]
    return ReportPage(reports=summaries, next_cursor=docs[limit - 1].id if len(docs) > limit else None)
