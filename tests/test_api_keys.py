"""API keys end to end on the real emulators: shown once, hashed at rest, good on every user
function until revoked (at once), never for managing keys, limited per user under racing
creates, and ``last_used_at`` written at most once per ``API_KEY_TOUCH_SECONDS``."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from conftest import Api, at_once

from scripts.stack import Stack


def _create(api: Api, token: str, name: str = "ci") -> dict[str, Any]:
    response = api.call("POST", "/api_keys", token, json={"name": name})
    assert response.status_code == 201, response.text
    return dict(response.json())


def _lookup(key: str) -> Any:
    from shared.db import client

    return client().collection("api_keys").document(hashlib.sha256(key.encode()).hexdigest()).get()


def test_a_key_is_shown_once_and_works_on_every_user_function(api: Api) -> None:
    token, user = api.signup()
    created = _create(api, token, "nightly batch")
    key = created["key"]
    assert re.fullmatch(r"aij_live_[A-Za-z0-9_-]{43}", key)
    assert created["prefix"] == key[:13] and created["name"] == "nightly batch"
    assert created["last_used_at"] is None

    me = api.call("GET", "/me", key)
    assert me.status_code == 200 and me.json()["id"] == user["id"]
    submitted = api.submit(key)
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["job_id"]
    assert api.wait(key, job_id)["status"] == "completed"
    listed = api.call("GET", "/jobs", key)
    assert listed.status_code == 200 and job_id in [j["job_id"] for j in listed.json()["jobs"]]

    page = api.call("GET", "/api_keys", token).json()
    assert [k["id"] for k in page["api_keys"]] == [created["id"]]
    shown = page["api_keys"][0]
    assert "key" not in shown and shown["prefix"] == created["prefix"]
    assert shown["last_used_at"] is not None  # the calls above noted it
    assert key not in json.dumps(page)


def test_only_a_hash_is_stored(api: Api) -> None:
    from shared.db import client

    token, user = api.signup()
    created = _create(api, token)
    key = created["key"]
    lookup = _lookup(key)
    assert lookup.exists and lookup.get("user_id") == user["id"]
    db = client()
    stored = [
        lookup.to_dict(),
        db.collection("users")
        .document(user["id"])
        .collection("api_keys")
        .document(created["id"])
        .get()
        .to_dict(),
        db.collection("api_key_owners").document(user["id"]).get().to_dict(),
    ]
    text = json.dumps(stored, default=str)
    secret_part = key[len("aij_live_") :]
    assert key not in text and secret_part not in text and secret_part[4:20] not in text


def test_a_revoked_key_is_refused_at_once(api: Api) -> None:
    token, _ = api.signup()
    created = _create(api, token)
    assert api.call("GET", "/me", created["key"]).status_code == 200
    assert api.call("DELETE", f"/api_keys/{created['id']}", token).status_code == 204
    refused = api.call("GET", "/me", created["key"])
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
    assert refused.headers["WWW-Authenticate"] == "Bearer"
    assert not _lookup(created["key"]).exists
    assert api.call("GET", "/api_keys", token).json()["api_keys"] == []
    again = api.call("DELETE", f"/api_keys/{created['id']}", token)
    assert again.status_code == 404 and again.json()["error"]["code"] == "api_key_not_found"


@pytest.mark.parametrize(
    "key",
    ["aij_live_" + "A" * 43, "aij_live_short", "aij_test_" + "A" * 43, "aij_live_" + "A" * 43 + "x"],
)
def test_unknown_or_malformed_keys_are_refused(api: Api, key: str) -> None:
    refused = api.call("GET", "/me", key)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"


def test_a_key_cannot_manage_keys(api: Api) -> None:
    token, _ = api.signup()
    created = _create(api, token)
    key = created["key"]
    for method, path, body in [
        ("POST", "/api_keys", {"name": "more"}),
        ("GET", "/api_keys", None),
        ("DELETE", f"/api_keys/{created['id']}", None),
    ]:
        refused = api.call(method, path, key, json=body)
        assert refused.status_code == 403, (method, path, refused.text)
        assert refused.json()["error"]["code"] == "api_key_not_allowed"
    assert len(api.call("GET", "/api_keys", token).json()["api_keys"]) == 1
    assert api.call("GET", "/me", key).status_code == 200  # the key survived


def test_another_users_key_is_not_found(api: Api) -> None:
    token, _ = api.signup()
    other, _ = api.signup()
    created = _create(api, token)
    for key_id in (created["id"], "0" * 32, "not-an-id", "__x__"):
        refused = api.call("DELETE", f"/api_keys/{key_id}", other)
        assert refused.status_code == 404, (key_id, refused.text)
        assert refused.json()["error"]["code"] in ("api_key_not_found", "route_not_found")
    assert api.call("GET", "/me", created["key"]).status_code == 200
    assert api.call("GET", "/api_keys", other).json()["api_keys"] == []


def test_the_limit_holds_under_racing_creates(api: Api, functions_server: Callable[..., str]) -> None:
    base = functions_server(API_KEY_MAX_PER_USER="3")
    limited = Api(base)
    token, user = limited.signup()
    answers = at_once(8, lambda i: limited.call("POST", "/api_keys", token, json={"name": f"k{i}"}))
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [201] * 3 + [422] * 5, [r.text for r in answers]
    assert {r.json()["error"]["code"] for r in answers if r.status_code == 422} == {"too_many_api_keys"}
    listed = limited.call("GET", "/api_keys", token).json()["api_keys"]
    assert len(listed) == 3
    from shared.db import client

    assert client().collection("api_key_owners").document(user["id"]).get().get("count") == 3
    # Revoking one frees its place.
    assert limited.call("DELETE", f"/api_keys/{listed[0]['id']}", token).status_code == 204
    assert limited.call("POST", "/api_keys", token, json={"name": "again"}).status_code == 201


def test_last_used_at_is_written_at_most_once_per_period(
    api: Api, functions_server: Callable[..., str]
) -> None:
    base = functions_server(API_KEY_TOUCH_SECONDS="2")
    touchy = Api(base)
    token, _ = touchy.signup()
    key = _create(touchy, token)["key"]
    assert touchy.call("GET", "/me", key).status_code == 200
    first = _lookup(key)
    used, written = first.get("last_used_at"), first.update_time
    assert used is not None
    for _ in range(10):  # within the period: no write at all
        assert touchy.call("GET", "/me", key).status_code == 200
    assert _lookup(key).update_time == written
    time.sleep(2.2)
    at_once(6, lambda _: touchy.call("GET", "/me", key))
    later = _lookup(key)
    assert later.get("last_used_at") > used
    # Six racing requests past the period: at least one write, and the others left it alone.
    assert later.update_time > written


def test_bad_input_is_refused(api: Api) -> None:
    token, _ = api.signup()
    for body in ({}, {"name": ""}, {"name": "   "}, {"name": "x" * 101}, {"name": 3}, {"name": "a", "x": 1}):
        refused = api.call("POST", "/api_keys", token, json=body)
        assert refused.status_code == 422, (body, refused.text)
    assert (
        api.call(
            "POST", "/api_keys", token, data="{", headers={"Content-Type": "application/json"}
        ).status_code
        == 400
    )
    assert api.call("POST", "/api_keys", json={"name": "x"}).status_code == 401
    assert api.call("PUT", "/api_keys", token).status_code == 405
    assert api.call("GET", "/api_keys/abc/def", token).status_code == 404
    assert api.call("GET", "/api_keys?limit=0", token).status_code == 422
    assert api.call("GET", "/api_keys?cursor=" + "0" * 32, token).json()["error"]["code"] == "invalid_cursor"
    assert api.call("GET", "/api_keys", token).json()["api_keys"] == []


def test_the_list_pages(api: Api, stack: Stack) -> None:
    token, _ = api.signup()
    made = [_create(api, token, f"k{i}")["id"] for i in range(3)]
    first = api.call("GET", "/api_keys?limit=2", token).json()
    assert [k["id"] for k in first["api_keys"]] == made[::-1][:2] and first["next_cursor"]
    rest = api.call("GET", f"/api_keys?limit=2&cursor={first['next_cursor']}", token).json()
    assert [k["id"] for k in rest["api_keys"]] == made[:1] and rest["next_cursor"] is None
