"""How credits move. The only module that writes a balance or the ledger.

Documents:
- ``users/{user_id}.credits``: the balance (an integer, never negative).
- ``users/{user_id}/ledger/{entry_id}``: one entry per movement,
  ``{type: grant|charge|refund, amount: signed int, job_id, created_at}``.

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
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from google.cloud import firestore
from pydantic import BaseModel

from shared.db import Snapshot, client, unchanged
from shared.errors import InsufficientCredits, InvalidRequest

EntryType = Literal["grant", "charge", "refund"]


class LedgerEntryPublic(BaseModel):
    id: str
    type: EntryType
    amount: int
    job_id: str | None
    created_at: datetime


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
