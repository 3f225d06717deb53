"""HTTP glue shared by the entry points: JSON in, JSON out, errors as data.

Every error answer is ``{"error": {"code": "<snake_case>", "message": "..."}}``.
A domain error maps to its own status; anything unexpected is logged with its
traceback and answered as a generic 500, so internals never leak to clients.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any, TypeVar

import flask
from pydantic import BaseModel, ValidationError

from shared import logs
from shared.errors import (
    AppError,
    BadRequest,
    InvalidRequest,
    MethodNotAllowed,
    PayloadTooLarge,
    TooManyRequests,
    Unauthenticated,
    UnsupportedMediaType,
)
from shared.settings import get_settings

M = TypeVar("M", bound=BaseModel)
Handler = Callable[[flask.Request], flask.Response]
logger = logging.getLogger("aijobs")
_CURSOR = re.compile(r"[A-Za-z0-9_-]{1,128}")


def respond(
    body: BaseModel | dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> flask.Response:
    payload = body.model_dump(mode="json") if isinstance(body, BaseModel) else body
    return flask.Response(json.dumps(payload), status, headers, mimetype="application/json")


def _error(exc: AppError) -> flask.Response:
    headers = {}
    if isinstance(exc, Unauthenticated):
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(exc, TooManyRequests):
        headers["Retry-After"] = str(exc.retry_after)
    return respond({"error": {"code": exc.code, "message": exc.message}}, exc.status, headers)


def _describe(exc: ValidationError) -> str:
    # Inputs are never echoed: a bad password must not come back in an error.
    parts = []
    for err in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def endpoint(*methods: str) -> Callable[[Handler], Handler]:
    """Wrap a Cloud Function: structured logs, size and method checks, error mapping,
    and no unhandled exception."""

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        def run(request: flask.Request) -> flask.Response:
            settings = get_settings()
            logs.setup()
            trace = request.headers.get("X-Cloud-Trace-Context")
            logs.start_request(handler.__name__, trace, settings.google_cloud_project)
            started = time.perf_counter()
            response = _handle(handler, request, methods, settings.max_body_bytes)
            took = (time.perf_counter() - started) * 1000
            logger.info("%s %s -> %d (%.0f ms)", request.method, request.path, response.status_code, took)
            return response

        return run

    return wrap


def _handle(
    handler: Handler, request: flask.Request, methods: tuple[str, ...], max_body: int
) -> flask.Response:
    try:
        # Before any work, authentication included: an oversized body costs nothing.
        if request.content_length is not None and request.content_length > max_body:
            raise PayloadTooLarge(f"the body is larger than {max_body} bytes")
        if request.method not in methods:
            raise MethodNotAllowed(f"use {' or '.join(methods)}")
        return handler(request)
    except AppError as exc:
        return _error(exc)
    except ValidationError as exc:
        return _error(InvalidRequest(_describe(exc)))
    except Exception:
        logger.exception("unhandled error in %s", handler.__name__)
        return _error(AppError())


def parse_body(request: flask.Request, model: type[M]) -> M:
    """The JSON body as ``model``; 413, 415, 400 or 422 before any work is done."""
    limit = get_settings().max_body_bytes
    if request.mimetype != "application/json":
        raise UnsupportedMediaType("send a JSON body with Content-Type: application/json")
    raw = request.stream.read(limit + 1)
    if len(raw) > limit:
        raise PayloadTooLarge(f"the body is larger than {limit} bytes")
    try:
        data = json.loads(raw)
    except ValueError:
        raise BadRequest("the body is not valid JSON", code="malformed_json") from None
    if not isinstance(data, dict):
        raise InvalidRequest("the body must be a JSON object")
    return model.model_validate(data)


def page(request: flask.Request) -> tuple[int, str | None]:
    """``limit`` (1-100, default 20) and ``cursor`` query parameters."""
    raw_limit = request.args.get("limit", "20")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 100:
        raise InvalidRequest("limit must be an integer from 1 to 100", code="invalid_limit")
    cursor = request.args.get("cursor") or None
    if cursor is not None and not _CURSOR.fullmatch(cursor):
        raise InvalidRequest("unknown cursor", code="invalid_cursor")
    return int(raw_limit), cursor


def bearer_user(request: flask.Request) -> str:
    """The user id of the request's access token."""
    # Imported here: the worker and health use this module but never authenticate users.
    from shared.auth import verify_token

    user_id = verify_token(request.headers.get("Authorization"))
    logs.bind(user_id=user_id)
    return user_id
