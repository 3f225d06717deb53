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

from shared.webhooks.addresses import (
    Refused,
    Resolver,
    address_problem,
    check_url,
    checked_addresses,
    system_resolver,
)
from shared.webhooks.deliveries import (
    DELIVERY_RETENTION,
    RETRY_HORIZON,
    Enqueue,
    after_job_final,
    deliver,
    delivery_id,
    enqueue,
    send,
    stage_event,
    stage_job_final,
    sweep,
)
from shared.webhooks.endpoints import create, delete, deliveries, get, list_for, rotate
from shared.webhooks.models import (
    EVENTS,
    MAX_URL_LENGTH,
    DeliveryPage,
    DeliveryPublic,
    DeliveryStatus,
    EventType,
    JobEventData,
    WebhookCreate,
    WebhookPage,
    WebhookPublic,
    WebhookSecret,
)
from shared.webhooks.sender import Attempt, Post, http_post
from shared.webhooks.signing import SECRET_BYTES, SECRET_PREFIX, new_secret, sign, signature_headers

__all__ = [
    "DELIVERY_RETENTION",
    "EVENTS",
    "MAX_URL_LENGTH",
    "RETRY_HORIZON",
    "SECRET_BYTES",
    "SECRET_PREFIX",
    "Attempt",
    "DeliveryPage",
    "DeliveryPublic",
    "DeliveryStatus",
    "Enqueue",
    "EventType",
    "JobEventData",
    "Post",
    "Refused",
    "Resolver",
    "WebhookCreate",
    "WebhookPage",
    "WebhookPublic",
    "WebhookSecret",
    "address_problem",
    "after_job_final",
    "check_url",
    "checked_addresses",
    "create",
    "delete",
    "deliver",
    "deliveries",
    "delivery_id",
    "enqueue",
    "get",
    "http_post",
    "list_for",
    "new_secret",
    "rotate",
    "send",
    "sign",
    "signature_headers",
    "stage_event",
    "stage_job_final",
    "sweep",
    "system_resolver",
]
