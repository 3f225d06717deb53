"""Models with their own prices, served by two providers at once.

A functions server of its own is configured with two OpenAI-protocol servers (``FakeOpenAI``,
real HTTP on loopback): ``default`` (the ``AI_*`` settings) and ``two`` (``AI_PROVIDERS``).
The Firestore catalog offers a model on each, and one on a provider no server configures.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import Api, books, drain, footprint
from fake_openai import FakeOpenAI
from pydantic import SecretStr, ValidationError
from test_settings import PRODUCTION

from scripts.stack import Stack
from shared.settings import Settings

TWO_KEY = "sk-two-" + uuid.uuid4().hex
DEFAULT_MODEL = "one-chat"
"""The default provider's ``AI_MODEL``: what a catalog model naming none runs on."""


def catalog_with(summarize: dict[str, Any], **more: Any) -> dict[str, Any]:
    from shared.catalog import DEFAULT_CATALOG

    return {"task_types": {**DEFAULT_CATALOG["task_types"], "summarize": summarize, **more}}


SUMMARIZE: dict[str, Any] = {
    "options": {"max_words": {"type": "integer", "min": 10, "max": 1000}},
    "models": {
        "small": {"cost": 1, "provider": "default", "description": "Fast and cheap"},
        "large": {"cost": 3, "provider": "two", "model": "two-large"},
        "remote": {"cost": 2, "provider": "elsewhere", "model": "far-away"},
    },
    "default_model": "small",
}


@pytest.fixture
def catalog_doc(stack: Stack) -> Iterator[Callable[[dict[str, Any]], None]]:
    """Store a catalog for the test; the default one is back afterwards (every server reads it)."""
    from shared.catalog import DEFAULT_CATALOG, catalog_ref

    try:
        yield lambda doc: catalog_ref().set(doc)
    finally:
        drain()  # the jobs of this test run on this catalog's routes: let them end first
        catalog_ref().set(DEFAULT_CATALOG)


@pytest.fixture
def two_providers(
    functions_stack: Callable[..., Stack], catalog_doc: Callable[[dict[str, Any]], None]
) -> Iterator[tuple[Api, FakeOpenAI, FakeOpenAI]]:
    with FakeOpenAI() as one, FakeOpenAI() as two:
        providers = {"two": {"base_url": two.base_url}}
        server = functions_stack(
            AI_BASE_URL=one.base_url,
            AI_MODEL=DEFAULT_MODEL,
            AI_PROVIDERS=json.dumps(providers),
            AI_PROVIDER_KEYS=json.dumps({"two": TWO_KEY}),
        )
        catalog_doc(catalog_with(SUMMARIZE))
        yield Api(server.base_url), one, two
        drain()


def chats(fake: FakeOpenAI) -> list[dict[str, Any]]:
    return [r.body for r in fake.requests if r.path.endswith("/chat/completions")]


def charges(user_id: str) -> dict[str, int]:
    """Each job's ledger charge, by job id."""
    ledger = books(user_id)["ledger"].values()
    return {e["job_id"]: -e["amount"] for e in ledger if e["type"] == "charge"}


def test_each_model_runs_on_its_own_provider_at_its_own_price(
    two_providers: tuple[Api, FakeOpenAI, FakeOpenAI],
) -> None:
    api, one, two = two_providers
    token, user = api.signup()
    large = api.submit(token, "summarize", "Text for the large model.", {"model": "large"})
    small = api.submit(token, "summarize", "Text for the default model.", {"max_words": 20})
    assert large.status_code == 202 and small.status_code == 202, (large.text, small.text)
    assert (large.json()["cost"], small.json()["cost"]) == (3, 1)
    done = {name: api.wait(token, r.json()["job_id"]) for name, r in (("large", large), ("small", small))}
    assert [j["status"] for j in done.values()] == ["completed", "completed"], done
    assert (done["large"]["model"], done["small"]["model"]) == ("large", "small")
    assert (done["large"]["cost"], done["small"]["cost"]) == (3, 1)

    # Each server got exactly its own job, under the model name its provider knows.
    (to_two,) = chats(two)
    (to_one,) = chats(one)
    assert to_two["model"] == "two-large" and "large model" in to_two["messages"][-1]["content"]
    assert to_one["model"] == DEFAULT_MODEL and "default model" in to_one["messages"][-1]["content"]
    assert two.requests[-1].headers.get("authorization") == f"Bearer {TWO_KEY}"
    assert one.requests[-1].headers.get("authorization") != f"Bearer {TWO_KEY}"

    assert books(user["id"])["balance"] == 10 - 3 - 1
    assert charges(user["id"]) == {done["large"]["job_id"]: 3, done["small"]["job_id"]: 1}


def test_the_catalog_lists_models_prices_and_what_this_deployment_can_run(
    two_providers: tuple[Api, FakeOpenAI, FakeOpenAI], api: Api
) -> None:
    mine, _, _ = two_providers
    response = mine.call("GET", "/catalog")
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "public, max-age=0"  # the tests' CATALOG_CACHE_SECONDS
    listed = {t["task_type"]: t for t in response.json()["task_types"]}
    assert sorted(listed) == ["chat", "generate_image", "generate_text", "summarize", "translate"]
    summarize = listed["summarize"]
    assert summarize["default_model"] == "small"
    # Each model lists what it takes: here the task type's options, as none has its own.
    assert all(list(m.pop("options")) == ["max_words"] for m in summarize["models"])
    assert summarize["models"] == [
        {"id": "small", "cost": 1, "available": True, "description": "Fast and cheap"},
        {"id": "remote", "cost": 2, "available": False, "description": None},
        {"id": "large", "cost": 3, "available": True, "description": None},
    ]
    assert summarize["options"]["max_words"] == {
        "type": "integer",
        "required": False,
        "min": 10,
        "max": 1000,
        "enum": None,
    }
    assert listed["translate"]["options"]["target_language"]["required"] is True
    # The same catalog on the main stack, which configures no provider "two".
    theirs = {t["task_type"]: t for t in api.call("GET", "/catalog").json()["task_types"]}
    assert [m["available"] for m in theirs["summarize"]["models"]] == [True, False, False]
    # The local stack has no image model: listed, not available.
    assert [m["available"] for m in theirs["generate_image"]["models"]] == [False]


def test_unknown_and_unavailable_models_are_refused_uncharged(
    two_providers: tuple[Api, FakeOpenAI, FakeOpenAI], api: Api
) -> None:
    mine, one, two = two_providers
    token, user = mine.signup()
    before = footprint(user["id"])
    for options, code in (
        ({"model": "huge"}, "unknown_model"),
        ({"model": "remote"}, "model_unavailable"),  # its provider is configured nowhere
        ({"model": 3}, "invalid_option"),
        ({"model": "small", "max_words": 5}, "invalid_option"),
    ):
        response = mine.submit(token, "summarize", "Some text.", options)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == code, response.text
    # The main stack lacks provider "two": its model is unavailable there, and says what is.
    theirs = api.submit(token, "summarize", "Some text.", {"model": "large"})
    assert theirs.status_code == 422 and theirs.json()["error"]["code"] == "model_unavailable"
    assert "available: small" in theirs.json()["error"]["message"]
    assert footprint(user["id"]) == before
    assert chats(one) == [] and chats(two) == []


def test_price_and_route_changes_apply_to_new_jobs_only(
    two_providers: tuple[Api, FakeOpenAI, FakeOpenAI], catalog_doc: Callable[[dict[str, Any]], None]
) -> None:
    from shared import queue

    api, _, two = two_providers
    token, user = api.signup()
    tasks, path = queue._client(), queue.queue_path()
    tasks.pause_queue(name=path)
    try:
        first = api.submit(token, "summarize", "Submitted before the change.", {"model": "large"}).json()
        canceled = api.submit(token, "summarize", "Canceled after the change.", {"model": "large"}).json()
        repriced = {**SUMMARIZE["models"]["large"], "cost": 4, "model": "two-larger"}
        catalog_doc(catalog_with({**SUMMARIZE, "models": {**SUMMARIZE["models"], "large": repriced}}))
        second = api.submit(token, "summarize", "Submitted after the change.", {"model": "large"}).json()
        assert (first["cost"], canceled["cost"], second["cost"]) == (3, 3, 4)  # all of the 10 credits
        refunded = api.call("POST", f"/jobs/{canceled['job_id']}/cancel", token)
        assert refunded.status_code == 200 and refunded.json()["cost"] == 3
    finally:
        tasks.resume_queue(name=path)
    done = [api.wait(token, job["job_id"]) for job in (first, second)]
    assert [j["status"] for j in done] == ["completed", "completed"], done
    assert [(j["model"], j["cost"]) for j in done] == [("large", 3), ("large", 4)]
    sent = {body["messages"][-1]["content"]: body["model"] for body in chats(two)}
    assert sent == {"Submitted before the change.": "two-large", "Submitted after the change.": "two-larger"}
    assert books(user["id"])["balance"] == 10 - 3 - 4
    assert charges(user["id"]) == {first["job_id"]: 3, canceled["job_id"]: 3, second["job_id"]: 4}


def test_a_catalog_in_the_shape_before_models_still_sells(
    api: Api, fake_ai: FakeOpenAI, catalog_doc: Callable[[dict[str, Any]], None]
) -> None:
    catalog_doc(catalog_with({"cost": 2, "options": {}}))
    token, user = api.signup()
    listed = {t["task_type"]: t for t in api.call("GET", "/catalog").json()["task_types"]}
    assert listed["summarize"]["default_model"] == "standard"
    assert listed["summarize"]["models"] == [
        {"id": "standard", "cost": 2, "available": True, "description": None, "options": {}}
    ]
    accepted = api.submit(token, "summarize", "Old shape, new code.", {"model": "standard"})
    assert accepted.status_code == 202 and accepted.json()["cost"] == 2, accepted.text
    job = api.wait(token, accepted.json()["job_id"])
    assert job["status"] == "completed" and job["model"] == "standard"
    assert chats(fake_ai)[-1]["model"] == "fake-model"  # the main stack's AI_MODEL
    assert books(user["id"])["balance"] == 8


def test_an_invalid_catalog_is_refused_and_health_says_so(
    two_providers: tuple[Api, FakeOpenAI, FakeOpenAI], catalog_doc: Callable[[dict[str, Any]], None]
) -> None:
    api, _, _ = two_providers
    health = api.call("GET", "/health")
    assert health.status_code == 200, health.text
    assert health.json()["checks"] == {
        "firestore": "ok",
        "queue": "ok",
        "ai": "ok",
        "ai:two": "ok",
        "catalog": "ok",
    }
    token, user = api.signup()
    before = footprint(user["id"])
    catalog_doc(catalog_with({**SUMMARIZE, "default_model": "missing"}))
    refused = api.submit(token, "summarize", "Some text.")
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "catalog_invalid", refused.text
    assert api.call("GET", "/catalog").json()["error"]["code"] == "catalog_invalid"
    health = api.call("GET", "/health")
    assert health.status_code == 503 and health.json()["checks"]["catalog"].startswith("down")
    assert footprint(user["id"]) == before


def test_a_job_from_before_models_runs_on_the_default_providers_model(fake_ai: FakeOpenAI) -> None:
    from shared import catalog
    from shared.ai import OpenAIProvider

    old_job = {"task_type": "chat", "options": {"max_tokens": 5}}
    options = catalog.run_options(old_job)
    assert options == {"max_tokens": 5}
    settings = Settings(
        app_env="local",
        firestore_emulator_host="127.0.0.1:1",
        ai_base_url=fake_ai.base_url,
        ai_model="the-default",
        ai_timeout_seconds=2,
    )
    assert OpenAIProvider(settings)("chat", [{"role": "user", "content": "hi"}], options)["text"]
    assert chats(fake_ai)[-1]["model"] == "the-default" and chats(fake_ai)[-1]["max_tokens"] == 5
    recorded = {**old_job, "options": {"model": "x"}, "provider": "two", "provider_model": "two-x"}
    assert catalog.run_options(recorded) == {"model": catalog.Route("two", "two-x")}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)


PROVIDERS = {"two": {"base_url": "https://llm.example.net/v1", "timeout_seconds": 30}}


@pytest.mark.usefixtures("clean_env")
def test_production_needs_a_real_key_for_every_provider() -> None:
    real = {"two": "sk-proj-Qw7eRt9yUi2oPa4sDf6gHj8kLz1xCv3b"}
    settings = Settings(**PRODUCTION, ai_providers=PROVIDERS, ai_provider_keys=real)
    assert list(settings.endpoints()) == ["default", "two"]
    assert settings.endpoints()["two"].timeout_seconds == 30
    for keys, complaint in (
        (None, r"AI_PROVIDER_KEYS\[two\] is missing"),
        ({"two": "sk-test-1234567890abcdefghij"}, r"AI_PROVIDER_KEYS\[two\] is a placeholder"),
        ({"two": "sk-short"}, r"AI_PROVIDER_KEYS\[two\] is shorter"),
    ):
        with pytest.raises(ValidationError, match=complaint) as caught:
            Settings(**PRODUCTION, ai_providers=PROVIDERS, ai_provider_keys=keys)
        assert "sk-" not in str(caught.value)  # the problem is named, never the value


@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize(
    ("providers", "keys", "complaint"),
    [
        ({"default": {"base_url": "https://a.example/v1"}}, None, "not a name"),
        ({"Two": {"base_url": "https://a.example/v1"}}, None, "not a name"),
        ({"two": {"base_url": "ftp://a.example"}}, None, "needs an http"),
        ({"two": {"base_url": "https://a.example/v1", "timeout_seconds": 61}}, None, "above AI_TIMEOUT"),
        ({"two": {"base_url": "https://a.example/v1"}}, {"three": "sk-x"}, "AI_PROVIDERS lacks: three"),
        ({"two": {"base_url": "https://a.example/v1", "key": "sk-x"}}, None, "Extra inputs"),
    ],
)
def test_provider_declarations_are_validated_at_start(
    providers: dict[str, Any], keys: dict[str, str] | None, complaint: str
) -> None:
    local: dict[str, Any] = {"app_env": "local", "firestore_emulator_host": "127.0.0.1:1"}
    with pytest.raises(ValidationError, match=complaint):
        Settings(**local, ai_providers=providers, ai_provider_keys=keys)


@pytest.mark.usefixtures("clean_env")
def test_provider_settings_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_ENV", "local")
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", "127.0.0.1:1")
    monkeypatch.setenv("AI_PROVIDERS", json.dumps(PROVIDERS))
    monkeypatch.setenv("AI_PROVIDER_KEYS", json.dumps({"two": "sk-abc"}))
    settings = Settings()
    endpoint = settings.endpoints()["two"]
    assert endpoint.base_url == "https://llm.example.net/v1" and endpoint.api_key == SecretStr("sk-abc")
    assert "sk-abc" not in repr(settings)
    monkeypatch.setenv("AI_PROVIDERS", "")  # empty means unset, as for every optional setting
    monkeypatch.setenv("AI_PROVIDER_KEYS", "")
    assert list(Settings().endpoints()) == ["default"]


def test_the_deploy_plan_carries_the_providers_and_their_keys_secret(
    clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scripts import deploy

    argv = [
        "--project",
        "aijobs-models-1",
        "--region",
        "europe-west1",
        "--ai-providers",
        json.dumps(PROVIDERS),
    ]
    keys = {"two": "sk-proj-Qw7eRt9yUi2oPa4sDf6gHj8kLz1xCv3b"}
    config = deploy.config_from_args(deploy.parse_args(argv), {deploy.AI_PROVIDER_KEYS_ENV: json.dumps(keys)})
    steps = {step.description: step for _, step in deploy.build_plan(config).steps()}
    stored = steps["New version of aijobs-ai-provider-keys from $AIJOBS_AI_PROVIDER_KEYS"]
    assert stored.stdin == deploy.Stdin(deploy.AI_PROVIDER_KEYS_ENV)  # on stdin, never on a command line
    assert "Only the functions' account may read aijobs-ai-provider-keys" in steps
    worker = " ".join(deploy.deploy_function_argv(config, "worker", deploy.FUNCTIONS["worker"]))
    assert "AI_PROVIDER_KEYS=aijobs-ai-provider-keys:latest" in worker and "sk-proj" not in worker
    # What a deployed instance then sees passes production's checks, with both providers.
    env = deploy.function_env(config, deploy.FUNCTIONS["worker"])
    secrets = {"JWT_SECRET": deploy.Stdin().read().decode(), "AI_API_KEY": keys["two"][::-1]}
    for name, value in {**env, **secrets, "AI_PROVIDER_KEYS": json.dumps(keys)}.items():
        monkeypatch.setenv(name, value)
    assert list(Settings().endpoints()) == ["default", "two"]
    # Without providers the plan is as before: no such secret.
    plain = deploy.config_from_args(deploy.parse_args(argv[:4]), {})
    assert not any("provider-keys" in s.description for _, s in deploy.build_plan(plain).steps())
    assert "AI_PROVIDERS" not in deploy.function_env(plain, deploy.FUNCTIONS["worker"])
    for bad in ('{"two": {"base_url": "http://x"}}', "[]", "nope"):
        with pytest.raises(deploy.DeployError, match="ai-providers"):
            deploy.config_from_args(deploy.parse_args([*argv[:4], "--ai-providers", bad]), {})
