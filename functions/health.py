"""``GET /health``: 200 when Firestore, the queue and the AI endpoint answer, else 503.

The three checks run at once, each bounded (about 3 s), so the answer comes within a few
seconds even when every dependency hangs.
"""

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import flask

from shared import catalog, queue
from shared.ai import OpenAIProvider
from shared.settings import get_settings
from shared.web import ErrorDetail, HealthPublic, endpoint, respond

_CHECK_SECONDS = 3.0


def _firestore() -> None:
    catalog.catalog_ref().get(timeout=_CHECK_SECONDS, retry=None)


def _ai() -> None:
    OpenAIProvider(get_settings()).ping()


_CHECKS: dict[str, Callable[[], None]] = {"firestore": _firestore, "queue": queue.ping, "ai": _ai}


def _state(check: Callable[[], None]) -> str:
    try:
        check()
    except Exception as exc:  # any failure means "down"; the reason is shown, not raised
        return f"down: {type(exc).__name__}"
    return "ok"


@endpoint("GET")
def health(request: flask.Request) -> flask.Response:
    with ThreadPoolExecutor(len(_CHECKS)) as pool:
        states = dict(zip(_CHECKS, pool.map(_state, _CHECKS.values()), strict=True))
    down = [name for name, state in states.items() if state != "ok"]
    if down:
        error = ErrorDetail(code="unhealthy", message="down: " + ", ".join(down))
        return respond(HealthPublic(status="down", checks=states, error=error), 503)
    return respond(HealthPublic(status="ok", checks=states))
