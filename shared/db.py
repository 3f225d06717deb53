"""The Firestore client, and the one way this service changes state.

Every state change (a charge, a refund, claiming a job, finishing it) is an
optimistic commit: read the documents, decide, then write everything as one
atomic batch whose writes carry preconditions on what was read (``exists`` or the
``update_time`` seen). If anything changed in between, Firestore rejects the
whole batch and the decision is made again from fresh reads.

Why not ``@firestore.transactional``: a server-side transaction locks what it
reads, and on one hot document (a user's balance) concurrent transactions time
out on those locks (measured: 1 of 50 succeeded). A precondition holds no lock,
so exactly one of the racing commits wins each round and the others re-read.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from typing import Any, TypeVar

from google.api_core import exceptions as gexc
from google.cloud import firestore

from shared.errors import Unavailable
from shared.settings import get_settings

T = TypeVar("T")
Snapshot = firestore.DocumentSnapshot[firestore.DocumentReference]
"""A read document; every guarded write names the snapshot it was decided on."""

# A failed precondition or a create that lost a race: re-read and decide again.
_CONFLICTS = (gexc.FailedPrecondition, gexc.AlreadyExists, gexc.Aborted)
_MAX_ROUNDS = 40
_MAX_BACKOFF = 0.2


@cache
def client() -> firestore.Client:
    """The process-wide client; anonymous against the emulator."""
    settings = get_settings()
    if settings.firestore_emulator_host:
        from google.auth.credentials import AnonymousCredentials

        return firestore.Client(project=settings.google_cloud_project, credentials=AnonymousCredentials())
    return firestore.Client(project=settings.google_cloud_project)


def now() -> datetime:
    return datetime.now(UTC)


def unchanged(snapshot: Snapshot) -> Any:
    """Write option for an update: apply only if the document is still as ``snapshot`` saw it."""
    return client().write_option(last_update_time=snapshot.update_time)


def put(batch: firestore.WriteBatch, snapshot: Snapshot, data: dict[str, Any]) -> None:
    """Stage ``data`` as the document ``snapshot`` read: created if it was missing, else updated
    only if unchanged since."""
    if snapshot.exists:
        batch.update(snapshot.reference, data, option=unchanged(snapshot))
    else:
        batch.create(snapshot.reference, data)


def commit_optimistically(decide: Callable[[firestore.WriteBatch], T]) -> T:
    """Run ``decide`` (fresh reads + staged writes) until its batch commits.

    ``decide`` reads what it needs, stages writes guarded by preconditions on
    those reads, and returns the result. It may raise a domain error (nothing
    is written) or stage nothing (the result is returned as is). On a conflict
    the round is repeated with jittered backoff; a long losing streak is
    answered as ``Unavailable`` (retryable, nothing written).
    """
    for round_ in range(_MAX_ROUNDS):
        batch = client().batch()
        result = decide(batch)
        if len(batch) == 0:
            return result
        try:
            batch.commit()
        except _CONFLICTS:
            time.sleep(random.uniform(0, min(_MAX_BACKOFF, 0.005 * 2**round_)))
            continue
        return result
    raise Unavailable("too much contention on this account, retry")
