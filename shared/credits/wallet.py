"""A user's balance, spread over shard documents (Firestore's distributed-counter pattern),
so that concurrent charges of one account rarely touch the same document.

Documents: ``users/{user_id}/wallet/{n}`` (a team's: ``teams/{team_id}/wallet/{n}``):
``{credits}``, an integer that is never negative. The balance is the sum over every shard
document that exists. A team's wallet works exactly as a user's: the functions here take an
``Account``, or a user id for a user's.

How wide a balance is spread: ``width(balance)`` shards, one per ``CREDITS_PER_SHARD``
(20) credits, at least 1 and at most ``WALLET_SHARDS`` (256). A 10-credit account lives in
one document, as before; an account with 5,120 credits or more is spread over all 256, so
concurrent charges rarely meet on a shard, and at 50 charges a second even the busiest of
the randomly chosen shards is written less than once a second (64 were measured at 1.5).

- Opening an account writes the signup grant over ``width(grant)`` shards.
- A charge reads the balance (a ``sum`` aggregation, one read), then one shard among the
  first ``width(balance)``, at random (a choice by the clock was tried: a burst of
  concurrent charges then meets on the same few shards). If that shard can pay, it is
  decremented under a precondition on the update time it was read at, so two charges
  never spend the same credit; racing charges mostly pick different shards. If it cannot
  pay (it is empty, or the balance is spread thinner than the price), every shard is read
  in one query and as many are taken from as the amount needs, each under its own
  precondition. ``402`` is answered only when that whole, consistent read cannot pay.
- A refund adds, with ``Increment`` (no read, no contention), to the shard its charge was
  taken from (the job records it), so credits stay where charges look for them.
- A grant or an adjustment reads every shard and rewrites them all under preconditions,
  spread evenly over ``width(new balance)``: it rebalances, and the balance it answers is
  exact (grants are rare; a charge racing one simply retries).

``WALLET_SHARDS`` may be raised or lowered at any time: a charge only ever picks a shard
as a first guess, and the full read takes every shard document that exists, whatever its
id, so no credit is stranded; the next grant respreads the balance.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Literal

from google.cloud import firestore

from shared.db import Snapshot, client, unchanged
from shared.errors import NotFound, Unauthenticated
from shared.settings import get_settings


@dataclass(frozen=True)
class Account:
    """Who holds a wallet and a ledger: a user (``users/{id}``) or a team (``teams/{id}``)."""

    kind: Literal["users", "teams"]
    id: str

    @property
    def ref(self) -> firestore.DocumentReference:
        return client().collection(self.kind).document(self.id)

    def __str__(self) -> str:
        return f"{self.kind[:-1]} {self.id}"


Holder = Account | str
"""An ``Account``, or a user id (a user's account): most movements are a user's own."""


def account(holder: Holder) -> Account:
    return holder if isinstance(holder, Account) else Account("users", holder)


def shards(holder: Holder) -> firestore.CollectionReference:
    return account(holder).ref.collection("wallet")


CREDITS_PER_SHARD = 20


def width(balance: int) -> int:
    """How many shards a balance is spread over."""
    return max(1, min(get_settings().wallet_shards, balance // CREDITS_PER_SHARD))


def split(amount: int, parts: int) -> list[int]:
    """``amount`` in ``parts`` near-equal non-negative parts (the first ones get the remainder)."""
    base, extra = divmod(amount, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def _credits(shard: Snapshot) -> int:
    return int((shard.to_dict() or {}).get("credits") or 0)


def stage_open(batch: firestore.WriteBatch, holder: Holder, amount: int) -> None:
    """Create the shards of a new account, ``amount`` spread over ``width(amount)`` of them."""
    for n, part in enumerate(split(amount, width(amount))):
        batch.create(shards(holder).document(str(n)), {"credits": part})


def read_all(holder: Holder) -> list[Snapshot]:
    """Every shard document that exists, in one consistent read; ``Unauthenticated`` if none
    does (the account is gone), ``NotFound`` for a team's."""
    found = list(shards(holder).stream())
    if not found:
        if account(holder).kind == "teams":
            raise NotFound("no such team", code="team_not_found")
        raise Unauthenticated("the account no longer exists", code="invalid_token")
    return found


@dataclass(frozen=True)
class Taken:
    """What ``stage_take`` did: the shard it took from first (``None`` if it took nothing)
    and, when it could not pay, the balance it saw."""

    shard: int | None
    short: int | None = None


def stage_take(batch: firestore.WriteBatch, holder: Holder, amount: int, spread: int) -> Taken:
    """Stage taking ``amount`` (> 0) from the user's shards, trying one of the first
    ``spread`` first (``width`` of a recent balance).

    One read when that shard can pay; else one read of every shard. When even they cannot
    pay, nothing is staged and ``Taken.short`` is the balance they hold.
    """
    one = shards(holder).document(str(random.randrange(spread))).get()
    if _credits(one) >= amount:
        batch.update(one.reference, {"credits": firestore.Increment(-amount)}, option=unchanged(one))
        return Taken(_index(one))
    every = read_all(holder)
    total = sum(_credits(s) for s in every)
    if total < amount:
        return Taken(None, total)
    random.shuffle(every)  # spread the takers of a thin balance over different shards
    remaining, first = amount, None
    for shard in every:
        part = min(_credits(shard), remaining)
        if part > 0:
            batch.update(shard.reference, {"credits": firestore.Increment(-part)}, option=unchanged(shard))
            remaining -= part
            first = first if first is not None else _index(shard)
        if remaining == 0:
            break
    return Taken(first)


def _index(shard: Snapshot) -> int:
    # Shard ids are small integers; anything else (written by hand) counts as shard 0.
    return int(shard.id) if shard.id.isdecimal() and shard.id.isascii() else 0


def stage_add(batch: firestore.WriteBatch, holder: Holder, amount: int, shard: int) -> None:
    """Stage adding ``amount`` (> 0) to ``shard``, with no read (created if missing)."""
    batch.set(shards(holder).document(str(shard)), {"credits": firestore.Increment(amount)}, merge=True)


def stage_spread(batch: firestore.WriteBatch, holder: Holder, amount: int, spread: int) -> None:
    """Stage adding ``amount`` (> 0) spread evenly over the first ``spread`` shards, with no read:
    credits coming in (a transfer) land where charges look for them, contending with nothing."""
    for n, part in enumerate(split(amount, spread)):
        if part:
            stage_add(batch, holder, part, n)


def stage_rewrite(batch: firestore.WriteBatch, holder: Holder, change: int) -> int:
    """Stage adding ``change`` (either sign) by rewriting every shard under a precondition,
    the new balance spread evenly over ``width`` of it; returns that balance, exact when the
    batch commits. A negative return means it would go below zero: nothing is staged.
    """
    every = {s.id: s for s in read_all(holder)}
    after = sum(_credits(s) for s in every.values()) + change
    if after < 0:
        return after
    spread = width(after)
    targets = {i: 0 for i in every}
    targets.update({str(n): part for n, part in enumerate(split(after, spread))})
    for i in sorted(targets, key=lambda i: (len(i), i)):
        if i in every:
            data: dict[str, Any] = {"credits": firestore.Increment(targets[i] - _credits(every[i]))}
            batch.update(every[i].reference, data, option=unchanged(every[i]))
        else:
            batch.create(shards(holder).document(i), {"credits": targets[i]})
    return after


def balance(holder: Holder) -> int:
    """The sum of the shards, counted by the server (one aggregation, not one read per shard)."""
    results: Any = shards(holder).sum("credits").get()
    return int(results[0][0].value or 0)
