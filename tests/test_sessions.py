"""Refresh tokens end to end on the real emulators: signup and login hand one out, ``/refresh``
rotates it, a retired one presented again revokes its whole family (the winner of a race
included), ``/logout`` revokes the family, an expired one is refused, and only hashes are kept."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import aijobs
import httpx
import pytest
import requests
from conftest import PASSWORD, Api, at_once


def _refresh(api: Api, refresh_token: Any) -> requests.Response:
    return api.call("POST", "/refresh", json={"refresh_token": refresh_token})


def _code(response: requests.Response) -> str:
    return str(response.json()["error"]["code"])


def _signup(api: Api) -> dict[str, Any]:
    body = {"username": f"s{uuid.uuid4().hex[:12]}", "password": PASSWORD}
    response = api.call("POST", "/signup", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_signup_and_login_answer_a_refresh_token_that_rotates(api: Api) -> None:
    signed = _signup(api)
    assert signed["refresh_token"] and signed["expires_in"] == 1800
    login = api.call("POST", "/login", json={"username": signed["user"]["username"], "password": PASSWORD})
    assert login.status_code == 200 and login.json()["refresh_token"] not in (None, signed["refresh_token"])

    rotated = _refresh(api, signed["refresh_token"])
    assert rotated.status_code == 200, rotated.text
    pair = rotated.json()
    assert pair["token_type"] == "bearer" and pair["refresh_token"] != signed["refresh_token"]
    me = api.call("GET", "/me", pair["access_token"])
    assert me.status_code == 200 and me.json()["id"] == signed["user"]["id"]
    again = _refresh(api, pair["refresh_token"])
    assert again.status_code == 200, again.text
    # The login's family is a sign-in of its own: untouched by the other's rotations.
    assert _refresh(api, login.json()["refresh_token"]).status_code == 200


def test_reuse_revokes_the_whole_family(api: Api) -> None:
    signed = _signup(api)
    first = signed["refresh_token"]
    second = _refresh(api, first).json()["refresh_token"]
    reused = _refresh(api, first)
    assert reused.status_code == 401 and _code(reused) == "refresh_token_reused"
    assert reused.headers["WWW-Authenticate"] == "Bearer"
    dead = _refresh(api, second)  # the legitimate successor dies with the thief's copy
    assert dead.status_code == 401 and _code(dead) == "invalid_refresh_token"
    still = _refresh(api, first)
    assert still.status_code == 401 and _code(still) == "refresh_token_reused"
    # Access tokens already issued live out their 30 minutes: they are not looked up.
    assert api.call("GET", "/me", signed["access_token"]).status_code == 200


def test_logout_revokes_the_family_and_is_idempotent(api: Api) -> None:
    signed = _signup(api)
    current = _refresh(api, signed["refresh_token"]).json()["refresh_token"]
    for _ in range(2):
        response = api.call("POST", "/logout", json={"refresh_token": current})
        assert response.status_code == 204 and not response.content
    for token in (current, signed["refresh_token"]):
        refused = _refresh(api, token)
        assert refused.status_code == 401, refused.text
    assert _code(_refresh(api, current)) == "invalid_refresh_token"
    # Unknown and retired tokens are the same 204: logout reveals nothing and never fails.
    assert api.call("POST", "/logout", json={"refresh_token": "x" * 43}).status_code == 204
    assert api.call("POST", "/logout", json={"refresh_token": signed["refresh_token"]}).status_code == 204


def test_concurrent_refreshes_of_one_token_have_exactly_one_winner(
    api: Api, functions_server: Callable[..., str]
) -> None:
    parallel = Api(functions_server())  # 8 threads, so the refreshes really overlap
    signed = _signup(api)
    answers = at_once(10, lambda _: _refresh(parallel, signed["refresh_token"]))
    won = [r for r in answers if r.status_code == 200]
    assert len(won) == 1, [r.text for r in answers]
    lost = [r for r in answers if r.status_code != 200]
    assert {(r.status_code, _code(r)) for r in lost} == {(401, "refresh_token_reused")}
    # The losers count as reuse: the family is revoked, the winner's new token with it.
    assert _code(_refresh(api, won[0].json()["refresh_token"])) == "invalid_refresh_token"


def test_an_expired_refresh_token_is_refused(api: Api, functions_server: Callable[..., str]) -> None:
    from shared.db import client, now

    short = Api(functions_server(REFRESH_TTL_SECONDS="5"))
    signed = _signup(short)
    digest = hashlib.sha256(signed["refresh_token"].encode()).hexdigest()
    ref = client().collection("refresh_tokens").document(digest)
    assert ref.get().get("expires_at") <= now() + timedelta(seconds=5)  # the setting is used
    ref.update({"expires_at": now() - timedelta(seconds=1)})  # as if 5 s had passed
    refused = _refresh(short, signed["refresh_token"])
    assert refused.status_code == 401 and _code(refused) == "refresh_token_expired"
    assert _code(_refresh(short, signed["refresh_token"])) == "refresh_token_expired"  # nothing written


def test_only_hashes_are_stored(api: Api) -> None:
    from shared.db import client

    signed = _signup(api)
    rotated = _refresh(api, signed["refresh_token"]).json()["refresh_token"]
    db = client()
    digests = [hashlib.sha256(t.encode()).hexdigest() for t in (signed["refresh_token"], rotated)]
    docs = [db.collection("refresh_tokens").document(d).get() for d in digests]
    assert all(d.exists for d in docs)
    assert docs[0].get("used_at") is not None and docs[1].get("used_at") is None
    family = db.collection("refresh_families").document(docs[0].get("family_id")).get()
    assert family.get("current") == digests[1] and family.get("user_id") == signed["user"]["id"]
    text = json.dumps([d.to_dict() for d in [*docs, family]], default=str)
    assert signed["refresh_token"] not in text and rotated not in text


def test_bad_input_is_refused(api: Api) -> None:
    for body in ({}, {"refresh_token": ""}, {"refresh_token": 3}, {"refresh_token": "a", "x": 1}):
        for path in ("/refresh", "/logout"):
            refused = api.call("POST", path, json=body)
            assert refused.status_code == 422, (path, body, refused.text)
    for path in ("/refresh", "/logout"):
        assert (
            api.call("POST", path, data="{", headers={"Content-Type": "application/json"}).status_code == 400
        )
        assert api.call("POST", path, data="x", headers={"Content-Type": "text/plain"}).status_code == 415
        assert api.call("GET", path).status_code == 405
    for token in ("x" * 43, "garbage", "x" * 256):
        refused = _refresh(api, token)
        assert refused.status_code == 401 and _code(refused) == "invalid_refresh_token"
    # An access token is not a refresh token.
    assert _code(_refresh(api, _signup(api)["access_token"])) == "invalid_refresh_token"


# -- the Python client ------------------------------------------------------------------------


def test_the_client_refreshes_an_expired_access_token_once_by_itself() -> None:
    sent: list[httpx.Request] = []
    expired = {"error": {"code": "token_expired", "message": "m"}}
    pair = {"access_token": "new", "token_type": "bearer", "expires_in": 1800, "refresh_token": "r2"}
    answers = [
        httpx.Response(401, json=expired),
        httpx.Response(200, json=pair),
        httpx.Response(200, json={"id": "u1"}),
    ]

    def handle(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return answers.pop(0)

    client = aijobs.Client(
        "http://aijobs.test", token="old", refresh_token="r1", transport=httpx.MockTransport(handle)
    )
    assert client.me()["id"] == "u1"
    assert [(r.method, r.url.path) for r in sent] == [("GET", "/me"), ("POST", "/refresh"), ("GET", "/me")]
    assert json.loads(sent[1].content) == {"refresh_token": "r1"} and "Authorization" not in sent[1].headers
    assert sent[2].headers["Authorization"] == "Bearer new"
    assert (client.token, client.refresh_token) == ("new", "r2")
    # Without a refresh token the expiry is the caller's to handle.
    answers.append(httpx.Response(401, json=expired))
    client.refresh_token = None
    with pytest.raises(aijobs.TokenExpired):
        client.me()


def test_the_client_manages_keys_and_sessions(api: Api) -> None:
    with aijobs.Client(api.base_url) as client:
        client.signup(f"c{uuid.uuid4().hex[:12]}", PASSWORD)
        first = client.refresh_token
        assert first is not None
        client.refresh()
        assert client.refresh_token not in (None, first)
        with pytest.raises(aijobs.RefreshTokenReused):
            client.refresh(first)
        with pytest.raises(aijobs.InvalidRefreshToken):
            client.refresh()  # the reuse revoked the family
        created = client.create_api_key("ci")
        assert [k["id"] for k in client.list_api_keys()["api_keys"]] == [created["id"]]
        with aijobs.Client(api.base_url, token=created["key"]) as keyed:
            assert keyed.me()["id"]
            with pytest.raises(aijobs.ApiKeyNotAllowed):
                keyed.list_api_keys()
            client.delete_api_key(created["id"])
            with pytest.raises(aijobs.InvalidApiKey):
                keyed.me()
        with pytest.raises(aijobs.ApiKeyNotFound):
            client.delete_api_key(created["id"])
        client.logout()  # its family is revoked already: 204 all the same, and the tokens are forgotten
        assert client.refresh_token is None and client.token is None
