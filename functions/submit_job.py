"""``POST /submit_job``: charge and queue an AI job (``Idempotency-Key`` optional)."""

import flask

from shared import jobs, queue
from shared.web import bearer_user, endpoint, parse_body, respond


@endpoint("POST")
def submit_job(request: flask.Request) -> flask.Response:
    user_id = bearer_user(request)
    job = parse_body(request, jobs.JobCreate)
    key = request.headers.get("Idempotency-Key")
    accepted = jobs.submit(user_id, job, key, queue.enqueue)
    headers = {"Idempotent-Replayed": "true"} if accepted.replayed else None
    return respond(accepted, 202, headers)
