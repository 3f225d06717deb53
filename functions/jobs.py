"""``GET /jobs``, ``GET /jobs/{job_id}[?wait=N]``, ``POST /jobs/{job_id}/cancel``: the user's jobs."""

import flask

from shared import jobs as job_store
from shared.errors import InvalidRequest, MethodNotAllowed, NotFound
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
            return respond(job_store.get(user_id, job_id, _wait(request)))
        case "POST", [job_id, "cancel"]:
            return respond(job_store.cancel(user_id, job_id))
        case "POST", [] | [_]:
            raise MethodNotAllowed("use GET")
    raise NotFound("no such route", code="route_not_found")


def _wait(request: flask.Request) -> int:
    """``?wait=N``: seconds to wait for the job to finish, 0 to ``MAX_WAIT_SECONDS``."""
    raw = request.args.get("wait", "0")
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 2 and int(raw) <= job_store.MAX_WAIT_SECONDS):
        raise InvalidRequest(
            f"wait must be a whole number of seconds from 0 to {job_store.MAX_WAIT_SECONDS}",
            code="invalid_wait",
        )
    return int(raw)
