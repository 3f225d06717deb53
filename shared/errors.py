"""The domain errors. Each carries its HTTP status and a stable snake_case ``code``.

Clients branch on ``code``; the message is for people and may change.
"""

from __future__ import annotations


class AppError(Exception):
    """Base of every error a client may see. Anything else is answered as ``internal``."""

    status = 500
    code = "internal"
    message = "internal error"

    def __init__(self, message: str | None = None, *, code: str | None = None) -> None:
        self.message = message or self.message
        self.code = code or self.code
        super().__init__(self.message)


class BadRequest(AppError):
    status, code, message = 400, "bad_request", "malformed request"


class Unauthenticated(AppError):
    status, code, message = 401, "unauthenticated", "missing or invalid credentials"


class InsufficientCredits(AppError):
    status, code, message = 402, "insufficient_credits", "not enough credits"


class Forbidden(AppError):
    status, code, message = 403, "forbidden", "not allowed"


class NotFound(AppError):
    status, code, message = 404, "not_found", "not found"


class MethodNotAllowed(AppError):
    """``allow`` is what the route takes, sent back in the ``Allow`` header (RFC 9110)."""

    status, code, message = 405, "method_not_allowed", "method not allowed"

    def __init__(self, *allow: str, code: str | None = None) -> None:
        super().__init__(f"use {' or '.join(allow)}" if allow else None, code=code)
        self.allow = allow


class Conflict(AppError):
    status, code, message = 409, "conflict", "conflicts with the current state"


class PayloadTooLarge(AppError):
    status, code, message = 413, "payload_too_large", "request too large"


class UnsupportedMediaType(AppError):
    status, code, message = 415, "unsupported_media_type", "send application/json"


class TooManyRequests(AppError):
    """Slow down; ``retry_after`` seconds is when the same request can succeed."""

    status, code, message = 429, "rate_limited", "too many requests"

    def __init__(self, message: str, retry_after: int, *, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = max(1, retry_after)


class InvalidRequest(AppError):
    status, code, message = 422, "invalid_request", "invalid request"


class Unavailable(AppError):
    """Temporary: the same request may succeed later. Nothing was charged."""

    status, code, message = 503, "unavailable", "temporarily unavailable, retry"


class NotQueued(Unavailable):
    """The queue refused a job's task: it was not created and will never be delivered."""

    code = "enqueue_failed"


class OutcomeUnknown(Unavailable):
    """Temporary, and the change may or may not have been applied: the store did not confirm.

    A retry with the same ``Idempotency-Key`` (or ``grant_id``) answers what really happened.
    """

    code, message = "outcome_unknown", "the outcome is unknown; retry with the same key to learn it"


class ProviderError(Exception):
    """An AI call failed. Never shown as an HTTP error; stored as the job's ``error``.

    ``retryable`` tells the worker whether another attempt may succeed.
    """

    retryable = False
    code = "ai_error"

    def __init__(self, message: str) -> None:
        self.message = message[:500]
        super().__init__(self.message)


class RetryableProviderError(ProviderError):
    retryable, code = True, "ai_unavailable"


class ProviderTimeout(RetryableProviderError):
    code = "ai_timeout"


class ProviderRateLimited(RetryableProviderError):
    code = "ai_rate_limited"


class ProviderServerError(RetryableProviderError):
    code = "ai_server_error"


class ProviderConnectionError(RetryableProviderError):
    code = "ai_connection_error"


class PermanentProviderError(ProviderError):
    code = "ai_rejected"


class ContentRefused(PermanentProviderError):
    code = "content_refused"


class BadOutput(PermanentProviderError):
    code = "ai_bad_output"
