"""A user's balance, spread over shard documents (Firestore's distributed-counter pattern),
so that concurrent charges of one account rarely touch the same document.

Documents: ``users/{user_id}/wallet/{n}``: ``{credits}``, an integer that is never negative.
The balance is the sum over every shard document that exists.

- Opening an account creates ``WALLET_SHARDS`` shards with the signup grant split evenly.
- A charge reads one random shard. If it can pay, it is decremented under a precondition on
  the update time it was read at, so two charges never spend the same credit; racing
  charges mostly pick different shards, so they rarely conflict. If it cannot pay (it is
  empty, or the balance is spread thinner than the price), every shard is read in one
  query and as many of them are taken from as the amount needs, each under its own
  precondition. ``402`` is answered only when that whole, consistent read cannot pay.
- A refund adds to one random shard with ``Increment``: no read, no precondition, so it
  never contends with charges; a missing shard is created by it.
- A grant or an adjustment rewrites every shard under a precondition, so the balance it
  answers is exact (grants are rare; a charge racing one simply retries).

Shard count: ``WALLET_SHARDS`` (16). Raising it is safe at any time: new shard ids start
missing (zero), fill as refunds and grants land on them, and a charge that picks one falls
back to the full read. Lowering it is safe too: the full read takes every shard document
that exists, whatever its id, so no credit is stranded.
"""

from __future__ import annotations

import random
from typing import Any

from google.cloud import firestore

from shared.db import Snapshot, client, unchanged
from shared.errors import Unauthenticated
from shared.settings import get_settings


def shards(user_id: str) -> firestore.CollectionReference:
    return client().collection("users").document(user_id).collection("wallet")


def _count() -> int:
    return get_settings().wallet_shards


def split(amount: int, parts: int) -> list[int]:
    """``amount`` in ``parts`` near-equal non-negative parts (the first ones get the remainder)."""
    base, extra = divmod(amount, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def _credits(shard: Snapshot) -> int:
    return int((shard.to_dict() or {}).get("credits") or 0)


def stage_open(batch: firestore.WriteBatch, user_id: str, amount: int) -> None:
    """Create every shard of a new account, ``amount`` spread over them."""
    for n, part in enumerate(split(amount, _count())):
        batch.create(shards(user_id).document(str(n)), {"credits": part})


def read_all(user_id: str) -> list[Snapshot]:
    """Every shard document that exists, in one consistent read; ``Unauthenticated`` if none
    does (the account is gone)."""
    found = list(shards(user_id).stream())
    if not found:
        raise Unauthenticated("the account no longer exists", code="invalid_token")
    return found


def stage_take(batch: firestore.WriteBatch, user_id: str, amount: int) -> int | None:
    """Stage taking ``amount`` (> 0) from the user's shards.

    Returns ``None`` when it is staged (one read when one random shard can pay), else the
    balance the full read saw, less than ``amount``: then nothing is staged and the caller
    refuses.
    """
    one = shards(user_id).document(str(random.randrange(_count()))).get()
    if _credits(one) >= amount:
        batch.update(one.reference, {"credits": firestore.Increment(-amount)}, option=unchanged(one))
        return None
    every = read_all(user_id)
    total = sum(_credits(s) for s in every)
    if total < amount:
        return total
    random.shuffle(every)  # spread the takers of a thin balance over different shards
    remaining = amount
    for shard in every:
        part = min(_credits(shard), remaining)
        if part > 0:
            batch.update(shard.reference, {"credits": firestore.Increment(-part)}, option=unchanged(shard))
            remaining -= part
        if remaining == 0:
            break
    return None


def stage_add(batch: firestore.WriteBatch, user_id: str, amount: int) -> None:
    """Stage adding ``amount`` (> 0) to one random shard, with no read."""
    ref = shards(user_id).document(str(random.randrange(_count())))
    batch.set(ref, {"credits": firestore.Increment(amount)}, merge=True)


def stage_rewrite(batch: firestore.WriteBatch, user_id: str, change: int) -> int:
    """Stage adding ``change`` (either sign) across every shard, each under a precondition,
    so that the balance returned (after the change) is exact when the batch commits.

    The caller checks that the balance before (returned minus ``change``) allows it.
    """
    every = {s.id: s for s in read_all(user_id)}
    total = sum(_credits(s) for s in every.values())
    if total + change < 0:
        return total + change
    ids = sorted(set(every) | {str(n) for n in range(_count())}, key=lambda i: (len(i), i))
    targets = {i: _credits(every[i]) if i in every else 0 for i in ids}
    if change >= 0:
        for i, part in zip(ids, split(change, len(ids)), strict=True):
            targets[i] += part
    else:
        owed = -change
        for i in sorted(ids, key=lambda i: -targets[i]):
            part = min(targets[i], owed)
            targets[i] -= part
            owed -= part
    for i in ids:
        if i in every:
            data: dict[str, Any] = {"credits": firestore.Increment(targets[i] - _credits(every[i]))}
            batch.update(every[i].reference, data, option=unchanged(every[i]))
        else:
            batch.create(shards(user_id).document(i), {"credits": targets[i]})
    return total + change


def balance(user_id: str) -> int:
    """The sum of the shards, counted by the server (one aggregation, not one read per shard)."""
    results: Any = shards(user_id).sum("credits").get()
    return int(results[0][0].value or 0)
