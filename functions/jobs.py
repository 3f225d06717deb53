"""The user's jobs: ``GET /jobs?status=&task_type=&tag=``, ``GET /jobs/{job_id}[?wait=N]``,
``PATCH /jobs/{job_id}`` (title, tags), ``DELETE /jobs/{job_id}`` (its content),
``POST /jobs/{job_id}/cancel``, ``GET /jobs/{job_id}/image`` (an image job's picture)."""

import flask

from shared import jobs as job_store
from shared.errors import InvalidRequest, NotFound
from shared.web import bearer_user, endpoint, page, parse_body, path_parts, respond


def _routes(parts: list[str]) -> tuple[str, ...]:
    match parts:
        case []:
            return ("GET",)
        case [_]:
            return ("GET", "PATCH", "DELETE")
        case [_, "cancel"]:
            return ("POST",)
        case [_, "image"]:
            return ("GET",)
    raise NotFound("no such route", code="route_not_found")


@endpoint("GET", "POST", "PATCH", "DELETE", routes=_routes)
def jobs(request: flask.Request) -> flask.Response:
    user_id = bearer_user(request)
    match path_parts(request):
        case []:
            limit, cursor = page(request)
            found, next_cursor = job_store.list_for(user_id, limit, cursor, _filters(request))
            return respond(job_store.JobPage(jobs=found, next_cursor=next_cursor))
        case [job_id] if request.method == "PATCH":
            return respond(job_store.update(user_id, job_id, parse_body(request, job_store.JobUpdate)))
        case [job_id] if request.method == "DELETE":
            job_store.delete(user_id, job_id)
            return flask.Response(status=204)
        case [job_id]:
            return respond(job_store.get(user_id, job_id, _wait(request)))
        case [job_id, "image"]:
            return _image(user_id, job_id)
        case [job_id, _]:
            return respond(job_store.cancel(user_id, job_id))
    raise AssertionError("unreachable: _routes knows every path")


def _image(user_id: str, job_id: str) -> flask.Response:
    """The image streamed from Cloud Storage, also in production: a V4 signed URL would need a
    key or the IAM signBlob right for the functions' account, and a redirect would hand out a
    bearer link (valid for anyone until it expires). Another user's job is 404 like a missing one."""
    from shared import images  # only this route (and the worker, and delete) loads google-cloud-storage

    path, content_type = job_store.image(user_id, job_id)
    size, pieces = images.open_chunks(path)
    response = flask.Response(pieces, status=200, content_type=content_type)
    response.headers["Content-Length"] = str(size)
    response.headers["Cache-Control"] = "private, no-store"
    return response


def _wait(request: flask.Request) -> int:
    """``?wait=N``: seconds to wait for the job to finish, 0 to ``MAX_WAIT_SECONDS``."""
    raw = request.args.get("wait", "0")
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 2 and int(raw) <= job_store.MAX_WAIT_SECONDS):
        raise InvalidRequest(
            f"wait must be a whole number of seconds from 0 to {job_store.MAX_WAIT_SECONDS}",
            code="invalid_wait",
        )
    return int(raw)


def _filters(request: flask.Request) -> job_store.JobFilter:
    names = ("status", "task_type", "tag")
    return job_store.JobFilter.model_validate({n: request.args[n] for n in names if n in request.args})
