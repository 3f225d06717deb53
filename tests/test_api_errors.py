"""Every refusal in the API table: the right status and code, and nothing changed."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest
from conftest import PASSWORD, Api, footprint

from scripts.stack import DEV_JWT_SECRET


def error_code(response: Any) -> str:
    assert response.headers["Content-Type"].startswith("application/json")
    return str(response.json()["error"]["code"])


# ---- signup and login ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"username": "ab", "password": PASSWORD},
        {"username": "x" * 33, "password": PASSWORD},
        {"username": "has space", "password": PASSWORD},
        {"username": "émile", "password": PASSWORD},
        {"username": "valid_name", "password": "short"},
        {"username": "valid_name", "password": "p" * 129},
        {"username": "valid_name"},
        {"password": PASSWORD},
        {"username": 12345, "password": PASSWORD},
        {"username": "valid_name", "password": PASSWORD, "credits": 1000},
    ],
)
def test_signup_refuses_invalid_input(api: Api, body: dict[str, Any]) -> None:
    response = api.call("POST", "/signup", json=body)
    assert response.status_code == 422 and error_code(response) == "invalid_request"
    assert "password" not in body or str(body["password"]) not in response.text
    from shared.db import client

    assert not client().collection("usernames").document("valid_name").get().exists


def test_signup_username_taken_case_insensitively(api: Api) -> None:
    api.signup("taken_name")
    response = api.call("POST", "/signup", json={"username": "Taken_Name", "password": "another-pass-1"})
    assert response.status_code == 409 and error_code(response) == "username_taken"
    # The first account is intact: its password still works, the second one's does not.
    ok = api.call("POST", "/login", json={"username": "taken_name", "password": PASSWORD})
    assert ok.status_code == 200
    assert (
        api.call("POST", "/login", json={"username": "taken_name", "password": "another-pass-1"}).status_code
        == 401
    )


def test_racing_signups_for_one_username(api: Api) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        statuses = sorted(
            pool.map(
                lambda i: (
                    api.call(
                        "POST", "/signup", json={"username": "race_name", "password": f"password-{i}"}
                    ).status_code
                ),
                range(8),
            )
        )
    assert statuses == [201] + [409] * 7


def test_login_wrong_password_and_unknown_user_look_the_same(api: Api) -> None:
    api.signup("known_user")
    wrong = api.call("POST", "/login", json={"username": "known_user", "password": "wrong-password"})
    unknown = api.call("POST", "/login", json={"username": "nobody_here", "password": "wrong-password"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json() and error_code(wrong) == "invalid_credentials"
    assert "wrong-password" not in wrong.text


@pytest.mark.parametrize(
    ("data", "content_type", "status", "code"),
    [
        ("{not json", "application/json", 400, "malformed_json"),
        ('["a list"]', "application/json", 422, "invalid_request"),
        ("username=a&password=b", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        ("x" * (64 * 1024 + 1), "application/json", 413, "payload_too_large"),
    ],
)
def test_malformed_bodies(api: Api, data: str, content_type: str, status: int, code: str) -> None:
    response = api.call("POST", "/signup", data=data, headers={"Content-Type": content_type})
    assert response.status_code == status and error_code(response) == code


def test_wrong_method_and_unknown_function(api: Api) -> None:
    response = api.call("GET", "/signup")
    assert response.status_code == 405 and error_code(response) == "method_not_allowed"
    response = api.call("GET", "/no_such_function")
    assert response.status_code == 404 and error_code(response) == "unknown_function"


# ---- tokens -------------------------------------------------------------------------------------


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def bad_tokens(valid: str, user_id: str) -> dict[str, str | None]:
    header, payload, signature = valid.split(".")
    claims = {"sub": user_id, "iat": int(time.time()), "exp": int(time.time()) + 600}
    tampered = _b64({**claims, "sub": "someone-else"})
    now = int(time.time())
    return {
        "missing": None,
        "not bearer": f"Basic {valid}",
        "empty bearer": "Bearer ",
        "garbage": "Bearer not.a.token",
        "tampered payload": f"Bearer {header}.{tampered}.{signature}",
        "tampered signature": f"Bearer {header}.{payload}.{signature[::-1]}",
        "alg none": f"Bearer {_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}.",
        "other secret": "Bearer "
        + jwt.encode(claims, "another-secret-of-sufficient-length!!", algorithm="HS256"),
        "HS512": "Bearer " + jwt.encode(claims, DEV_JWT_SECRET, algorithm="HS512"),
        "expired": "Bearer "
        + jwt.encode(
            {"sub": user_id, "iat": now - 3600, "exp": now - 1800}, DEV_JWT_SECRET, algorithm="HS256"
        ),
        "no exp": "Bearer " + jwt.encode({"sub": user_id, "iat": now}, DEV_JWT_SECRET, algorithm="HS256"),
        "unknown user": "Bearer "
        + jwt.encode({**claims, "sub": "0" * 32}, DEV_JWT_SECRET, algorithm="HS256"),
    }


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
@pytest.mark.parametrize("path", ["/me", "/credits", "/jobs", "/submit_job"])
def test_bad_tokens_get_401(api: Api, path: str) -> None:
    token, user = api.signup()
    before = footprint(user["id"])
    method = "POST" if path == "/submit_job" else "GET"
    for name, authorization in bad_tokens(token, user["id"]).items():
        if name == "unknown user" and path == "/jobs":
            continue  # lists that id's jobs (none); forging a subject needs the signing key anyway
        headers = {} if authorization is None else {"Authorization": authorization}
        response = api.call(method, path, headers=headers, json={"task_type": "summarize", "input_data": "x"})
        assert response.status_code == 401, (name, response.text)
        assert response.headers.get("WWW-Authenticate") == "Bearer", name
        expected = "token_expired" if name == "expired" else None
        assert expected is None or error_code(response) == expected
    assert footprint(user["id"]) == before
    assert api.call("GET", "/me", token).status_code == 200


# ---- submit_job ---------------------------------------------------------------------------------

LONG = "x" * 20_001
SUBMIT_REFUSALS: list[tuple[dict[str, Any], int, str]] = [
    ({"task_type": "dance", "input_data": "x"}, 422, "unknown_task_type"),
    ({"task_type": "translate", "input_data": "hello"}, 422, "invalid_option"),
    (
        {"task_type": "translate", "input_data": "hi", "options": {"target_language": "Klingon"}},
        422,
        "invalid_option",
    ),
    ({"task_type": "summarize", "input_data": "x", "options": {"colour": "red"}}, 422, "invalid_option"),
    ({"task_type": "summarize", "input_data": "x", "options": {"max_words": "ten"}}, 422, "invalid_option"),
    ({"task_type": "summarize", "input_data": "x", "options": {"max_words": 5}}, 422, "invalid_option"),
    ({"task_type": "chat", "input_data": "x", "options": {"temperature": 3}}, 422, "invalid_option"),
    ({"task_type": "chat", "input_data": "not a list"}, 422, "invalid_request"),
    ({"task_type": "chat", "input_data": [{"role": "robot", "content": "hi"}]}, 422, "invalid_request"),
    ({"task_type": "chat", "input_data": []}, 422, "invalid_request"),
    ({"task_type": "summarize", "input_data": "   "}, 422, "invalid_request"),
    ({"task_type": "summarize", "input_data": ["a", "b"]}, 422, "invalid_request"),
    ({"task_type": "summarize"}, 422, "invalid_request"),
    ({"task_type": "summarize", "input_data": "x", "priority": "high"}, 422, "invalid_request"),
    (
        {"task_type": "generate_image", "input_data": "a cat", "options": {"size": "512x512"}},
        422,
        "task_type_unsupported",
    ),
    ({"task_type": "summarize", "input_data": LONG}, 413, "input_too_large"),
    (
        {"task_type": "chat", "input_data": [{"role": "user", "content": "y" * 10_001}] * 2},
        413,
        "input_too_large",
    ),
]


def test_submit_refusals_charge_nothing(api: Api) -> None:
    token, user = api.signup()
    before = footprint(user["id"])
    for body, status, code in SUBMIT_REFUSALS:
        response = api.call("POST", "/submit_job", token, json=body)
        assert (response.status_code, error_code(response)) == (status, code), (body, response.text)
        assert response.json()["error"]["message"]
    assert footprint(user["id"]) == before


def test_402_when_the_balance_runs_out(api: Api) -> None:
    token, user = api.signup()
    for _ in range(10):
        assert api.submit(token).status_code == 202
    before = footprint(user["id"])
    response = api.submit(token)
    assert response.status_code == 402 and error_code(response) == "insufficient_credits"
    assert footprint(user["id"]) == before


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=101", "limit=abc", "cursor=../../x", "cursor=unknown-id"]
)
def test_bad_paging_parameters(api: Api, query: str) -> None:
    token, _ = api.signup()
    for path in ("/jobs", "/credits"):
        response = api.call("GET", f"{path}?{query}", token)
        assert response.status_code == 422, (path, query, response.text)
        assert error_code(response) in {"invalid_limit", "invalid_cursor"}
