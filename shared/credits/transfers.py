"""Credits moved between a user's wallet and a team's, at most once per ``transfer_id``.

Document ``transfers/{sha256(team_id, transfer_id)}``: the transfer's request and first
result, so a repeat answers that result and moves nothing. Both sides move in the one
commit that creates the record (``exists=False``), with an entry in each ledger under the
same id (``transfer-{key}``, amounts of opposite signs): a transfer is always a matching
pair, and of racing repeats exactly one commits.

A positive amount goes from the user to the team: the user's side is taken like a charge
(a shard under a precondition, ``402`` if the balance cannot pay) and the team's added with
no read, so topping up a team never contends with its members' charges. A negative amount
comes back from the team the same way round.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
)

from shared.credits import ledger, wallet
from shared.credits.grants import CreditChange, MoveId
from shared.db import Batch, Snapshot, client, commit_optimistically, now
from shared.errors import Conflict, InsufficientCredits


class TransferCreate(BaseModel):
    """Body of ``POST /teams/{team_id}/credits``: positive moves credits from the caller to
    the team, negative from the team back to the caller."""

    model_config = ConfigDict(
        extra="forbid",
        hide_input_in_errors=True,
        json_schema_extra={"examples": [{"amount": 500, "transfer_id": "topup-2026-12"}]},
    )

    amount: CreditChange
    transfer_id: MoveId


class TransferResult(BaseModel):
    """Answer to a transfer; a repeat of its ``transfer_id`` answers the same, marked replayed."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    transfer_id: str
    team_id: str
    amount: int
    """Credits moved to the team (negative: to the caller)."""
    team_credits: int
    """The team's balance, read when this answer was made (after the transfer landed)."""
    created_at: datetime
    replayed: bool = Field(False, exclude=True)


def transfer_key(team_id: str, transfer_id: str) -> str:
    # Hashed, so any accepted transfer_id makes a valid document id; scoped by the team.
    return hashlib.sha256(f"{team_id}\n{transfer_id}".encode()).hexdigest()


def transfer(
    team_id: str,
    user_id: str,
    username: str,
    order: TransferCreate,
    guard: Callable[[Batch], None],
) -> TransferResult:
    """Move ``order.amount`` between the user's wallet and the team's, at most once.

    ``guard(batch)`` is the teams module's say, made in each round: it reads whether the user
    may move the team's money and stages a write guarded by that read (so a demotion or a
    deletion racing the transfer makes it decide again). Raises what ``guard`` raises,
    ``InsufficientCredits`` (the paying side cannot) or ``Conflict`` ``transfer_id_reused``.
    """
    key = transfer_key(team_id, order.transfer_id)
    record_ref = client().collection("transfers").document(key)
    user, team = wallet.account(user_id), wallet.Account("teams", team_id)
    payer, payee = (user, team) if order.amount > 0 else (team, user)
    amount = abs(order.amount)
    # How wide each side is spread, from one read each: the paying side is taken from like a
    # charge, the receiving side gets the amount spread over its shards with no read at all.
    spread, payee_spread = wallet.width(wallet.balance(payer)), wallet.width(wallet.balance(payee) + amount)

    def decide(batch: Batch) -> TransferResult:
        record = record_ref.get()
        if record.exists:
            return _replay(record, user_id, order)
        guard(batch)
        taken = wallet.stage_take(batch, payer, amount, spread)
        if taken.shard is None:
            whose = "your balance" if payer == user else "the team's balance"
            raise InsufficientCredits(
                f"moving {amount} credits needs {amount - (taken.short or 0)} more than {whose}"
            )
        wallet.stage_spread(batch, payee, amount, payee_spread)
        at = now()
        mine = ledger.entry("transfer", -order.amount, None, at) | {"team_id": team_id}
        batch.create(ledger.entries(user).document(f"transfer-{key}"), mine)
        theirs = ledger.entry("transfer", order.amount, None, at) | {"user_id": user_id, "username": username}
        batch.create(ledger.entries(team).document(f"transfer-{key}"), theirs)
        stored = {
            "team_id": team_id,
            "user_id": user_id,
            "transfer_id": order.transfer_id,
            "amount": order.amount,
            "created_at": at,
        }
        batch.create(record_ref, batch.receipt(record_ref, stored))
        return TransferResult.model_validate({**stored, "team_credits": 0})

    result = commit_optimistically(decide)
    return result.model_copy(update={"team_credits": wallet.balance(team)})


def _replay(record: Snapshot, user_id: str, order: TransferCreate) -> TransferResult:
    data = record.to_dict() or {}
    if (data["user_id"], data["amount"]) != (user_id, order.amount):
        raise Conflict("this transfer_id was already used for another transfer", code="transfer_id_reused")
    return TransferResult.model_validate({**data, "team_credits": 0, "replayed": True})
