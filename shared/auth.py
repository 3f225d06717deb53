"""Accounts and access tokens.

Documents:
- ``users/{user_id}``: ``{username, password_hash, role, created_at}`` (the
  balance is its wallet, ``users/{user_id}/wallet/*``, owned by ``shared.credits``).
- ``usernames/{username}``: ``{user_id}``; created with the user in one batch,
  so a lower-cased username is taken at most once, even by racing signups.

Passwords are hashed with argon2id and never stored, logged or echoed.
Tokens are HS256 JWTs with ``sub`` = user id; only HS256 is accepted, so
``alg: none`` and algorithm-confusion tokens are refused.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from functools import cache
from typing import Annotated, Any, Literal, get_args

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from shared import credits, limits, sessions, usernames
from shared.db import Batch, Snapshot, client, commit_optimistically, now, unchanged
from shared.errors import Conflict, Forbidden, InvalidRequest, Unauthenticated
from shared.settings import get_settings
from shared.usernames import Username

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters


@cache
def _dummy_hash() -> str:
    """Verified against when the username is unknown, so both failures cost the same time.

    Made on first use: hashing costs ~150 ms, which no cold start should pay.
    """
    return _hasher.hash("not-a-real-password")


_ALGORITHM = "HS256"
_NO_USER = "0" * 32  # never a user id (those are uuid4 hex, whose 13th digit is 4)


class UserCredentials(BaseModel):
    """Body of ``signup`` and ``login``."""

    model_config = ConfigDict(
        extra="forbid",
        hide_input_in_errors=True,
        json_schema_extra={"examples": [{"username": "ada", "password": "correct-horse-battery"}]},
    )

    username: Username
    password: Annotated[str, StringConstraints(min_length=8, max_length=128)] = Field(repr=False)


class UserPublic(BaseModel):
    id: str
    username: str
    credits: int
    created_at: datetime


class Token(BaseModel):
    """Answer to ``login``: a bearer token for the ``Authorization`` header."""

    access_token: str
    token_type: str = "bearer"
    expires_in: int
    """Seconds until the token expires."""


class Session(Token):
    """Answer to ``login`` and ``refresh``: an access token and the refresh token that renews it."""

    refresh_token: str
    """Opaque; exchange it at ``POST /refresh`` for the next pair (it is then retired)."""


class AccountSummary(BaseModel):
    id: str
    username: str
    credits: int


class SignupPublic(Session):
    """Answer to ``signup``: the new account's token and the account with its signup credits."""

    user: AccountSummary


Role = Literal["user", "admin"]


class UserAdmin(BaseModel):
    """An account as an admin sees it: never the password hash."""

    id: str
    username: str
    role: Role
    credits: int
    created_at: datetime


class UserPage(BaseModel):
    """A page of accounts; ``next_cursor`` is null on the last page."""

    users: list[UserAdmin]
    next_cursor: str | None


class UserAdminDetail(UserAdmin):
    jobs: dict[str, int]
    """How many of the user's jobs are in each status (every status present, zeros included)."""


def _users() -> Any:
    return client().collection("users")


def issue_token(user_id: str) -> Token:
    settings = get_settings()
    assert settings.jwt_secret is not None  # settings validation guarantees it outside local
    issued = now()
    claims = {"sub": user_id, "iat": issued, "exp": issued + timedelta(seconds=settings.jwt_ttl_seconds)}
    token = jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm=_ALGORITHM)
    return Token(access_token=token, expires_in=settings.jwt_ttl_seconds)


API_KEY_PREFIX = "aij_"
"""What every API key starts with (``aij_live_...``), so it is told from a token at a glance."""


def verify_token(authorization: str | None, *, api_keys: bool = True) -> str:
    """The user id in a valid ``Authorization: Bearer`` header, else ``Unauthenticated``.

    The bearer is one of three kinds, told apart by its shape: an API key (``aij_...``;
    refused where ``api_keys`` is false: managing keys and passwords), a Firebase
    Authentication ID token (a JWT signed by Google, RS256), or this service's own access
    token (HS256). Each kind's module is imported only when such a bearer arrives."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("send Authorization: Bearer <access_token>")
    token = token.strip()
    if token.startswith(API_KEY_PREFIX):
        if not api_keys:
            raise Forbidden("an API key cannot do this: sign in with a password", code="api_key_not_allowed")
        from shared import api_keys as keys

        return keys.verify(token)
    if _foreign_jwt(token):
        from shared import firebase_identity

        return firebase_identity.verify(token)
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


def _foreign_jwt(token: str) -> bool:
    """Whether ``token`` is a JWT not signed the way this service signs its own."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        return False  # not a JWT at all: ours refuses it below, with the usual answer
    return header.get("alg") != _ALGORITHM


def signup(credentials: UserCredentials) -> tuple[UserPublic, Session]:
    """Create an account with the signup grant; ``Conflict`` if the username is taken."""
    if credentials.username.startswith(usernames.FIREBASE_PREFIX):
        # Firebase sign-ins' accounts are named so: a squatted name would lock one out.
        raise Conflict("this username is taken", code="username_taken")
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

    def decide(batch: Batch) -> str:
        if name_ref.get().exists:
            raise Conflict("this username is taken", code="username_taken")
        batch.create(name_ref, batch.receipt(name_ref, {"user_id": user_id}))
        credits.stage_open_account(batch, user_id, profile, settings.signup_credits, created)
        return sessions.stage_start(batch, user_id, created)  # the sign-in lands with the account

    refresh_token = commit_optimistically(decide)
    user = UserPublic(
        id=user_id, username=credentials.username, credits=settings.signup_credits, created_at=created
    )
    return user, session(user_id, refresh_token)


def session(user_id: str, refresh_token: str) -> Session:
    """A fresh access token with ``refresh_token`` beside it."""
    return Session(**issue_token(user_id).model_dump(), refresh_token=refresh_token)


def login(credentials: UserCredentials) -> Session:
    """A token for the right password; the same ``Unauthenticated`` for any other case.

    Each attempt first takes one of the username's password checks (429 when none is left,
    known or not), so a burst of guesses cannot get more checks than the limit.
    """
    slot = limits.take_login_slot(credentials.username)
    user = usernames.find_account(credentials.username, ["password_hash"])
    if user is None:
        # find_account stopped after the username link; a known name also reads the user.
        # One more (missing) read makes both cost the same round trips.
        _users().document(_NO_USER).get(field_paths=["password_hash"])
    # An account opened by a Firebase sign-in has no password: it fails like an unknown name.
    stored = (user.to_dict() or {}).get("password_hash") if user is not None else None
    try:
        _hasher.verify(stored or _dummy_hash(), credentials.password)
        if user is None or stored is None:
            raise VerificationError
    except (VerificationError, InvalidHashError):
        raise Unauthenticated("wrong username or password", code="invalid_credentials") from None
    limits.login_succeeded(slot)
    return session(user.id, sessions.start(user.id))


def get_user(user_id: str) -> UserPublic:
    """The account behind a token; a deleted account's token is no longer valid."""
    snapshot = _users().document(user_id).get(field_paths=["username", "created_at"])
    if not snapshot.exists:
        raise Unauthenticated("the account no longer exists", code="invalid_token")
    return UserPublic(id=snapshot.id, credits=credits.balance(user_id), **snapshot.to_dict())


# -- admin ---------------------------------------------------------------------------------------
# The role lives on the user document (``role: user|admin``) and is read on every admin call,
# not put in the token: revoking an admin takes effect at once, not when a token expires.
_ADMIN_FIELDS = ["username", "role", "created_at"]


def require_admin(user_id: str) -> None:
    """Refuse (``Forbidden``) anyone whose account is not an admin one; a vanished account is 401."""
    snapshot = _users().document(user_id).get(field_paths=["role"])
    if not snapshot.exists:
        raise Unauthenticated("the account no longer exists", code="invalid_token")
    if (snapshot.to_dict() or {}).get("role") != "admin":
        raise Forbidden("this needs an admin account", code="admin_only")


def set_role(username: str, role: Role) -> None:
    """Make ``username`` an admin or a plain user again (``scripts/grant --make-admin``)."""
    if role not in get_args(Role):
        raise InvalidRequest(f"role must be one of {', '.join(get_args(Role))}", code="invalid_role")

    def decide(batch: Any) -> None:
        user = usernames.account(username)
        if user.get("role") != role:  # already so: nothing to write
            batch.update(user.reference, {"role": role}, option=unchanged(user))

    commit_optimistically(decide)


def _admin_view(snapshot: Snapshot) -> UserAdmin:
    data = snapshot.to_dict() or {}
    return UserAdmin(
        id=snapshot.id,
        username=data["username"],
        role=data.get("role", "user"),
        credits=credits.balance(snapshot.id),
        created_at=data["created_at"],
    )


def list_users(limit: int, cursor: str | None) -> tuple[list[UserAdmin], str | None]:
    """A page of accounts ordered by username; ``cursor`` is the last user id of the previous page.

    The cursor is the user id rather than the username: usernames may contain ``.``, which
    ``shared.web.page`` does not accept in a cursor, and an id is opaque like every other cursor.
    """
    query = _users().select(_ADMIN_FIELDS).order_by("username")
    if cursor:
        last = _users().document(cursor).get(field_paths=["username"])
        if not last.exists:
            raise InvalidRequest("unknown cursor", code="invalid_cursor")
        query = query.start_after(last)
    docs = list(query.limit(limit + 1).stream())
    users = [_admin_view(d) for d in docs[:limit]]
    return users, (users[-1].id if len(docs) > limit else None)


def _job_counts(user_id: str) -> dict[str, int]:
    """One aggregation count per status: the server counts, no job document is read."""
    from google.cloud.firestore import FieldFilter

    # Imported here: only the admin function needs the job statuses, signup and login do not.
    from shared.jobs import Status

    jobs = client().collection("jobs").where(filter=FieldFilter("user_id", "==", user_id))
    counts: dict[str, int] = {}
    for status in get_args(Status):
        # Any: the library annotates count() as returning a class; it returns a query whose
        # get() gives one row per aggregation set, each a list of results.
        counted: Any = jobs.where(filter=FieldFilter("status", "==", status)).count()
        counts[status] = int(counted.get()[0][0].value)
    return counts


def get_user_by_username(username: str) -> UserAdminDetail:
    """An account with its balance, role and job counts; ``NotFound`` ``user_not_found``."""
    user = _admin_view(usernames.account(username, _ADMIN_FIELDS))
    return UserAdminDetail(**user.model_dump(), jobs=_job_counts(user.id))
