"""A team's usage: jobs and credits per member, task type and day, for finance and the report.

Documents (owned here): ``teams/{team_id}/team_usage/{day}-{shard}``: ``{team_id, day, week,
jobs_total, jobs: {task_type: n}, credits: {task_type: net}, refunded: {task_type: credits},
failed: {task_type: n}, canceled: {task_type: n}, members: {user_id: {username, jobs,
credits, refunded}}}``. Written like a user's usage counters (``shared.usage``): in the
commit of the charge or refund they count, with ``Increment`` under ``set(merge=True)`` (no
read, no precondition), one document per day and team wallet shard, so a team's busy day is
spread as its wallet is. A job counts on the day it was submitted, also when refunded later.
(Not ``usage_days``: the report and the audit read that collection group as users'.)
"""

from __future__ import annotations

import csv
import io
from collections import Counter, defaultdict
from datetime import datetime
from typing import Any, Literal

from google.cloud import firestore

from shared import usage
from shared.db import client
from shared.teams.models import TeamUsage, TeamUsageQuery, TeamUsageRow


def _days(team_id: str) -> firestore.CollectionReference:
    return client().collection("teams").document(team_id).collection("team_usage")


def _bump(
    batch: firestore.WriteBatch, team_id: str, at: datetime, shard: int, counts: dict[str, Any]
) -> None:
    fields = usage.day_fields({"team_id": team_id}, at, counts)
    batch.set(_days(team_id).document(f"{usage.day_of(at)}-{shard}"), fields, merge=True)


def stage_submitted(
    batch: firestore.WriteBatch,
    team_id: str,
    by: dict[str, str],
    costs: list[tuple[str, int]],
    at: datetime,
    shard: int,
) -> None:
    """Count jobs (``(task_type, cost)`` each) a member (``by``) charged to the team."""
    member = f"members.{by['user_id']}"
    counts: Counter[str] = Counter()
    for task_type, cost in costs:
        counts.update({"jobs_total": 1, f"jobs.{task_type}": 1, f"credits.{task_type}": cost})
        counts.update({f"{member}.jobs": 1, f"{member}.credits": cost})
    _bump(batch, team_id, at, shard, {**counts, f"{member}.username": by["username"]})


def stage_refunded(
    batch: firestore.WriteBatch,
    team_id: str,
    user_id: str,
    task_type: str,
    status: Literal["failed", "canceled"],
    cost: int,
    created_at: datetime,
    shard: int,
    jobs: int = 1,
) -> None:
    """Count ``jobs`` failed or canceled jobs of a member, refunded ``cost`` in all, on the day
    they were submitted."""
    member = f"members.{user_id}"
    counts = {f"{status}.{task_type}": jobs, f"credits.{task_type}": -cost, f"refunded.{task_type}": cost}
    _bump(
        batch, team_id, created_at, shard, counts | {f"{member}.credits": -cost, f"{member}.refunded": cost}
    )


def _rows(docs: list[dict[str, Any]], group_by: str) -> list[TeamUsageRow]:
    jobs: Counter[str] = Counter()
    credits: Counter[str] = Counter()
    refunded: Counter[str] = Counter()
    names: dict[str, str] = {}
    for data in docs:
        if group_by == "task_type":
            jobs.update(data.get("jobs") or {})
            credits.update(data.get("credits") or {})
            refunded.update(data.get("refunded") or {})
        elif group_by == "day":
            jobs[data["day"]] += sum((data.get("jobs") or {}).values())
            credits[data["day"]] += sum((data.get("credits") or {}).values())
            refunded[data["day"]] += sum((data.get("refunded") or {}).values())
        else:
            for user_id, counts in (data.get("members") or {}).items():
                names[user_id] = counts.get("username") or names.get(user_id) or user_id
                jobs[user_id] += counts.get("jobs") or 0
                credits[user_id] += counts.get("credits") or 0
                refunded[user_id] += counts.get("refunded") or 0
    rows = [
        TeamUsageRow(key=names.get(key, key), jobs=jobs[key], credits=credits[key], refunded=refunded[key])
        for key in jobs
        if jobs[key]
    ]
    return sorted(rows, key=lambda row: row.key)


def history(team_id: str, query: TeamUsageQuery) -> TeamUsage:
    """The range's jobs and net credits, one row per member, task type or day (with jobs).
    Reads each day shard document of the range once."""
    docs = (
        _days(team_id)
        .where(filter=firestore.FieldFilter("day", ">=", query.from_.isoformat()))
        .where(filter=firestore.FieldFilter("day", "<=", query.to.isoformat()))
        .stream()
    )
    rows = _rows([d.to_dict() or {} for d in docs], query.group_by)
    return TeamUsage.model_validate(
        {
            "team_id": team_id,
            "from": query.from_,
            "to": query.to,
            "group_by": query.group_by,
            "rows": rows,
            "total_jobs": sum(r.jobs for r in rows),
            "total_credits": sum(r.credits for r in rows),
        }
    )


def as_csv(report: TeamUsage) -> str:
    """The rows as CSV for a spreadsheet: a header naming the grouping, then one line per row."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([report.group_by, "jobs", "credits", "refunded"])
    for row in report.rows:
        writer.writerow([_cell(row.key), row.jobs, row.credits, row.refunded])
    return out.getvalue()


def _cell(text: str) -> str:
    # A username may start with "-": a spreadsheet would read "-1+2" as a formula (CSV
    # injection, OWASP), so such a cell is marked as text.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def week(week: str) -> list[dict[str, Any]]:
    """Each team's figures of ``week`` (ISO), for the weekly report: from the teams' day shard
    documents of that week (one collection-group query), busiest first."""
    found = (
        client()
        .collection_group("team_usage")
        .where(filter=firestore.FieldFilter("week", "==", week))
        .stream()
    )
    by_team: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
    for doc in found:
        data = doc.to_dict() or {}
        by_team[str(data.get("team_id"))].append(data)
    names = {
        s.id: s.get("name")
        for s in client().get_all([client().collection("teams").document(t) for t in by_team], ["name"])
        if s.exists
    }
    sections = []
    for team_id, docs in by_team.items():
        members = _rows(docs, "member")
        types = _rows(docs, "task_type")
        sections.append(
            {
                "team_id": team_id,
                "name": names.get(team_id),
                "jobs": sum(r.jobs for r in types),
                "credits_spent": sum(r.credits for r in types),
                "credits_refunded": sum(r.refunded for r in types),
                "by_task_type": {r.key: {"jobs": r.jobs, "credits": r.credits} for r in types},
                "top_members": [
                    {"username": r.key, "jobs": r.jobs, "credits_spent": r.credits}
                    for r in sorted(members, key=lambda r: (-r.credits, -r.jobs, r.key))[:5]
                ],
            }
        )
    return sorted(sections, key=lambda s: (-s["credits_spent"], -s["jobs"], s["team_id"]))
