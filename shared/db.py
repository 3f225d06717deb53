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

Lost replies. The client library re-sends a ``Commit`` after UNAVAILABLE, and the
first send may have been applied. Every batch carries a precondition, so the copy
cannot apply twice; it fails instead, which would look like a lost race. So each
round names a *receipt*: one document it writes, stamped with the round's id
(``commit_id``). When a re-sent or unconfirmed commit fails, reading the receipt
tells whether this very round landed; if it did, that is a success.

Bounded calls. The library's own defaults retry a read for up to 300 s; with
Firestore down, a request hung for minutes. ``client()`` bounds every call,
retries included, to ``FIRESTORE_TIMEOUT_SECONDS``; past it the request is
answered ``503 unavailable`` (see ``shared.web``).
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from typing import Any, TypeVar

from google.api_core import exceptions as gexc
from google.api_core import gapic_v1
from google.api_core import retry as retries
from google.cloud import firestore

from shared import metering
from shared.errors import InvalidRequest, NotFound, OutcomeUnknown, Unavailable
from shared.settings import get_settings

T = TypeVar("T")
Snapshot = firestore.DocumentSnapshot[firestore.DocumentReference]
"""A read document; every guarded write names the snapshot it was decided on."""

RECEIPT = "commit_id"
"""The field a receipt document carries: the id of the commit round that last wrote it."""

# A failed precondition or a create that lost a race: re-read and decide again.
_CONFLICTS = (gexc.FailedPrecondition, gexc.AlreadyExists, gexc.Aborted)
# Failures after which nobody knows whether the commit was applied.
_UNCERTAIN = (gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.InternalServerError, gexc.RetryError)
_TRANSIENT = (
    gexc.ServiceUnavailable,
    gexc.DeadlineExceeded,
    gexc.InternalServerError,
    gexc.ResourceExhausted,
)
_MAX_ROUNDS = 40
_MAX_BACKOFF = 0.2


@cache
def client() -> firestore.Client:
    """The process-wide client (anonymous against the emulator), every call time-bounded."""
    settings = get_settings()
    if settings.firestore_emulator_host:
        from google.auth.credentials import AnonymousCredentials

        db = firestore.Client(project=settings.google_cloud_project, credentials=AnonymousCredentials())
    else:
        db = firestore.Client(project=settings.google_cloud_project)
    _bound(db, settings.firestore_timeout_seconds)
    return db


def _retry(seconds: float, on_error: Callable[[Exception], None] | None = None) -> retries.Retry:
    """Retries of transient failures, all within ``seconds``."""
    return retries.Retry(
        predicate=retries.if_exception_type(*_TRANSIENT),
        initial=0.05,
        maximum=1.0,
        multiplier=2.0,
        timeout=seconds,
        on_error=on_error,
    )


def _bound(db: firestore.Client, seconds: float) -> None:
    """Make ``seconds`` the default timeout of every Firestore RPC and of its retries, and
    count what each call bills on the request's meter (``shared.metering``).

    The library has no public setting for these defaults, so its transport's table of
    wrapped methods is rebuilt once, here. A call that passes its own ``timeout`` (a long
    report query) keeps it. tests/test_outages.py and tests/test_metering.py fail if an
    upgrade breaks this.
    """
    transport: Any = db._firestore_api._transport
    retry = _retry(seconds)
    transport._wrapped_methods = {
        method: metering.firestore_call(
            transport,
            method,
            gapic_v1.method.wrap_method(method, default_retry=retry, default_timeout=seconds),
        )
        for method in transport._wrapped_methods
    }


def now() -> datetime:
    return datetime.now(UTC)


def unchanged(snapshot: Snapshot) -> Any:
    """Write option for an update: apply only if the document is still as ``snapshot`` saw it."""
    return client().write_option(last_update_time=snapshot.update_time)


class Batch(firestore.WriteBatch):
    """The writes of one commit round, with the receipt that proves whether it landed."""

    def __init__(self, db: firestore.Client) -> None:
        super().__init__(db)
        self.id = uuid.uuid4().hex
        self.receipt_ref: firestore.DocumentReference | None = None
        self.receipt_time: datetime | None = None
        """The receipt's update time once the round landed: a later write can be guarded by it
        without reading the document again."""
        self._receipt_index = 0
        self.resent = False

    def receipt(self, ref: firestore.DocumentReference, data: dict[str, Any]) -> dict[str, Any]:
        """``data`` stamped with this round's id, for a write to ``ref``, the round's receipt.

        Choose a document no other request changes right after this one commits (the job a
        round creates or moves, a grant record), so its stamp is still there to be read.
        """
        self.receipt_ref = ref
        self._receipt_index = len(self)  # called as the write's argument: it is staged next
        return {**data, RECEIPT: self.id}

    def landed(self) -> bool:
        """Whether this round was applied, judged by its receipt; ``OutcomeUnknown`` if unreadable."""
        if self.receipt_ref is None:
            return False
        try:
            seen = self.receipt_ref.get(field_paths=[RECEIPT])
        except gexc.GoogleAPIError as exc:
            raise OutcomeUnknown(f"could not confirm the change: {type(exc).__name__}") from exc
        if not (seen.exists and (seen.to_dict() or {}).get(RECEIPT) == self.id):
            return False
        self.receipt_time = seen.update_time
        return True

    def send(self) -> None:
        """Commit, noting whether the library had to re-send it (then it may have landed before)."""
        settings = get_settings()

        def resending(_: Exception) -> None:
            self.resent = True

        retry = _retry(settings.firestore_timeout_seconds, on_error=resending)
        results = self.commit(retry=retry, timeout=settings.firestore_timeout_seconds)
        if self.receipt_ref is not None:
            self.receipt_time = results[self._receipt_index].update_time


def newest_first(
    query: Any, limit: int, cursor: str | None, find: Callable[[str], Snapshot]
) -> tuple[list[Snapshot], bool]:
    """A page of ``query``, newest first (``created_at``, then the id, so the order is total),
    after the document ``cursor`` names, and whether more follow. ``find(cursor)`` reads that
    document and raises ``NotFound`` unless it is the caller's: ``422 invalid_cursor``."""
    query = query.order_by("created_at", direction=firestore.Query.DESCENDING)
    query = query.order_by("__name__", direction=firestore.Query.DESCENDING)
    if cursor:
        try:
            query = query.start_after(find(cursor))
        except NotFound:
            raise InvalidRequest("unknown cursor", code="invalid_cursor") from None
    docs = list(query.limit(limit + 1).stream())
    return docs[:limit], len(docs) > limit


def put(batch: firestore.WriteBatch, snapshot: Snapshot, data: dict[str, Any]) -> None:
    """Stage ``data`` as the document ``snapshot`` read: created if it was missing, else updated
    only if unchanged since."""
    if snapshot.exists:
        batch.update(snapshot.reference, data, option=unchanged(snapshot))
    else:
        batch.create(snapshot.reference, data)


def stage_count_up(
    batch: firestore.WriteBatch, ref: firestore.DocumentReference, limit: int, full: Exception
) -> None:
    """Count one more on the ``{count}`` document ``ref`` (what an owner holds: API keys,
    webhooks, conversations, teams), or raise ``full`` at ``limit``. The new count is guarded
    by the read it was decided on, so racing creates cannot pass the limit."""
    seen = ref.get()
    count = int(seen.get("count") or 0) if seen.exists else 0
    if count >= limit:
        raise full
    put(batch, seen, {"count": count + 1})


def stage_count_down(batch: firestore.WriteBatch, ref: firestore.DocumentReference) -> None:
    """Count one fewer on ``ref`` (never below 0), guarded like ``stage_count_up``."""
    seen = ref.get()
    if seen.exists:
        put(batch, seen, {"count": max(0, int(seen.get("count") or 0) - 1)})


def commit_optimistically(decide: Callable[[Batch], T]) -> T:
    """Run ``decide`` (fresh reads + staged writes) until its batch commits.

    ``decide`` reads what it needs, stages writes guarded by preconditions on
    those reads (every batch needs at least one, so a re-sent copy cannot apply
    twice), names its receipt, and returns the result. It may raise a domain
    error (nothing is written) or stage nothing (the result is returned as is).
    On a conflict the round is repeated with jittered backoff; a long losing
    streak is answered as ``Unavailable`` (retryable, nothing written). A round
    whose outcome cannot be learned is ``OutcomeUnknown``.
    """
    for round_ in range(_MAX_ROUNDS):
        batch = Batch(client())
        result = decide(batch)
        if len(batch) == 0:
            return result
        try:
            batch.send()
        except _CONFLICTS:
            # A re-sent copy of an applied commit fails the preconditions the original met.
            if batch.resent and batch.landed():
                return result
            time.sleep(random.uniform(0, min(_MAX_BACKOFF, 0.005 * 2**round_)))
            continue
        except _UNCERTAIN as exc:
            if batch.landed():
                return result
            if batch.receipt_ref is None:
                raise OutcomeUnknown(f"Firestore did not confirm the change: {type(exc).__name__}") from exc
            raise Unavailable(f"Firestore is unavailable: {type(exc).__name__}") from exc
        return result
    raise Unavailable("too much contention on this account, retry")
