"""``GET /jobs``, ``GET /jobs/{job_id}``, ``POST /jobs/{job_id}/cancel``: the user's jobs."""

import flask

from shared import jobs as job_store
from shared.errors import MethodNotAllowed, NotFound
from shared.web import bearer_user, endpoint, page, respond


@endpoint("GET", "POST")
def jobs(request: flask.Request) -> flask.Response:
    user_id = bearer_user(request)
    parts = [p for p in request.path.split("/") if p]
    match request.method, parts:
        case "GET", []:
            limit, cursor = page(request)
            found, next_cursor = job_store.list_for(user_id, limit, cursor)
            return respond({"jobs": [j.model_dump(mode="json") for j in found], "next_cursor": next_cursor})
        case "GET", [job_id]:
            return respond(job_store.get(user_id, job_id))
        case "POST", [job_id, "cancel"]:
            return respond(job_store.cancel(user_id, job_id))
        case "POST", [] | [_]:
            raise MethodNotAllowed("use GET")
    raise NotFound("no such route", code="route_not_found")
