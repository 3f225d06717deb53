"""API keys as bearers (not built yet: every key is refused)."""

from __future__ import annotations

from shared.errors import Unauthenticated


def verify(key: str) -> str:
    """The user id of an API key that is not revoked."""
    raise Unauthenticated("the API key is invalid", code="invalid_api_key")
