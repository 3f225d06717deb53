"""``POST /worker``: run one job; called only by the jobs queue (Cloud Tasks).

A 2xx acknowledges the task. A 409 (another delivery holds the job) or 503
(retryable AI failure) makes the queue deliver it again later.
"""

import logging
from functools import cache
from typing import Annotated

import flask
from pydantic import BaseModel, ConfigDict, StringConstraints

from shared import jobs
from shared.ai import OpenAIProvider
from shared.internal_auth import verify_internal_caller
from shared.settings import get_settings
from shared.web import endpoint, parse_body, respond

logger = logging.getLogger("aijobs.worker")


class WorkerTask(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Bounded: it is echoed and logged. A well-formed id that names no job is acknowledged
    # (200 "missing") so the queue stops retrying it.
    job_id: Annotated[str, StringConstraints(max_length=64)]


@cache
def _provider() -> OpenAIProvider:
    return OpenAIProvider(get_settings())


@endpoint("POST")
def worker(request: flask.Request) -> flask.Response:
    verify_internal_caller(request.headers, "worker", get_settings().tasks_service_account)
    task = parse_body(request, WorkerTask)
    outcome = jobs.run(task.job_id, _provider())
    logger.info("job %s: %s", task.job_id, outcome)
    return respond({"job_id": task.job_id, "outcome": outcome})
