"""Firebase Authentication ID tokens as bearers (not built yet: every such token is refused)."""

from __future__ import annotations

from shared.errors import Unauthenticated


def verify(token: str) -> str:
    """The user id of a Firebase ID token's account."""
    raise Unauthenticated("the access token is invalid", code="invalid_token")
