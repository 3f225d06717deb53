"""Who may call the internal functions: the jobs queue (``worker``) and Cloud
Scheduler (``sweep_jobs``, ``weekly_report``).

Production: the Google-signed OIDC token the caller attaches, checked for
audience (the function's own URL) and the caller's service account. Local
stack: a shared secret header, which production settings refuse to start with.
"""

from __future__ import annotations

import hmac

from werkzeug.datastructures import Headers

from shared.errors import Forbidden, Unauthenticated
from shared.settings import get_settings

WORKER_SECRET_HEADER = "X-Aijobs-Worker-Secret"
_GOOGLE_ISSUERS = ("accounts.google.com", "https://accounts.google.com")


def verify_internal_caller(headers: Headers, function: str, service_account: str | None) -> None:
    """Refuse any caller but ``service_account`` calling ``function`` (401/403)."""
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
    # Imported here: only production's internal calls need google-auth's verifier.
    import jwt
    from google.auth import exceptions
    from google.auth.transport import requests
    from google.oauth2 import id_token

    try:
        claims = id_token.verify_token(
            token,
            requests.Request(),
            audience=settings.function_url(function),
            certs_url=settings.oidc_certs_url,
        )
    except (ValueError, exceptions.GoogleAuthError, jwt.PyJWTError):
        raise Unauthenticated("internal endpoint: invalid OIDC token") from None
    if claims.get("iss") not in _GOOGLE_ISSUERS:
        raise Unauthenticated("internal endpoint: OIDC token not issued by Google")
    if not service_account or claims.get("email") != service_account or not claims.get("email_verified"):
        raise Forbidden("internal endpoint: caller not allowed")
