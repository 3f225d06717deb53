"""CORS: browsers on allowed origins may call the public functions; internal ones get none."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests
from conftest import Api, internal
from pydantic import ValidationError

from scripts.stack import Stack
from shared.settings import Settings

LOCAL = "http://localhost:3000"
CORS_HEADERS = (
    "Access-Control-Allow-Origin",
    "Access-Control-Expose-Headers",
    "Access-Control-Allow-Methods",
)


def preflight(base_url: str, path: str, origin: str, method: str = "POST") -> requests.Response:
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
    }
    return requests.options(base_url + path, headers=headers, timeout=30)


def test_preflight_from_localhost_is_answered_before_authentication(api: Api) -> None:
    response = preflight(api.base_url, "/submit_job", LOCAL)
    assert response.status_code == 204 and response.content == b""
    assert response.headers["Access-Control-Allow-Origin"] == LOCAL
    assert response.headers["Access-Control-Allow-Methods"] == "POST"
    assert response.headers["Access-Control-Allow-Headers"] == "Authorization, Content-Type, Idempotency-Key"
    assert response.headers["Access-Control-Max-Age"] == "600"
    assert "Origin" in response.headers["Vary"]


def test_preflight_names_the_paths_own_methods(api: Api) -> None:
    response = preflight(api.base_url, "/jobs/some-id", "http://127.0.0.1:5173", "GET")
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Methods"] == "GET, PATCH, DELETE"
    cancel = preflight(api.base_url, "/jobs/some-id/cancel", "http://127.0.0.1:5173", "POST")
    assert cancel.headers["Access-Control-Allow-Methods"] == "POST"


def test_a_real_request_from_localhost_can_read_the_answer(api: Api) -> None:
    token, _ = api.signup()
    response = api.submit(token, headers={"Origin": LOCAL, "Idempotency-Key": "cors-1"})
    assert response.status_code == 202, response.text
    assert response.headers["Access-Control-Allow-Origin"] == LOCAL
    assert response.headers["Access-Control-Expose-Headers"] == "Idempotent-Replayed, Retry-After"
    assert "Origin" in response.headers["Vary"]
    replay = api.submit(token, headers={"Origin": LOCAL, "Idempotency-Key": "cors-1"})
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.headers["Access-Control-Allow-Origin"] == LOCAL


def test_errors_carry_cors_headers_so_the_browser_can_read_them(api: Api) -> None:
    response = api.call("POST", "/submit_job", headers={"Origin": LOCAL}, json={})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"
    assert response.headers["Access-Control-Allow-Origin"] == LOCAL
    assert response.headers["Access-Control-Expose-Headers"] == "Idempotent-Replayed, Retry-After"
    wrong_method = api.call("DELETE", "/me", headers={"Origin": LOCAL})
    assert wrong_method.status_code == 405
    assert wrong_method.headers["Access-Control-Allow-Origin"] == LOCAL


def test_another_origin_gets_no_cors_but_the_call_still_works(api: Api) -> None:
    evil = "https://evil.example"
    response = preflight(api.base_url, "/submit_job", evil)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "origin_not_allowed"
    assert not any(h in response.headers for h in CORS_HEADERS)
    token, _ = api.signup()
    me = api.call("GET", "/me", token, headers={"Origin": evil})
    assert me.status_code == 200 and not any(h in me.headers for h in CORS_HEADERS)
    # Look-alikes of the local origins are other origins.
    for origin in ("http://localhost.evil.example", "https://localhost:3000", "http://localhost:3000/x"):
        assert preflight(api.base_url, "/me", origin, "GET").status_code == 403, origin


def test_a_request_without_origin_is_unchanged(api: Api) -> None:
    response = api.call("GET", "/me")
    assert response.status_code == 401 and "Access-Control-Allow-Origin" not in response.headers
    # An OPTIONS that is not a preflight is just another method.
    assert api.call("OPTIONS", "/me").status_code == 405


@pytest.mark.parametrize("function", ["worker", "weekly_report", "sweep_jobs"])
def test_internal_functions_get_no_cors(stack: Stack, function: str) -> None:
    response = preflight(stack.base_url, f"/{function}", LOCAL)
    assert response.status_code == 405
    assert not any(h in response.headers for h in CORS_HEADERS) and "Vary" not in response.headers
    called = requests.post(f"{stack.base_url}/{function}", headers={"Origin": LOCAL}, json={}, timeout=30)
    assert called.status_code in (401, 403)
    assert not any(h in called.headers for h in CORS_HEADERS)


def test_the_worker_answers_its_caller_without_cors(stack: Stack) -> None:
    response = internal(stack, "worker", {"job_id": "no-such-job"})
    assert response.status_code == 200 and "Access-Control-Allow-Origin" not in response.headers


def test_configured_origins_replace_the_local_default(functions_server: Callable[..., str], api: Api) -> None:
    base_url = functions_server(CORS_ORIGINS="https://app.example, https://admin.app.example:8443")
    allowed = preflight(base_url, "/submit_job", "https://app.example")
    assert allowed.status_code == 204
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://app.example"
    second = requests.get(f"{base_url}/me", headers={"Origin": "https://admin.app.example:8443"}, timeout=30)
    assert second.status_code == 401
    assert second.headers["Access-Control-Allow-Origin"] == "https://admin.app.example:8443"
    assert preflight(base_url, "/submit_job", LOCAL).status_code == 403
    local = requests.get(f"{base_url}/me", headers={"Origin": LOCAL}, timeout=30)
    assert local.status_code == 401 and "Access-Control-Allow-Origin" not in local.headers


# ---- the setting ---------------------------------------------------------------------------------

PRODUCTION: dict[str, Any] = {
    "app_env": "production",
    "jwt_secret": "q3VfN8xZ-kT1wLp0_RbY7cJ2mHsGd9Ae4uXo6WnQiK",
    "ai_api_key": "sk-proj-Xb81qLmT7vR2cNwZ0pKfH4sJ9eYgA3uD",
    "tasks_service_account": "tasks@project.iam.gserviceaccount.com",
    "scheduler_service_account": "scheduler@project.iam.gserviceaccount.com",
    "functions_base_url": "https://us-central1-project.cloudfunctions.net",
    "firestore_emulator_host": None,
    "tasks_emulator_host": None,
    "storage_emulator_host": None,
    "firebase_auth_emulator_host": None,  # the test stack's, when a test before this started it
    "images_bucket": "project-aijobs-images",
    "worker_secret": None,
}


def test_production_takes_https_origins() -> None:
    settings = Settings(**PRODUCTION, cors_origins="https://app.example,https://x.example:8443")
    assert settings.cors_origin_list == ("https://app.example", "https://x.example:8443")
    assert Settings(**PRODUCTION, cors_origins="").cors_origins is None


@pytest.mark.parametrize(
    ("origins", "complaint"),
    [
        ("*", "is not scheme://host"),
        ("null", "is not scheme://host"),
        ("https://app.example/", "is not scheme://host"),
        ("https://app.example/path", "is not scheme://host"),
        ("https://App.Example", "is not scheme://host"),
        ("https://app.example,http://app.example", "must be https://"),
    ],
)
def test_production_refuses_bad_origins(origins: str, complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint):
        Settings(**PRODUCTION, cors_origins=origins)
