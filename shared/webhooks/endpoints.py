"""A user's endpoints: registered, listed, rotated and deleted, and the per-instance cache of
who is subscribed to what."""

from __future__ import annotations

import re
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from google.cloud import firestore

from shared.db import (
    Batch,
    Snapshot,
    client,
    commit_optimistically,
    newest_first,
    now,
    stage_count_down,
    stage_count_up,
    unchanged,
)
from shared.errors import InvalidRequest, NotFound
from shared.settings import get_settings
from shared.webhooks.addresses import Refused, Resolver, check_url, system_resolver
from shared.webhooks.models import (
    DELIVERY_ID,
    EVENTS,
    DeliveryPage,
    DeliveryPublic,
    WebhookCreate,
    WebhookPage,
    WebhookPublic,
    WebhookSecret,
)
from shared.webhooks.signing import new_secret

_ID = re.compile(r"[0-9a-f]{32}")
_CACHE_ENTRIES = 10_000


def _endpoints(user_id: str) -> firestore.CollectionReference:
    return client().collection("users").document(user_id).collection("webhooks")


def _owner(user_id: str) -> firestore.DocumentReference:
    return client().collection("webhook_owners").document(user_id)


def _deliveries() -> firestore.CollectionReference:
    return client().collection("webhook_deliveries")


def _public(snapshot: Snapshot) -> WebhookPublic:
    data = snapshot.to_dict() or {}
    return WebhookPublic(
        id=snapshot.id,
        url=data["url"],
        events=data["events"],
        disabled=bool(data.get("disabled")),
        disabled_reason=data.get("disabled_reason"),
        created_at=data["created_at"],
        updated_at=data["updated_at"],
    )


def _owned(user_id: str, webhook_id: str) -> Snapshot:
    """The endpoint, if ``user_id`` owns it; another user's is indistinguishable from none."""
    snapshot = _endpoints(user_id).document(webhook_id).get() if _ID.fullmatch(webhook_id) else None
    if snapshot is None or not snapshot.exists:
        raise NotFound("no such webhook", code="webhook_not_found")
    return snapshot


def _check_events(events: list[str]) -> list[str]:
    if not events:
        raise InvalidRequest("events must name at least one event", code="invalid_webhook_events")
    if any(e not in EVENTS for e in events) or len(set(events)) != len(events):
        known = ", ".join(EVENTS)
        raise InvalidRequest(f"events must be distinct, each one of: {known}", code="invalid_webhook_events")
    return events


def create(user_id: str, body: WebhookCreate, resolver: Resolver = system_resolver) -> WebhookSecret:
    """Register an endpoint; its secret is in this answer only."""
    settings = get_settings()
    events = _check_events(body.events)
    try:
        check_url(body.url, resolver, local=settings.is_local)
    except Refused as exc:
        raise InvalidRequest(f"url refused: {exc}", code="invalid_webhook_url") from None
    ref = _endpoints(user_id).document(uuid.uuid4().hex)
    secret = new_secret()

    def decide(batch: Batch) -> dict[str, Any]:
        at = now()
        limit = settings.webhook_max_endpoints
        full = InvalidRequest(f"at most {limit} webhooks per account", code="too_many_webhooks")
        stage_count_up(batch, _owner(user_id), limit, full)
        document = {
            "url": body.url,
            "events": events,
            "secret": secret,
            "previous_secret": None,
            "previous_expires_at": None,
            "disabled": False,
            "disabled_reason": None,
            "disabled_at": None,
            "failing_since": None,
            "created_at": at,
            "updated_at": at,
        }
        batch.create(ref, batch.receipt(ref, document))
        return document

    document = commit_optimistically(decide)
    _forget(user_id)
    shown = {k: document[k] for k in ("url", "events", "disabled_reason", "created_at", "updated_at")}
    return WebhookSecret(id=ref.id, disabled=False, **shown, secret=secret)


def get(user_id: str, webhook_id: str) -> WebhookPublic:
    return _public(_owned(user_id, webhook_id))


def list_for(user_id: str, limit: int, cursor: str | None) -> WebhookPage:
    """A page of the user's endpoints, newest first; ``cursor`` is the last id of the previous page."""
    docs, more = newest_first(
        _endpoints(user_id), limit, cursor, lambda webhook_id: _owned(user_id, webhook_id)
    )
    found = [_public(d) for d in docs]
    return WebhookPage(webhooks=found, next_cursor=found[-1].id if more else None)


def delete(user_id: str, webhook_id: str) -> None:
    """Remove an endpoint; its pending deliveries are not sent (they fail as ``endpoint_deleted``)."""
    _owned(user_id, webhook_id)
    ref = _endpoints(user_id).document(webhook_id)

    def decide(batch: Batch) -> None:
        seen = ref.get()
        if not seen.exists:
            return None  # deleted by a racing request: the same outcome
        stage_count_down(batch, _owner(user_id))
        batch.delete(ref, option=unchanged(seen))
        return None

    commit_optimistically(decide)
    _forget(user_id)


def rotate(user_id: str, webhook_id: str) -> WebhookSecret:
    """A new secret, answered this once; the old one also signs for ``WEBHOOK_ROTATION_WINDOW_SECONDS``."""
    settings = get_settings()
    ref = _endpoints(user_id).document(webhook_id)
    _owned(user_id, webhook_id)
    secret = new_secret()

    def decide(batch: Batch) -> Snapshot:
        at = now()
        seen = ref.get()
        if not seen.exists:
            raise NotFound("no such webhook", code="webhook_not_found")
        window = timedelta(seconds=settings.webhook_rotation_window_seconds)
        changes = {
            "secret": secret,
            "previous_secret": seen.get("secret") if window else None,
            "previous_expires_at": at + window if window else None,
            "updated_at": at,
        }
        batch.update(ref, batch.receipt(ref, changes), option=unchanged(seen))
        return seen

    seen = commit_optimistically(decide)
    rotated = _public(seen).model_copy(update={"updated_at": now()})
    return WebhookSecret(**rotated.model_dump(), secret=secret)


def deliveries(user_id: str, webhook_id: str, limit: int, cursor: str | None) -> DeliveryPage:
    """A page of the endpoint's deliveries, newest first."""
    _owned(user_id, webhook_id)
    query = _deliveries().where(filter=firestore.FieldFilter("webhook_id", "==", webhook_id))

    def find(delivery_id: str) -> Snapshot:
        last = _deliveries().document(delivery_id).get() if DELIVERY_ID.fullmatch(delivery_id) else None
        if last is None or not last.exists or last.get("webhook_id") != webhook_id:
            raise NotFound("no such delivery")
        return last

    docs, more = newest_first(query, limit, cursor, find)
    found = [_delivery_public(d) for d in docs if d.get("user_id") == user_id]
    return DeliveryPage(deliveries=found, next_cursor=docs[-1].id if more else None)


def _delivery_public(snapshot: Snapshot) -> DeliveryPublic:
    data = snapshot.to_dict() or {}
    return DeliveryPublic(
        id=snapshot.id,
        webhook_id=data["webhook_id"],
        event_type=data["event_type"],
        status=data["status"],
        attempts=data["attempts"],
        last_status=data.get("last_status"),
        last_error=data.get("last_error"),
        created_at=data["created_at"],
        updated_at=data["updated_at"],
        delivered_at=data.get("delivered_at"),
    )


# --------------------------------------------------------------------------- the cache


@dataclass(frozen=True)
class _Subscription:
    webhook_id: str
    events: frozenset[str]


_cache_lock = threading.Lock()
_cache: dict[str, tuple[float, tuple[_Subscription, ...]]] = {}


def _subscriptions(user_id: str) -> tuple[_Subscription, ...]:
    """The user's enabled endpoints, cached per instance for ``WEBHOOK_CACHE_SECONDS``."""
    ttl = get_settings().webhook_cache_seconds
    with _cache_lock:
        cached = _cache.get(user_id)
        if cached is not None and time.monotonic() - cached[0] < ttl:
            return cached[1]
    docs = _endpoints(user_id).limit(get_settings().webhook_max_endpoints + 10).stream()
    found = tuple(
        _Subscription(d.id, frozenset(d.get("events") or ())) for d in docs if not d.get("disabled")
    )
    with _cache_lock:
        if len(_cache) >= _CACHE_ENTRIES:
            _cache.clear()  # bounded memory; the next lookups read again
        _cache[user_id] = (time.monotonic(), found)
    return found


def _forget(user_id: str) -> None:
    """This instance's change of a user's endpoints shows at once here (others: within the TTL)."""
    with _cache_lock:
        _cache.pop(user_id, None)
