"""API keys: long-lived bearers for programs, ``Authorization: Bearer aij_live_...``.

Documents:
- ``api_keys/{sha256 of the key}``: ``{user_id, key_id, last_used_at}``, the lookup: verifying
  a key is one read of the document named by its hash. Deleted on revocation, so a revoked key
  is unknown at once (no cache anywhere).
- ``users/{user_id}/api_keys/{key_id}``: ``{name, prefix, key_hash, created_at}``, what the
  owner lists; ``key_id`` is a random id, never the hash.
- ``api_key_owners/{user_id}``: ``{count}``, the number of live keys, written with each create
  and revoke under a precondition: the per-user limit holds under racing creates.

Only the SHA-256 of a key is stored. A slow hash (argon2, as for passwords) defends guessable
secrets against a stolen database; a key is 32 random bytes (256 bits) from ``secrets``, so
no dictionary exists and brute force over 2^256 is hopeless at any hash speed. A fast hash
also keeps verification, which runs on every request made with a key, at one read and no CPU.

``last_used_at`` is written at most once per ``API_KEY_TOUCH_SECONDS`` per key (guarded by the
read: racing requests write it once), so a busy key costs one write a minute, not one a request.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import uuid
from datetime import datetime, timedelta
from typing import Annotated

from google.api_core import exceptions as gexc
from google.cloud import firestore
from pydantic import BaseModel, ConfigDict, StringConstraints

from shared.db import (
    Batch,
    Snapshot,
    client,
    commit_optimistically,
    newest_first,
    now,
    stage_count_down,
    stage_count_up,
    unchanged,
)
from shared.errors import InvalidRequest, NotFound, Unauthenticated
from shared.settings import get_settings

logger = logging.getLogger("aijobs")

KEY_PREFIX = "aij_live_"
"""What every key starts with: recognisable in a config file and by secret scanners."""
_KEY = re.compile(r"aij_live_[A-Za-z0-9_-]{43}")  # token_urlsafe(32): 43 characters
_SHOWN = len(KEY_PREFIX) + 4
"""How much of a key ``prefix`` keeps: enough to tell keys apart, far too little to guess one."""
_ID = re.compile(r"[0-9a-f]{32}")


class ApiKeyCreate(BaseModel):
    """Body of ``POST /api_keys``."""

    model_config = ConfigDict(
        extra="forbid",
        use_attribute_docstrings=True,
        json_schema_extra={"examples": [{"name": "nightly batch"}]},
    )

    name: Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"\S")]
    """For people: which program holds the key."""


class ApiKeyPublic(BaseModel):
    """A key as its owner sees it: never the key itself after creation."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    id: str
    name: str
    prefix: str
    """The key's first characters (``aij_live_AbCd``), to recognise it."""
    created_at: datetime
    last_used_at: datetime | None
    """Last request made with the key, to the minute (``API_KEY_TOUCH_SECONDS``); null if never."""


class ApiKeySecret(ApiKeyPublic):
    """Answer of ``POST /api_keys``: the key, shown this once (only its hash is kept)."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    key: str
    """Send it as ``Authorization: Bearer <key>``."""


class ApiKeyPage(BaseModel):
    """A page of keys, newest first; ``next_cursor`` is null on the last page."""

    api_keys: list[ApiKeyPublic]
    next_cursor: str | None


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _lookups() -> firestore.CollectionReference:
    return client().collection("api_keys")


def _keys(user_id: str) -> firestore.CollectionReference:
    return client().collection("users").document(user_id).collection("api_keys")


def _owner(user_id: str) -> firestore.DocumentReference:
    return client().collection("api_key_owners").document(user_id)


def _owned(user_id: str, key_id: str) -> Snapshot:
    """The key, if ``user_id`` owns it; another user's is indistinguishable from none."""
    snapshot = _keys(user_id).document(key_id).get() if _ID.fullmatch(key_id) else None
    if snapshot is None or not snapshot.exists:
        raise NotFound("no such API key", code="api_key_not_found")
    return snapshot


def create(user_id: str, body: ApiKeyCreate) -> ApiKeySecret:
    """A new key for ``user_id``; the key is in this answer only."""
    settings = get_settings()
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    key_hash = _hash(key)
    ref, lookup = _keys(user_id).document(uuid.uuid4().hex), _lookups().document(key_hash)
    name = body.name.strip()

    def decide(batch: Batch) -> datetime:
        at = now()
        limit = settings.api_key_max_per_user
        full = InvalidRequest(
            f"at most {limit} API keys per account: revoke one first", code="too_many_api_keys"
        )
        stage_count_up(batch, _owner(user_id), limit, full)
        batch.create(lookup, {"user_id": user_id, "key_id": ref.id, "last_used_at": None})
        document = {"name": name, "prefix": key[:_SHOWN], "key_hash": key_hash, "created_at": at}
        batch.create(ref, batch.receipt(ref, document))
        return at

    created = commit_optimistically(decide)
    return ApiKeySecret(
        id=ref.id, name=name, prefix=key[:_SHOWN], created_at=created, last_used_at=None, key=key
    )


def list_for(user_id: str, limit: int, cursor: str | None) -> ApiKeyPage:
    """A page of the user's keys, newest first; ``cursor`` is the last id of the previous page."""
    shown, more = newest_first(_keys(user_id), limit, cursor, lambda key_id: _owned(user_id, key_id))
    # last_used_at lives on the lookup, which verify already reads: one batched read for the page.
    lookups = client().get_all([_lookups().document(d.get("key_hash")) for d in shown])
    used = {s.id: (s.to_dict() or {}).get("last_used_at") for s in lookups if s.exists}
    found = [
        ApiKeyPublic(
            id=d.id,
            name=d.get("name"),
            prefix=d.get("prefix"),
            created_at=d.get("created_at"),
            last_used_at=used.get(d.get("key_hash")),
        )
        for d in shown
    ]
    return ApiKeyPage(api_keys=found, next_cursor=found[-1].id if more else None)


def delete(user_id: str, key_id: str) -> None:
    """Revoke a key at once: its lookup goes in the same commit, so the next request is refused."""
    _owned(user_id, key_id)
    ref = _keys(user_id).document(key_id)

    def decide(batch: Batch) -> None:
        seen = ref.get()
        if not seen.exists:
            return None  # revoked by a racing request: the same outcome
        stage_count_down(batch, _owner(user_id))
        batch.delete(_lookups().document(seen.get("key_hash")))
        batch.delete(ref, option=unchanged(seen))
        return None

    commit_optimistically(decide)


def verify(key: str) -> str:
    """The user id of an API key that is not revoked; ``401 invalid_api_key`` otherwise."""
    if not _KEY.fullmatch(key):
        raise Unauthenticated("the API key is invalid", code="invalid_api_key")  # no read for garbage
    lookup = _lookups().document(_hash(key)).get()
    if not lookup.exists:
        raise Unauthenticated("the API key is invalid", code="invalid_api_key")
    data = lookup.to_dict() or {}
    _touch(lookup, data.get("last_used_at"))
    return str(data["user_id"])


def _touch(lookup: Snapshot, last_used: datetime | None) -> None:
    """Note the use, if the last note is older than ``API_KEY_TOUCH_SECONDS``.

    Guarded by the read: of racing requests one writes, the others' writes fail and are dropped.
    A failure here never fails the request: the key was valid when read."""
    at = now()
    if last_used is not None and at - last_used < timedelta(seconds=get_settings().api_key_touch_seconds):
        return
    try:
        lookup.reference.update({"last_used_at": at}, option=unchanged(lookup))
    except (gexc.FailedPrecondition, gexc.NotFound):
        pass  # a racing request noted it, or the key was revoked just now
    except gexc.GoogleAPIError as exc:
        logger.warning("could not note an API key's use: %s", type(exc).__name__)
