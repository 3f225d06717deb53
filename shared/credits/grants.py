"""Admin grants and adjustments, at most once per ``grant_id``, to a user or to a team.

Document ``grants/{sha256(grant_id)}``: the grant's request and first result, so a repeat
of its ``grant_id`` answers that result and moves nothing. ``grant`` creates the record
(exists=False) in the same batch as the wallet change and the ledger entry, so of racing
repeats exactly one commits; each loser decides again, finds the record and returns its
stored result. A negative grant (an ``adjustment``) is refused (409 ``balance_too_low``)
rather than taking the balance below zero.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StringConstraints,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from shared import usage, usernames
from shared.credits import ledger, wallet
from shared.db import Batch, Snapshot, client, commit_optimistically, now
from shared.errors import Conflict
from shared.usernames import Username

MAX_GRANT = 1_000_000
"""The largest credit change one admin grant may make, either way."""


def no_default(schema: dict[str, Any]) -> None:
    """For a field that may be left out but not null: its schema states no ``null`` default."""
    schema.pop("default", None)


def whole(value: object) -> object:
    """A float with no fraction as its int; anything else unchanged, for the strict check."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _non_zero(value: int) -> int:
    if value == 0:
        raise ValueError("must not be zero")
    return value


# Strict: "5", 5.5 and true are refused, not coerced; money amounts are exact integers.
# 5.0 is the integer 5 to JSON Schema (and so to the OpenAPI document): taken as 5.
CreditChange = Annotated[
    StrictInt,
    Field(ge=-MAX_GRANT, le=MAX_GRANT, json_schema_extra={"not": {"const": 0}}),
    BeforeValidator(whole),
    AfterValidator(_non_zero),
]
"""A signed, non-zero number of credits to move (at most ``MAX_GRANT`` either way)."""
MoveId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,128}$")]
"""The caller's id of a movement (a ``grant_id``, a ``transfer_id``): a repeat moves nothing."""


class GrantCreate(BaseModel):
    """Body of ``POST /admin/credits``: a positive ``amount`` grants, a negative one adjusts down;
    to the account ``username`` names or to the team ``team_id`` names (one of the two)."""

    model_config = ConfigDict(
        extra="forbid",
        hide_input_in_errors=True,
        json_schema_extra={
            "examples": [{"username": "ada", "amount": 100, "reason": "ticket 4711", "grant_id": "t4711"}],
            # Exactly one of the two (the validator below says so too).
            "oneOf": [{"required": ["username"]}, {"required": ["team_id"]}],
        },
    )

    username: Username | SkipJsonSchema[None] = Field(None, json_schema_extra=no_default)
    team_id: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")] | SkipJsonSchema[None] = Field(
        None, json_schema_extra=no_default
    )
    amount: CreditChange
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    grant_id: MoveId

    @model_validator(mode="after")
    def _one_target(self) -> GrantCreate:
        if (self.username is None) == (self.team_id is None):
            raise ValueError("name exactly one of username and team_id")
        if {"username", "team_id"} & self.model_fields_set != {"username" if self.username else "team_id"}:
            raise ValueError("leave out the one of username and team_id not used (null is not a value)")
        return self


class GrantResult(BaseModel):
    """Answer to a grant; a repeat of its ``grant_id`` answers the same, with ``replayed`` set."""

    grant_id: str
    username: str | None = None
    team_id: str | None = None
    amount: int
    type: Literal["grant", "adjustment"]
    credits: int
    """The balance right after this grant."""
    created_at: datetime
    replayed: bool = Field(False, exclude=True)


def _grant_key(grant_id: str) -> str:
    # Hashed, so any accepted grant_id makes a valid document id (``__x__`` would not) and the
    # ledger id ``grant-<64 hex>`` neither meets ``grant-signup`` nor outgrows a history cursor.
    return hashlib.sha256(grant_id.encode()).hexdigest()


def _replay(record: Snapshot, order: GrantCreate) -> GrantResult:
    """The stored first result of this ``grant_id``, if ``order`` is the same request."""
    data = record.to_dict() or {}
    first = (data.get("username"), data.get("team_id"), data["amount"], data["reason"])
    if first != (order.username, order.team_id, order.amount, order.reason):
        raise Conflict("this grant_id was already used for another grant", code="grant_id_reused")
    return GrantResult.model_validate({**data, "replayed": True})


def grant(order: GrantCreate, admin_id: str) -> GrantResult:
    """Add (or, negative, remove) credits by an admin's decision, at most once per ``grant_id``.

    Raises ``NotFound`` ``user_not_found`` or ``team_not_found``, ``Conflict``
    ``balance_too_low`` (an adjustment below zero) or ``Conflict`` ``grant_id_reused``; none of
    them writes anything. A team's wallet exists exactly while the team does (deleting a team
    deletes its empty shards under preconditions), so rewriting it is the existence check.
    """
    key = _grant_key(order.grant_id)
    record_ref = client().collection("grants").document(key)

    def decide(batch: Batch) -> GrantResult:
        record = record_ref.get()
        if record.exists:
            return _replay(record, order)
        if order.team_id is not None:
            holder: wallet.Holder = wallet.Account("teams", order.team_id)
        else:
            holder = usernames.account(str(order.username), ["username"]).id
        after = wallet.stage_rewrite(batch, holder, order.amount)
        if after < 0:
            raise Conflict(
                f"the balance is {after - order.amount}; removing {-order.amount} credits would take it"
                " below zero",
                code="balance_too_low",
            )
        at = now()
        result = GrantResult(
            grant_id=order.grant_id,
            username=order.username,
            team_id=order.team_id,
            amount=order.amount,
            type="grant" if order.amount > 0 else "adjustment",
            credits=after,
            created_at=at,
        )
        why = {"reason": order.reason, "admin_id": admin_id}
        entry = {**ledger.entry(result.type, order.amount, None, at), **why}
        batch.create(ledger.entries(holder).document(f"grant-{key}"), entry)
        owner = {"team_id": order.team_id} if isinstance(holder, wallet.Account) else {"user_id": holder}
        batch.create(record_ref, batch.receipt(record_ref, {**result.model_dump(), **why, **owner}))
        if isinstance(holder, str):  # a team's usage counts its jobs, not its funding
            usage.stage_granted(batch, holder, order.amount, at)
        return result

    return commit_optimistically(decide)
