"""Events and their deliveries: staged in the commit that makes them true, sent after it,
retried by the queue and the sweeper."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore
from pydantic import TypeAdapter

from shared import logs, queue
from shared.db import Batch, Snapshot, commit_optimistically, now, unchanged
from shared.errors import Unavailable
from shared.settings import get_settings
from shared.webhooks.endpoints import _CACHE_ENTRIES, _deliveries, _endpoints, _forget, _subscriptions
from shared.webhooks.models import DELIVERY_ID, EVENTS, JobEventData
from shared.webhooks.sender import Attempt, Post, http_post
from shared.webhooks.signing import signature_headers

logger = logging.getLogger("aijobs.webhooks")
DELIVERY_RETENTION = timedelta(days=30)
RETRY_HORIZON = timedelta(seconds=3600 + 600)
"""The webhooks queue's longest backoff (``scripts/deploy.py`` ``WEBHOOK_QUEUE.max_backoff``,
3600 s) plus a margin: a failed delivery not retried by then was lost by the queue."""
_MAX_ERROR = 200
_RFC3339 = TypeAdapter(datetime)
Enqueue = Callable[[str, str], None]
"""Puts ``(delivery_id, task_name)`` on the webhooks queue; raises ``Unavailable`` on failure."""


def delivery_id(webhook_id: str, event_type: str, subject: str) -> str:
    """The ``webhook-id``: one per (endpoint, event), whatever retries happen."""
    digest = hashlib.sha256(f"{webhook_id}\n{event_type}\n{subject}".encode()).hexdigest()
    return "msg_" + digest[:32]


def stage_event(
    batch: Batch, user_id: str, event_type: str, data: Mapping[str, Any], at: datetime
) -> list[str]:
    """Stage one delivery of an event per endpoint of ``user_id`` subscribed to it, in ``batch``
    (the commit that makes the event true); answers their ids, for ``send`` once it landed.

    ``data`` is the event's JSON ``data`` and names its subject (``job_id`` or ``batch_id``),
    which with the endpoint and event type makes the delivery id. Costs the cached endpoint
    read and one write per delivery; a user with no endpoint subscribed writes nothing."""
    if event_type not in EVENTS:
        raise ValueError(f"unknown webhook event {event_type!r}")
    subject = data.get("job_id") or data.get("batch_id")
    if not isinstance(subject, str) or not subject:
        raise ValueError("event data must name its subject: job_id or batch_id")
    subscribed = [s for s in _subscriptions(user_id) if event_type in s.events]
    if not subscribed:
        return []
    body = json.dumps(
        {"type": event_type, "timestamp": _RFC3339.dump_python(at, mode="json"), "data": dict(data)},
        separators=(",", ":"),
        ensure_ascii=False,
    )
    ids = []
    for subscription in subscribed:
        ref = _deliveries().document(delivery_id(subscription.webhook_id, event_type, subject))
        # set, not create: the id is the event's, so a second staging rewrites the same delivery
        # instead of failing the commit that makes the job final.
        batch.set(
            ref,
            {
                "user_id": user_id,
                "webhook_id": subscription.webhook_id,
                "event_type": event_type,
                "subject": subject,
                "body": body,
                "status": "pending",
                "attempts": 0,
                "last_status": None,
                "last_error": None,
                "due_at": at,
                "created_at": at,
                "updated_at": at,
                "delivered_at": None,
                "expires_at": at + DELIVERY_RETENTION,
            },
        )
        ids.append(ref.id)
    return ids


_staged_lock = threading.Lock()
_staged: dict[str, list[str]] = {}
"""Job id -> the deliveries its final commit's latest round staged, until ``after_job_final``."""


def stage_job_final(batch: Batch, job_id: str, job: Mapping[str, Any], at: datetime) -> None:
    """``shared.jobs._stage_on_final``: the job's ``job.<status>`` event, in its final commit."""
    data = JobEventData(job_id=job_id, **{k: job.get(k) for k in JobEventData.model_fields if k != "job_id"})
    ids = stage_event(batch, job["user_id"], f"job.{job['status']}", data.model_dump(mode="json"), at)
    with _staged_lock:
        if ids:
            if len(_staged) >= _CACHE_ENTRIES:
                _staged.clear()  # commits that never landed; anything real is the sweeper's
            _staged[job_id] = ids
        else:
            _staged.pop(job_id, None)


def after_job_final(job_id: str) -> None:
    """``shared.jobs._after_final``: send what the landed final commit staged."""
    with _staged_lock:
        ids = _staged.pop(job_id, [])
    send(ids)


def _task_name(delivery: str, generation: str = "") -> str:
    return f"wh-{delivery}" + (f"-{generation}" if generation else "")


def enqueue(delivery: str, name: str) -> None:
    """Create the delivery's task on the webhooks queue (``Unavailable`` when it failed)."""
    settings = get_settings()
    deadline = max(15, int(settings.webhook_timeout_seconds) + 15)  # Cloud Tasks' minimum is 15 s
    queue.create_task(settings.webhook_queue, name, "deliver_webhook", {"delivery_id": delivery}, deadline)


def send(ids: Iterable[str], enqueue: Enqueue = enqueue) -> None:
    """Put deliveries on the queue; one that fails waits for the sweeper (never raised: the
    event's commit has landed and its caller must not fail for a webhook)."""
    for delivery in ids:
        try:
            enqueue(delivery, _task_name(delivery))
        except Unavailable as exc:
            logger.warning("webhook delivery %s not enqueued (%s); the sweeper will", delivery, exc.message)


# --------------------------------------------------------------------------- delivering


def _short(text: str) -> str:
    return text if len(text) <= _MAX_ERROR else text[: _MAX_ERROR - 3] + "..."


def deliver(delivery: str, post: Post | None = None) -> str:
    """One attempt of a delivery (the webhooks queue's task); answers what became of it.

    Raises ``Unavailable`` after a failed attempt with attempts left, so the queue retries it
    with backoff. A delivery already final is acknowledged and not sent again."""
    if not DELIVERY_ID.fullmatch(delivery):
        return "missing"
    logs.bind(delivery_id=delivery)
    settings = get_settings()
    ref = _deliveries().document(delivery)
    seen = ref.get()
    if not seen.exists:
        return "missing"
    if seen.get("status") != "pending":
        return str(seen.get("status"))
    user_id, webhook_id = seen.get("user_id"), seen.get("webhook_id")
    endpoint = _endpoints(user_id).document(webhook_id).get()
    if not endpoint.exists or endpoint.get("disabled"):
        reason = "endpoint_deleted" if not endpoint.exists else "endpoint_disabled"
        return _record(ref, seen, None, Attempt(None, reason), final=True)
    at = now()
    timestamp = int(at.timestamp())
    keys = [endpoint.get("secret")]
    previous, until = endpoint.get("previous_secret"), endpoint.get("previous_expires_at")
    if previous and until is not None and until > at:
        keys.append(previous)
    body: str = seen.get("body")
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "aijobs-webhooks/1",
        **signature_headers(delivery, timestamp, body, keys),
    }
    attempt = (post or http_post())(endpoint.get("url"), body.encode(), headers)
    attempts = int(seen.get("attempts")) + 1
    outcome = _record(
        ref, seen, endpoint, attempt, final=attempt.ok or attempts >= settings.webhook_max_attempts
    )
    if outcome == "pending":
        raise Unavailable(f"the webhook endpoint did not accept the delivery ({attempt.error}); retry")
    return outcome


def _record(
    ref: firestore.DocumentReference, seen: Snapshot, endpoint: Snapshot | None, attempt: Attempt, final: bool
) -> str:
    """Write what an attempt came to, on the delivery and (when it changes) its endpoint."""
    settings = get_settings()
    first = [(seen, endpoint)]

    def decide(batch: Batch) -> str:
        at = now()
        if first:
            delivery, target = first.pop()
        else:
            delivery = ref.get()
            target = None if endpoint is None else endpoint.reference.get()
        if not delivery.exists or delivery.get("status") != "pending":
            return str(delivery.get("status")) if delivery.exists else "missing"
        status = "delivered" if attempt.ok else ("failed" if final else "pending")
        changes: dict[str, Any] = {
            "status": status,
            "attempts": int(delivery.get("attempts")) + (0 if endpoint is None else 1),
            "last_status": attempt.status,
            "last_error": None if attempt.error is None else _short(attempt.error),
            "updated_at": at,
        }
        if status == "pending":
            changes["due_at"] = at + RETRY_HORIZON  # the queue retries it; the sweeper only if lost
        else:
            # Final: out of the sweeper's index, and the signed body (the job's output) goes.
            changes.update({"due_at": firestore.DELETE_FIELD, "body": firestore.DELETE_FIELD})
            if status == "delivered":
                changes["delivered_at"] = at
        batch.update(ref, batch.receipt(ref, changes), option=unchanged(delivery))
        if target is not None and target.exists:
            _stage_health(
                batch, delivery.get("user_id"), target, attempt, at, settings.webhook_disable_after_days
            )
        return status

    return commit_optimistically(decide)


def _stage_health(
    batch: Batch, user_id: str, endpoint: Snapshot, attempt: Attempt, at: datetime, days: float
) -> None:
    """Track continuous failure on the endpoint, writing only when it changes: the first
    failure after a success, the first success after failures, and disabling."""
    failing_since: datetime | None = endpoint.get("failing_since")
    changes: dict[str, Any] = {}
    if attempt.ok:
        if failing_since is not None:
            changes = {"failing_since": None}
    elif failing_since is None:
        changes = {"failing_since": at}
    elif at - failing_since >= timedelta(days=days) and not endpoint.get("disabled"):
        changes = {
            "disabled": True,
            "disabled_reason": _short(f"every delivery failed for {days:g} days; last: {attempt.error}"),
            "disabled_at": at,
        }
        _forget(user_id)  # this instance stops staging its events at once; others within the TTL
        logger.warning("webhook %s disabled after %g days of failures", endpoint.id, days)
    if changes:
        batch.update(endpoint.reference, {**changes, "updated_at": at}, option=unchanged(endpoint))


# --------------------------------------------------------------------------- the sweeper


def sweep(enqueue: Enqueue = enqueue, limit: int = 500) -> dict[str, int]:
    """Enqueue deliveries still pending ``WEBHOOK_SWEEP_DELAY_SECONDS`` after they were due
    (never enqueued, or lost by the queue); each under a new task name, with ``due_at`` moved on
    so the next sweep waits again. A duplicate that gets through is acknowledged as final."""
    at = now()
    cutoff = at - timedelta(seconds=get_settings().webhook_sweep_delay_seconds)
    query = _deliveries().where(filter=firestore.FieldFilter("due_at", "<", cutoff)).limit(limit)
    enqueued = 0
    for seen in query.stream():
        if seen.get("status") != "pending":
            continue
        due: datetime = seen.get("due_at")
        try:
            enqueue(seen.id, _task_name(seen.id, f"{int(due.timestamp() * 1000)}"))
        except Unavailable:
            continue  # the next sweep tries again
        with contextlib.suppress(gexc.FailedPrecondition, gexc.NotFound):
            seen.reference.update({"due_at": at}, option=unchanged(seen))
        enqueued += 1
    return {"webhooks_enqueued": enqueued}
