"""Batches of jobs: ``POST /batches`` (``Idempotency-Key`` optional), ``GET /batches``,
``GET /batches/{batch_id}?limit=&cursor=`` (counts and a page of job ids),
``POST /batches/{batch_id}/cancel``."""

import flask

from shared import batches as batch_store
from shared import queue
from shared.errors import NotFound
from shared.web import bearer_user, endpoint, page, parse_body, path_parts, respond


def _routes(parts: list[str]) -> tuple[str, ...]:
    match parts:
        case []:
            return ("GET", "POST")
        case [_]:
            return ("GET",)
        case [_, "cancel"]:
            return ("POST",)
    raise NotFound("no such route", code="route_not_found")


@endpoint("GET", "POST", routes=_routes)
def batches(request: flask.Request) -> flask.Response:
    user_id = bearer_user(request)
    match path_parts(request):
        case [] if request.method == "POST":
            order = parse_body(request, batch_store.BatchCreate)
            key = request.headers.get("Idempotency-Key")
            accepted = batch_store.create(user_id, order, key, queue.enqueue)
            return respond(accepted, 202, {"Idempotent-Replayed": "true"} if accepted.replayed else None)
        case []:
            return respond(batch_store.list_for(user_id, *page(request)))
        case [batch_id]:
            return respond(batch_store.get(user_id, batch_id, *page(request)))
        case [batch_id, _]:
            return respond(batch_store.cancel(user_id, batch_id))
    raise AssertionError("unreachable: _routes knows every path")
