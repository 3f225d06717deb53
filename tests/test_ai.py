"""The OpenAI provider against real OpenAI-protocol servers: the fake, and the real local model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import Api, books
from fake_openai import FakeOpenAI, Status
from pydantic import SecretStr

from scripts.stack import Stack
from shared.ai import OpenAIProvider
from shared.errors import ProviderRateLimited
from shared.settings import Settings


def provider_for(fake: FakeOpenAI, **changes: Any) -> OpenAIProvider:
    settings = Settings(
        app_env="local",
        firestore_emulator_host="127.0.0.1:1",
        ai_base_url=fake.base_url,
        ai_api_key=SecretStr("test"),
        ai_image_model="fake-image",
        ai_timeout_seconds=2,
        **changes,
    )
    return OpenAIProvider(settings)


def test_generate_image_uses_the_images_api(fake_ai: FakeOpenAI) -> None:
    output = provider_for(fake_ai)("generate_image", "a red fox", {"size": "512x512", "style": "vivid"})
    assert output["image_url"].startswith("http://127.0.0.1")
    sent = fake_ai.requests[-1]
    assert sent.path.endswith("/images/generations")
    assert (
        sent.body["model"] == "fake-image"
        and sent.body["size"] == "512x512"
        and sent.body["style"] == "vivid"
    )


def test_provider_errors_say_whether_to_retry(fake_ai: FakeOpenAI) -> None:
    fake_ai.script(Status(429))
    with pytest.raises(ProviderRateLimited) as caught:
        provider_for(fake_ai)("chat", [{"role": "user", "content": "hi"}], {})
    assert caught.value.retryable and caught.value.code == "ai_rate_limited"
    assert "Authorization" in fake_ai.requests[-1].headers or "authorization" in fake_ai.requests[-1].headers


def test_one_job_through_the_real_local_model(api: Api, functions_server: Any, tmp_path: Path) -> None:
    model = Stack(log_dir=tmp_path / "model")
    model.start_model()
    try:
        base = functions_server(
            AI_BASE_URL=f"http://127.0.0.1:{model.model_port}/v1",
            AI_MODEL="smollm2",
            AI_TIMEOUT_SECONDS="120",
        )
        local = Api(base)
        token, user = local.signup()
        chat = [{"role": "user", "content": "Say hello in one short sentence."}]
        response = local.submit(token, "chat", chat, {"max_tokens": 24, "temperature": 0})
        assert response.status_code == 202, response.text
        job = local.wait(token, response.json()["job_id"], timeout=180)
        assert job["status"] == "completed", job
        assert job["output"]["text"].strip()
        assert books(user["id"])["balance"] == 9
    finally:
        model.stop()
