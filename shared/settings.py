"""One typed settings object, read from the environment and validated at start."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Secrets that must never reach production; the local stack uses the first one.
DEV_JWT_SECRET = "dev-only-jwt-secret-not-for-production-use"
_KNOWN_DEFAULTS = {DEV_JWT_SECRET, "secret", "changeme", "change-me", "test", "dev"}
_MIN_SECRET_LEN = 32
_MIN_DISTINCT = 10  # a generated 32-character key has about 14 even in hex; a typed one far fewer
# Words that mark a secret someone typed for a test or an example. "dev" is short enough to
# turn up by chance in a random key, so it counts only as a word of its own or at the start.
_PLACEHOLDER_WORDS = ("test", "secret", "changeme", "example", "local", "password")
_DEV_WORD = re.compile(r"(^|[^a-z])dev([^a-z]|$)|^dev")
_PLACEHOLDER_KEYS = frozenset(
    {"local", "test", "dev", "changeme", "change-me", "secret", "example", "dummy", "fake", "none", "empty"}
)
_MIN_KEY_LEN = 20  # no provider's real API key is this short
_GOOGLE_CERTS_HOST = "www.googleapis.com"
_ORIGIN = re.compile(r"https?://[a-z0-9.-]+(:[0-9]{1,5})?")  # what a browser sends: no path, lower case
LOCAL_ORIGIN = re.compile(r"http://(localhost|127\.0\.0\.1)(:[0-9]{1,5})?")
DEFAULT_PROVIDER = "default"
"""The AI endpoint of the ``AI_*`` settings; ``AI_PROVIDERS`` declares the others."""
_PROVIDER_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")


def secret_problems(value: str) -> list[str]:
    """Why ``value`` is not a safe JWT key for production (empty when it is)."""
    lowered = value.lower()
    problems = []
    if len(value) < _MIN_SECRET_LEN:
        problems.append(f"is shorter than {_MIN_SECRET_LEN} characters")
    if lowered in _KNOWN_DEFAULTS or DEV_JWT_SECRET in value:
        problems.append("is a known default")
    if len(set(value)) < _MIN_DISTINCT:
        problems.append(f"has fewer than {_MIN_DISTINCT} distinct characters")
    elif value in (value + value)[1:-1]:  # true exactly when value is a repeated pattern
        problems.append("repeats a short pattern")
    words = [w for w in _PLACEHOLDER_WORDS if w in lowered]
    if _DEV_WORD.search(lowered):
        words.insert(0, "dev")
    if words:
        problems.append("contains " + ", ".join(repr(w) for w in words) + ": generate a random one")
    return problems


def api_key_problems(value: str) -> list[str]:
    """Why ``value`` cannot be a real AI API key (empty when it may be)."""
    lowered = value.lower()
    bare = lowered.removeprefix("sk-")
    if (
        lowered in _KNOWN_DEFAULTS
        or bare in _PLACEHOLDER_KEYS
        or any(bare.startswith(w) for w in ("test", "dev"))
    ):
        return ["is a placeholder, not a real key"]
    if len(value) < _MIN_KEY_LEN:
        return [f"is shorter than {_MIN_KEY_LEN} characters"]
    if len(set(bare)) < _MIN_DISTINCT:
        return [f"has fewer than {_MIN_DISTINCT} distinct characters"]
    return []


def _is_google_certs_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    return (
        parts.scheme == "https"
        and parts.hostname == _GOOGLE_CERTS_HOST
        and port is None
        and parts.username is None
        and parts.password is None
    )


class ProviderSettings(BaseModel):
    """One more OpenAI-compatible endpoint, an entry of ``AI_PROVIDERS`` (its key: ``AI_PROVIDER_KEYS``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str
    timeout_seconds: float | None = Field(None, gt=0)
    """``None``: ``AI_TIMEOUT_SECONDS``, which is also the most it may be (it bounds a job's lease)."""
    model: str = ""
    """Chat model of a catalog entry on this provider that names none."""
    image_model: str = ""
    """Image model of a catalog entry on this provider that names none."""


@dataclass(frozen=True)
class Endpoint:
    """A configured provider as the AI client needs it (``DEFAULT_PROVIDER`` included)."""

    base_url: str | None
    api_key: SecretStr | None
    timeout_seconds: float
    model: str
    image_model: str

    def model_for(self, task_type: str) -> str:
        return self.image_model if task_type == "generate_image" else self.model


class Settings(BaseSettings):
    """Everything configurable, from environment variables of the same name (upper case)."""

    # No input in errors: the refusal names what is wrong, never a secret's value.
    model_config = SettingsConfigDict(frozen=True, extra="ignore", hide_input_in_errors=True)

    app_env: Literal["production", "local"] = "production"
    """``local`` allows emulators and dev secrets; anything else is production and strict."""

    google_cloud_project: str = "demo-aijobs"
    """Project id; emulators accept any ``demo-*`` id."""

    firestore_emulator_host: str | None = None
    """``host:port`` of the Firestore emulator; read by the Firestore SDK too."""

    firebase_project_id: str | None = None
    """Firebase project whose ID tokens are accepted (their audience); unset: GOOGLE_CLOUD_PROJECT."""

    firebase_auth_emulator_host: str | None = None
    """``host:port`` of the Firebase Auth emulator; read by firebase-admin too; local stack only."""

    jwt_secret: SecretStr | None = None
    """HS256 key for access tokens; production requires 32+ characters, not a known default."""

    jwt_ttl_seconds: int = Field(1800, gt=0)
    """Access token lifetime."""

    refresh_ttl_seconds: int = Field(2_592_000, gt=0)
    """Refresh token lifetime (30 days); each refresh issues a new one with the full lifetime."""

    api_key_max_per_user: int = Field(10, ge=1, le=100)
    """Live API keys one user may hold."""

    team_max_per_user: int = Field(20, ge=1, le=1000)
    """Teams one account may belong to (created or joined)."""

    api_key_touch_seconds: int = Field(60, ge=1)
    """An API key's last_used_at is written at most once per this many seconds."""

    signup_credits: int = Field(10, ge=0)
    """Credits granted to a new account."""

    max_input_chars: int = Field(20_000, gt=0)
    """Largest text input (or total chat content) a job accepts."""

    max_body_bytes: int = Field(64 * 1024, gt=0)
    """Largest request body any function reads."""

    catalog_cache_seconds: float = Field(30.0, ge=0)
    """How long a function instance reuses the task-type config read from Firestore."""

    ai_base_url: str | None = None
    """OpenAI-compatible endpoint; unset means api.openai.com."""

    ai_api_key: SecretStr | None = None
    """API key for the AI endpoint; required in production."""

    ai_model: str = "gpt-4o-mini"
    """Chat model for the text task types."""

    ai_image_model: str = "gpt-image-1"
    """Image model for ``generate_image``; empty means the endpoint cannot serve images."""

    ai_timeout_seconds: float = Field(60.0, gt=0)
    """Upper bound on one AI call."""

    ai_providers: dict[str, ProviderSettings] | None = None
    """More OpenAI-compatible endpoints the catalog's models may name, as JSON ``{name: {"base_url",
    "timeout_seconds", "model", "image_model"}}``; the ``AI_*`` endpoint above is ``default``."""

    ai_provider_keys: dict[str, SecretStr] | None = None
    """API keys of the ``AI_PROVIDERS``, as JSON ``{name: key}``; production requires a real one for each."""

    job_max_attempts: int = Field(3, ge=1)
    """AI attempts per job before a retryable failure becomes final (and refunded)."""

    tasks_emulator_host: str | None = None
    """``host:port`` of gcloud-tasks-emulator; unset means real Cloud Tasks."""

    tasks_location: str = "us-central1"
    """Cloud Tasks location of the jobs queue."""

    tasks_queue: str = "aijobs-jobs"
    """Cloud Tasks queue id."""

    functions_base_url: str = "http://127.0.0.1:8080"
    """Where the functions are served; ``<base>/<function>`` is each one's URL and OIDC audience."""

    tasks_service_account: str | None = None
    """Service account whose OIDC token the queue sends and the worker expects (production)."""

    scheduler_service_account: str | None = None
    """Service account whose OIDC token Cloud Scheduler sends to the scheduled functions."""

    oidc_certs_url: str = "https://www.googleapis.com/oauth2/v1/certs"
    """Where the keys that sign Google's OIDC tokens are published (tests point it at their own)."""

    worker_secret: SecretStr | None = None
    """Shared secret internal callers (queue, scheduler) send locally; local stack only."""

    job_retention_days: int = Field(90, gt=0)
    """Job documents carry ``expires_at`` this long after submission; Firestore's TTL policy deletes them."""

    login_max_failures: int = Field(5, ge=1)
    """Failed logins for one username within ``LOGIN_WINDOW_SECONDS`` before it is locked (429)."""

    login_window_seconds: int = Field(900, gt=0)
    """The failed-login window, and how long a lock lasts after the last counted failure."""

    submit_rate_per_minute: int = Field(120, ge=1)
    """Jobs one user may submit per clock minute; more get 429, uncharged."""

    conversations_per_user: int = Field(100, ge=1)
    """Conversations one user may keep at once; more get 422 `too_many_conversations`."""

    conversation_max_messages: int = Field(200, ge=1, le=240)
    """Messages one conversation may hold, failed ones included; more get 422 `conversation_full`.
    At most 240, so deleting a conversation (its messages and their keys) fits one commit."""

    conversation_history_chars: int = Field(12_000, gt=0)
    """Characters of content a conversation message's job is sent (also capped by MAX_INPUT_CHARS):
    the system message, the new message, and the newest whole exchanges that fit (oldest dropped first)."""

    cors_origins: str | None = None
    """Comma-separated origins browsers may call from; unset: every http://localhost:<port> and
    http://127.0.0.1:<port> in the local stack, none in production."""

    wallet_shards: int = Field(256, ge=1, le=400)
    """Most shard documents one balance is spread over (one per 20 credits); may change later."""

    signup_rate_per_hour: int = Field(20, ge=1)
    """Signups one client address may make per clock hour; more get 429."""

    firestore_timeout_seconds: float = Field(5.0, gt=0)
    """Bound on one Firestore call, its retries included: past it the request is answered 503."""

    outbox_delay_seconds: int = Field(60, gt=0)
    """A charged job still unclaimed this long after submission is (re-)enqueued by the sweeper."""

    lease_grace_seconds: float = Field(30.0, gt=0)
    """How long a claimed job's lease outlives its AI call: room for the worker's writes."""

    queued_timeout_seconds: int = Field(3600, gt=0)
    """A job still ``queued`` this long after its last change is failed and refunded by the sweeper."""

    anomaly_min_jobs: int = Field(20, ge=1)
    """The weekly report flags a spike only at or above this many jobs."""

    anomaly_ratio: float = Field(2.0, gt=1)
    """The weekly report flags a week with more than this times the mean of the previous 4."""

    webhook_queue: str = "aijobs-webhooks"
    """Cloud Tasks queue of webhook deliveries; never the jobs queue, so slow receivers cannot delay jobs."""

    webhook_max_endpoints: int = Field(10, ge=1, le=100)
    """Webhook endpoints one user may register."""

    webhook_cache_seconds: float = Field(30.0, ge=0, le=300)
    """How long an instance reuses a user's list of webhook endpoints: a new one takes effect within it."""

    webhook_timeout_seconds: float = Field(5.0, gt=0, le=30)
    """Bound on one webhook delivery, connect to answer."""

    webhook_max_attempts: int = Field(8, ge=1, le=50)
    """Attempts per webhook delivery before it is ``failed``."""

    webhook_disable_after_days: float = Field(5.0, gt=0, le=90)
    """An endpoint whose deliveries have all failed for this many days is disabled."""

    webhook_rotation_window_seconds: int = Field(86400, ge=0, le=30 * 86400)
    """After a secret rotation, deliveries are also signed with the old secret for this long."""

    webhook_sweep_delay_seconds: int = Field(60, gt=0)
    """A webhook delivery still pending this long after it was due is enqueued by the sweeper."""

    images_bucket: str = ""
    """Cloud Storage bucket of generated images (``images/{user_id}/{job_id}.png``); required in
    production. Locally the storage emulator's default bucket."""

    storage_emulator_host: str | None = None
    """``http://host:port`` of the storage emulator; read by google-cloud-storage too. Local only."""

    image_max_bytes: int = Field(20_000_000, gt=0)
    """Largest generated image the worker stores (base64 answer decoded, or URL answer downloaded)."""

    storage_timeout_seconds: float = Field(10.0, gt=0)
    """Bound on one Cloud Storage call (the worker's upload runs inside LEASE_GRACE_SECONDS)."""

    @property
    def is_local(self) -> bool:
        return self.app_env == "local"

    @property
    def firebase_project(self) -> str:
        return self.firebase_project_id or self.google_cloud_project

    def function_url(self, name: str) -> str:
        return f"{self.functions_base_url.rstrip('/')}/{name}"

    @property
    def worker_url(self) -> str:
        return self.function_url("worker")

    @property
    def cors_origin_list(self) -> tuple[str, ...]:
        """The ``CORS_ORIGINS`` entries (empty when unset)."""
        return tuple(o for o in (self.cors_origins or "").replace(" ", "").split(",") if o)

    @property
    def job_lease_seconds(self) -> float:
        """A claimed job's lease outlives the AI call it guards, with room for the writes."""
        return self.ai_timeout_seconds + self.lease_grace_seconds

    @field_validator(
        "worker_secret",
        "jwt_secret",
        "ai_api_key",
        "ai_base_url",
        "cors_origins",
        "storage_emulator_host",
        "ai_providers",
        "ai_provider_keys",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # An empty variable (``WORKER_SECRET=``) means unset, not an empty secret.
        return None if value == "" else value

    def model_for(self, task_type: str) -> str:
        """The model that serves ``task_type``; empty when the endpoint cannot serve it."""
        return self.ai_image_model if task_type == "generate_image" else self.ai_model

    def endpoints(self) -> dict[str, Endpoint]:
        """Every configured provider by name: ``default`` (the ``AI_*`` settings) and ``AI_PROVIDERS``."""
        found = {
            DEFAULT_PROVIDER: Endpoint(
                self.ai_base_url, self.ai_api_key, self.ai_timeout_seconds, self.ai_model, self.ai_image_model
            )
        }
        keys = self.ai_provider_keys or {}
        for name, p in sorted((self.ai_providers or {}).items()):
            timeout = p.timeout_seconds or self.ai_timeout_seconds
            found[name] = Endpoint(p.base_url, keys.get(name), timeout, p.model, p.image_model)
        return found

    def _provider_problems(self) -> list[str]:
        problems = []
        for name, p in (self.ai_providers or {}).items():
            if name == DEFAULT_PROVIDER or not _PROVIDER_NAME.fullmatch(name):
                problems.append(f"AI_PROVIDERS: {name[:40]!r} is not a name ([a-z][a-z0-9_-]*, not default)")
            if urlsplit(p.base_url).scheme not in ("http", "https") or not urlsplit(p.base_url).hostname:
                problems.append(f"AI_PROVIDERS: {name[:40]!r} needs an http(s):// base_url")
            if (p.timeout_seconds or 0) > self.ai_timeout_seconds:
                problems.append(f"AI_PROVIDERS: {name[:40]!r} timeout_seconds is above AI_TIMEOUT_SECONDS")
        unknown = sorted(set(self.ai_provider_keys or {}) - set(self.ai_providers or {}))
        if unknown:
            problems.append("AI_PROVIDER_KEYS names providers AI_PROVIDERS lacks: " + ", ".join(unknown)[:80])
        return problems

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.webhook_queue == self.tasks_queue:
            raise ValueError("WEBHOOK_QUEUE must not be TASKS_QUEUE: a slow receiver would hold up jobs")
        for origin in self.cors_origin_list:
            if not _ORIGIN.fullmatch(origin):
                raise ValueError(f"CORS_ORIGINS: {origin[:60]!r} is not scheme://host[:port] in lower case")
        if self.storage_timeout_seconds >= self.lease_grace_seconds:
            raise ValueError("STORAGE_TIMEOUT_SECONDS must be below LEASE_GRACE_SECONDS")
        if provider_problems := self._provider_problems():
            raise ValueError("; ".join(provider_problems))
        if self.is_local:
            if not self.firestore_emulator_host:
                raise ValueError("APP_ENV=local needs FIRESTORE_EMULATOR_HOST (run scripts/dev)")
            return self
        problems = []
        for name, check in (("jwt_secret", secret_problems), ("ai_api_key", api_key_problems)):
            value: SecretStr | None = getattr(self, name)
            if value is None:
                problems.append(f"{name.upper()} is missing")
            else:
                # The messages name what is wrong, never the value.
                problems += [f"{name.upper()} {problem}" for problem in check(value.get_secret_value())]
        for provider in sorted(self.ai_providers or {}):
            key = (self.ai_provider_keys or {}).get(provider)
            where = f"AI_PROVIDER_KEYS[{provider}]"
            found = [f"{where} {p}" for p in api_key_problems(key.get_secret_value())] if key else []
            problems += found if key else [f"{where} is missing"]
        if self.worker_secret is not None:
            problems.append("WORKER_SECRET is for the local stack; production uses OIDC")
        for name in ("tasks_service_account", "scheduler_service_account"):
            if not getattr(self, name):
                problems.append(f"{name.upper()} is missing")
        if not self.functions_base_url.startswith("https://"):
            problems.append("FUNCTIONS_BASE_URL must be the functions' https:// URL")
        if self.firestore_emulator_host or self.tasks_emulator_host or self.storage_emulator_host:
            problems.append("emulator hosts are set")
        if self.firebase_auth_emulator_host:
            # firebase-admin would accept the emulator's unsigned tokens: anyone could sign in.
            problems.append("FIREBASE_AUTH_EMULATOR_HOST is set")
        if not self.images_bucket:
            problems.append("IMAGES_BUCKET is missing")
        if not _is_google_certs_url(self.oidc_certs_url):
            # Whoever serves these keys can sign tokens the internal functions accept.
            problems.append(f"OIDC_CERTS_URL must be an https://{_GOOGLE_CERTS_HOST}/ URL")
        if any(not o.startswith("https://") and not LOCAL_ORIGIN.fullmatch(o) for o in self.cors_origin_list):
            problems.append("CORS_ORIGINS must be https:// origins (or http://localhost)")
        if problems:
            raise ValueError("refusing to start in production: " + "; ".join(problems))
        return self


@cache
def get_settings() -> Settings:
    """The process-wide settings, validated on first use (a function's cold start)."""
    return Settings()
