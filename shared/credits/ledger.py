"""The ledger: one entry per movement of credits, and the history users read.

Documents: ``users/{user_id}/ledger/{entry_id}`` (a team's: ``teams/{team_id}/ledger/...``):
``{type: grant|adjustment|charge|refund|transfer, amount: signed int, job_id, created_at}``;
an admin's grant or adjustment also has ``reason`` and ``admin_id``; a transfer has
``team_id`` (in the user's ledger) or ``user_id`` (in the team's), a team job's charge and
refund the member's ``user_id``. Ids are fixed per movement (``grant-signup``,
``charge-{job_id}``, ``refund-{job_id}``, ``batch-{batch_id}``, ``grant-{sha256(grant_id)}``,
``transfer-{sha256(team_id, transfer_id)}``) and written with ``create``, so a movement can be
recorded at most once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from google.cloud import firestore
from pydantic import BaseModel

from shared.credits.wallet import Holder, account
from shared.db import Snapshot, newest_first
from shared.errors import NotFound

EntryType = Literal["grant", "adjustment", "charge", "refund", "transfer"]


class LedgerEntryPublic(BaseModel):
    id: str
    type: EntryType
    amount: int
    job_id: str | None
    created_at: datetime
    reason: str | None = None
    team_id: str | None = None
    """A transfer's team, in a user's ledger."""
    username: str | None = None
    """In a team's ledger: the member a charge, refund or transfer was made by."""


class LedgerPage(BaseModel):
    """The balance and a page of the ledger, newest first; ``next_cursor`` is null on the last page."""

    credits: int
    transactions: list[LedgerEntryPublic]
    next_cursor: str | None


def entries(holder: Holder) -> firestore.CollectionReference:
    return account(holder).ref.collection("ledger")


def entry(type_: EntryType, amount: int, job_id: str | None, at: datetime) -> dict[str, Any]:
    return {"type": type_, "amount": amount, "job_id": job_id, "created_at": at}


def history(holder: Holder, limit: int, cursor: str | None) -> tuple[list[LedgerEntryPublic], str | None]:
    """A page of the ledger, newest first; ``cursor`` is the last entry id of the previous page."""

    def find(entry_id: str) -> Snapshot:
        last = entries(holder).document(entry_id).get()
        if not last.exists:
            raise NotFound("no such entry")
        return last

    docs, more = newest_first(entries(holder), limit, cursor, find)
    page = [LedgerEntryPublic.model_validate({"id": d.id, **(d.to_dict() or {})}) for d in docs]
    return page, (page[-1].id if more else None)
