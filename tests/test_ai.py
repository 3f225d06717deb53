"""The OpenAI provider against real OpenAI-protocol servers: the fake, and the real local model."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Literal

import pytest
from conftest import Api, books
from fake_openai import FAKE_PNG, Delay, FakeOpenAI, Image, Status, Trickle
from pydantic import SecretStr

from scripts.stack import Stack
from shared import prompts
from shared.ai import OpenAIProvider, may_fetch
from shared.catalog import DEFAULT_CATALOG
from shared.errors import BadOutput, PermanentProviderError, ProviderRateLimited, ProviderTimeout
from shared.images import Picture
from shared.settings import Settings


def provider_for(fake: FakeOpenAI, **changes: Any) -> OpenAIProvider:
    fields: dict[str, Any] = {
        "app_env": "local",
        "firestore_emulator_host": "127.0.0.1:1",
        "ai_base_url": fake.base_url,
        "ai_api_key": SecretStr("test"),
        "ai_image_model": "fake-image",
        "ai_timeout_seconds": 2,
    }
    return OpenAIProvider(Settings(**(fields | changes)))


def test_generate_image_uses_the_images_api(fake_ai: FakeOpenAI) -> None:
    # The provider passes options as they come: the catalog decides what each model takes.
    output = provider_for(fake_ai)("generate_image", "a red fox", {"size": "512x512", "style": "vivid"})
    # A URL answer is downloaded at once (it expires within hours): the worker stores bytes.
    assert output == {"image": Picture(FAKE_PNG, "image/png")}
    sent = next(r for r in fake_ai.requests if r.path.endswith("/images/generations"))
    assert (
        sent.body["model"] == "fake-image"
        and sent.body["size"] == "512x512"
        and sent.body["style"] == "vivid"
    )


def test_an_image_is_bounded_in_size_and_must_be_one(fake_ai: FakeOpenAI) -> None:
    big = FAKE_PNG + b"\0" * 5000
    for as_url in (False, True):
        fake_ai.script(Image(big, as_url=as_url))
        with pytest.raises(BadOutput, match="IMAGE_MAX_BYTES"):
            provider_for(fake_ai, image_max_bytes=4000)("generate_image", "a fox", {})
    fake_ai.script(Image(b"GIF89a" + b"\0" * 10))
    assert provider_for(fake_ai)("generate_image", "a fox", {})["image"].content_type == "image/gif"
    fake_ai.script(Image(b"#!/bin/sh\n"))
    with pytest.raises(BadOutput, match="not a PNG"):
        provider_for(fake_ai)("generate_image", "a fox", {})


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://127.0.0.1:9/images/1.png", True),  # the provider's own origin (the fake's)
        ("https://oaidalleapiprodscus.blob.core.windows.net/private/img.png?sig=x", True),
        ("https://8.8.8.8/img.png", True),
        ("http://cdn.example.com/img.png", False),  # plain http elsewhere
        ("http://127.0.0.1:10/img.png", False),  # another port of this host
        ("http://169.254.169.254/computeMetadata/v1/", False),
        ("http://metadata.google.internal/computeMetadata/v1/", False),
        ("https://metadata.google.internal/x", False),
        ("https://127.0.0.1/x", False),
        ("https://[::1]/x", False),
        ("https://10.0.0.5/x", False),
        ("https://192.168.1.1/x", False),
        ("https://169.254.169.254/x", False),
        ("https://localhost/x", False),
        ("https://user:pw@cdn.example.com/x", False),
        ("file:///etc/passwd", False),
        ("https:///nohost", False),
    ],
)
def test_an_image_url_is_fetched_only_from_the_provider_or_public_https(url: str, allowed: bool) -> None:
    assert may_fetch(url, "http://127.0.0.1:9/v1") is allowed


def test_provider_errors_say_whether_to_retry(fake_ai: FakeOpenAI) -> None:
    fake_ai.script(Status(429))
    with pytest.raises(ProviderRateLimited) as caught:
        provider_for(fake_ai)("chat", [{"role": "user", "content": "hi"}], {})
    assert caught.value.retryable and caught.value.code == "ai_rate_limited"
    assert "Authorization" in fake_ai.requests[-1].headers or "authorization" in fake_ai.requests[-1].headers


def timed(call: Any) -> float:
    """Seconds until ``call()`` raised ProviderTimeout."""
    started = time.monotonic()
    with pytest.raises(ProviderTimeout):
        call()
    elapsed = time.monotonic() - started
    print(f"cut off after {elapsed:.2f} s")
    return elapsed


@pytest.mark.parametrize("part", ["headers", "body"])
def test_a_trickling_answer_is_cut_off_at_the_timeout(
    fake_ai: FakeOpenAI, part: Literal["headers", "body"]
) -> None:
    # A byte every 0.3 s never trips a 1 s read timeout; only a bound on the whole call stops it.
    fake_ai.script(Trickle(part, interval=0.3, seconds=8))
    provider = provider_for(fake_ai, ai_timeout_seconds=1)
    elapsed = timed(lambda: provider("chat", [{"role": "user", "content": "hi"}], {}))
    assert 0.9 < elapsed < 2
    assert provider("chat", [{"role": "user", "content": "hi"}], {}) == {"text": "fake reply: hi"}


def test_each_call_has_its_own_time_budget(fake_ai: FakeOpenAI) -> None:
    provider = provider_for(fake_ai, ai_timeout_seconds=1)
    fake_ai.script(Delay(0.6), Delay(0.6))
    for _ in range(2):
        assert provider("summarize", "some text", {})["text"]


def test_the_health_ping_is_bounded_in_total(fake_ai: FakeOpenAI) -> None:
    fake_ai.models_step = Trickle("headers", interval=0.3, seconds=10)
    elapsed = timed(provider_for(fake_ai).ping)
    assert 2.9 < elapsed < 4


def system_prompt(fake: FakeOpenAI) -> str:
    messages = fake.requests[-1].body["messages"]
    assert messages[0]["role"] == "system"
    return str(messages[0]["content"])


def test_translate_tells_the_ai_the_source_language(fake_ai: FakeOpenAI) -> None:
    provider = provider_for(fake_ai)
    provider("translate", "Guten Tag", {"target_language": "French", "source_language": "German"})
    assert "from German into French" in system_prompt(fake_ai)
    provider("translate", "Guten Tag", {"target_language": "French"})
    assert "into French" in system_prompt(fake_ai) and " from " not in system_prompt(fake_ai)


def test_a_summary_is_capped_near_its_max_words(fake_ai: FakeOpenAI) -> None:
    # A small model may ignore "use at most 20 words"; the token cap still stops it near there.
    provider = provider_for(fake_ai)
    provider("summarize", "A long text. " * 50, {"max_words": 20})
    assert fake_ai.requests[-1].body["max_tokens"] == 20 * prompts.TOKENS_PER_WORD + 16
    provider("summarize", "A long text.", {})
    assert "max_tokens" not in fake_ai.requests[-1].body
    provider("generate_text", "A poem", {"max_tokens": 7, "temperature": 0})
    assert fake_ai.requests[-1].body["max_tokens"] == 7 and fake_ai.requests[-1].body["temperature"] == 0


def test_a_task_type_without_a_prompt_fails_permanently(fake_ai: FakeOpenAI) -> None:
    # An operator may add a task type to the Firestore catalog that no code serves yet.
    with pytest.raises(PermanentProviderError) as caught:
        provider_for(fake_ai)("classify", "some text", {})
    assert not caught.value.retryable and caught.value.code == "task_type_unsupported"
    assert fake_ai.requests == []


def test_a_prompt_missing_its_option_fails_permanently(fake_ai: FakeOpenAI) -> None:
    with pytest.raises(PermanentProviderError) as caught:
        provider_for(fake_ai)("translate", "some text", {"source_language": "German"})
    assert not caught.value.retryable and "target_language" in caught.value.message
    assert fake_ai.requests == []


def test_supported_covers_the_default_catalog_only() -> None:
    assert all(prompts.supported(name) for name in DEFAULT_CATALOG["task_types"])
    assert not prompts.supported("classify")


def test_prompts_load_without_the_openai_sdk() -> None:
    # submit_job imports shared.prompts; its cold start must not pay for openai.
    code = "import sys, shared.prompts; print('openai' in sys.modules, 'httpx2' in sys.modules)"
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert result.stdout.split() == ["False", "False"], result.stderr


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
