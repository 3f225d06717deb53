"""``GET /health``: 200 when Firestore, the queue and the AI endpoint answer, else 503."""

from collections.abc import Callable

import flask

from shared import catalog, queue
from shared.ai import OpenAIProvider
from shared.settings import get_settings
from shared.web import endpoint, respond


def _firestore() -> None:
    catalog.catalog_ref().get(timeout=3.0)


def _ai() -> None:
    OpenAIProvider(get_settings()).ping()


_CHECKS: dict[str, Callable[[], None]] = {"firestore": _firestore, "queue": queue.ping, "ai": _ai}


@endpoint("GET")
def health(request: flask.Request) -> flask.Response:
    checks: dict[str, str] = {}
    for name, check in _CHECKS.items():
        try:
            check()
            checks[name] = "ok"
        except Exception as exc:  # any failure means "down"; the reason is shown, not raised
            checks[name] = f"down: {type(exc).__name__}"
    down = [name for name, state in checks.items() if state != "ok"]
    if down:
        error = {"code": "unhealthy", "message": "down: " + ", ".join(down)}
        return respond({"status": "down", "error": error, "checks": checks}, 503)
    return respond({"status": "ok", "checks": checks})
