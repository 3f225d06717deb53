"""The username rule, in one place: signup, login and admin grants must agree on it.

A username is 3-32 of ``[a-z0-9_.-]`` and is stored lower-case, so ``Alice`` and
``alice`` are one account. It may not both start and end with ``__``: it is the id of
its ``usernames/{username}`` document, and Firestore reserves ids like ``__x__``.

It lives in its own module because both ``shared.auth`` and ``shared.credits``
validate usernames and look accounts up by them, and ``shared.auth`` imports
``shared.credits``. Signup creates ``usernames/{username}`` (``{user_id}``) in the
account's own batch; ``find_account`` and ``account`` are the one way to follow it.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, StringConstraints

from shared.db import Snapshot, client
from shared.errors import NotFound

MIN_LENGTH, MAX_LENGTH = 3, 32
_ALLOWED = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_.-")
_RESERVED = re.compile(r"__.*__")  # Firestore's reserved document ids
FIREBASE_PREFIX = "fb-"
"""Starts the username of every account opened by a Firebase sign-in; signup refuses it."""


def normalise(value: str) -> str:
    """``value`` lower-cased; ``ValueError`` if it has a character a username may not have,
    or is a reserved id."""
    # ASCII first: str.lower() maps some other letters into a-z (the Kelvin sign to "k").
    if not value.isascii():
        raise ValueError("may contain only a-z, 0-9, '_', '.', '-'")
    value = value.lower()
    if not set(value) <= _ALLOWED:
        raise ValueError("may contain only a-z, 0-9, '_', '.', '-'")
    if _reserved(value):
        raise ValueError("may not both start and end with '__'")
    return value


def _reserved(value: str) -> bool:
    return _RESERVED.fullmatch(value) is not None


def is_valid(value: str) -> bool:
    """Whether ``value`` could name an account (used before a lookup by a path segment)."""
    lowered = value.lower()
    return (
        MIN_LENGTH <= len(value) <= MAX_LENGTH
        and value.isascii()
        and set(lowered) <= _ALLOWED
        and not _reserved(lowered)
    )


Username = Annotated[
    str,
    StringConstraints(min_length=MIN_LENGTH, max_length=MAX_LENGTH, pattern=r"^[A-Za-z0-9_.-]+$"),
    AfterValidator(normalise),
]
"""A pydantic field type: length-checked, then lower-cased and checked character by character."""


def find_account(username: str, field_paths: list[str] | None = None) -> Snapshot | None:
    """The user document of ``username`` (any case), or ``None`` if no account has it."""
    # Checked first: a path segment such as ``__x__`` is not even a valid document id.
    if not is_valid(username):
        return None
    link = client().collection("usernames").document(username.lower()).get()
    if not link.exists:
        return None
    user = client().collection("users").document(link.get("user_id")).get(field_paths=field_paths)
    return user if user.exists else None


def account(username: str, field_paths: list[str] | None = None) -> Snapshot:
    """The user document of ``username`` (any case); ``NotFound`` ``user_not_found`` if none."""
    user = find_account(username, field_paths)
    if user is None:
        raise NotFound("no user has this username", code="user_not_found")
    return user
