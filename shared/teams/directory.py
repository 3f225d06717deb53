"""Teams and their members: who belongs, with which role and limits.

Documents (owned here):
- ``teams/{team_id}``: ``{name, created_by, created_at, updated_at, members, owners,
  deleted_at}``. ``members`` and ``owners`` are counts. Every change to the roster (a
  member added, removed, re-roled or limited) rewrites this document under a precondition
  on the read it was decided on, so roster changes of one team are serialized: two owners
  demoting each other at once cannot leave the team without one.
- ``memberships/{team_id}-{user_id}``: ``{team_id, user_id, username, role, daily_limit,
  monthly_limit, limits_lowered_at, spent, joined_at}``; ``spent`` is the member's
  counters (``shared.teams.spending``); ``limits_lowered_at`` is when a limit was last set
  below what it was (then what was spent before may exceed it). Removing a member deletes it.
- ``team_seats/{user_id}``: ``{count}``, the teams a user belongs to, guarded like the roster.

A deleted team keeps its document (``deleted_at``) and its ledger, which sums to 0; its
memberships and its (empty) wallet are deleted in the same commit. Anyone who is not a
member, of a team that does not exist or no longer does, gets ``404 team_not_found``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from google.cloud import firestore

from shared import credits, usernames
from shared.db import (
    Batch,
    Snapshot,
    client,
    commit_optimistically,
    now,
    stage_count_down,
    stage_count_up,
    unchanged,
)
from shared.errors import Conflict, Forbidden, InvalidRequest, NotFound
from shared.settings import get_settings
from shared.teams.models import (
    MemberCreate,
    MemberList,
    MemberPublic,
    MemberUpdate,
    Role,
    TeamCreate,
    TeamList,
    TeamPublic,
    TeamUpdate,
)
from shared.teams.spending import spent_now

MAX_MEMBERS = 100
"""Members per team: one commit deletes them all with the team (and stays under 500 writes)."""
MANAGERS: tuple[Role, ...] = ("owner", "admin")
_ID_LENGTH = 32


def teams() -> firestore.CollectionReference:
    return client().collection("teams")


def memberships() -> firestore.CollectionReference:
    return client().collection("memberships")


def membership_ref(team_id: str, user_id: str) -> firestore.DocumentReference:
    return memberships().document(f"{team_id}-{user_id}")


def _seats(user_id: str) -> firestore.DocumentReference:
    return client().collection("team_seats").document(user_id)


def is_team_id(team_id: str) -> bool:
    return len(team_id) == _ID_LENGTH and all(c in "0123456789abcdef" for c in team_id)


def _not_found() -> NotFound:
    return NotFound("no such team", code="team_not_found")


def membership(team_id: str, user_id: str) -> Snapshot:
    """The caller's membership, read; ``404 team_not_found`` if there is none (another team's
    existence is not told)."""
    seen = membership_ref(team_id, user_id).get() if is_team_id(team_id) else None
    if seen is None or not seen.exists:
        raise _not_found()
    return seen


def _team(team_id: str) -> Snapshot:
    seen = teams().document(team_id).get()
    if not seen.exists or seen.get("deleted_at") is not None:
        raise _not_found()
    return seen


def require(member: Snapshot, roles: tuple[Role, ...], doing: str) -> None:
    if member.get("role") not in roles:
        who = " or ".join(f"{r}s" for r in roles)
        raise Forbidden(f"only the team's {who} may {doing}", code="team_role_required")


def _public(team: Snapshot, role: Role) -> TeamPublic:
    data = team.to_dict() or {}
    return TeamPublic(
        team_id=team.id,
        name=data["name"],
        role=role,
        credits=credits.balance(credits.team(team.id)),
        members=data["members"],
        created_at=data["created_at"],
    )


def _take_seat(batch: Batch, user_id: str, username: str) -> None:
    limit = get_settings().team_max_per_user
    full = Conflict(f"{username} already belongs to {limit} teams, the most one may", code="too_many_teams")
    stage_count_up(batch, _seats(user_id), limit, full)


def _member_document(
    team_id: str, user_id: str, username: str, order: MemberCreate, at: datetime
) -> dict[str, Any]:
    return {
        "team_id": team_id,
        "user_id": user_id,
        "username": username,
        "role": order.role,
        "daily_limit": order.daily_limit,
        "monthly_limit": order.monthly_limit,
        "limits_lowered_at": None,
        "spent": {},
        "joined_at": at,
    }


# -- teams ------------------------------------------------------------------------------------------


def create(user_id: str, order: TeamCreate) -> TeamPublic:
    """A new team with the caller as its one owner and an empty wallet."""
    ref = teams().document(uuid.uuid4().hex)
    username = str(
        client().collection("users").document(user_id).get(field_paths=["username"]).get("username")
    )

    def decide(batch: Batch) -> TeamPublic:
        at = now()
        _take_seat(batch, user_id, username)
        team = {"name": order.name, "created_by": user_id, "created_at": at, "updated_at": at}
        team |= {"members": 1, "owners": 1, "deleted_at": None}
        batch.create(ref, batch.receipt(ref, team))
        owner = MemberCreate(username=username, role="owner")
        batch.create(membership_ref(ref.id, user_id), _member_document(ref.id, user_id, username, owner, at))
        credits.stage_open_team(batch, ref.id)
        return TeamPublic(team_id=ref.id, name=order.name, role="owner", credits=0, members=1, created_at=at)

    return commit_optimistically(decide)


def list_mine(user_id: str) -> TeamList:
    mine = {
        m.get("team_id"): m.get("role")
        for m in memberships().where(filter=firestore.FieldFilter("user_id", "==", user_id)).stream()
    }
    found = client().get_all([teams().document(t) for t in mine])
    live = [t for t in found if t.exists and t.get("deleted_at") is None]
    return TeamList(teams=sorted((_public(t, mine[t.id]) for t in live), key=lambda t: (t.name, t.team_id)))


def get(user_id: str, team_id: str) -> TeamPublic:
    member = membership(team_id, user_id)
    return _public(_team(team_id), member.get("role"))


def update(user_id: str, team_id: str, changes: TeamUpdate) -> TeamPublic:
    def decide(batch: Batch) -> TeamPublic:
        member = membership(team_id, user_id)
        require(member, MANAGERS, "rename it")
        team = _team(team_id)
        fields = {"name": changes.name, "updated_at": now()}
        batch.update(team.reference, batch.receipt(team.reference, fields), option=unchanged(team))
        return _public(team, member.get("role")).model_copy(update={"name": changes.name})

    return commit_optimistically(decide)


def delete(user_id: str, team_id: str) -> None:
    """Delete an empty team with no unfinished job: ``409 team_not_empty`` or ``409 team_busy``."""
    from shared import jobs  # only a deletion asks about jobs

    def decide(batch: Batch) -> None:
        member = membership(team_id, user_id)
        require(member, ("owner",), "delete it")
        team = _team(team_id)
        credits.stage_close_team(batch, team_id)  # 409 team_not_empty; each shard guarded
        # After the wallet's read: a job charged before it is there to be found, and none can be
        # charged after it (the wallet is empty, and emptied of shards by this commit).
        if jobs.unfinished_of_team(team_id):
            raise Conflict(
                "a job charged to the team is unfinished: wait for it, or cancel it", code="team_busy"
            )
        for seen in memberships().where(filter=firestore.FieldFilter("team_id", "==", team_id)).stream():
            batch.delete(seen.reference, option=unchanged(seen))
            stage_count_down(batch, _seats(seen.get("user_id")))
        at = now()
        fields = {"deleted_at": at, "updated_at": at, "members": 0, "owners": 0}
        batch.update(team.reference, batch.receipt(team.reference, fields), option=unchanged(team))

    commit_optimistically(decide)


# -- members ----------------------------------------------------------------------------------------


def _member_public(seen: Snapshot, at: datetime) -> MemberPublic:
    data = seen.to_dict() or {}
    today, month = spent_now(data, at)
    return MemberPublic(
        username=data["username"],
        role=data["role"],
        daily_limit=data.get("daily_limit"),
        monthly_limit=data.get("monthly_limit"),
        spent_today=today,
        spent_this_month=month,
        joined_at=data["joined_at"],
    )


def members(user_id: str, team_id: str) -> MemberList:
    membership(team_id, user_id)
    found = memberships().where(filter=firestore.FieldFilter("team_id", "==", team_id)).stream()
    at = now()
    return MemberList(members=sorted((_member_public(m, at) for m in found), key=lambda m: m.username))


def _target(team_id: str, username: str) -> Snapshot:
    if not usernames.is_valid(username):
        raise NotFound("no such member", code="member_not_found")
    account = usernames.find_account(usernames.normalise(username), ["username"])
    seen = membership_ref(team_id, account.id).get() if account is not None else None
    if seen is None or not seen.exists:
        raise NotFound("no such member", code="member_not_found")
    return seen


def _may_manage(caller: Snapshot, role: str, doing: str) -> None:
    """Owners manage anyone; admins manage admins and members, and make no owners."""
    require(caller, MANAGERS, doing)
    if role == "owner" and caller.get("role") != "owner":
        raise Forbidden(f"only the team's owners may {doing} an owner", code="team_role_required")


def add_member(user_id: str, team_id: str, order: MemberCreate) -> MemberPublic:
    def decide(batch: Batch) -> MemberPublic:
        caller = membership(team_id, user_id)
        _may_manage(caller, order.role, "add")
        team = _team(team_id)
        account = usernames.find_account(order.username, ["username"])
        if account is None:
            # 422, not 404: the team (the URL) exists; what is wrong is a name in the body.
            raise InvalidRequest(f"no account has the username {order.username}", code="unknown_user")
        ref = membership_ref(team_id, account.id)
        if ref.get().exists:
            raise Conflict(f"{order.username} is already a member", code="already_member")
        if team.get("members") >= MAX_MEMBERS:
            raise Conflict(f"a team has at most {MAX_MEMBERS} members", code="team_full")
        at = now()
        _take_seat(batch, account.id, order.username)
        document = _member_document(team_id, account.id, order.username, order, at)
        batch.create(ref, batch.receipt(ref, document))
        counts = {"members": firestore.Increment(1), "updated_at": at}
        counts |= {"owners": firestore.Increment(1)} if order.role == "owner" else {}
        batch.update(team.reference, counts, option=unchanged(team))
        return MemberPublic(
            username=order.username,
            role=order.role,
            daily_limit=order.daily_limit,
            monthly_limit=order.monthly_limit,
            spent_today=0,
            spent_this_month=0,
            joined_at=at,
        )

    return commit_optimistically(decide)


def update_member(user_id: str, team_id: str, username: str, changes: MemberUpdate) -> MemberPublic:
    def decide(batch: Batch) -> MemberPublic:
        caller = membership(team_id, user_id)
        target = _target(team_id, username)
        _may_manage(caller, target.get("role"), "change")
        new_role = changes.role or target.get("role")
        _may_manage(caller, new_role, "make")
        team = _team(team_id)
        owners = int(team.get("owners")) + (new_role == "owner") - (target.get("role") == "owner")
        if owners < 1:
            raise Conflict("a team needs an owner: make another member owner first", code="last_owner")
        at = now()
        fields: dict[str, Any] = {name: getattr(changes, name) for name in changes.model_fields_set}
        if any(_lowered(target.get(name), fields[name]) for name in _LIMITS & fields.keys()):
            fields["limits_lowered_at"] = at
        batch.update(target.reference, batch.receipt(target.reference, fields), option=unchanged(target))
        batch.update(team.reference, {"owners": owners, "updated_at": at}, option=unchanged(team))
        shown = {name: value for name, value in fields.items() if name in MemberPublic.model_fields}
        return _member_public(target, at).model_copy(update=shown)

    return commit_optimistically(decide)


def remove_member(user_id: str, team_id: str, username: str) -> None:
    """Remove a member, or leave (any member may); the last owner may not go."""

    def decide(batch: Batch) -> None:
        caller = membership(team_id, user_id)
        target = _target(team_id, username)
        if target.id != caller.id:
            _may_manage(caller, target.get("role"), "remove")
        team = _team(team_id)
        owners = int(team.get("owners")) - (target.get("role") == "owner")
        if owners < 1:
            raise Conflict("a team needs an owner: make another member owner first", code="last_owner")
        batch.delete(target.reference, option=unchanged(target))
        stage_count_down(batch, _seats(target.get("user_id")))
        fields = {"members": firestore.Increment(-1), "owners": owners, "updated_at": now()}
        batch.update(team.reference, batch.receipt(team.reference, fields), option=unchanged(team))

    commit_optimistically(decide)


_LIMITS = {"daily_limit", "monthly_limit"}


def _lowered(before: int | None, after: int | None) -> bool:
    """Whether a limit went down (no limit is the highest)."""
    return after is not None and (before is None or after < before)


def owner_guard(team_id: str, user_id: str) -> Any:
    """For a transfer's commit (``shared.credits.transfer``): the caller must be an owner, read
    in the commit's own round and guarded by that read (a demotion, a removal or the team's
    deletion makes the transfer decide again, and then refuses it)."""

    def guard(batch: Batch) -> None:
        caller = membership(team_id, user_id)
        require(caller, ("owner",), "move its credits")
        batch.update(caller.reference, {"last_transfer_at": now()}, option=unchanged(caller))

    return guard


def username_of(member: Snapshot) -> str:
    return str(member.get("username"))
