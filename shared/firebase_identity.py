"""Firebase Authentication ID tokens as bearers, and the accounts of Firebase users.

Documents:
- ``firebase_users/{sha256(uid)}``: ``{uid, user_id}``; links a Firebase user to our account.
  It is created in the same batch as the account (``credits.stage_open_account``, the signup
  grant, the ``usernames/{username}`` link), so racing first calls of a new Firebase user
  create one account: every batch creates the link, one wins, the others re-read and find it.
  The id is a hash because a uid may hold characters a document id may not (``/``).

What is checked: ``auth.verify_id_token`` checks the signature (Google's keys, RS256), the
audience and issuer (``FIREBASE_PROJECT_ID``), the expiry and the subject; with
``check_revoked=True`` it then reads the Firebase user, so a disabled or deleted user, or a
token issued before ``revoke_refresh_tokens``, is refused at once rather than when its token
expires (an hour). That read is one call to the Auth backend per request, on every call with
a Firebase token, not only the ones that move credits: a call that reads a job or a balance
leaks as much as one that spends. The Auth emulator's tokens are unsigned and accepted only in
emulator mode (``FIREBASE_AUTH_EMULATOR_HOST``, which production settings refuse).

This module imports ``firebase_admin`` (~0.15 s): ``shared.auth`` imports it only when a
Firebase token arrives, so a cold start that never sees one never pays for it.
"""

from __future__ import annotations

import hashlib
import re
import threading
import uuid
from typing import Any

import firebase_admin
from firebase_admin import auth, exceptions

from shared import credits
from shared.db import Batch, client, commit_optimistically, now
from shared.errors import Unauthenticated, Unavailable
from shared.settings import get_settings
from shared.usernames import FIREBASE_PREFIX

_APP_NAME = "aijobs"
_lock = threading.Lock()
_NOT_USERNAME = re.compile(r"[^a-z0-9]")


def verify(token: str) -> str:
    """The user id of a Firebase ID token's account, created with the signup grant on its
    first call; ``Unauthenticated`` for any token that is not valid now."""
    settings = get_settings()
    if settings.is_local and not settings.firebase_auth_emulator_host:
        # No emulator to ask: the local stack would otherwise call the real Auth backend.
        raise Unauthenticated("the access token is invalid", code="invalid_token")
    try:
        claims = auth.verify_id_token(token, app=_app(), check_revoked=True)
    except auth.ExpiredIdTokenError:
        raise Unauthenticated("the access token has expired", code="token_expired") from None
    except (auth.InvalidIdTokenError, auth.UserDisabledError, auth.UserNotFoundError, ValueError):
        # Invalid or revoked (both InvalidIdTokenError), its user disabled or deleted.
        raise Unauthenticated("the access token is invalid", code="invalid_token") from None
    except exceptions.FirebaseError as exc:  # the keys or the user could not be fetched
        raise Unavailable(f"Firebase Authentication is unavailable: {type(exc).__name__}") from None
    if claims.get("firebase", {}).get("sign_in_provider") == "anonymous":
        # Anyone can mint anonymous users at will: each would be a fresh signup grant.
        raise Unauthenticated("sign in with a provider, not anonymously", code="invalid_token")
    return account_for(str(claims["uid"]))


def _app() -> firebase_admin.App:
    """This service's firebase-admin app (its own name: nothing else's settings leak in)."""
    with _lock:  # racing first calls must not both initialise it
        try:
            return firebase_admin.get_app(_APP_NAME)
        except ValueError:
            project = get_settings().firebase_project
            return firebase_admin.initialize_app(options={"projectId": project}, name=_APP_NAME)


def username_for(uid: str) -> str:
    """``fb-<start of the uid>-<hash>``: readable, within the username rules, and unique even
    for uids that differ only in case or in characters a username may not have."""
    readable = _NOT_USERNAME.sub("", uid.lower())[:12]
    return f"{FIREBASE_PREFIX}{readable}-{hashlib.sha256(uid.encode()).hexdigest()[:16]}"


def _link(uid: str) -> Any:
    return client().collection("firebase_users").document(hashlib.sha256(uid.encode()).hexdigest())


def account_for(uid: str) -> str:
    """The user id of the Firebase user ``uid``, its account opened on first use (exactly once)."""
    link_ref = _link(uid)
    link = link_ref.get()
    if link.exists:
        return str(link.get("user_id"))
    settings = get_settings()
    user_id = uuid.uuid4().hex
    created = now()
    username = username_for(uid)
    # No password_hash: a password login for this username fails like a wrong password.
    profile = {"username": username, "role": "user", "created_at": created, "firebase_uid": uid}

    def decide(batch: Batch) -> str:
        seen = link_ref.get()
        if seen.exists:  # a racing first call opened it
            return str(seen.get("user_id"))
        batch.create(link_ref, batch.receipt(link_ref, {"uid": uid, "user_id": user_id}))
        batch.create(client().collection("usernames").document(username), {"user_id": user_id})
        credits.stage_open_account(batch, user_id, profile, settings.signup_credits, created)
        return user_id

    return commit_optimistically(decide)
