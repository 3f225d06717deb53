"""Webhooks: a user's endpoints, and events delivered to them signed per Standard Webhooks.

Documents:
- ``users/{user_id}/webhooks/{webhook_id}``: ``{url, events, secret, previous_secret,
  previous_expires_at, disabled, disabled_reason, disabled_at, failing_since, created_at,
  updated_at}``. The secret signs deliveries, so it is stored (Firestore rules deny every
  client); it is answered only by ``create`` and ``rotate``.
- ``webhook_owners/{user_id}``: ``{count}``, the number of endpoints, written with each create
  and delete under a precondition: the per-user limit holds under racing creates.
- ``webhook_deliveries/{delivery_id}``: ``{user_id, webhook_id, event_type, subject, body,
  status, attempts, last_status, last_error, due_at, created_at, updated_at, delivered_at,
  expires_at}``; ``status`` is ``pending``, ``delivered`` or ``failed``. Its id is the
  Standard Webhooks ``webhook-id``, a hash of (endpoint, event type, subject), so one event
  is one delivery per endpoint however often a commit round is retried, and every attempt
  carries the same id. ``body`` (the exact bytes signed) is dropped once it is final;
  ``expires_at`` (``DELIVERY_RETENTION``) is its TTL field.

The outbox, as for jobs: the event's deliveries are staged in the very commit that makes the
job final (``stage_event``), and only after it landed is a task created per delivery on the
webhooks queue (``send``). If that fails or the process dies in between, the delivery is still
``pending`` with ``due_at`` in the past: the sweeper enqueues it after
``WEBHOOK_SWEEP_DELAY_SECONDS``. A failed attempt moves ``due_at`` past the queue's longest
backoff (``RETRY_HORIZON``), so the sweeper steps in only if the queue lost the task.

Every job's path pays for this: ``stage_job_final`` needs the user's endpoints, which are
cached per instance for ``WEBHOOK_CACHE_SECONDS`` (a user without endpoints costs one query
read per instance and period, and no write); a new endpoint takes effect within that time.

SSRF. In production an endpoint must be ``https`` and its host must resolve only to public
addresses (not private, loopback, link-local, multicast, reserved or a metadata server),
checked at registration and again at each delivery: the sender resolves the name, checks
every address, and connects to the checked address itself (TLS still verifies the name), so a
DNS answer that changes in between (rebinding) is never connected to. The local stack also
allows ``http`` and loopback, so a developer can receive deliveries on their machine.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
import re
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

import httpcore2
import httpx2
from google.api_core import exceptions as gexc
from google.cloud import firestore
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from shared import logs, queue
from shared.db import Batch, Snapshot, client, commit_optimistically, now, put, unchanged
from shared.errors import InvalidRequest, NotFound, Unavailable
from shared.settings import get_settings

logger = logging.getLogger("aijobs.webhooks")
EventType = Literal["job.completed", "job.failed", "job.canceled", "batch.completed"]
EVENTS: tuple[str, ...] = ("job.completed", "job.failed", "job.canceled", "batch.completed")
DeliveryStatus = Literal["pending", "delivered", "failed"]
MAX_URL_LENGTH = 2048
SECRET_PREFIX = "whsec_"
SECRET_BYTES = 24
DELIVERY_RETENTION = timedelta(days=30)
RETRY_HORIZON = timedelta(seconds=3600 + 600)
"""The webhooks queue's longest backoff (``scripts/deploy.py`` ``WEBHOOK_QUEUE.max_backoff``,
3600 s) plus a margin: a failed delivery not retried by then was lost by the queue."""
_ID = re.compile(r"[0-9a-f]{32}")
_DELIVERY_ID = re.compile(r"msg_[0-9a-f]{32}")
_METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata", "metadata.goog"})
_METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254"))
_MAX_ERROR = 200
_CACHE_ENTRIES = 10_000
_RFC3339 = TypeAdapter(datetime)

Resolver = Callable[[str, int], Sequence[str]]
"""``(host, port)`` to the addresses it resolves to (IPv4/IPv6 text); ``OSError`` if none."""
Enqueue = Callable[[str, str], None]
"""Puts ``(delivery_id, task_name)`` on the webhooks queue; raises ``Unavailable`` on failure."""


def system_resolver(host: str, port: int) -> list[str]:
    """What the system's resolver answers for ``host`` (every address, in its order)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


# --------------------------------------------------------------------------- models


class WebhookCreate(BaseModel):
    """Body of ``POST /webhooks``; the URL and events are checked by ``create`` (named codes)."""

    model_config = ConfigDict(
        extra="forbid",
        use_attribute_docstrings=True,
        json_schema_extra={
            "examples": [
                {"url": "https://example.com/hooks/aijobs", "events": ["job.completed", "job.failed"]}
            ]
        },
    )

    url: str = Field(json_schema_extra={"maxLength": MAX_URL_LENGTH, "pattern": "^https?://"})
    """Where events are POSTed: ``https`` (the local stack also takes ``http`` and loopback)."""
    events: list[str] = Field(
        json_schema_extra={
            "minItems": 1,
            "uniqueItems": True,
            "items": {"type": "string", "enum": list(EVENTS)},
        }
    )
    """The event types to deliver."""


class WebhookPublic(BaseModel):
    """An endpoint as its owner sees it (never its secret after creation or rotation)."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    id: str
    url: str
    events: list[EventType]
    disabled: bool
    """Set when every delivery failed for ``WEBHOOK_DISABLE_AFTER_DAYS``; it gets no more events."""
    disabled_reason: str | None
    created_at: datetime
    updated_at: datetime


class WebhookSecret(WebhookPublic):
    """Answer of create and rotate: the endpoint and its signing secret, shown this once."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    secret: str
    """``whsec_`` + base64 of the key: what Standard Webhooks libraries take."""


class WebhookPage(BaseModel):
    """A page of endpoints, newest first; ``next_cursor`` is null on the last page."""

    webhooks: list[WebhookPublic]
    next_cursor: str | None


class DeliveryPublic(BaseModel):
    """One event sent (or being sent) to an endpoint."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    id: str
    """The ``webhook-id`` header: the same on every attempt of this delivery."""
    webhook_id: str
    event_type: EventType
    status: DeliveryStatus
    attempts: int
    last_status: int | None
    """The HTTP status of the last attempt; null if it got none (refused, timed out)."""
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None


class DeliveryPage(BaseModel):
    """A page of an endpoint's deliveries, newest first."""

    deliveries: list[DeliveryPublic]
    next_cursor: str | None


class JobEventData(BaseModel):
    """``data`` of the ``job.*`` events: the job's public fields but its input."""

    job_id: str
    task_type: str
    status: str
    cost: int
    output: dict[str, Any] | None
    error: dict[str, str] | None
    created_at: datetime
    updated_at: datetime


# --------------------------------------------------------------------------- URLs and addresses


class Refused(Exception):
    """A URL or address webhooks may not be sent to; the message says why (for people)."""


def address_problem(address: str, allow_loopback: bool) -> str | None:
    """Why ``address`` may not receive webhooks, or ``None`` when it may."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 zone id is not part of it
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    if ip in _METADATA_ADDRESSES:
        return "a cloud metadata address"
    if ip.is_loopback:
        return None if allow_loopback else "a loopback address"
    if ip.is_multicast:
        return "a multicast address"
    if not ip.is_global:  # private, link-local, shared (100.64/10), reserved, unspecified, ...
        return "a private, link-local or reserved address"
    return None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def checked_addresses(host: str, port: int, resolver: Resolver, allow_loopback: bool) -> list[str]:
    """Every address ``host`` resolves to, if all of them may receive webhooks; else ``Refused``.

    All, not any: a name with one public and one private address must not be a way in."""
    if host.rstrip(".").lower() in _METADATA_HOSTS:
        raise Refused("the host is a cloud metadata server")
    try:
        addresses = [host] if _is_ip(host) else list(resolver(host, port))
    except (OSError, UnicodeError):
        raise Refused("the host does not resolve") from None
    if not addresses:
        raise Refused("the host does not resolve")
    for address in addresses:
        problem = address_problem(address, allow_loopback)
        if problem is not None:
            raise Refused(f"the host resolves to {problem}")
    return addresses


def check_url(url: str, resolver: Resolver, *, local: bool) -> tuple[str, int]:
    """``(host, port)`` of an acceptable endpoint URL, else ``Refused``. ``local`` (the local
    stack) also takes ``http`` and loopback addresses."""
    if len(url) > MAX_URL_LENGTH:
        raise Refused(f"the URL is longer than {MAX_URL_LENGTH} characters")
    if not url.isascii() or any(c.isspace() or ord(c) < 0x20 for c in url):
        raise Refused("the URL must be ASCII without spaces (punycode for other names)")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise Refused("the URL is not valid") from None
    if parts.scheme not in (("https", "http") if local else ("https",)):
        raise Refused("the URL must be https://" + (" (or http:// locally)" if local else ""))
    host = parts.hostname
    if not host:
        raise Refused("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise Refused("the URL must not carry credentials")
    if parts.fragment:
        raise Refused("the URL must not have a fragment")
    port = port or (443 if parts.scheme == "https" else 80)
    checked_addresses(host, port, resolver, allow_loopback=local)
    return host, port


# --------------------------------------------------------------------------- signing


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def sign(secret: str, message_id: str, timestamp: int, body: str) -> str:
    """``v1,<base64 HMAC-SHA256 of "id.timestamp.body">`` keyed with the secret's bytes."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    mac = hmac.new(key, f"{message_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def signature_headers(message_id: str, timestamp: int, body: str, keys: Iterable[str]) -> dict[str, str]:
    """The Standard Webhooks headers; one signature per key, space-separated (a rotation)."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(sign(k, message_id, timestamp, body) for k in keys),
    }


# --------------------------------------------------------------------------- the sender


@dataclass(frozen=True)
class Attempt:
    """What one POST to an endpoint came to."""

    status: int | None
    """The HTTP status, ``None`` if no answer came."""
    error: str | None
    """Why it did not succeed (``None`` for a 2xx)."""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


Post = Callable[[str, bytes, Mapping[str, str]], Attempt]
"""Sends one delivery: ``(url, body, headers)`` to what came of it. Never raises."""


class _Deadline:
    """One bound on everything a delivery does on the network, in total: a receiver that
    trickles bytes cannot hold the function (or the queue's dispatch) past it."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self, timeout: float | None, expired: type[Exception]) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise expired("the webhook delivery ran out of time")
        return left if timeout is None else min(timeout, left)


class _BoundedStream(httpcore2.NetworkStream):
    def __init__(self, inner: httpcore2.NetworkStream, deadline: _Deadline) -> None:
        self._inner, self._deadline = inner, deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._deadline.left(timeout, httpcore2.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._deadline.left(timeout, httpcore2.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore2.NetworkStream:
        # server_hostname is the URL's name, not the address connected to: SNI and the
        # certificate check are the name's.
        timeout = self._deadline.left(timeout, httpcore2.ConnectTimeout)
        return _BoundedStream(self._inner.start_tls(ssl_context, server_hostname, timeout), self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _CheckedBackend(httpcore2.NetworkBackend):
    """Connects only to addresses it has just checked: resolve, check every one, connect to
    the first by address (the request keeps the name in ``Host`` and TLS)."""

    def __init__(
        self, inner: httpcore2.NetworkBackend, resolver: Resolver, allow_loopback: bool, deadline: _Deadline
    ) -> None:
        self._inner, self._resolver = inner, resolver
        self._loopback, self._deadline = allow_loopback, deadline

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.NetworkStream:
        address = checked_addresses(host, port, self._resolver, self._loopback)[0]
        timeout = self._deadline.left(timeout, httpcore2.ConnectTimeout)
        stream = self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
        return _BoundedStream(stream, self._deadline)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore2.NetworkStream:
        raise Refused("webhooks are never sent to a unix socket")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def http_post(resolver: Resolver = system_resolver, *, local: bool | None = None) -> Post:
    """The real sender: one bounded POST, no redirects followed, no proxy from the environment
    (a proxy would resolve the name itself, past the check), the answer's body never read."""

    def post(url: str, body: bytes, headers: Mapping[str, str]) -> Attempt:
        settings = get_settings()
        loopback = settings.is_local if local is None else local
        try:
            check_url(url, resolver, local=loopback)
        except Refused as exc:
            return Attempt(None, f"refused: {exc}")
        seconds = settings.webhook_timeout_seconds
        deadline = _Deadline(seconds)
        transport = httpx2.HTTPTransport()
        # httpx2 offers no parameter for httpcore's network backend: wrap the one it chose.
        pool = transport._pool
        pool._network_backend = _CheckedBackend(pool._network_backend, resolver, loopback, deadline)
        try:
            with (
                httpx2.Client(
                    transport=transport, timeout=seconds, follow_redirects=False, trust_env=False
                ) as http,
                http.stream("POST", url, content=body, headers=dict(headers)) as answer,
            ):
                status = answer.status_code
        except Refused as exc:
            return Attempt(None, f"refused: {exc}")
        except httpx2.TimeoutException:
            return Attempt(None, "timed out")
        except httpx2.HTTPError as exc:
            return Attempt(None, f"could not connect: {type(exc).__name__}")
        return Attempt(status, None if 200 <= status < 300 else f"answered HTTP {status}")

    return post


# --------------------------------------------------------------------------- endpoints


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
        owner = _owner(user_id).get()
        count = int(owner.get("count") or 0) if owner.exists else 0
        if count >= settings.webhook_max_endpoints:
            raise InvalidRequest(
                f"at most {settings.webhook_max_endpoints} webhooks per account", code="too_many_webhooks"
            )
        # The count is guarded by the read it was decided on: racing creates cannot pass the limit.
        put(batch, owner, {"count": count + 1, "updated_at": at})
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
    query = _endpoints(user_id).order_by("created_at", direction=firestore.Query.DESCENDING)
    query = query.order_by("__name__", direction=firestore.Query.DESCENDING)
    if cursor:
        try:
            query = query.start_after(_owned(user_id, cursor))
        except NotFound:
            raise InvalidRequest("unknown cursor", code="invalid_cursor") from None
    docs = list(query.limit(limit + 1).stream())
    found = [_public(d) for d in docs[:limit]]
    return WebhookPage(webhooks=found, next_cursor=found[-1].id if len(docs) > limit else None)


def delete(user_id: str, webhook_id: str) -> None:
    """Remove an endpoint; its pending deliveries are not sent (they fail as ``endpoint_deleted``)."""
    _owned(user_id, webhook_id)
    ref = _endpoints(user_id).document(webhook_id)

    def decide(batch: Batch) -> None:
        seen, owner = ref.get(), _owner(user_id).get()
        if not seen.exists:
            return None  # deleted by a racing request: the same outcome
        count = int(owner.get("count") or 0) if owner.exists else 0
        put(batch, owner, {"count": max(0, count - 1), "updated_at": now()})
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
    query = query.order_by("created_at", direction=firestore.Query.DESCENDING)
    query = query.order_by("__name__", direction=firestore.Query.DESCENDING)
    if cursor:
        last = _deliveries().document(cursor).get() if _DELIVERY_ID.fullmatch(cursor) else None
        if last is None or not last.exists or last.get("webhook_id") != webhook_id:
            raise InvalidRequest("unknown cursor", code="invalid_cursor")
        query = query.start_after(last)
    docs = list(query.limit(limit + 1).stream())
    found = [_delivery_public(d) for d in docs[:limit] if d.get("user_id") == user_id]
    return DeliveryPage(deliveries=found, next_cursor=docs[limit - 1].id if len(docs) > limit else None)


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


# --------------------------------------------------------------------------- events


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
    if not _DELIVERY_ID.fullmatch(delivery):
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
