"""The AI provider: any OpenAI-compatible endpoint, through the official SDK.

Text tasks use chat completions and images the images API. Every call has a
timeout and no SDK-level retries: a retryable failure goes back to Cloud Tasks,
which owns retry timing, and the job's attempt counter bounds it.
"""

from __future__ import annotations

from typing import Any

import openai
from openai.types import ImagesResponse
from openai.types.chat import ChatCompletion

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
from shared.settings import Settings

_PROMPTS = {
    "summarize": "Summarize the user's text clearly and concisely.",
    "translate": "Translate the user's text into {target_language}. Reply with the translation only.",
    "generate_text": "You are a helpful writer. Write what the user asks for.",
}


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
    """Callable as ``shared.jobs.Provider``; the HTTP client is injectable for tests."""

    def __init__(self, settings: Settings, http_client: Any = None) -> None:
        key = settings.ai_api_key.get_secret_value() if settings.ai_api_key else "unused"
        self._settings = settings
        self._client = openai.OpenAI(
            base_url=settings.ai_base_url,
            api_key=key,
            timeout=settings.ai_timeout_seconds,
            max_retries=0,
            http_client=http_client,
        )

    def __call__(self, task_type: str, input_data: Any, options: dict[str, Any]) -> dict[str, Any]:
        try:
            if task_type == "generate_image":
                return self._image(input_data, options)
            return self._text(task_type, input_data, options)
        except (openai.OpenAIError, ValueError) as exc:
            # A body that is not JSON surfaces as a bare JSONDecodeError (a ValueError).
            raise _classify(exc) from exc

    def ping(self) -> None:
        """Cheap reachability check for ``health``."""
        try:
            self._client.with_options(timeout=3.0).models.list()
        except openai.OpenAIError as exc:
            raise _classify(exc) from exc

    def _text(self, task_type: str, input_data: Any, options: dict[str, Any]) -> dict[str, Any]:
        if task_type == "chat":
            messages = list(input_data)
        else:
            instruction = _PROMPTS[task_type].format(**options)
            if task_type == "summarize" and "max_words" in options:
                instruction += f" Use at most {options['max_words']} words."
            messages = [{"role": "system", "content": instruction}, {"role": "user", "content": input_data}]
        params = {k: options[k] for k in ("max_tokens", "temperature") if k in options}
        completion = self._client.chat.completions.create(
            model=self._settings.model_for(task_type), messages=messages, **params
        )
        if not isinstance(completion, ChatCompletion) or not completion.choices:
            raise BadOutput("the AI endpoint returned no choices")
        choice = completion.choices[0]
        if choice.finish_reason == "content_filter":
            raise ContentRefused("the AI endpoint refused this content")
        text = choice.message.content
        if not text or not text.strip():
            raise BadOutput("the AI endpoint returned an empty answer")
        return {"text": text}

    def _image(self, prompt: str, options: dict[str, Any]) -> dict[str, Any]:
        result = self._client.images.generate(
            model=self._settings.ai_image_model, prompt=prompt, n=1, **options
        )
        image = result.data[0] if isinstance(result, ImagesResponse) and result.data else None
        if image is not None and image.url:
            return {"image_url": image.url}
        # Inline base64 fits in a job document (1 MiB limit) only for small images.
        if image is not None and image.b64_json and len(image.b64_json) < 700_000:
            return {"image_b64": image.b64_json}
        raise BadOutput("the AI endpoint returned no usable image")
