"""``GET /health``: 200 when Firestore, the queue and every AI provider answer and the
catalog parses, else 503.

The checks run at once, each bounded (about 3 s), so the answer comes within a few seconds
even when every dependency hangs. ``ai`` is the default provider, ``ai:<name>`` each one of
``AI_PROVIDERS``; ``catalog`` is ``config/catalog`` as read now (``down`` when it is
invalid: every submit is then ``503 catalog_invalid``, and the log says what is wrong).
"""

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache, partial

import flask

from shared import catalog, queue
from shared.ai import OpenAIProvider
from shared.settings import DEFAULT_PROVIDER, get_settings
from shared.web import ErrorDetail, HealthPublic, endpoint, respond

_CHECK_SECONDS = 3.0


def _firestore() -> None:
    catalog.catalog_ref().get(timeout=_CHECK_SECONDS, retry=None)


def _catalog() -> None:
    snapshot = catalog.catalog_ref().get(timeout=_CHECK_SECONDS, retry=None)
    catalog.Catalog.model_validate(snapshot.to_dict() if snapshot.exists else catalog.DEFAULT_CATALOG)


@cache
def _checks() -> dict[str, Callable[[], None]]:
    # One provider (its clients made on first ping) for the instance's life, as the worker's.
    provider = OpenAIProvider(get_settings())
    ai = {("ai" if n == DEFAULT_PROVIDER else f"ai:{n}"): partial(provider.ping, n) for n in provider.names}
    return {"firestore": _firestore, "queue": queue.ping, **ai, "catalog": _catalog}


def _state(check: Callable[[], None]) -> str:
    try:
        check()
    except Exception as exc:  # any failure means "down"; the reason is shown, not raised
        return f"down: {type(exc).__name__}"
    return "ok"


@endpoint("GET")
def health(request: flask.Request) -> flask.Response:
    checks = _checks()
    with ThreadPoolExecutor(len(checks)) as pool:
        states = dict(zip(checks, pool.map(_state, checks.values()), strict=True))
    down = [name for name, state in states.items() if state != "ok"]
    if down:
        error = ErrorDetail(code="unhealthy", message="down: " + ", ".join(down))
        return respond(HealthPublic(status="down", checks=states, error=error), 503)
    return respond(HealthPublic(status="ok", checks=states))
