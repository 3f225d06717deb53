"""How credits move. The only package that writes a balance or the ledger.

- ``wallet``: the balance, spread over shard documents (``users/{id}/wallet/{n}``).
- ``ledger``: one entry per movement (``users/{id}/ledger/{entry}``) and the history.
- ``grants``: an admin's grants and adjustments (``grants/{sha256(grant_id)}``).
- ``transfers``: credits moved between a user and a team (``transfers/{sha256(...)}``).

A team holds credits exactly as a user does (``teams/{id}/wallet``, ``teams/{id}/ledger``):
every function here takes an ``Account`` (``team(id)``), or a user id for a user's own.

Why balance and ledger never disagree: every movement changes the shards and creates
its ledger entry in the same atomic batch (see ``shared.db``), so the sum of the ledger
equals the sum of the shards after every commit.

Why a charge is exact under concurrency: each shard it takes from is decremented with a
precondition on the ``update_time`` it was read at. Firestore applies the batch only if
every such shard is unchanged since the read, so two charges can never both spend the
same credit: the loser's batch (job, ledger entry and all) is rejected as a whole and it
decides again from fresh reads. A refusal (402) is decided on one consistent read of
every shard and writes nothing. No locks are taken, and racing charges of one account
mostly pick different shards, so contention costs few retries and no timeouts (50
concurrent charges on 10 credits: 10 accepted, 40 refused).

Why a refund happens at most once per job: its ledger entry has the fixed id
``refund-{job_id}`` and is written with ``create``, so a second refund for the same job
fails its batch; callers also guard it with the job's own state transition.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from google.cloud import firestore

from shared import usage
from shared.credits import ledger, wallet
from shared.credits.grants import MAX_GRANT, GrantCreate, GrantResult, grant
from shared.credits.ledger import LedgerEntryPublic, LedgerPage, history
from shared.credits.transfers import TransferCreate, TransferResult, transfer
from shared.credits.wallet import Account, Holder
from shared.db import client, unchanged
from shared.errors import Conflict, InsufficientCredits

__all__ = [
    "MAX_GRANT",
    "Account",
    "GrantCreate",
    "GrantResult",
    "Holder",
    "LedgerEntryPublic",
    "LedgerPage",
    "TransferCreate",
    "TransferResult",
    "balance",
    "grant",
    "history",
    "stage_batch_charge",
    "stage_batch_refund",
    "stage_charge",
    "stage_close_team",
    "stage_open_account",
    "stage_open_team",
    "stage_refund",
    "team",
    "transfer",
    "width",
]

balance = wallet.balance
width = wallet.width


def team(team_id: str) -> Account:
    """A team's account: its wallet and ledger under ``teams/{team_id}``."""
    return Account("teams", team_id)


def _short(holder: Holder) -> str:
    return "the team's balance" if wallet.account(holder).kind == "teams" else "the balance"


def stage_open_account(
    batch: firestore.WriteBatch, user_id: str, profile: dict[str, Any], grant: int, at: datetime
) -> None:
    """Create the user document and its wallet with the opening balance and matching grant."""
    batch.create(client().collection("users").document(user_id), profile)
    wallet.stage_open(batch, user_id, grant)
    batch.create(ledger.entries(user_id).document("grant-signup"), ledger.entry("grant", grant, None, at))
    usage.stage_granted(batch, user_id, grant, at)


def stage_open_team(batch: firestore.WriteBatch, team_id: str) -> None:
    """Create a new team's wallet, empty (one shard of 0 credits): money comes by transfer or grant."""
    wallet.stage_open(batch, team(team_id), 0)


def stage_close_team(batch: firestore.WriteBatch, team_id: str) -> None:
    """Stage deleting an empty team's wallet, each shard guarded by the read that found it
    empty: a credit landing meanwhile makes the deletion decide again. ``Conflict``
    ``team_not_empty`` if it holds credits. The ledger stays, summing to 0, for the books."""
    every = wallet.read_all(team(team_id))
    held = sum(int((s.to_dict() or {}).get("credits") or 0) for s in every)
    if held:
        raise Conflict(
            f"the team holds {held} credits: move them out first (a negative transfer)", code="team_not_empty"
        )
    for shard in every:
        batch.delete(shard.reference, option=unchanged(shard))


def stage_charge(
    batch: firestore.WriteBatch,
    holder: Holder,
    amount: int,
    job_id: str,
    at: datetime,
    spread: int,
    by: dict[str, str] | None = None,
) -> int:
    """Stage a job's charge, trying one of the first ``spread`` shards first (``width`` of a
    recent balance); returns the shard it was taken from, for its refund.

    ``InsufficientCredits`` (staging nothing) when the whole wallet cannot pay. ``by`` (a
    team's job: the member's ``user_id`` and ``username``) is recorded on the ledger entry.
    """
    taken = wallet.stage_take(batch, holder, amount, spread)
    if taken.shard is None:
        raise InsufficientCredits(f"this job costs {amount} credits; {_short(holder)} is {taken.short}")
    charge = ledger.entry("charge", -amount, job_id, at) | (by or {})
    batch.create(ledger.entries(holder).document(f"charge-{job_id}"), charge)
    return taken.shard


def stage_batch_charge(
    batch: firestore.WriteBatch,
    holder: Holder,
    amount: int,
    batch_id: str,
    at: datetime,
    spread: int,
    by: dict[str, str] | None = None,
) -> int:
    """Stage a batch's charge, all its jobs in one ledger entry (``batch-{batch_id}``); the
    wallet writes are bounded by its shards, not by the batch's size. Returns the first shard
    taken from (its jobs are refunded there). ``InsufficientCredits`` if the wallet cannot pay."""
    taken = wallet.stage_take(batch, holder, amount, spread)
    if taken.shard is None:
        short = amount - (taken.short or 0)
        raise InsufficientCredits(f"this batch costs {amount} credits; {short} more than {_short(holder)}")
    charge = ledger.entry("charge", -amount, None, at) | {"batch_id": batch_id} | (by or {})
    batch.create(ledger.entries(holder).document(f"batch-{batch_id}"), charge)
    return taken.shard


def stage_batch_refund(
    batch: firestore.WriteBatch,
    holder: Holder,
    refunds: dict[str, int],
    at: datetime,
    shard: int,
    by: dict[str, str] | None = None,
) -> None:
    """Stage the refunds of several jobs (``{job_id: cost}``) with one wallet write; each keeps
    its own ledger entry (``refund-{job_id}``), so no job can be refunded twice."""
    wallet.stage_add(batch, holder, sum(refunds.values()), shard)
    for job_id, amount in refunds.items():
        refund = ledger.entry("refund", amount, job_id, at) | (by or {})
        batch.create(ledger.entries(holder).document(f"refund-{job_id}"), refund)


def stage_refund(
    batch: firestore.WriteBatch,
    holder: Holder,
    amount: int,
    job_id: str,
    at: datetime,
    shard: int,
    by: dict[str, str] | None = None,
) -> None:
    """Stage the refund of a job's charge to the shard it came from; its fixed ledger id makes
    a second one fail."""
    wallet.stage_add(batch, holder, amount, shard)
    refund = ledger.entry("refund", amount, job_id, at) | (by or {})
    batch.create(ledger.entries(holder).document(f"refund-{job_id}"), refund)
