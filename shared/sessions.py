"""Refresh tokens: staying signed in past the access token's 30 minutes.

Documents:
- ``refresh_tokens/{sha256 of the token}``: ``{user_id, family_id, created_at, expires_at,
  used_at}``. ``used_at`` is set when the token is exchanged: it is then retired.
- ``refresh_families/{family_id}``: ``{user_id, current, created_at, rotated_at, expires_at,
  revoked_at, revoked_reason}``: one sign-in (signup or login) and every token rotated from it.
  ``current`` is the hash of the one live token.

Both carry ``expires_at``, their Firestore TTL field (a family's moves with each rotation).

Rotation with reuse detection (OAuth 2.0 Security BCP, section 4.14): ``refresh`` retires the
presented token and issues the next one in one commit, guarded by the update times of the
token and of its family. A retired token presented again means a copy exists elsewhere (a
thief, or the client itself): the whole family is revoked, so the thief's token and the
legitimate one both die and the user signs in again.

Two refreshes racing with the same token: exactly one commit lands; the other re-reads, finds
the token retired, and is answered as reuse, revoking the family, the winner's new token
included. The BCP allows a short grace period instead; exact semantics were chosen first: a
client must not refresh one token twice at once (the Python client serialises its refreshes).

Tokens are 32 random bytes, so SHA-256 suffices to store them (see ``shared.api_keys``).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from datetime import datetime, timedelta
from enum import Enum
from typing import Annotated, Any

from google.cloud import firestore
from pydantic import BaseModel, ConfigDict, StringConstraints

from shared.db import Batch, Snapshot, client, commit_optimistically, now, unchanged
from shared.errors import Unauthenticated
from shared.settings import get_settings

_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")  # token_urlsafe(32)


class RefreshRequest(BaseModel):
    """Body of ``POST /refresh`` and ``POST /logout``."""

    model_config = ConfigDict(
        extra="forbid",
        hide_input_in_errors=True,
        use_attribute_docstrings=True,
        json_schema_extra={"examples": [{"refresh_token": "Jb3q0mV8m8XGqkQm2lY3vQ0tqz9m1xkqf7W0e2Ck1yA"}]},
    )

    refresh_token: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    """The ``refresh_token`` of the last signup, login or refresh."""


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _tokens() -> firestore.CollectionReference:
    return client().collection("refresh_tokens")


def _families() -> firestore.CollectionReference:
    return client().collection("refresh_families")


def _expiry(at: datetime) -> datetime:
    return at + timedelta(seconds=get_settings().refresh_ttl_seconds)


def _stage_token(
    batch: Batch, user_id: str, family_id: str, at: datetime, *, receipt: bool = True
) -> tuple[str, str]:
    """Stage a new token of ``family_id`` (the round's receipt unless told): the token and its hash."""
    token = secrets.token_urlsafe(32)
    ref = _tokens().document(_hash(token))
    document = {
        "user_id": user_id,
        "family_id": family_id,
        "created_at": at,
        "expires_at": _expiry(at),
        "used_at": None,
    }
    batch.create(ref, batch.receipt(ref, document) if receipt else document)
    return token, ref.id


def stage_start(batch: Batch, user_id: str, at: datetime, *, receipt: bool = False) -> str:
    """Stage a new family and its first token in ``batch``; the token. Signup's commit keeps its
    own receipt; ``receipt`` makes the token the round's."""
    family = _families().document(uuid.uuid4().hex)
    token, token_hash = _stage_token(batch, user_id, family.id, at, receipt=receipt)
    batch.create(
        family,
        {
            "user_id": user_id,
            "current": token_hash,
            "created_at": at,
            "rotated_at": at,
            "expires_at": _expiry(at),
            "revoked_at": None,
            "revoked_reason": None,
        },
    )
    return token


def start(user_id: str) -> str:
    """A new family for a sign-in (login), committed; its first refresh token."""
    return commit_optimistically(lambda batch: stage_start(batch, user_id, now(), receipt=True))


class _Outcome(Enum):
    ROTATED = "rotated"
    REUSED = "reused"


def _read(token: str) -> tuple[Snapshot, Snapshot] | None:
    """The token's document and its family's, or None if either is unknown."""
    if not _TOKEN.fullmatch(token):
        return None  # garbage costs no read
    seen = _tokens().document(_hash(token)).get()
    if not seen.exists:
        return None
    family = _families().document(str(seen.get("family_id"))).get()
    return (seen, family) if family.exists else None


def refresh(token: str) -> tuple[str, str]:
    """Exchange a live refresh token: the user id and the next refresh token of its family.

    ``401`` ``invalid_refresh_token`` (unknown, or its family revoked), ``refresh_token_expired``,
    or ``refresh_token_reused`` (retired already: the family is revoked here)."""

    def decide(batch: Batch) -> tuple[_Outcome, str, str]:
        found = _read(token)
        if found is None:
            raise Unauthenticated("the refresh token is invalid", code="invalid_refresh_token")
        seen, family = found
        data, at = seen.to_dict() or {}, now()
        if data.get("used_at") is not None:
            # Reuse: revoke the family (guarded, so a rotation racing this one cannot outlive it).
            if family.get("revoked_at") is None:
                revoked = {"revoked_at": at, "revoked_reason": "reused"}
                batch.update(
                    family.reference, batch.receipt(family.reference, revoked), option=unchanged(family)
                )
            return _Outcome.REUSED, "", ""
        if family.get("revoked_at") is not None:
            raise Unauthenticated("the refresh token was revoked", code="invalid_refresh_token")
        if data["expires_at"] <= at:
            raise Unauthenticated(
                "the refresh token has expired: sign in again", code="refresh_token_expired"
            )
        batch.update(seen.reference, {"used_at": at}, option=unchanged(seen))
        user_id = str(data["user_id"])
        following, following_hash = _stage_token(batch, user_id, family.id, at)
        rotated = {"current": following_hash, "rotated_at": at, "expires_at": _expiry(at)}
        batch.update(family.reference, rotated, option=unchanged(family))
        return _Outcome.ROTATED, user_id, following

    outcome, user_id, following = commit_optimistically(decide)
    if outcome is _Outcome.REUSED:
        raise Unauthenticated(
            "this refresh token was already used: every session of this sign-in is revoked",
            code="refresh_token_reused",
        )
    return user_id, following


def logout(token: str) -> None:
    """Revoke the token's family; an unknown, expired or already revoked one is the same no-op."""

    def decide(batch: Batch) -> None:
        found = _read(token)
        if found is None:
            return None
        _, family = found
        if family.get("revoked_at") is None:
            revoked: dict[str, Any] = {"revoked_at": now(), "revoked_reason": "logout"}
            batch.update(family.reference, batch.receipt(family.reference, revoked), option=unchanged(family))
        return None

    commit_optimistically(decide)
