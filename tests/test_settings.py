"""Settings: validated at start; production refuses missing, short or default secrets."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import ValidationError

from shared.settings import DEV_JWT_SECRET, Settings

STRONG = "q3VfN8xZ-kT1wLp0_RbY7cJ2mHsGd9Ae4uXo6WnQiK"  # as secrets.token_urlsafe makes them
PRODUCTION: dict[str, Any] = {
    "app_env": "production",
    "jwt_secret": STRONG,
    "ai_api_key": "sk-proj-Xb81qLmT7vR2cNwZ0pKfH4sJ9eYgA3uD",
    "tasks_service_account": "tasks@project.iam.gserviceaccount.com",
    "scheduler_service_account": "scheduler@project.iam.gserviceaccount.com",
    "functions_base_url": "https://us-central1-project.cloudfunctions.net",
    "images_bucket": "project-aijobs-images",
}


@pytest.fixture(autouse=True)
def _no_local_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "APP_ENV",
        "FIRESTORE_EMULATOR_HOST",
        "TASKS_EMULATOR_HOST",
        "FIREBASE_AUTH_EMULATOR_HOST",
        "STORAGE_EMULATOR_HOST",
        "WORKER_SECRET",
        "JWT_SECRET",
        "AI_API_KEY",
    ):
        monkeypatch.delenv(name, raising=False)


def test_production_settings_start_when_complete() -> None:
    settings = Settings(**PRODUCTION)
    assert not settings.is_local and settings.job_lease_seconds > settings.ai_timeout_seconds


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"jwt_secret": None}, "JWT_SECRET is missing"),
        ({"jwt_secret": "too-short"}, "JWT_SECRET is shorter than 32"),
        ({"jwt_secret": DEV_JWT_SECRET}, "JWT_SECRET is a known default"),
        ({"ai_api_key": None}, "AI_API_KEY is missing"),
        ({"ai_api_key": "changeme"}, "AI_API_KEY is a placeholder"),
        ({"worker_secret": "s" * 40}, "WORKER_SECRET is for the local stack"),
        ({"tasks_service_account": None}, "TASKS_SERVICE_ACCOUNT is missing"),
        ({"firestore_emulator_host": "127.0.0.1:8081"}, "emulator hosts are set"),
        ({"storage_emulator_host": "http://127.0.0.1:9023"}, "emulator hosts are set"),
        ({"images_bucket": ""}, "IMAGES_BUCKET is missing"),
        ({"functions_base_url": "http://127.0.0.1:8080"}, "FUNCTIONS_BASE_URL must be"),
        ({"scheduler_service_account": None}, "SCHEDULER_SERVICE_ACCOUNT is missing"),
    ],
)
def test_production_refuses_to_start(change: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint):
        Settings(**{**PRODUCTION, **change})


def test_unset_app_env_means_production() -> None:
    with pytest.raises(ValidationError, match="refusing to start in production"):
        Settings()


def test_local_needs_the_emulator() -> None:
    with pytest.raises(ValidationError, match="FIRESTORE_EMULATOR_HOST"):
        Settings(app_env="local")
    assert Settings(app_env="local", firestore_emulator_host="127.0.0.1:1").is_local


def test_models_per_task_type() -> None:
    settings = Settings(**PRODUCTION, ai_model="m-text", ai_image_model="")
    assert settings.model_for("chat") == "m-text" and settings.model_for("generate_image") == ""


@pytest.mark.parametrize(
    ("secret", "complaint"),
    [
        ("a" * 32, "JWT_SECRET has fewer than 10 distinct characters"),
        ("abcdefghijk" * 3, "JWT_SECRET repeats a short pattern"),
        (DEV_JWT_SECRET + "-2", "JWT_SECRET is a known default"),
        ("my-dev-key-q3VfN8xZkT1wLp0RbY7cJ2mHsGd9", "JWT_SECRET contains 'dev'"),
        ("DEV_q3VfN8xZkT1wLp0RbY7cJ2mHsGd9Ae4uXo", "JWT_SECRET contains 'dev'"),
        ("q3VfN8xZkT1wLp0RbY7cJ2mHsGd9-test-key", "JWT_SECRET contains 'test'"),
        ("supersecretvalue-q3VfN8xZkT1wLp0RbY7c", "JWT_SECRET contains 'secret'"),
        ("changeme-q3VfN8xZkT1wLp0RbY7cJ2mHsGd9", "JWT_SECRET contains 'changeme'"),
        ("Example-q3VfN8xZkT1wLp0RbY7cJ2mHsGd9A", "JWT_SECRET contains 'example'"),
        ("local-q3VfN8xZkT1wLp0RbY7cJ2mHsGd9Ae4", "JWT_SECRET contains 'local'"),
        ("Password-q3VfN8xZkT1wLp0RbY7cJ2mHsGd9", "JWT_SECRET contains 'password'"),
    ],
)
def test_production_refuses_weak_jwt_secrets(secret: str, complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint) as refused:
        Settings(**{**PRODUCTION, "jwt_secret": secret})
    assert secret not in str(refused.value)


def test_dev_inside_a_random_secret_is_chance_not_a_word() -> None:
    # A generated key may hold "dev" between other letters; refusing it would fail 1 start in 500.
    assert Settings(**{**PRODUCTION, "jwt_secret": "q3VfN8xZkT1wLpdevRbY7cJ2mHsGd9Ae4uXo6WnQ"})


@pytest.mark.parametrize(
    "key",
    [
        "local",
        "test",
        "sk-test",
        "sk-test-0123456789abcdef",
        "changeme",
        "dev",
        "EMPTY",
        "sk-abc",
        "sk-" + "a" * 40,
    ],
)
def test_production_refuses_placeholder_ai_keys(key: str) -> None:
    with pytest.raises(ValidationError, match=r"AI_API_KEY (is a placeholder|is shorter|has fewer)"):
        Settings(**{**PRODUCTION, "ai_api_key": key})


@pytest.mark.parametrize(
    "url",
    [
        "http://www.googleapis.com/oauth2/v1/certs",
        "https://evil.example/oauth2/v1/certs",
        "https://www.googleapis.com.evil.example/oauth2/v1/certs",
        "https://www.googleapis.com@evil.example/oauth2/v1/certs",
        "https://www.googleapis.com:8443/oauth2/v1/certs",
        "https://127.0.0.1:9999/certs",
        "www.googleapis.com/oauth2/v1/certs",
    ],
)
def test_production_takes_oidc_keys_only_from_google(url: str) -> None:
    with pytest.raises(
        ValidationError, match=re.escape("OIDC_CERTS_URL must be an https://www.googleapis.com/ URL")
    ):
        Settings(**{**PRODUCTION, "oidc_certs_url": url})
    assert Settings(**PRODUCTION, oidc_certs_url="https://www.googleapis.com/oauth2/v3/certs")


def test_local_stays_permissive() -> None:
    local: dict[str, Any] = {"app_env": "local", "firestore_emulator_host": "127.0.0.1:1"}
    settings = Settings(
        **local, jwt_secret=DEV_JWT_SECRET, ai_api_key="local", oidc_certs_url="http://127.0.0.1:1/c"
    )
    assert settings.is_local
