"""The requests and answers of the webhooks API, and an event's job data."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

EventType = Literal["job.completed", "job.failed", "job.canceled", "batch.completed"]
EVENTS: tuple[str, ...] = ("job.completed", "job.failed", "job.canceled", "batch.completed")
DeliveryStatus = Literal["pending", "delivered", "failed"]
MAX_URL_LENGTH = 2048
DELIVERY_ID = re.compile(r"msg_[0-9a-f]{32}")
"""What a delivery id (the ``webhook-id``) looks like."""


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
