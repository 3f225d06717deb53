"""``POST /sweep_jobs``: recover stuck jobs and webhook deliveries; run by Cloud Scheduler every minute."""

import flask

from shared import batches, jobs, queue, webhooks
from shared.internal_auth import verify_internal_caller
from shared.settings import get_settings
from shared.web import endpoint, respond


@endpoint("POST")
def sweep_jobs(request: flask.Request) -> flask.Response:
    verify_internal_caller(request.headers, "sweep_jobs", get_settings().scheduler_service_account)
    counts = {**jobs.sweep(queue.enqueue), "batches_settled": batches.sweep(), **webhooks.sweep()}
    return respond(counts)
