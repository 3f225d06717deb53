"""Settings: validated at start; production refuses missing, short or default secrets."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from shared.settings import DEV_JWT_SECRET, Settings

STRONG = "k" * 40
PRODUCTION: dict[str, Any] = {
    "app_env": "production",
    "jwt_secret": STRONG,
    "ai_api_key": "sk-" + "a" * 40,
    "tasks_service_account": "tasks@project.iam.gserviceaccount.com",
    "scheduler_service_account": "scheduler@project.iam.gserviceaccount.com",
    "functions_base_url": "https://us-central1-project.cloudfunctions.net",
}


@pytest.fixture(autouse=True)
def _no_local_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "APP_ENV",
        "FIRESTORE_EMULATOR_HOST",
        "TASKS_EMULATOR_HOST",
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
        ({"ai_api_key": "changeme"}, "AI_API_KEY is a known default"),
        ({"worker_secret": "s" * 40}, "WORKER_SECRET is for the local stack"),
        ({"tasks_service_account": None}, "TASKS_SERVICE_ACCOUNT is missing"),
        ({"firestore_emulator_host": "127.0.0.1:8081"}, "emulator hosts are set"),
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
