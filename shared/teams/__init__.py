"""Teams: a shared credit pool, members with roles and limits, and the team's usage.

- ``directory``: the team and membership documents, roles, who may do what.
- ``spending``: each member's daily and monthly limit, counted on their membership.
- ``usage``: the team's usage counters, its usage by member, task type or day, CSV.
- ``models``: the request and response models.

The pool itself is a wallet and a ledger like a user's, moved only by ``shared.credits``
(``credits.team(team_id)``): a team job's charge, its refund, transfers and admin grants.
A job charged to a team (``team_id`` on submit) is the member's job, attributed to them,
charged to and refunded to the team; in its charge's one commit go the team's wallet shard
(taken under a precondition, as a user's), the member's counters (under a precondition on
the membership, so the member's limits and the roster are exact too), the team's usage and
the member's own usage counters, which count every job a user submits, whoever pays.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from shared import credits
from shared.db import Batch
from shared.teams import directory, spending
from shared.teams import usage as team_usage
from shared.teams.directory import (
    add_member,
    create,
    delete,
    get,
    list_mine,
    members,
    membership,
    owner_guard,
    remove_member,
    update,
    update_member,
)
from shared.teams.models import (
    MemberCreate,
    MemberList,
    MemberPublic,
    MemberUpdate,
    TeamCreate,
    TeamList,
    TeamPublic,
    TeamUpdate,
    TeamUsage,
    TeamUsageQuery,
)

__all__ = [
    "MemberCreate",
    "MemberList",
    "MemberPublic",
    "MemberUpdate",
    "TeamCreate",
    "TeamList",
    "TeamPublic",
    "TeamUpdate",
    "TeamUsage",
    "TeamUsageQuery",
    "add_member",
    "create",
    "delete",
    "get",
    "ledger",
    "list_mine",
    "members",
    "membership",
    "owner_guard",
    "remove_member",
    "stage_charged",
    "stage_member_charge",
    "stage_refunded",
    "team_usage",
    "transfer",
    "update",
    "update_member",
    "usage_history",
]


def transfer(user_id: str, team_id: str, order: credits.TransferCreate) -> credits.TransferResult:
    """Move credits between the caller (an owner) and the team, at most once per ``transfer_id``."""
    member = directory.membership(team_id, user_id)  # 404 before anything else
    guard = directory.owner_guard(team_id, user_id)
    return credits.transfer(team_id, user_id, directory.username_of(member), order, guard)


def ledger(user_id: str, team_id: str, limit: int, cursor: str | None) -> credits.LedgerPage:
    """The team's balance and a page of its ledger (owners and admins)."""
    directory.require(directory.membership(team_id, user_id), directory.MANAGERS, "read its ledger")
    entries, next_cursor = credits.history(credits.team(team_id), limit, cursor)
    balance = credits.balance(credits.team(team_id))
    return credits.LedgerPage(credits=balance, transactions=entries, next_cursor=next_cursor)


def usage_history(user_id: str, team_id: str, query: TeamUsageQuery) -> TeamUsage:
    """The team's usage over a range of days (owners and admins)."""
    directory.require(directory.membership(team_id, user_id), directory.MANAGERS, "read its usage")
    return team_usage.history(team_id, query)


def stage_member_charge(batch: Batch, team_id: str, user_id: str, cost: int, at: datetime) -> dict[str, str]:
    """In a charge's commit round: the member's say on charging ``cost`` to the team (``404
    team_not_found`` for a non-member, ``402 member_*_limit`` past a limit), staged on their
    counters under a precondition. Returns who the charge is by, for the ledger and usage."""
    member = directory.membership(team_id, user_id)
    spending.stage_charge(batch, member, cost, at)
    return {"user_id": user_id, "username": directory.username_of(member)}


def stage_charged(
    batch: Batch, team_id: str, by: dict[str, str], costs: list[tuple[str, int]], at: datetime, shard: int
) -> None:
    """Count jobs charged to the team in its usage (the same commit as the charge)."""
    team_usage.stage_submitted(batch, team_id, by, costs, at, shard)


def stage_refunded(
    batch: Batch,
    team_id: str,
    user_id: str,
    refunds: list[tuple[str, int]],
    status: Literal["failed", "canceled"],
    created_at: datetime,
    shard: int,
) -> None:
    """In a refund's commit round: the team's usage and the member's counters give back the
    refunded jobs (``(task_type, cost)`` each), all submitted at ``created_at``. A member who
    left, or joined after the jobs, has no counters of theirs to give back to."""
    by_type: dict[str, tuple[int, int]] = {}
    for task_type, cost in refunds:
        jobs, total = by_type.get(task_type, (0, 0))
        by_type[task_type] = (jobs + 1, total + cost)
    for task_type, (jobs, total) in by_type.items():
        team_usage.stage_refunded(batch, team_id, user_id, task_type, status, total, created_at, shard, jobs)
    member = directory.membership_ref(team_id, user_id).get()
    if member.exists and member.get("joined_at") <= created_at:
        spending.stage_refund(batch, member, sum(cost for _, cost in refunds), created_at)
