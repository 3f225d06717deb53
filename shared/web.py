"""HTTP glue shared by the entry points: JSON in, JSON out, errors as data.

Every error answer is ``{"error": {"code": "<snake_case>", "message": "..."}}``.
A domain error maps to its own status; anything unexpected is logged with its
traceback and answered as a generic 500, so internals never leak to clients.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import re
import sys
import time
from collections.abc import Callable
from typing import Any, Literal, TypeVar

import flask
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from werkzeug.exceptions import HTTPException

from shared import logs, metering
from shared.errors import (
    AppError,
    BadRequest,
    Forbidden,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    TooManyRequests,
    Unauthenticated,
    Unavailable,
    UnsupportedMediaType,
)
from shared.settings import LOCAL_ORIGIN, Settings, get_settings

M = TypeVar("M", bound=BaseModel)
Handler = Callable[[flask.Request], flask.Response]
Routes = Callable[[list[str]], tuple[str, ...]]
"""The methods one path of a function takes, from its segments; ``NotFound`` for no route."""
logger = logging.getLogger("aijobs")
_CURSOR = re.compile(r"[A-Za-z0-9_-]{1,128}")
_RESERVED_ID = re.compile(r"__.*__")  # Firestore refuses such document ids with an error, not a miss
_LIMIT = re.compile(r"[0-9]{1,3}")  # ASCII only: str.isdigit() also takes "²" and "٣"
_SURROGATE = re.compile(r"[\ud800-\udfff]")
DEFAULT_LIMIT, MAX_LIMIT = 20, 100
MAX_DEPTH = 32
"""Deepest nesting of arrays and objects a body may have; no valid request comes close."""
RETRY_AFTER_SECONDS = 5
"""What every 503 tells clients to wait before trying again."""
MAX_MESSAGE = 300
"""Longest error message: a safety net, so no code path can echo a client's 60 KB back."""
# Transient failures of Google APIs (Firestore, Cloud Tasks) that escaped the code below:
# the same request may well succeed in a moment, so 503, not 500.
_TRANSIENT_API_ERRORS = (
    "ServiceUnavailable",
    "DeadlineExceeded",
    "InternalServerError",
    "Aborted",
    "ResourceExhausted",
    "RetryError",
)
# Reached only by the queue and the scheduler, never from a browser: no CORS for them. Keyed by
# the handler's name, so the functions need not say it (the ones calling verify_internal_caller).
_INTERNAL = frozenset({"worker", "weekly_report", "sweep_jobs", "deliver_webhook"})
CORS_ALLOW_HEADERS = "Authorization, Content-Type, Idempotency-Key"
CORS_EXPOSE_HEADERS = "Idempotent-Replayed, Retry-After"
CORS_MAX_AGE_SECONDS = 600
_TRANSIENT_GRPC_CODES = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "INTERNAL", "ABORTED", "RESOURCE_EXHAUSTED")


class ErrorDetail(BaseModel):
    code: str
    """Stable and snake_case: what clients branch on."""
    message: str
    """For people; may change."""


class ErrorPublic(BaseModel):
    """Every error answer."""

    error: ErrorDetail


class HealthPublic(BaseModel):
    """Answer of ``GET /health``: each dependency ``ok`` or ``down: <reason>``."""

    status: Literal["ok", "down"]
    checks: dict[str, str]
    error: ErrorDetail | None = None
    """Set when ``status`` is ``down`` (with the 503)."""


class PageQuery(BaseModel):
    """The query of every paginated list; read by ``page`` (which names each refusal's code)."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{0,128}$")
    """The ``next_cursor`` of the previous page; absent or empty for the first page."""


def respond(
    body: BaseModel | dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> flask.Response:
    payload = body.model_dump(mode="json", by_alias=True) if isinstance(body, BaseModel) else body
    headers = dict(headers or {})
    if status == 503:
        headers.setdefault("Retry-After", str(RETRY_AFTER_SECONDS))
    return flask.Response(json.dumps(payload), status, headers, mimetype="application/json")


def _error(exc: AppError) -> flask.Response:
    headers = {}
    if isinstance(exc, Unauthenticated):
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(exc, TooManyRequests | Unavailable):
        headers["Retry-After"] = str(getattr(exc, "retry_after", RETRY_AFTER_SECONDS))
    if isinstance(exc, MethodNotAllowed) and exc.allow:
        headers["Allow"] = ", ".join(exc.allow)
    message = short(exc.message, MAX_MESSAGE)
    return respond({"error": {"code": exc.code, "message": message}}, exc.status, headers)


def short(text: str, limit: int = 40) -> str:
    """``text`` cut to ``limit`` characters, for the rare message that names a client's value."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(exc: ValidationError) -> str:
    # Inputs are never echoed: a bad password must not come back in an error. Field names can
    # be the client's own (an unknown key), so they are cut short, and so is the whole list.
    errors = exc.errors(include_input=False, include_url=False)
    parts = []
    for err in errors[:3]:
        where = ".".join(short(str(p)) for p in err["loc"]) or "body"
        parts.append(f"{where}: {short(err['msg'], 120)}")
    more = f"; and {len(errors) - 3} more" if len(errors) > 3 else ""
    return "; ".join(parts) + more


def endpoint(*methods: str, routes: Routes | None = None) -> Callable[[Handler], Handler]:
    """Wrap a Cloud Function: structured logs, size and method checks, error mapping,
    and no unhandled exception.

    A function with several paths passes ``routes``, so that a 405 names (in ``Allow``) what
    that path takes and a path that does not exist is 404 before any other work."""

    def wrap(handler: Handler) -> Handler:
        _answer_framework_errors()

        @functools.wraps(handler)
        def run(request: flask.Request) -> flask.Response:
            settings = get_settings()
            logs.setup()
            trace = request.headers.get("X-Cloud-Trace-Context")
            logs.start_request(handler.__name__, trace, settings.google_cloud_project)
            meter = metering.start()
            started = time.perf_counter()
            if handler.__name__ in _INTERNAL:
                response = _handle(handler, request, methods, routes, settings.max_body_bytes)
            else:
                response = _cors(handler, request, methods, routes, settings)
            took = (time.perf_counter() - started) * 1000
            path = short(request.path, 200)
            logger.info(
                "%s %s -> %d (%.0f ms)",
                request.method,
                path,
                response.status_code,
                took,
                extra={"json_fields": meter.fields()},
            )
            return response

        return run

    return wrap


def _answer_framework_errors() -> None:
    """Errors raised by Flask before the function runs are JSON errors too.

    A path that functions-framework's route does not match (one with a newline, say) never
    reaches the handler; Flask would answer it with an HTML page. The function's module is
    executed inside its app's context (functions-framework does so), so its app is at hand."""
    if flask.has_app_context():
        flask.current_app.register_error_handler(HTTPException, _framework_error)


def _framework_error(exc: HTTPException) -> flask.Response:
    status = exc.code or 500
    if status == 404:
        return _error(NotFound("no such route", code="route_not_found"))
    error = AppError(short(exc.description or exc.name, MAX_MESSAGE), code=_snake(exc.name))
    error.status = status
    return _error(error)


def _snake(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "error"


def _cors(
    handler: Handler,
    request: flask.Request,
    methods: tuple[str, ...],
    routes: Routes | None,
    settings: Settings,
) -> flask.Response:
    """The answer of a public function, with CORS headers for an allowed ``Origin``.

    A preflight is answered here, before authentication and the method check: 204 for an
    allowed origin, 403 ``origin_not_allowed`` for any other."""
    origin = request.headers.get("Origin")
    allowed = origin is not None and origin_allowed(origin, settings)
    if (
        origin is not None
        and request.method == "OPTIONS"
        and "Access-Control-Request-Method" in request.headers
    ):
        if not allowed:
            response = _error(Forbidden("this origin may not call the API", code="origin_not_allowed"))
        else:
            response = flask.Response(status=204)
            response.headers["Access-Control-Allow-Methods"] = ", ".join(_methods(request, methods, routes))
            response.headers["Access-Control-Allow-Headers"] = CORS_ALLOW_HEADERS
            response.headers["Access-Control-Max-Age"] = str(CORS_MAX_AGE_SECONDS)
    else:
        response = _handle(handler, request, methods, routes, settings.max_body_bytes)
    response.headers.add("Vary", "Origin")  # the answer depends on it, for caches too
    if allowed and origin is not None:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = CORS_EXPOSE_HEADERS
    return response


def origin_allowed(origin: str, settings: Settings) -> bool:
    """Whether a browser page from ``origin`` may read the API's answers."""
    if settings.cors_origins is None:
        return settings.is_local and LOCAL_ORIGIN.fullmatch(origin) is not None
    return origin in settings.cors_origin_list


def path_parts(request: flask.Request) -> list[str]:
    """The segments of the path below the function's own URL."""
    return [p for p in request.path.split("/") if p]


def _methods(request: flask.Request, methods: tuple[str, ...], routes: Routes | None) -> tuple[str, ...]:
    if routes is None:
        return methods
    try:
        return routes(path_parts(request))
    except AppError:
        return methods


def _handle(
    handler: Handler,
    request: flask.Request,
    methods: tuple[str, ...],
    routes: Routes | None,
    max_body: int,
) -> flask.Response:
    try:
        # Before any work, authentication included: an oversized body costs nothing.
        if request.content_length is not None and request.content_length > max_body:
            raise PayloadTooLarge(f"the body is larger than {max_body} bytes")
        allowed = routes(path_parts(request)) if routes is not None else methods
        if request.method not in allowed:
            raise MethodNotAllowed(*allowed)
        return handler(request)
    except AppError as exc:
        return _error(exc)
    except ValidationError as exc:
        return _error(InvalidRequest(_describe(exc)))
    except Exception as exc:
        if _transient(exc):
            logger.warning("transient %s in %s", type(exc).__name__, handler.__name__, exc_info=True)
            return _error(Unavailable())
        logger.exception("unhandled error in %s", handler.__name__)
        return _error(AppError())


def _transient(exc: Exception) -> bool:
    """Whether ``exc`` is a Google API or gRPC failure that the same request may not meet again."""
    # Looked up, not imported: a function that never loaded these libraries cannot have raised
    # their errors, and importing them here would cost its cold start.
    api = sys.modules.get("google.api_core.exceptions")
    if api is not None and isinstance(exc, tuple(getattr(api, n) for n in _TRANSIENT_API_ERRORS)):
        return True
    grpc = sys.modules.get("grpc")
    if grpc is None or not isinstance(exc, grpc.RpcError):
        return False
    code = getattr(exc, "code", None)
    status = code() if callable(code) else None
    return getattr(status, "name", None) in _TRANSIENT_GRPC_CODES


def parse_body(request: flask.Request, model: type[M], empty: M | None = None) -> M:
    """The JSON body as ``model``; 413, 415, 400 or 422 before any work is done.

    With ``empty``, a request without a body (of any type) means ``empty``."""
    limit = get_settings().max_body_bytes
    # Read, not trusted from Content-Length: a chunked body declares no length.
    raw = request.stream.read(limit + 1)
    if not raw and empty is not None:
        return empty
    if request.mimetype != "application/json":
        raise UnsupportedMediaType("send a JSON body with Content-Type: application/json")
    if len(raw) > limit:
        raise PayloadTooLarge(f"the body is larger than {limit} bytes")
    try:
        data = json.loads(raw, parse_constant=_no_constant, object_pairs_hook=_object)
    except RecursionError:
        raise BadRequest(
            f"the body is nested deeper than {MAX_DEPTH} levels", code="malformed_json"
        ) from None
    except ValueError as exc:
        reason = exc.args[0] if isinstance(exc, _Refused) else "the body is not valid JSON"
        raise BadRequest(reason, code="malformed_json") from None
    _check_values(data)
    if not isinstance(data, dict):
        raise InvalidRequest("the body must be a JSON object")
    return model.model_validate(data)


class _Refused(ValueError):
    """Valid to Python's json module, not to JSON (RFC 8259) or to this API."""


def _no_constant(name: str) -> Any:
    # Python's json reads NaN and Infinity; JSON has no such numbers, and no option wants one.
    raise _Refused(f"{name} is not a JSON number")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # A repeated key would silently keep its last value: what the client meant is unclear.
    data = dict(pairs)
    if len(data) != len(pairs):
        raise _Refused("the body repeats a key in one object")
    return data


def _check_values(data: Any) -> None:
    """Refuse what parsed but must not go further: deep nesting (pydantic and the stores
    recurse), unpaired surrogates (no UTF-8 form, so Firestore and the AI cannot take them),
    and numbers too large for a float (``1e999`` parses as infinity)."""
    pending = [(data, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                raise BadRequest(f"the body is nested deeper than {MAX_DEPTH} levels", code="malformed_json")
            items = [*value.keys(), *value.values()] if isinstance(value, dict) else value
            pending.extend((item, depth + 1) for item in items)
        elif isinstance(value, str) and _SURROGATE.search(value):
            raise BadRequest("the body has an unpaired surrogate (\\ud800-\\udfff)", code="invalid_unicode")
        elif isinstance(value, float) and not math.isfinite(value):
            raise BadRequest("the body has a number too large for a float", code="malformed_json")


def page(request: flask.Request) -> tuple[int, str | None]:
    """``limit`` (1-100, default 20) and ``cursor`` query parameters."""
    raw_limit = request.args.get("limit", str(DEFAULT_LIMIT))
    if not _LIMIT.fullmatch(raw_limit) or not 1 <= int(raw_limit) <= MAX_LIMIT:
        raise InvalidRequest(f"limit must be an integer from 1 to {MAX_LIMIT}", code="invalid_limit")
    cursor = request.args.get("cursor") or None
    if cursor is not None and (not _CURSOR.fullmatch(cursor) or _RESERVED_ID.fullmatch(cursor)):
        raise InvalidRequest("unknown cursor", code="invalid_cursor")
    return int(raw_limit), cursor


def bearer_user(request: flask.Request, *, api_keys: bool = True) -> str:
    """The user id of the request's bearer (see ``shared.auth.verify_token``); with
    ``api_keys=False`` an API key is refused (``403 api_key_not_allowed``)."""
    # Imported here: the worker and health use this module but never authenticate users.
    from shared.auth import verify_token

    user_id = verify_token(request.headers.get("Authorization"), api_keys=api_keys)
    logs.bind(user_id=user_id)
    return user_id
