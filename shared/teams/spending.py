"""Per-member limits on a team's pool: credits per UTC day and per UTC month.

The counters live on the member's own membership document, in ``spent``:
``{"d20261201": n, "m202612": n}``, credits charged to the team by the member in that day
and that month, net of refunds. A job charged to a team writes them in its charge's very
commit, guarded by a precondition on the membership document as read: so of two charges of
one member, the second is decided on what the first left (a limit is never passed by
racing submits), and a removal, a new role or a new limit landing meanwhile makes the charge
decide again. Members of a team never touch each other's document, so 50 members charging
at once contend only on the team's wallet shards.

A refund (a failed or canceled job) takes its cost off the counters of the day and month
the job was submitted in, as the usage counters do. Counters older than last month are
dropped by the next charge; the audit checks the ones kept against the jobs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from google.cloud import firestore

from shared.db import Batch, Snapshot, unchanged
from shared.errors import InsufficientCredits


def day_key(at: datetime) -> str:
    return "d" + at.strftime("%Y%m%d")


def month_key(at: datetime) -> str:
    return "m" + at.strftime("%Y%m")


def _previous_month(at: datetime) -> str:
    year, month = (at.year, at.month - 1) if at.month > 1 else (at.year - 1, 12)
    return f"{year:04d}{month:02d}"


def spent_now(member: dict[str, Any], at: datetime) -> tuple[int, int]:
    """What the member has spent from the pool in ``at``'s day and month."""
    spent = member.get("spent") or {}
    return int(spent.get(day_key(at)) or 0), int(spent.get(month_key(at)) or 0)


def check(member: dict[str, Any], cost: int, at: datetime) -> None:
    """``402 member_daily_limit`` or ``402 member_monthly_limit`` if ``cost`` would pass one."""
    today, month = spent_now(member, at)
    for limit, spent, code, period in (
        (member.get("daily_limit"), today, "member_daily_limit", "today (UTC)"),
        (member.get("monthly_limit"), month, "member_monthly_limit", "this month (UTC)"),
    ):
        if limit is not None and spent + cost > limit:
            left = max(0, limit - spent)
            raise InsufficientCredits(
                f"this costs {cost} credits; your limit in this team is {limit} {period},"
                f" {spent} spent, {left} left",
                code=code,
            )


def stage_charge(batch: Batch, member: Snapshot, cost: int, at: datetime) -> None:
    """Count ``cost`` on the member's counters, guarded by ``member`` as read, after ``check``."""
    data = member.to_dict() or {}
    check(data, cost, at)
    oldest = _previous_month(at)
    changes: dict[str, Any] = {
        f"spent.{day_key(at)}": firestore.Increment(cost),
        f"spent.{month_key(at)}": firestore.Increment(cost),
    }
    for key in data.get("spent") or {}:
        if key[1:7] < oldest:
            changes[f"spent.{key}"] = firestore.DELETE_FIELD
    batch.update(member.reference, changes, option=unchanged(member))


def stage_refund(batch: Batch, member: Snapshot, cost: int, created_at: datetime) -> None:
    """Take a refunded job's ``cost`` off the counters of the day and month it was submitted in
    (only if the member still has that month's counters: one that was dropped is not revived)."""
    spent = (member.to_dict() or {}).get("spent") or {}
    changes = {
        f"spent.{key}": firestore.Increment(-cost)
        for key in (day_key(created_at), month_key(created_at))
        if key in spent
    }
    if changes:
        batch.update(member.reference, changes, option=unchanged(member))
