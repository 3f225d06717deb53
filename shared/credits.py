"""How credits move. The only module that writes a balance or the ledger.

Documents:
- ``users/{user_id}.credits``: the balance (an integer, never negative).
- ``users/{user_id}/ledger/{entry_id}``: one entry per movement,
  ``{type: grant|adjustment|charge|refund, amount: signed int, job_id, created_at}``;
  an admin's grant or adjustment also has ``reason`` and ``admin_id``.
- ``grants/{sha256(grant_id)}``: an admin grant's request and first result, so a
  repeat of its ``grant_id`` answers that result and moves nothing.

Why balance and ledger never disagree: every movement changes the balance and
creates its ledger entry in the same atomic batch (see ``shared.db``), so the
sum of the ledger equals the balance after every commit.

Why a charge is exact under concurrency: ``stage_charge`` checks the balance in
a snapshot and writes the decrement with a precondition on that snapshot's
``update_time``. Firestore applies the batch only if the user document is
unchanged since the read, so two charges can never both spend the same credit:
the loser's batch (job, ledger entry and all) is rejected as a whole and it
decides again from a fresh read. A refusal (402) is decided on a real snapshot
and writes nothing. No locks are taken, so contention costs retries, not
timeouts (50 concurrent charges on one account: 10 accepted, 40 refused).

Why a refund happens at most once per job: its ledger entry has the fixed id
``refund-{job_id}`` and is written with ``create`` (exists=False), so a second
refund for the same job fails its batch; callers also guard it with the job's
own state transition in the same batch.

Why an admin grant happens at most once per ``grant_id``: ``grant`` creates the
grant record (exists=False) in the same batch as the guarded balance change, so
of racing repeats exactly one commits; each loser decides again, finds the record
and returns its stored result. A negative grant (an ``adjustment``) is refused
(409 ``balance_too_low``) rather than taking the balance below zero.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Annotated, Any, Literal

from google.cloud import firestore
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints, field_validator

from shared import usage, usernames
from shared.db import Batch, Snapshot, client, commit_optimistically, now, unchanged
from shared.errors import Conflict, InsufficientCredits, InvalidRequest
from shared.usernames import Username

EntryType = Literal["grant", "adjustment", "charge", "refund"]
MAX_GRANT = 1_000_000
"""The largest credit change one admin grant may make, either way."""


class LedgerEntryPublic(BaseModel):
    id: str
    type: EntryType
    amount: int
    job_id: str | None
    created_at: datetime
    reason: str | None = None


def _user(user_id: str) -> firestore.DocumentReference:
    return client().collection("users").document(user_id)


def _ledger(user_id: str) -> firestore.CollectionReference:
    return _user(user_id).collection("ledger")


def _entry(type_: EntryType, amount: int, job_id: str | None, at: datetime) -> dict[str, Any]:
    return {"type": type_, "amount": amount, "job_id": job_id, "created_at": at}


def stage_open_account(
    batch: firestore.WriteBatch, user_id: str, profile: dict[str, Any], grant: int, at: datetime
) -> None:
    """Create the user document with its opening balance and the matching grant."""
    batch.create(_user(user_id), {**profile, "credits": grant})
    batch.create(_ledger(user_id).document("grant-signup"), _entry("grant", grant, None, at))
    usage.stage_granted(batch, user_id, grant, at)


def stage_charge(
    batch: firestore.WriteBatch,
    user: Snapshot,
    amount: int,
    job_id: str,
    at: datetime,
) -> int:
    """Stage a charge against the balance ``user`` shows; returns the balance after it.

    Raises ``InsufficientCredits`` (staging nothing) when the snapshot cannot pay.
    """
    balance = int(user.get("credits"))
    if balance < amount:
        raise InsufficientCredits(f"this job costs {amount} credits; the balance is {balance}")
    batch.update(user.reference, {"credits": firestore.Increment(-amount)}, option=unchanged(user))
    batch.create(_ledger(user.id).document(f"charge-{job_id}"), _entry("charge", -amount, job_id, at))
    return balance - amount


def stage_refund(batch: firestore.WriteBatch, user_id: str, amount: int, job_id: str, at: datetime) -> None:
    """Stage the refund of a job's charge; its fixed ledger id makes a second one fail."""
    # Increment needs no read, so a refund never contends with charges.
    batch.update(_user(user_id), {"credits": firestore.Increment(amount)})
    batch.create(_ledger(user_id).document(f"refund-{job_id}"), _entry("refund", amount, job_id, at))


def history(user_id: str, limit: int, cursor: str | None) -> tuple[list[LedgerEntryPublic], str | None]:
    """A page of the ledger, newest first; ``cursor`` is the last entry id of the previous page."""
    query = _ledger(user_id).order_by("created_at", direction=firestore.Query.DESCENDING)
    query = query.order_by("__name__", direction=firestore.Query.DESCENDING)
    if cursor:
        last = _ledger(user_id).document(cursor).get()
        if not last.exists:
            raise InvalidRequest("unknown cursor", code="invalid_cursor")
        query = query.start_after(last)
    docs = list(query.limit(limit + 1).stream())
    entries = [LedgerEntryPublic(id=d.id, **(d.to_dict() or {})) for d in docs[:limit]]
    return entries, (entries[-1].id if len(docs) > limit else None)


# -- admin grants ---------------------------------------------------------------------------------


class GrantCreate(BaseModel):
    """Body of ``POST /admin/credits``: a positive ``amount`` grants, a negative one adjusts down."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    username: Username
    # Strict: "5", 5.0 and true are refused, not coerced; money amounts are exact integers.
    amount: Annotated[StrictInt, Field(ge=-MAX_GRANT, le=MAX_GRANT)]
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    grant_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,128}$")]

    @field_validator("amount")
    @classmethod
    def _non_zero(cls, value: int) -> int:
        if value == 0:
            raise ValueError("must not be zero")
        return value


class GrantResult(BaseModel):
    """Answer to a grant; a repeat of its ``grant_id`` answers the same, with ``replayed`` set."""

    grant_id: str
    username: str
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
    if (data["username"], data["amount"], data["reason"]) != (order.username, order.amount, order.reason):
        raise Conflict("this grant_id was already used for another grant", code="grant_id_reused")
    return GrantResult.model_validate({**data, "replayed": True})


def grant(order: GrantCreate, admin_id: str) -> GrantResult:
    """Add (or, negative, remove) credits by an admin's decision, at most once per ``grant_id``.

    Raises ``NotFound`` ``user_not_found``, ``Conflict`` ``balance_too_low`` (an adjustment
    below zero) or ``Conflict`` ``grant_id_reused``; none of them writes anything.
    """
    key = _grant_key(order.grant_id)
    record_ref = client().collection("grants").document(key)

    def decide(batch: Batch) -> GrantResult:
        record = record_ref.get()
        if record.exists:
            return _replay(record, order)
        user = usernames.account(order.username)
        balance = int(user.get("credits"))
        if balance + order.amount < 0:
            raise Conflict(
                f"the balance is {balance}; removing {-order.amount} credits would take it below zero",
                code="balance_too_low",
            )
        at = now()
        result = GrantResult(
            grant_id=order.grant_id,
            username=order.username,
            amount=order.amount,
            type="grant" if order.amount > 0 else "adjustment",
            credits=balance + order.amount,
            created_at=at,
        )
        why = {"reason": order.reason, "admin_id": admin_id}
        entry = {**_entry(result.type, order.amount, None, at), **why}
        batch.update(user.reference, {"credits": firestore.Increment(order.amount)}, option=unchanged(user))
        batch.create(_ledger(user.id).document(f"grant-{key}"), entry)
        stored = {**result.model_dump(), **why, "user_id": user.id}
        batch.create(record_ref, batch.receipt(record_ref, stored))
        usage.stage_granted(batch, user.id, order.amount, at)
        return result

    return commit_optimistically(decide)
