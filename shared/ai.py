"""The AI providers: OpenAI-compatible endpoints, through the official SDK.

One client per configured provider (``default``, the ``AI_*`` settings, and each of
``AI_PROVIDERS``), made on first use; a job goes to the provider and model recorded on it at
submit (``catalog.Route``, in its options as ``model``), a job from before models to the
default provider's configured model.

Text tasks use chat completions and images the images API. Every call has a
timeout and no SDK-level retries: a retryable failure goes back to Cloud Tasks,
which owns retry timing, and the job's attempt counter bounds it.

The SDK's timeout bounds each socket operation, so a server sending a byte every
few seconds could hold a call past the worker's lease and get the job run twice.
``_within`` sets a deadline for the whole call and ``_DeadlineBackend``, under
the HTTP client, cuts every connect, read and write to the time that is left.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any
from urllib.parse import urlsplit

import httpcore2
import httpx2
import openai
from openai.types import ImagesResponse
from openai.types.chat import ChatCompletion

from shared import images, prompts
from shared.catalog import MODEL_OPTION, Route
from shared.errors import (
    BadOutput,
    ContentRefused,
    PermanentProviderError,
    ProviderConnectionError,
    ProviderError,
    ProviderRateLimited,
    ProviderServerError,
    ProviderTimeout,
)
from shared.settings import DEFAULT_PROVIDER, Endpoint, Settings

_PING_SECONDS = 3.0


class TaskTypeUnsupported(PermanentProviderError):
    """The catalog sells a task type this provider has no way to run."""

    code = "task_type_unsupported"


class ModelUnavailable(PermanentProviderError):
    """The job's provider is no longer configured (or its model has no name): it cannot run."""

    code = "model_unavailable"


class InvalidTaskOptions(PermanentProviderError):
    """The options lack what the task's prompt needs (the catalog and the prompt disagree)."""

    code = "invalid_options"


# Per thread (the worker shares one provider between its threads), None outside a call.
_deadline: ContextVar[float | None] = ContextVar("ai_call_deadline", default=None)


@contextmanager
def _within(seconds: float) -> Iterator[None]:
    """Make ``seconds`` the bound on everything the HTTP client does inside, in total."""
    token = _deadline.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


def _left(timeout: float | None, expired: type[Exception]) -> float | None:
    """An operation's own timeout, shortened to what is left of the call's deadline."""
    deadline = _deadline.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        # An httpcore timeout, so httpx and the SDK report it as APITimeoutError.
        raise expired("the AI call ran out of time")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore2.NetworkStream):
    def __init__(self, inner: httpcore2.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _left(timeout, httpcore2.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _left(timeout, httpcore2.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore2.NetworkStream:
        timeout = _left(timeout, httpcore2.ConnectTimeout)
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore2.NetworkBackend):
    def __init__(self, inner: httpcore2.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.NetworkStream:
        timeout = _left(timeout, httpcore2.ConnectTimeout)
        return _DeadlineStream(self._inner.connect_tcp(host, port, timeout, local_address, socket_options))

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore2.NetworkStream:
        timeout = _left(timeout, httpcore2.ConnectTimeout)
        return _DeadlineStream(self._inner.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def deadline_http_client() -> httpx2.Client:
    """The SDK's default HTTP client, but honouring the deadline that ``_within`` sets."""
    transport = httpx2.HTTPTransport()
    # httpx2 offers no parameter for httpcore's network backend: wrap the one it chose.
    pool = transport._pool
    pool._network_backend = _DeadlineBackend(pool._network_backend)
    return openai.DefaultHttpxClient(transport=transport)


def _classify(exc: Exception) -> ProviderError:
    """Map an SDK error to retryable or permanent, by what another attempt could change."""
    if isinstance(exc, openai.APITimeoutError):
        return ProviderTimeout("the AI endpoint timed out")
    if isinstance(exc, openai.APIConnectionError):
        return ProviderConnectionError("could not reach the AI endpoint")
    if isinstance(exc, openai.RateLimitError):
        return ProviderRateLimited("the AI endpoint is rate limiting")
    if isinstance(exc, openai.APIStatusError):
        if exc.status_code >= 500 or exc.status_code in (408, 409):
            return ProviderServerError(f"the AI endpoint answered {exc.status_code}")
        if exc.code == "content_policy_violation" or exc.code == "content_filter":
            return ContentRefused("the AI endpoint refused this content")
        return PermanentProviderError(f"the AI endpoint rejected the request ({exc.status_code})")
    if isinstance(exc, openai.APIResponseValidationError | ValueError):
        return BadOutput("the AI endpoint sent a malformed response")
    raise exc


class OpenAIProvider:
    """Callable as ``shared.jobs.Provider``, for every configured provider; the HTTP client is
    injectable for tests.

    An injected client is bounded in total only if it is built like ``deadline_http_client``.
    """

    def __init__(self, settings: Settings, http_client: httpx2.Client | None = None) -> None:
        self._settings = settings
        self._endpoints = settings.endpoints()
        self._http_client = http_client
        self._clients: dict[str, openai.OpenAI] = {}
        self._lock = threading.Lock()  # the worker's threads share one provider

    @property
    def names(self) -> tuple[str, ...]:
        """The configured providers, ``default`` first."""
        return tuple(self._endpoints)

    def _client(self, name: str) -> tuple[openai.OpenAI, Endpoint]:
        endpoint = self._endpoints.get(name)
        if endpoint is None:
            raise ModelUnavailable(f"the AI provider {name!r} is not configured")
        with self._lock:
            made = self._clients.get(name)
            if made is None:
                key = endpoint.api_key.get_secret_value() if endpoint.api_key else "unused"
                made = openai.OpenAI(
                    base_url=endpoint.base_url,
                    api_key=key,
                    timeout=endpoint.timeout_seconds,
                    max_retries=0,
                    http_client=self._http_client or deadline_http_client(),
                )
                self._clients[name] = made
        return made, endpoint

    def __call__(self, task_type: str, input_data: Any, options: dict[str, Any]) -> dict[str, Any]:
        if not prompts.supported(task_type):
            raise TaskTypeUnsupported(f"the AI provider cannot serve {task_type}")
        route = options.get(MODEL_OPTION)
        if not isinstance(route, Route):  # a job from before models: the default's configured model
            route = Route(DEFAULT_PROVIDER, self._settings.model_for(task_type))
        options = {k: v for k, v in options.items() if k != MODEL_OPTION}
        client, endpoint = self._client(route.provider)
        if not route.model:
            raise ModelUnavailable(f"the AI provider {route.provider!r} has no model for {task_type}")
        try:
            with _within(endpoint.timeout_seconds):
                if task_type == "generate_image":
                    return self._image(client, endpoint, route.model, input_data, options)
                return self._text(client, route.model, task_type, input_data, options)
        except (openai.OpenAIError, ValueError) as exc:
            # A body that is not JSON surfaces as a bare JSONDecodeError (a ValueError).
            raise _classify(exc) from exc

    def ping(self, name: str = DEFAULT_PROVIDER) -> None:
        """Cheap reachability check of one provider for ``health``, bounded like a job's call."""
        client, _ = self._client(name)
        try:
            with _within(_PING_SECONDS):
                client.with_options(timeout=_PING_SECONDS).models.list()
        except openai.OpenAIError as exc:
            raise _classify(exc) from exc

    def _text(
        self, client: openai.OpenAI, model: str, task_type: str, input_data: Any, options: dict[str, Any]
    ) -> dict[str, Any]:
        if task_type == "chat":
            messages = list(input_data)
        else:
            try:
                instruction = prompts.instruction(task_type, options)
            except KeyError as exc:
                raise InvalidTaskOptions(f"the {task_type} prompt needs option {exc}") from None
            messages = [{"role": "system", "content": instruction}, {"role": "user", "content": input_data}]
        params: dict[str, Any] = {"temperature": options["temperature"]} if "temperature" in options else {}
        cap = prompts.max_tokens(task_type, options)
        if cap is not None:
            params["max_tokens"] = cap
        completion = client.chat.completions.create(model=model, messages=messages, **params)
        if not isinstance(completion, ChatCompletion) or not completion.choices:
            raise BadOutput("the AI endpoint returned no choices")
        choice = completion.choices[0]
        if choice.finish_reason == "content_filter":
            raise ContentRefused("the AI endpoint refused this content")
        text = choice.message.content
        if not text or not text.strip():
            raise BadOutput("the AI endpoint returned an empty answer")
        return {"text": text}

    def _image(
        self, client: openai.OpenAI, endpoint: Endpoint, model: str, prompt: str, options: dict[str, Any]
    ) -> dict[str, Any]:
        """The image as bytes (``images.Picture``): the worker stores it, the job keeps its path.

        GPT image models always answer in base64 (several MB); others may answer a URL, which
        expires within hours, so it is downloaded now, bounded like the rest of the call."""
        result = client.images.generate(model=model, prompt=prompt, n=1, **options)
        image = result.data[0] if isinstance(result, ImagesResponse) and result.data else None
        limit = self._settings.image_max_bytes
        if image is not None and image.b64_json:
            if len(image.b64_json) > (limit + 2) // 3 * 4:
                raise BadOutput("the AI endpoint's image is larger than IMAGE_MAX_BYTES")
            try:
                data = base64.b64decode(image.b64_json, validate=True)
            except binascii.Error:
                raise BadOutput("the AI endpoint's image is not valid base64") from None
        elif image is not None and image.url:
            data = self._download(image.url, endpoint, limit)
        else:
            raise BadOutput("the AI endpoint returned no usable image")
        content_type = images.sniff(data)
        if content_type is None:
            raise BadOutput("the AI endpoint's image is not a PNG, JPEG, WebP or GIF")
        return {"image": images.Picture(data, content_type)}

    def _download(self, url: str, endpoint: Endpoint, limit: int) -> bytes:
        """An image URL's bytes, at most ``limit``, inside the call's deadline; never redirected."""
        if not may_fetch(url, endpoint.base_url):
            raise BadOutput("the AI endpoint answered an image URL that is not fetched")
        http = self._http_client or deadline_http_client()
        try:
            # No redirect: only the checked URL is fetched. The SDK's headers (its API key) are
            # per request, so none of them goes along.
            with http.stream("GET", url, follow_redirects=False, timeout=endpoint.timeout_seconds) as answer:
                if answer.status_code >= 500:
                    raise ProviderServerError(f"the image URL answered {answer.status_code}")
                if answer.status_code != 200:
                    raise BadOutput(f"the image URL answered {answer.status_code}")
                declared = answer.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > limit:
                    raise BadOutput("the AI endpoint's image is larger than IMAGE_MAX_BYTES")
                chunks, total = [], 0
                for chunk in answer.iter_bytes():
                    total += len(chunk)
                    if total > limit:  # a missing or false Content-Length is cut here
                        raise BadOutput("the AI endpoint's image is larger than IMAGE_MAX_BYTES")
                    chunks.append(chunk)
        except httpx2.TimeoutException:
            raise ProviderTimeout("the image URL timed out") from None
        except httpx2.HTTPError:
            raise ProviderConnectionError("could not download the image URL") from None
        finally:
            if http is not self._http_client:
                http.close()
        return b"".join(chunks)


def may_fetch(url: str, provider_url: str | None) -> bool:
    """Whether the worker may download an image URL a provider answered (SSRF: the URL is the
    provider's to choose, the request is ours): from the provider's own origin, else only
    ``https`` to a name or a public address, never userinfo, loopback, a private network or
    the metadata server (``http`` only, and ``*.internal``)."""
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None or not parts.hostname:
        return False
    host = parts.hostname.rstrip(".").lower()
    if provider_url:
        provider = urlsplit(provider_url)
        theirs = (provider.scheme, (provider.hostname or "").lower(), provider.port)
        if (
            parts.scheme,
            host,
            parts.port,
        ) == theirs:  # the endpoint this deployment chose to trust (the local model, the tests' fake)
            return True
    if parts.scheme != "https" or host == "localhost" or host.endswith((".localhost", ".internal")):
        return False
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return True  # a name: https makes its certificate vouch for it
    return address.is_global
