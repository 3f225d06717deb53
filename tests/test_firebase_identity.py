"""Firebase Authentication ID tokens as bearers, on the real Firebase Auth emulator.

Users are made with the emulator's REST API (as a web page's Firebase SDK makes them) and
changed with firebase-admin (as a Firebase console would: disabled, revoked, deleted).

The emulator's tokens are unsigned, and firebase-admin takes them only in emulator mode: a
signature cannot be tested here. What the emulator lets us prove is everything around it
(audience, issuer, subject, revocation, the account), and that outside emulator mode an
unsigned token is refused before any key is fetched.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import uuid
from typing import Any

import pytest
import requests
from conftest import PASSWORD, ROOT, Api, at_once, books

from scripts.stack import PROJECT, Stack


def sign_up(stack: Stack) -> tuple[str, str, str]:
    """A new emulator user: (ID token, uid, email)."""
    email = f"{uuid.uuid4().hex[:12]}@example.com"
    body = _identity(stack, "accounts:signUp", email)
    return body["idToken"], body["localId"], email


def sign_in(stack: Stack, email: str) -> str:
    return str(_identity(stack, "accounts:signInWithPassword", email)["idToken"])


def _identity(stack: Stack, method: str, email: str) -> dict[str, Any]:
    url = f"http://127.0.0.1:{stack.auth_port}/identitytoolkit.googleapis.com/v1/{method}?key=any"
    response = requests.post(
        url, json={"email": email, "password": PASSWORD, "returnSecureToken": True}, timeout=30
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def _admin() -> Any:
    """firebase-admin against the emulator (FIREBASE_AUTH_EMULATOR_HOST is the stack's)."""
    import firebase_admin
    from firebase_admin import auth

    try:
        app = firebase_admin.get_app("tests")
    except ValueError:
        app = firebase_admin.initialize_app(options={"projectId": PROJECT}, name="tests")
    return auth.Client(app)


def _segment(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def _reissued(token: str, **changes: Any) -> str:
    """``token`` with claims changed (the emulator's tokens are unsigned: so is this one)."""
    header, _, signature = token.split(".")
    return f"{header}.{_segment(_claims(token) | changes)}.{signature}"


def _link(uid: str) -> dict[str, Any]:
    import hashlib

    from shared.db import client

    snapshot = client().collection("firebase_users").document(hashlib.sha256(uid.encode()).hexdigest()).get()
    assert snapshot.exists
    return dict(snapshot.to_dict() or {})


def _accounts_of(uid: str) -> list[str]:
    from google.cloud.firestore import FieldFilter

    from shared.db import client

    found = client().collection("users").where(filter=FieldFilter("firebase_uid", "==", uid)).stream()
    return [d.id for d in found]


def test_first_call_opens_the_account_with_the_signup_grant(api: Api, stack: Stack) -> None:
    token, uid, _ = sign_up(stack)
    first = api.call("GET", "/me", token)
    assert first.status_code == 200, first.text
    me = first.json()
    assert me["credits"] == 10 and me["username"].startswith("fb-")
    assert _link(uid)["user_id"] == me["id"]
    ledger = books(me["id"])["ledger"]
    assert list(ledger) == ["grant-signup"] and ledger["grant-signup"]["amount"] == 10

    again = api.call("GET", "/me", token)
    assert again.status_code == 200 and again.json()["id"] == me["id"]
    assert books(me["id"])["ledger"] == ledger, "no second grant"
    assert _accounts_of(uid) == [me["id"]]


def test_racing_first_calls_open_one_account(api: Api, stack: Stack) -> None:
    token, uid, _ = sign_up(stack)
    answers = at_once(10, lambda _: api.call("GET", "/me", token))
    assert [a.status_code for a in answers] == [200] * 10, [a.text for a in answers]
    ids = {a.json()["id"] for a in answers}
    assert len(ids) == 1 and _accounts_of(uid) == list(ids)
    (user_id,) = ids
    assert list(books(user_id)["ledger"]) == ["grant-signup"] and books(user_id)["balance"] == 10


def test_tampered_and_foreign_tokens_are_refused(api: Api, stack: Stack) -> None:
    token, uid, _ = sign_up(stack)
    assert api.call("GET", "/me", token).status_code == 200
    header, payload, signature = token.split(".")
    broken = payload[:10] + ("A" if payload[10] != "A" else "B") + payload[11:]
    other = f"demo-other-{uuid.uuid4().hex[:6]}"
    for bad in (
        f"{header}.{broken}.{signature}",  # a character of the payload changed: not JSON any more
        _reissued(token, aud=other, iss=f"https://securetoken.google.com/{other}"),  # another project
        _reissued(token, sub="nobody-" + uid, user_id="nobody-" + uid),  # a user the emulator lacks
        _reissued(token, sub=""),
    ):
        refused = api.call("GET", "/me", bad)
        assert refused.status_code == 401, (bad, refused.text)
        assert refused.json()["error"]["code"] == "invalid_token"


def test_disabled_revoked_and_deleted_users_are_refused_at_once(api: Api, stack: Stack) -> None:
    admin = _admin()
    token, uid, email = sign_up(stack)
    user_id = api.call("GET", "/me", token).json()["id"]

    admin.update_user(uid, disabled=True)
    assert api.call("GET", "/me", token).status_code == 401
    admin.update_user(uid, disabled=False)
    assert api.call("GET", "/me", token).status_code == 200

    time.sleep(1.1)  # revocation counts in whole seconds: a token of the same second stays valid
    admin.revoke_refresh_tokens(uid)
    revoked = api.call("GET", "/me", token)
    assert revoked.status_code == 401 and revoked.json()["error"]["code"] == "invalid_token"
    fresh = api.call("GET", "/me", sign_in(stack, email))
    assert fresh.status_code == 200 and fresh.json()["id"] == user_id, "signing in again: same account"

    admin.delete_user(uid)
    assert api.call("GET", "/me", token).status_code == 401


def test_a_firebase_account_submits_a_job_and_has_no_password(api: Api, stack: Stack) -> None:
    token, _, _ = sign_up(stack)
    submitted = api.submit(token)
    assert submitted.status_code == 202, submitted.text
    assert api.wait(token, submitted.json()["job_id"])["status"] == "completed"
    me = api.call("GET", "/me", token).json()
    assert me["credits"] < 10

    for password in (PASSWORD, "not-a-real-password"):  # the second: what unknown names are checked with
        login = api.call("POST", "/login", json={"username": me["username"], "password": password})
        assert login.status_code == 401 and login.json()["error"]["code"] == "invalid_credentials"
    squat = api.call("POST", "/signup", json={"username": "fb-someone-else", "password": PASSWORD})
    assert squat.status_code == 409, "the prefix of Firebase accounts cannot be signed up for"


def test_outside_emulator_mode_an_emulator_token_is_refused(stack: Stack) -> None:
    """Production's firebase-admin (no FIREBASE_AUTH_EMULATOR_HOST) wants Google's RS256
    signature: the emulator's unsigned token is refused, with no network call to learn it."""
    token, _, _ = sign_up(stack)
    code = f"""
import sys, firebase_admin, google.auth.credentials
from firebase_admin import auth, credentials

class Anonymous(credentials.Base):  # no Google credentials here; none are needed to refuse
    def get_credential(self):
        return google.auth.credentials.AnonymousCredentials()

app = firebase_admin.initialize_app(Anonymous(), options={{"projectId": {PROJECT!r}}})
try:
    auth.verify_id_token(sys.argv[1], app=app)
except auth.InvalidIdTokenError as error:
    print("refused:", error)
"""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(ROOT)}
    found = subprocess.run(
        [sys.executable, "-c", code, token], capture_output=True, text=True, env=env, timeout=60
    )
    assert found.stdout.startswith("refused:") and '"kid"' in found.stdout, found.stdout + found.stderr


def test_firebase_admin_is_imported_only_when_a_firebase_token_arrives() -> None:
    """A cold start that never sees a Firebase token does not pay for firebase-admin."""
    code = (
        "import sys, shared.auth, shared.web; import functions.me, functions.submit_job;"
        " print('firebase_admin' in sys.modules)"
    )
    found = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    assert found.stdout.strip() == "False", found.stderr


@pytest.mark.parametrize("host", ["127.0.0.1:9099", "localhost:9099"])
def test_production_refuses_the_auth_emulator(host: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from shared.settings import Settings

    monkeypatch.delenv("FIRESTORE_EMULATOR_HOST", raising=False)
    monkeypatch.delenv("TASKS_EMULATOR_HOST", raising=False)
    with pytest.raises(ValidationError, match="FIREBASE_AUTH_EMULATOR_HOST is set"):
        Settings(app_env="production", firebase_auth_emulator_host=host)
