"""Accounts and access tokens.

Documents:
- ``users/{user_id}``: ``{username, password_hash, role, created_at}`` (the
  balance fields belong to ``shared.credits``).
- ``usernames/{username}``: ``{user_id}``; created with the user in one batch,
  so a lower-cased username is taken at most once, even by racing signups.

Passwords are hashed with argon2id and never stored, logged or echoed.
Tokens are HS256 JWTs with ``sub`` = user id; only HS256 is accepted, so
``alg: none`` and algorithm-confusion tokens are refused.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Annotated, Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from shared import credits
from shared.db import client, commit_optimistically, now
from shared.errors import Conflict, Unauthenticated
from shared.settings import get_settings

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
# Verified against when the username is unknown, so both failures cost the same time.
_DUMMY_HASH = _hasher.hash("not-a-real-password")
_ALGORITHM = "HS256"


class UserCredentials(BaseModel):
    """Body of ``signup`` and ``login``."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    username: Annotated[str, StringConstraints(min_length=3, max_length=32)]
    password: Annotated[str, StringConstraints(min_length=8, max_length=128)] = Field(repr=False)

    @field_validator("username")
    @classmethod
    def _username(cls, value: str) -> str:
        value = value.lower()
        if not all(c.isascii() and (c.isalnum() or c in "_.-") for c in value):
            raise ValueError("may contain only a-z, 0-9, '_', '.', '-'")
        return value


class UserPublic(BaseModel):
    id: str
    username: str
    credits: int
    created_at: datetime


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int


def _users() -> Any:
    return client().collection("users")


def issue_token(user_id: str) -> Token:
    settings = get_settings()
    assert settings.jwt_secret is not None  # settings validation guarantees it outside local
    issued = now()
    claims = {"sub": user_id, "iat": issued, "exp": issued + timedelta(seconds=settings.jwt_ttl_seconds)}
    token = jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm=_ALGORITHM)
    return Token(access_token=token, expires_in=settings.jwt_ttl_seconds)


def verify_token(authorization: str | None) -> str:
    """The user id in a valid ``Authorization: Bearer`` header, else ``Unauthenticated``."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("send Authorization: Bearer <access_token>")
    secret = get_settings().jwt_secret
    assert secret is not None
    try:
        claims = jwt.decode(
            token.strip(),
            secret.get_secret_value(),
            algorithms=[_ALGORITHM],
            options={"require": ["sub", "exp", "iat"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("the access token has expired", code="token_expired") from None
    except jwt.InvalidTokenError:
        raise Unauthenticated("the access token is invalid", code="invalid_token") from None
    subject = claims["sub"]
    if not isinstance(subject, str) or not subject:
        raise Unauthenticated("the access token is invalid", code="invalid_token")
    return subject


def signup(credentials: UserCredentials) -> tuple[UserPublic, Token]:
    """Create an account with the signup grant; ``Conflict`` if the username is taken."""
    settings = get_settings()
    user_id = uuid.uuid4().hex
    created = now()
    profile = {
        "username": credentials.username,
        "password_hash": _hasher.hash(credentials.password),
        "role": "user",
        "created_at": created,
    }
    name_ref = client().collection("usernames").document(credentials.username)

    def decide(batch: Any) -> None:
        if name_ref.get().exists:
            raise Conflict("this username is taken", code="username_taken")
        batch.create(name_ref, {"user_id": user_id})
        credits.stage_open_account(batch, user_id, profile, settings.signup_credits, created)

    commit_optimistically(decide)
    user = UserPublic(
        id=user_id, username=credentials.username, credits=settings.signup_credits, created_at=created
    )
    return user, issue_token(user_id)


def login(credentials: UserCredentials) -> Token:
    """A token for the right password; the same ``Unauthenticated`` for any other case."""
    wrong = Unauthenticated("wrong username or password", code="invalid_credentials")
    name = client().collection("usernames").document(credentials.username).get()
    user = _users().document(name.get("user_id")).get() if name.exists else None
    stored = user.get("password_hash") if user is not None and user.exists else _DUMMY_HASH
    try:
        _hasher.verify(stored, credentials.password)
    except (VerificationError, InvalidHashError):
        raise wrong from None
    if user is None or not user.exists:
        raise wrong
    return issue_token(user.id)


def get_user(user_id: str) -> UserPublic:
    """The account behind a token; a deleted account's token is no longer valid."""
    snapshot = _users().document(user_id).get(field_paths=["username", "credits", "created_at"])
    if not snapshot.exists:
        raise Unauthenticated("the account no longer exists", code="invalid_token")
    return UserPublic(id=snapshot.id, **snapshot.to_dict())
