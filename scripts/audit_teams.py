"""The teams' part of the audit (``scripts/audit.py`` reads everything and calls ``check``).

Checks each team's wallet against its ledger (a deleted team's is gone and its ledger sums to
0), each job charged to a team against the team's charge and refund, each transfer as a
matching pair with its record, each team grant against its record, each member's spending
counters against their jobs and their limits, and each team's usage counters against its jobs.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from shared.teams.spending import day_key, month_key
from shared.usage import day_of, flat

if TYPE_CHECKING:
    from scripts.audit import Entry, Job

REFUNDED = ("failed", "canceled")

QUERIES: dict[str, tuple[list[str], bool]] = {
    "teams": (["deleted_at"], False),
    "memberships": (
        ["team_id", "user_id", "daily_limit", "monthly_limit", "limits_lowered_at", "spent", "joined_at"],
        False,
    ),
    "transfers": (["team_id", "user_id", "amount"], False),
    "team_usage": (["team_id", "day", "jobs_total", "jobs", "credits", "refunded", "failed"], True),
}
"""What the team checks read, besides the wallets, ledgers and jobs: ``(fields, group)``."""
QUERIES["team_usage"][0].extend(["canceled", "members"])

_ID_TYPES = {
    "grant": ("grant", "adjustment"),
    "charge": ("charge",),
    "refund": ("refund",),
    "batch": ("charge",),
    "transfer": ("transfer",),
}


@dataclass
class TeamBooks:
    teams: dict[str, dict[str, Any]] = field(default_factory=dict)
    shards: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Team id -> shard id -> ``credits`` as stored."""
    ledger: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    """``(team_id, entry_id)`` -> the entry."""
    memberships: dict[str, dict[str, Any]] = field(default_factory=dict)
    transfers: dict[str, dict[str, Any]] = field(default_factory=dict)
    usage: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    """``(team_id, day)`` -> the sum of that day's shard documents."""


def read(found: dict[str, list[tuple[list[str], dict[str, Any]]]]) -> TeamBooks:
    """The team documents out of the audit's streams (``wallet`` and ``ledger`` are collection
    groups: the ones under ``teams/`` are the teams')."""
    from shared.usage import add

    books = TeamBooks()
    books.teams = {path[-1]: data for path, data in found["teams"] if len(path) == 2}
    for path, data in found["wallet"]:
        if len(path) == 4 and path[0] == "teams":
            books.shards.setdefault(path[1], {})[path[3]] = data.get("credits")
    for path, data in found["ledger"]:
        if len(path) == 4 and path[0] == "teams":
            books.ledger[(path[1], path[3])] = data
    books.memberships = {path[-1]: data for path, data in found["memberships"]}
    books.transfers = {path[-1]: data for path, data in found["transfers"]}
    for path, data in found["team_usage"]:
        if len(path) == 4 and path[0] == "teams":
            day = path[3].rpartition("-")[0]
            add(books.usage.setdefault((path[1], day), {}), {k: v for k, v in data.items() if k != "day"})
    return books


def check(
    books: TeamBooks,
    jobs: dict[str, Job],
    user_ledger: dict[tuple[str, str], Entry],
    grants: dict[str, dict[str, Any]],
    horizon: datetime,
) -> Iterator[str]:
    team_jobs = [job for job in jobs.values() if job.team_id is not None]
    yield from _wallets(books)
    yield from _charges(books, team_jobs)
    yield from _entries(books, jobs, horizon)
    yield from _transfers(books, user_ledger)
    yield from _grants(books, grants)
    yield from _members(books, team_jobs, horizon)
    yield from _usage(books, team_jobs, horizon)


def _amount(entry: dict[str, Any]) -> int:
    value = entry.get("amount")
    return value if isinstance(value, int) else 0


def _wallets(books: TeamBooks) -> Iterator[str]:
    sums: Counter[str] = Counter()
    for (team_id, _), entry in books.ledger.items():
        sums[team_id] += _amount(entry)
    for team_id, team in books.teams.items():
        wallet = books.shards.get(team_id, {})
        for shard, value in sorted(wallet.items()):
            if not isinstance(value, int) or value < 0:
                yield f"team {team_id}: wallet shard {shard} holds {value!r}, not a count of credits"
        credits = sum(v for v in wallet.values() if isinstance(v, int))
        if team.get("deleted_at") is not None:
            if wallet:
                yield f"team {team_id}: deleted, but its wallet shards remain"
        elif not wallet:
            yield f"team {team_id}: no wallet shards"
        if credits != sums[team_id]:
            yield f"team {team_id}: credits {credits}, but the ledger sums to {sums[team_id]}"
    for team_id in sorted((sums.keys() | books.shards.keys()) - books.teams.keys()):
        yield f"team {team_id}: a wallet or ledger but no team document"


def _charges(books: TeamBooks, team_jobs: list[Job]) -> Iterator[str]:
    batches: defaultdict[tuple[str, str], int] = defaultdict(int)
    for job in team_jobs:
        team_id = str(job.team_id)
        who = f"job {job.id} (team {team_id}, user {job.user_id})"
        charge = books.ledger.get((team_id, f"charge-{job.id}"))
        if job.batch_id is not None:
            batches[(team_id, job.batch_id)] += job.cost
        elif charge is None:
            yield f"{who}: not charged to the team (no ledger/charge-{job.id})"
        elif _amount(charge) != -job.cost or charge.get("user_id") != job.user_id:
            yield f"{who}: charged {-_amount(charge)} by {charge.get('user_id')}, but it costs {job.cost}"
        refund = books.ledger.get((team_id, f"refund-{job.id}"))
        if job.status in REFUNDED:
            if refund is None:
                yield f"{who}: {job.status} but not refunded to the team (no ledger/refund-{job.id})"
            elif _amount(refund) != job.cost:
                yield f"{who}: refunded {_amount(refund)}, but it costs {job.cost}"
        elif refund is not None:
            yield f"{who}: {job.status} but refunded (ledger/refund-{job.id})"
    for (team_id, batch_id), cost in sorted(batches.items()):
        entry = books.ledger.get((team_id, f"batch-{batch_id}"))
        if entry is None:
            yield f"batch {batch_id} (team {team_id}): not charged (no ledger/batch-{batch_id})"
        elif _amount(entry) != -cost:
            yield f"batch {batch_id} (team {team_id}): charged {-_amount(entry)}, but its jobs cost {cost}"


def _entries(books: TeamBooks, jobs: dict[str, Job], horizon: datetime) -> Iterator[str]:
    for (team_id, entry_id), entry in books.ledger.items():
        where = f"team {team_id} ledger/{entry_id}"
        prefix, _, rest = entry_id.partition("-")
        if prefix not in _ID_TYPES or not rest:
            yield f"{where}: not an entry id this service writes"
            continue
        if entry.get("type") not in _ID_TYPES[prefix]:
            yield f"{where}: type {entry.get('type')!r} does not match its id"
        if prefix not in ("charge", "refund"):
            continue
        job = jobs.get(rest)
        created = entry.get("created_at")
        if job is None:
            if isinstance(created, datetime) and created >= horizon:
                yield f"{where}: job {rest} does not exist"
        elif job.team_id != team_id:
            yield f"{where}: job {rest} was not charged to this team"


def _transfers(books: TeamBooks, user_ledger: dict[tuple[str, str], Entry]) -> Iterator[str]:
    for key, record in books.transfers.items():
        team_id, user_id, amount = record.get("team_id"), record.get("user_id"), record.get("amount")
        mine = user_ledger.get((str(user_id), f"transfer-{key}"))
        theirs = books.ledger.get((str(team_id), f"transfer-{key}"))
        where = f"transfers/{key} (team {team_id}, user {user_id})"
        if mine is None or mine.amount != -(amount or 0):
            got = None if mine is None else mine.amount
            yield f"{where}: the user's side is {got}, expected {-(amount or 0)}"
        if theirs is None or _amount(theirs) != amount:
            got = None if theirs is None else _amount(theirs)
            yield f"{where}: the team's side is {got}, expected {amount}"
    for user_id, entry_id in user_ledger:
        if entry_id.startswith("transfer-") and entry_id.removeprefix("transfer-") not in books.transfers:
            yield f"user {user_id} ledger/{entry_id}: no transfers/{entry_id.removeprefix('transfer-')}"
    for team_id, entry_id in books.ledger:
        if entry_id.startswith("transfer-") and entry_id.removeprefix("transfer-") not in books.transfers:
            yield f"team {team_id} ledger/{entry_id}: no transfers/{entry_id.removeprefix('transfer-')}"


def _grants(books: TeamBooks, grants: dict[str, dict[str, Any]]) -> Iterator[str]:
    for key, record in grants.items():
        team_id = record.get("team_id")
        if team_id is None:
            continue
        entry = books.ledger.get((str(team_id), f"grant-{key}"))
        if entry is None or _amount(entry) != record.get("amount"):
            yield f"grants/{key} (team {team_id}): the team's ledger says {entry and _amount(entry)}"
    for team_id, entry_id in books.ledger:
        if entry_id.startswith("grant-"):
            key = entry_id.removeprefix("grant-")
            if grants.get(key, {}).get("team_id") != team_id:
                yield f"team {team_id} ledger/{entry_id}: no grants/{key}"


def _period_start(key: str) -> datetime | None:
    """The start of the day (``d20261201``) or month (``m202612``) a counter key names."""
    try:
        if key.startswith("d") and len(key) == 9:
            return datetime.strptime(key[1:], "%Y%m%d").replace(tzinfo=UTC)
        if key.startswith("m") and len(key) == 7:
            return datetime.strptime(key[1:], "%Y%m").replace(tzinfo=UTC)
    except ValueError:
        return None
    return None


def _members(books: TeamBooks, team_jobs: list[Job], horizon: datetime) -> Iterator[str]:
    """Each member's counters hold the net cost of their team jobs since they joined, and none
    is past its limit, unless the limit was lowered during that very period (``limits_lowered_at``)."""
    costs: defaultdict[tuple[str, str, str], list[tuple[datetime, int]]] = defaultdict(list)
    for job in team_jobs:
        if job.status not in REFUNDED:
            for key in (day_key(job.created_at), month_key(job.created_at)):
                costs[(str(job.team_id), job.user_id, key)].append((job.created_at, job.cost))
    for doc_id, member in books.memberships.items():
        team_id, user_id = member.get("team_id"), member.get("user_id")
        where = f"memberships/{doc_id}"
        if doc_id != f"{team_id}-{user_id}":
            yield f"{where}: names team {team_id} and user {user_id}"
            continue
        joined = member.get("joined_at")
        if not isinstance(joined, datetime):
            yield f"{where}: no joined_at"
            continue
        lowered = member.get("limits_lowered_at")
        for key, spent in sorted((member.get("spent") or {}).items()):
            start = _period_start(key)
            if start is None:
                yield f"{where}: spent.{key} is not a day or month key"
                continue
            if start < horizon:
                continue  # its jobs may be gone (TTL)
            expected = sum(cost for at, cost in costs[(str(team_id), str(user_id), key)] if at >= joined)
            if spent != expected:
                yield f"{where}: spent.{key} is {spent}, but their jobs since joining cost {expected}"
            limit = member.get("daily_limit" if key.startswith("d") else "monthly_limit")
            if limit is not None and spent > limit and (lowered is None or lowered < start):
                yield f"{where}: spent.{key} is {spent}, past the limit of {limit}"


def _usage(books: TeamBooks, team_jobs: list[Job], horizon: datetime) -> Iterator[str]:
    """Each team day's usage counters (summed over its shards) hold what its jobs add up to."""
    want: defaultdict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for job in team_jobs:
        day = day_of(job.created_at)
        counts = want[(str(job.team_id), day)]
        tt, cost, member = job.task_type, job.cost, f"members.{job.user_id}"
        counts.update({"jobs_total": 1, f"jobs.{tt}": 1, f"{member}.jobs": 1})
        if job.status in REFUNDED:
            counts.update({f"{job.status}.{tt}": 1, f"refunded.{tt}": cost, f"{member}.refunded": cost})
        else:
            counts.update({f"credits.{tt}": cost, f"{member}.credits": cost})
    for key in want.keys() | books.usage.keys():
        team_id, day = key
        if datetime.combine(date.fromisoformat(day), datetime.min.time(), UTC) < horizon:
            continue
        expected = {name: n for name, n in want.get(key, Counter()).items() if n != 0}
        found = {
            name: value
            for name, value in flat(books.usage.get(key, {})).items()
            if not name.endswith(".username") and name != "team_id" and name != "week"
        }
        wrong = [
            f"{name} is {found.get(name, 0)}, expected {expected.get(name, 0)}"
            for name in sorted(expected.keys() | found.keys())
            if found.get(name, 0) != expected.get(name, 0)
        ]
        if wrong:
            yield f"team {team_id} team_usage/{day}-*: " + "; ".join(wrong)
