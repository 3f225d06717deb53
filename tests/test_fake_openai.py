"""The fake OpenAI server against the real ``openai`` SDK; fake_openai.py lists what it raises."""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Literal

import openai
import pytest
from fake_openai import (
    FAKE_PNG,
    Delay,
    Disconnect,
    EmptyChoices,
    FakeOpenAI,
    Malformed,
    Reply,
    Status,
    Trickle,
    content_policy_violation,
)
from openai.types.chat import ChatCompletion

TIMEOUT = 0.3
MESSAGES: list[dict[str, str]] = [{"role": "user", "content": "hello"}]


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def client(fake: FakeOpenAI) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=fake.base_url, api_key="test", max_retries=0, timeout=TIMEOUT) as c:
        yield c


def create(client: openai.OpenAI, content: str = "hello") -> ChatCompletion:
    return client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": content}])


def chat(client: openai.OpenAI, content: str = "hello") -> str | None:
    return create(client, content).choices[0].message.content


def test_chat_completion(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    completion = create(client)
    assert completion.object == "chat.completion"
    assert completion.model == "gpt-test"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == "fake reply: hello"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    usage = completion.usage
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens > 0
    assert fake.count() == 1
    recorded = fake.requests[0]
    assert recorded.path == "/v1/chat/completions"
    assert recorded.body["messages"] == MESSAGES
    assert recorded.headers["authorization"] == "Bearer test"


def test_reply_step_and_long_prompt_truncation(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    fake.script(Reply(content="scripted"))
    assert chat(client) == "scripted"
    assert chat(client, "x" * 500) == "fake reply: " + "x" * 200
    assert fake.pending == 0


def test_429_is_rate_limit_error(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    fake.script(Status(429))
    with pytest.raises(openai.RateLimitError) as info:
        chat(client)
    assert info.value.status_code == 429
    assert info.value.code == "rate_limit_exceeded"
    assert info.value.response.headers["retry-after"] == "0"
    assert chat(client) == "fake reply: hello"


@pytest.mark.parametrize("code", [500, 503])
def test_5xx_is_internal_server_error(client: openai.OpenAI, fake: FakeOpenAI, code: int) -> None:
    fake.script(Status(code, message="boom"))
    with pytest.raises(openai.InternalServerError) as info:
        chat(client)
    assert info.value.status_code == code
    assert info.value.body == {"message": "boom", "type": "server_error", "param": None, "code": None}


def test_content_policy_violation_is_bad_request(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    fake.script(content_policy_violation())
    with pytest.raises(openai.BadRequestError) as info:
        client.images.generate(model="dall-e-3", prompt="something refused")
    assert info.value.code == "content_policy_violation"


def test_delay_beyond_timeout_then_next_request_works(
    client: openai.OpenAI, fake: FakeOpenAI, capfd: pytest.CaptureFixture[str]
) -> None:
    fake.script(Delay(0.6))
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        chat(client)
    assert time.monotonic() - started < 0.55
    # The delayed handler is still sleeping; other requests must not wait for it.
    assert chat(client) == "fake reply: hello"
    # Let the abandoned handler write into its dead socket, silently.
    time.sleep(0.45)
    assert chat(client) == "fake reply: hello"
    assert capfd.readouterr().err == ""


def test_default_delay_and_delay_then(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    fake.default_delay = 0.5
    with pytest.raises(openai.APITimeoutError):
        chat(client)
    fake.default_delay = 0.0
    fake.script(Delay(0.05, then=Status(500)))
    with pytest.raises(openai.InternalServerError):
        chat(client)


@pytest.mark.parametrize("part", ["headers", "body"])
def test_trickle_outlasts_the_sdk_timeout(
    client: openai.OpenAI, fake: FakeOpenAI, part: Literal["headers", "body"]
) -> None:
    fake.script(Trickle(part, interval=0.1, seconds=1.0))
    started = time.monotonic()
    # Every read gets a byte within TIMEOUT, so the SDK never times out: the call takes 1 s.
    assert chat(client) == "fake reply: hello"
    assert time.monotonic() - started >= 1.0 > 3 * TIMEOUT
    assert chat(client) == "fake reply: hello"


def test_models_step_faults_only_the_models_list(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    fake.models_step = Status(503)
    with pytest.raises(openai.InternalServerError):
        client.models.list()
    assert chat(client) == "fake reply: hello"
    fake.reset()
    assert [m.id for m in client.models.list()] == ["fake-model"]


def test_malformed_json_raises_json_decode_error(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    fake.script(Malformed())
    with pytest.raises(json.JSONDecodeError) as info:
        chat(client)
    # Not wrapped by the SDK: classifiers must catch ValueError, not only openai.OpenAIError.
    assert not isinstance(info.value, openai.OpenAIError)
    assert chat(client) == "fake reply: hello"


def test_malformed_non_json_content_type_returns_str(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    fake.script(Malformed(body=b"<html>502 Bad Gateway</html>", content_type="text/html"))
    result: object = create(client)
    assert result == "<html>502 Bad Gateway</html>"


def test_empty_choices(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    fake.script(EmptyChoices())
    assert create(client).choices == []


def test_disconnect_is_connection_error(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    fake.script(Disconnect())
    with pytest.raises(openai.APIConnectionError) as info:
        chat(client)
    assert not isinstance(info.value, openai.APITimeoutError)
    assert chat(client) == "fake reply: hello"


def test_images_generation(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    result = client.images.generate(model="dall-e-3", prompt="a cat")
    assert result.data is not None
    url = result.data[0].url
    assert url == f"http://127.0.0.1:{fake.port}/images/fake.png"
    assert result.data[0].revised_prompt == "a cat"
    with urllib.request.urlopen(url, timeout=1) as resp:
        assert resp.read() == FAKE_PNG
    b64 = client.images.generate(model="dall-e-3", prompt="a cat", response_format="b64_json")
    assert b64.data is not None and b64.data[0].b64_json is not None
    assert base64.b64decode(b64.data[0].b64_json) == FAKE_PNG
    assert fake.count("/images/generations") == 2


def test_models_list_is_not_recorded(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    fake.script(Status(500))
    assert [m.id for m in client.models.list()] == ["fake-model"]
    assert fake.requests == []
    assert fake.pending == 1


def test_unknown_endpoint_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.embeddings.create(model="text-embedding-3-small", input="hi")
    assert info.value.type == "invalid_request_error"


def test_reset(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    fake.script(Status(500))
    fake.default_delay = 1.0
    fake.reset()
    assert chat(client) == "fake reply: hello"
    assert fake.count() == 1
    fake.reset()
    assert fake.requests == [] and fake.pending == 0 and fake.default_delay == 0.0


def test_stop_does_not_hang_on_pending_delay() -> None:
    fake = FakeOpenAI().start()
    fake.script(Delay(30))
    errors: list[BaseException] = []

    def call() -> None:
        with openai.OpenAI(base_url=fake.base_url, api_key="test", max_retries=0, timeout=5) as c:
            try:
                chat(c)
            except openai.APIConnectionError as exc:
                errors.append(exc)

    worker = threading.Thread(target=call)
    worker.start()
    deadline = time.monotonic() + 2
    while fake.count() == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    fake.stop()
    worker.join(timeout=2)
    assert time.monotonic() - started < 1
    assert not worker.is_alive()
    assert len(errors) == 1
