"""Exceptions for every error the aijobs API answers, named after its ``code``.

Every API error is ``{"error": {"code": "<snake_case>", "message": "<text>"}}``. The client
raises the class registered for that ``code``; a code it does not know falls back to the
class of the HTTP status (``NotFound`` for an unknown 404, ``ServerError`` for a 5xx, ...),
so ``except NotFound`` keeps working when the server learns a new code.

The tree::

    AijobsError                       status, code, message, body, headers
    ├── BadRequest (400)              MalformedJson, InvalidUnicode
    ├── Unauthenticated (401)         InvalidCredentials, InvalidToken, TokenExpired, InvalidApiKey,
    │                                 InvalidRefreshToken, RefreshTokenExpired, RefreshTokenReused
    ├── InsufficientCredits (402)     MemberDailyLimit, MemberMonthlyLimit
    ├── Forbidden (403)               AdminOnly, OriginNotAllowed, ApiKeyNotAllowed, TeamRoleRequired
    ├── NotFound (404)                JobNotFound, UserNotFound, ReportNotFound, RouteNotFound,
    │                                 ConversationNotFound, WebhookNotFound, BatchNotFound,
    │                                 ApiKeyNotFound, ImageNotFound, TeamNotFound, MemberNotFound
    ├── MethodNotAllowed (405)
    ├── Conflict (409)                UsernameTaken, IdempotencyKeyReused, JobNotCancelable,
    │                                 JobInProgress, JobNotFinished, JobDeleted, GrantIdReused,
    │                                 BalanceTooLow, ConversationBusy, AlreadyMember, TeamFull,
    │                                 TooManyTeams, LastOwner, TeamNotEmpty, TeamBusy,
    │                                 TransferIdReused
    ├── PayloadTooLarge (413)         InputTooLarge
    ├── UnsupportedMediaType (415)
    ├── InvalidRequest (422)          InvalidLimit, InvalidCursor, InvalidWait, InvalidOption,
    │                                 UnknownTaskType, TaskTypeUnsupported, UnknownModel,
    │                                 ModelUnavailable, InvalidIdempotencyKey, InvalidRole,
    │                                 WeekNotComplete, TooManyConversations, ConversationFull,
    │                                 InvalidWebhookUrl, InvalidWebhookEvents, TooManyWebhooks,
    │                                 TooManyApiKeys, UnknownUser
    ├── ServerError (500 and other 5xx)
    ├── WaitTimeout                   (client side: ``Client.wait`` ran out of time)
    └── RetryableError                the same request may succeed later: retried by the client
        ├── RateLimited (429)         SignupRateLimited, TooManyLoginAttempts, SubmitRateLimited
        ├── Unavailable (503)         EnqueueFailed, OutcomeUnknown, Unhealthy, StorageUnavailable,
        │                             CatalogInvalid
        └── NetworkError              (client side: no HTTP answer; ``status`` 0)

``RetryableError`` is what ``Client`` retries (within its ``RetryPolicy``); ``retry_after``
is the server's ``Retry-After`` in seconds when it sent one. ``OutcomeUnknown`` is the one
retryable error whose change may have been applied: the client retries it only where a
repeat is safe (reads, and a submit with its ``Idempotency-Key``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC
from typing import Any, ClassVar

__all__ = [
    "AdminOnly",
    "AijobsError",
    "AlreadyMember",
    "ApiKeyNotAllowed",
    "ApiKeyNotFound",
    "BadRequest",
    "BalanceTooLow",
    "BatchNotFound",
    "CatalogInvalid",
    "Conflict",
    "ConversationBusy",
    "ConversationFull",
    "ConversationNotFound",
    "EnqueueFailed",
    "Forbidden",
    "GrantIdReused",
    "IdempotencyKeyReused",
    "ImageNotFound",
    "InputTooLarge",
    "InsufficientCredits",
    "InvalidApiKey",
    "InvalidCredentials",
    "InvalidCursor",
    "InvalidIdempotencyKey",
    "InvalidLimit",
    "InvalidOption",
    "InvalidRefreshToken",
    "InvalidRequest",
    "InvalidRole",
    "InvalidToken",
    "InvalidUnicode",
    "InvalidWait",
    "InvalidWebhookEvents",
    "InvalidWebhookUrl",
    "JobDeleted",
    "JobInProgress",
    "JobNotCancelable",
    "JobNotFinished",
    "JobNotFound",
    "LastOwner",
    "MalformedJson",
    "MemberDailyLimit",
    "MemberMonthlyLimit",
    "MemberNotFound",
    "MethodNotAllowed",
    "ModelUnavailable",
    "NetworkError",
    "NotFound",
    "OriginNotAllowed",
    "OutcomeUnknown",
    "PayloadTooLarge",
    "RateLimited",
    "RefreshTokenExpired",
    "RefreshTokenReused",
    "ReportNotFound",
    "RetryableError",
    "RouteNotFound",
    "ServerError",
    "SignupRateLimited",
    "StorageUnavailable",
    "SubmitRateLimited",
    "TaskTypeUnsupported",
    "TeamBusy",
    "TeamFull",
    "TeamNotEmpty",
    "TeamNotFound",
    "TeamRoleRequired",
    "TokenExpired",
    "TooManyApiKeys",
    "TooManyConversations",
    "TooManyLoginAttempts",
    "TooManyTeams",
    "TooManyWebhooks",
    "TransferIdReused",
    "Unauthenticated",
    "Unavailable",
    "Unhealthy",
    "UnknownModel",
    "UnknownTaskType",
    "UnknownUser",
    "UnsupportedMediaType",
    "UserNotFound",
    "UsernameTaken",
    "WaitTimeout",
    "WebhookNotFound",
    "WeekNotComplete",
    "error_for",
]

_BY_CODE: dict[str, type[AijobsError]] = {}
_BY_STATUS: dict[int, type[AijobsError]] = {}


class AijobsError(Exception):
    """An error answered by the aijobs API (or, for a few subclasses, met by the client).

    ``status`` is the HTTP status (0 when there was no answer), ``code`` the API's stable
    snake_case code, ``message`` its text for people, ``body`` the decoded answer (or None)
    and ``headers`` the answer's headers.
    """

    error_code: ClassVar[str | None] = None
    """The API ``code`` this class stands for (None: a client-side error, or a base only)."""
    http_status: ClassVar[int | None] = None
    """The HTTP status whose unknown codes fall back to this class."""
    retryable: ClassVar[bool] = False
    """Whether the same request may succeed later (see ``RetryableError``)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        body: Any = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{code} ({status}): {message}" if status else f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.body = body
        self.headers: dict[str, str] = dict(headers or {})

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = cls.__dict__
        if own.get("error_code"):
            _BY_CODE[own["error_code"]] = cls
        if own.get("http_status") and own["http_status"] not in _BY_STATUS:
            _BY_STATUS[own["http_status"]] = cls


class RetryableError(AijobsError):
    """The same request may succeed later; ``retry_after`` is the server's hint in seconds."""

    retryable = True

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        body: Any = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(status, code, message, body, headers=headers)
        self.retry_after: float | None = parse_retry_after(self.headers)


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date), None when absent or unreadable."""
    raw = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if raw is None:
        return None
    raw = raw.strip()
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    from datetime import datetime

    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


# 400
class BadRequest(AijobsError):
    error_code, http_status = "bad_request", 400


class MalformedJson(BadRequest):
    error_code = "malformed_json"


class InvalidUnicode(BadRequest):
    error_code = "invalid_unicode"


# 401
class Unauthenticated(AijobsError):
    """Missing, invalid or expired credentials: log in (again)."""

    error_code, http_status = "unauthenticated", 401


class InvalidCredentials(Unauthenticated):
    error_code = "invalid_credentials"


class InvalidToken(Unauthenticated):
    error_code = "invalid_token"


class TokenExpired(Unauthenticated):
    error_code = "token_expired"


class InvalidApiKey(Unauthenticated):
    error_code = "invalid_api_key"


class InvalidRefreshToken(Unauthenticated):
    """Unknown, or its sign-in was revoked (logout, or a reuse): log in again."""

    error_code = "invalid_refresh_token"


class RefreshTokenExpired(Unauthenticated):
    error_code = "refresh_token_expired"


class RefreshTokenReused(Unauthenticated):
    """The refresh token was used already: every token of that sign-in is now revoked."""

    error_code = "refresh_token_reused"


# 402
class InsufficientCredits(AijobsError):
    error_code, http_status = "insufficient_credits", 402


class MemberDailyLimit(InsufficientCredits):
    """A job charged to a team would pass the member's daily limit in it (UTC day)."""

    error_code = "member_daily_limit"


class MemberMonthlyLimit(InsufficientCredits):
    """A job charged to a team would pass the member's monthly limit in it (UTC month)."""

    error_code = "member_monthly_limit"


# 403
class Forbidden(AijobsError):
    error_code, http_status = "forbidden", 403


class AdminOnly(Forbidden):
    error_code = "admin_only"


class ApiKeyNotAllowed(Forbidden):
    error_code = "api_key_not_allowed"


class OriginNotAllowed(Forbidden):
    error_code = "origin_not_allowed"


class TeamRoleRequired(Forbidden):
    """The caller's role in the team does not allow this (e.g. a member adding someone)."""

    error_code = "team_role_required"


# 404
class NotFound(AijobsError):
    error_code, http_status = "not_found", 404


class JobNotFound(NotFound):
    error_code = "job_not_found"


class UserNotFound(NotFound):
    error_code = "user_not_found"


class ReportNotFound(NotFound):
    error_code = "report_not_found"


class RouteNotFound(NotFound):
    error_code = "route_not_found"


class ApiKeyNotFound(NotFound):
    error_code = "api_key_not_found"


class WebhookNotFound(NotFound):
    error_code = "webhook_not_found"


class BatchNotFound(NotFound):
    error_code = "batch_not_found"


class ConversationNotFound(NotFound):
    error_code = "conversation_not_found"


class ImageNotFound(NotFound):
    """The job is the caller's but has no image (another task type, not completed, or deleted)."""

    error_code = "image_not_found"


class TeamNotFound(NotFound):
    """No such team, or the caller is not its member (another team's existence is not told)."""

    error_code = "team_not_found"


class MemberNotFound(NotFound):
    """The username is not a member of the team."""

    error_code = "member_not_found"


# 405
class MethodNotAllowed(AijobsError):
    error_code, http_status = "method_not_allowed", 405


# 409
class Conflict(AijobsError):
    error_code, http_status = "conflict", 409


class UsernameTaken(Conflict):
    error_code = "username_taken"


class IdempotencyKeyReused(Conflict):
    """The same ``Idempotency-Key`` was sent before with a different request."""

    error_code = "idempotency_key_reused"


class JobNotCancelable(Conflict):
    error_code = "job_not_cancelable"


class JobInProgress(Conflict):
    error_code = "job_in_progress"


class JobNotFinished(Conflict):
    error_code = "job_not_finished"


class JobDeleted(Conflict):
    error_code = "job_deleted"


class GrantIdReused(Conflict):
    error_code = "grant_id_reused"


class BalanceTooLow(Conflict):
    error_code = "balance_too_low"


class ConversationBusy(Conflict):
    """A message of the conversation is still waiting for its reply: it cannot be deleted yet."""

    error_code = "conversation_busy"


class AlreadyMember(Conflict):
    """The account is a member of the team already."""

    error_code = "already_member"


class TeamFull(Conflict):
    """The team has its most members (100): remove one first."""

    error_code = "team_full"


class TooManyTeams(Conflict):
    """The account belongs to its most teams (``TEAM_MAX_PER_USER``) already."""

    error_code = "too_many_teams"


class LastOwner(Conflict):
    """That would leave the team without an owner: make another member owner first."""

    error_code = "last_owner"


class TeamNotEmpty(Conflict):
    """The team's pool holds credits: move them out (a negative transfer) before deleting it."""

    error_code = "team_not_empty"


class TeamBusy(Conflict):
    """A job charged to the team is unfinished: wait for it, or cancel it, before deleting it."""

    error_code = "team_busy"


class TransferIdReused(Conflict):
    """The same ``transfer_id`` was sent before with a different transfer."""

    error_code = "transfer_id_reused"


# 413
class PayloadTooLarge(AijobsError):
    error_code, http_status = "payload_too_large", 413


class InputTooLarge(PayloadTooLarge):
    error_code = "input_too_large"


# 415
class UnsupportedMediaType(AijobsError):
    error_code, http_status = "unsupported_media_type", 415


# 422
class InvalidRequest(AijobsError):
    error_code, http_status = "invalid_request", 422


class InvalidLimit(InvalidRequest):
    error_code = "invalid_limit"


class InvalidCursor(InvalidRequest):
    error_code = "invalid_cursor"


class InvalidWait(InvalidRequest):
    error_code = "invalid_wait"


class InvalidOption(InvalidRequest):
    error_code = "invalid_option"


class UnknownTaskType(InvalidRequest):
    error_code = "unknown_task_type"


class TaskTypeUnsupported(InvalidRequest):
    """The configured AI endpoint cannot serve this task type (nothing was charged)."""

    error_code = "task_type_unsupported"


class UnknownModel(InvalidRequest):
    """``options.model`` names no model of the task type (``GET /catalog`` lists them)."""

    error_code = "unknown_model"


class ModelUnavailable(InvalidRequest):
    """The model's provider is not configured here (nothing was charged)."""

    error_code = "model_unavailable"


class InvalidIdempotencyKey(InvalidRequest):
    error_code = "invalid_idempotency_key"


class InvalidRole(InvalidRequest):
    error_code = "invalid_role"


class WeekNotComplete(InvalidRequest):
    error_code = "week_not_complete"


class InvalidWebhookUrl(InvalidRequest):
    """Not https (locally also http), too long, or a host that resolves to a private address."""

    error_code = "invalid_webhook_url"


class InvalidWebhookEvents(InvalidRequest):
    error_code = "invalid_webhook_events"


class TooManyApiKeys(InvalidRequest):
    """The account has ``API_KEY_MAX_PER_USER`` live keys already: revoke one first."""

    error_code = "too_many_api_keys"


class UnknownUser(InvalidRequest):
    """No account has the username named in the body (adding a team member)."""

    error_code = "unknown_user"


class TooManyWebhooks(InvalidRequest):
    """The account has ``WEBHOOK_MAX_ENDPOINTS`` endpoints already: delete one first."""

    error_code = "too_many_webhooks"


class TooManyConversations(InvalidRequest):
    error_code = "too_many_conversations"


class ConversationFull(InvalidRequest):
    error_code = "conversation_full"


# 429
class RateLimited(RetryableError):
    """Too many requests: the same request can succeed after ``retry_after`` seconds."""

    error_code, http_status = "rate_limited", 429


class SignupRateLimited(RateLimited):
    error_code = "signup_rate_limited"


class TooManyLoginAttempts(RateLimited):
    error_code = "too_many_login_attempts"


class SubmitRateLimited(RateLimited):
    error_code = "submit_rate_limited"


# 503
class Unavailable(RetryableError):
    """Temporarily unavailable; nothing was changed (nor charged)."""

    error_code, http_status = "unavailable", 503


class EnqueueFailed(Unavailable):
    """The queue refused the job: it was not charged, and a retry with the same key runs it."""

    error_code = "enqueue_failed"


class OutcomeUnknown(Unavailable):
    """The store did not confirm the change: it may or may not have happened.

    A retry with the same ``Idempotency-Key`` answers what really happened.
    """

    error_code = "outcome_unknown"


class Unhealthy(Unavailable):
    """``GET /health``: a dependency is down; ``body["checks"]`` names which."""

    error_code = "unhealthy"


class StorageUnavailable(Unavailable):
    """Cloud Storage did not answer (an image download, or a job delete's image: retry the delete)."""

    error_code = "storage_unavailable"


class CatalogInvalid(Unavailable):
    """The task catalog in Firestore is misconfigured: an operator must fix it (nothing was charged)."""

    error_code = "catalog_invalid"


# 5xx
class ServerError(AijobsError):
    """An unexpected server error (``internal``), or a 5xx without a known code."""

    error_code, http_status = "internal", 500


# Client side
class NetworkError(RetryableError):
    """No HTTP answer: the connection failed, was cut, or timed out. ``status`` is 0.

    ``unsent`` is true when the request surely never reached the server (the connection
    was refused or timed out), so even a call that is not safe to repeat may be retried.
    """

    def __init__(self, message: str, *, unsent: bool = False) -> None:
        super().__init__(0, "network_error", message)
        self.unsent = unsent


class WaitTimeout(AijobsError):
    """``Client.wait`` ran out of time before the job was final; ``job`` is the last seen."""

    def __init__(self, job: Mapping[str, Any], timeout: float) -> None:
        super().__init__(
            0, "wait_timeout", f"job {job.get('job_id')} is still {job.get('status')} after {timeout:g}s"
        )
        self.job = dict(job)


def error_for(status: int, body: Any, headers: Mapping[str, str] | None = None) -> AijobsError:
    """The exception for an error answer: by ``code`` first, then by HTTP status."""
    code, message = None, None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        code = body["error"].get("code")
        message = body["error"].get("message")
    if not isinstance(code, str) or not code:
        code = f"http_{status}"
    if not isinstance(message, str):
        message = f"HTTP {status}"
    cls = _BY_CODE.get(code) or _BY_STATUS.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else AijobsError
    return cls(status, code, message, body, headers=headers)
