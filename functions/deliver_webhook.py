"""``POST /deliver_webhook`` ``{"delivery_id"}``: one attempt of a webhook delivery; called only
by the webhooks queue (Cloud Tasks).

A 2xx acknowledges the task (delivered, failed for good, or nothing left to do). A 503 (the
endpoint did not take it, attempts left) makes the queue try again after its backoff.
"""

import logging
from typing import Annotated

import flask
from pydantic import BaseModel, ConfigDict, StringConstraints

from shared import webhooks
from shared.internal_auth import verify_internal_caller
from shared.settings import get_settings
from shared.web import endpoint, parse_body, respond

logger = logging.getLogger("aijobs.deliver_webhook")


class DeliveryTask(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Bounded: it is echoed and logged. An id that names no delivery is acknowledged.
    delivery_id: Annotated[str, StringConstraints(max_length=64)]


@endpoint("POST")
def deliver_webhook(request: flask.Request) -> flask.Response:
    verify_internal_caller(request.headers, "deliver_webhook", get_settings().tasks_service_account)
    task = parse_body(request, DeliveryTask)
    outcome = webhooks.deliver(task.delivery_id)
    logger.info("webhook delivery %s: %s", task.delivery_id, outcome)
    return respond({"delivery_id": task.delivery_id, "outcome": outcome})
