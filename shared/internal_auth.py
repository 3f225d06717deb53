"""Who may call the internal functions (``worker``): only the jobs queue.

Production: the Google-signed OIDC token Cloud Tasks attaches, checked for
audience (the worker URL) and the queue's service account. Local stack: a
shared secret header, which production settings refuse to start with.
"""

from __future__ import annotations

import hmac

from werkzeug.datastructures import Headers

from shared.errors import Forbidden, Unauthenticated
from shared.settings import get_settings

WORKER_SECRET_HEADER = "X-Aijobs-Worker-Secret"


def verify_queue_caller(headers: Headers) -> None:
    settings = get_settings()
    if settings.worker_secret is not None:
        given = headers.get(WORKER_SECRET_HEADER)
        if not given:
            raise Unauthenticated("internal endpoint: caller not identified")
        if not hmac.compare_digest(given.encode(), settings.worker_secret.get_secret_value().encode()):
            raise Forbidden("internal endpoint: caller not allowed")
        return
    scheme, _, token = headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("internal endpoint: send the queue's OIDC token")
    from google.auth.transport import requests
    from google.oauth2 import id_token

    try:
        claims = id_token.verify_oauth2_token(token, requests.Request(), audience=settings.worker_url)
    except ValueError:
        raise Unauthenticated("internal endpoint: invalid OIDC token") from None
    if claims.get("email") != settings.tasks_service_account or not claims.get("email_verified"):
        raise Forbidden("internal endpoint: caller not allowed")
