"""The OpenAPI 3.1 document of the public API, generated from the models the functions use.

Each operation names the pydantic models its function parses and answers with; their JSON
Schemas become ``components.schemas``, so the document changes when a model does. Only the
docs function imports this module (it pulls in every domain model).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from shared import (
    api_keys,
    auth,
    batches,
    catalog,
    conversations,
    jobs,
    reports,
    sessions,
    teams,
    usage,
    webhooks,
)
from shared import credits as ledger
from shared.images import CONTENT_TYPES as IMAGE_TYPES
from shared.web import ErrorPublic, HealthPublic, PageQuery

API_VERSION = "1.0.0"
_REF = "#/components/schemas/{model}"
_DESCRIPTION = """\
Credits buy AI jobs: `submit_job` charges a job's cost at once and queues it; a worker runs
it; `GET /jobs/{job_id}?wait=N` answers as soon as it is final. A failed or canceled job is
refunded in full.

Every error is `{"error": {"code": "...", "message": "..."}}`: branch on `code` (stable,
snake_case); the message is for people. `429` and `503` carry `Retry-After` (seconds).
`503 outcome_unknown` means the change may or may not have happened: repeat the request with
the same `Idempotency-Key` (or `grant_id`) to learn which, never a new one.
"""


@dataclass(frozen=True, kw_only=True)
class Failure:
    """One error status an operation can answer, with the ``code``s it uses for it."""

    status: int
    """The HTTP status."""
    codes: tuple[str, ...]
    """The ``error.code`` values, most likely first."""
    why: str
    """When it happens, for the reader."""


@dataclass(frozen=True, kw_only=True)
class Operation:
    """One public operation: a method on a path of one function."""

    method: str
    """Lower-case HTTP method."""
    path: str
    """The path, starting with the function's name (``/jobs/{job_id}``)."""
    operation_id: str
    """Stable and unique: what generated clients name their methods after."""
    summary: str
    """One line."""
    tag: str
    """The group on the docs page."""
    ok: int
    """The success status."""
    answer: type[BaseModel] | None
    """The success body; ``None`` for an answer without one (``204``)."""
    failures: tuple[Failure, ...]
    """Every error status the operation itself can answer (413, 500 and 503 are added)."""
    body: type[BaseModel] | None = None
    """The JSON request body, if any."""
    query: tuple[type[BaseModel], ...] = ()
    """The query parameters: one per field of each model."""
    path_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Each ``{name}`` in the path and its JSON Schema."""
    authenticated: bool = True
    """Whether a bearer access token is required."""
    idempotency_key: bool = False
    """Whether the ``Idempotency-Key`` header is read."""
    replay_header: bool = False
    """Whether a repeat is marked with ``Idempotent-Replayed: true``."""
    description: str = ""
    """More than the summary, when there is more to say."""
    media_types: tuple[str, ...] = ()
    """A success body that is not JSON (an image), in any of these types; with ``answer=None``."""
    alternates: tuple[str, ...] = ()
    """Other types the JSON ``answer`` can also be had in, as text (``text/csv``)."""


def _f(status: int, why: str, *codes: str) -> Failure:
    return Failure(status=status, codes=codes, why=why)


_AUTH = _f(
    401,
    "No, an invalid or an expired token, or a revoked API key.",
    "unauthenticated",
    "invalid_token",
    "token_expired",
    "invalid_api_key",
)
_ADMIN = _f(403, "The account is not an admin.", "admin_only")
_KEY_REFUSED = _f(403, "The bearer is an API key: this needs a password session.", "api_key_not_allowed")
_MALFORMED = _f(400, "The body is not JSON this API reads.", "malformed_json", "invalid_unicode")
_MEDIA = _f(415, "The body is not `application/json`.", "unsupported_media_type")
_PAGE = _f(422, "`limit` or `cursor` is invalid.", "invalid_limit", "invalid_cursor")
_BODY = (_MALFORMED, _MEDIA)
_WEEK = {"type": "string", "pattern": "^[0-9]{4}-W[0-9]{2}$", "examples": ["2026-W47"]}
_ID = {"type": "string", "minLength": 1, "examples": ["0VqYtY8cq6jJ0o2l9Ajd"]}
_TEAM_ID = {"type": "string", "minLength": 1, "examples": ["3f2a9c1e5b7d4e6f8a0b1c2d3e4f5a6b"]}
_USERNAME = {"type": "string", "minLength": 1, "examples": ["grace"]}
_TEAM_NOT_FOUND = _f(404, "No such team, or the caller is not its member.", "team_not_found")
_TEAM_CHARGE_402 = _f(
    402,
    "The balance (the team's, with `team_id`) is less than the cost, or the cost would pass the "
    "member's daily or monthly limit in the team.",
    "insufficient_credits",
    "member_daily_limit",
    "member_monthly_limit",
)
_TEAM_ROLE = _f(403, "The caller's role in the team does not allow this.", "team_role_required")
_MEMBER_NOT_FOUND = _f(404, "No such team or member.", "team_not_found", "member_not_found")

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        method="post",
        path="/signup",
        operation_id="signup",
        summary="Create an account with its signup credits",
        tag="account",
        ok=201,
        answer=auth.SignupPublic,
        body=auth.UserCredentials,
        authenticated=False,
        failures=(
            *_BODY,
            _f(409, "The username is taken.", "username_taken"),
            _f(422, "The username or password is not acceptable.", "invalid_request"),
            _f(429, "Too many signups from this address this hour.", "signup_rate_limited"),
        ),
    ),
    Operation(
        method="post",
        path="/login",
        operation_id="login",
        summary="Exchange a username and password for an access token",
        tag="account",
        ok=200,
        answer=auth.Session,
        body=auth.UserCredentials,
        authenticated=False,
        failures=(
            *_BODY,
            _f(401, "Wrong username or password.", "invalid_credentials"),
            _f(422, "The body is not a username and password.", "invalid_request"),
            _f(429, "Too many failed logins for this username.", "too_many_login_attempts"),
        ),
    ),
    Operation(
        method="post",
        path="/refresh",
        operation_id="refresh",
        summary="Exchange a refresh token for a new access token and the next refresh token",
        description=(
            "The refresh token sent is retired. Sending a retired one again is reuse: `401 "
            "refresh_token_reused`, and every token of that sign-in is revoked. Two refreshes "
            "with one token at once: one wins, the other is reuse."
        ),
        tag="account",
        ok=200,
        answer=auth.Session,
        body=sessions.RefreshRequest,
        authenticated=False,
        failures=(
            *_BODY,
            _f(
                401,
                "Unknown, revoked, expired or already used refresh token.",
                "invalid_refresh_token",
                "refresh_token_expired",
                "refresh_token_reused",
            ),
            _f(422, "The body is not a refresh token.", "invalid_request"),
        ),
    ),
    Operation(
        method="post",
        path="/logout",
        operation_id="logout",
        summary="Revoke a sign-in: its refresh token and every one rotated from it",
        description="Idempotent: an unknown, expired or already revoked token is `204` too.",
        tag="account",
        ok=204,
        answer=None,
        body=sessions.RefreshRequest,
        authenticated=False,
        failures=(*_BODY, _f(422, "The body is not a refresh token.", "invalid_request")),
    ),
    Operation(
        method="get",
        path="/me",
        operation_id="getMe",
        summary="The signed-in account and its balance",
        tag="account",
        ok=200,
        answer=auth.UserPublic,
        failures=(_AUTH,),
    ),
    Operation(
        method="get",
        path="/credits",
        operation_id="listCredits",
        summary="The balance and the credit ledger, newest first",
        tag="account",
        ok=200,
        answer=ledger.LedgerPage,
        query=(PageQuery,),
        failures=(_AUTH, _PAGE),
    ),
    Operation(
        method="post",
        path="/submit_job",
        operation_id="submitJob",
        summary="Charge and queue an AI job",
        description=(
            "The job's cost is taken from the balance in the same commit that creates the job. "
            "Send an `Idempotency-Key` so a retry after a lost answer returns the same job "
            "instead of charging again."
        ),
        tag="jobs",
        ok=202,
        answer=jobs.JobAccepted,
        body=jobs.JobCreate,
        idempotency_key=True,
        replay_header=True,
        failures=(
            *_BODY,
            _AUTH,
            _TEAM_CHARGE_402,
            _TEAM_NOT_FOUND,
            _f(409, "The `Idempotency-Key` was used with another request.", "idempotency_key_reused"),
            _f(
                413,
                "The body or the input is too large.",
                "payload_too_large",
                "input_too_large",
            ),
            _f(
                422,
                "Unknown task type, option or model, a model not available here, or an invalid body or key.",
                "unknown_task_type",
                "task_type_unsupported",
                "unknown_model",
                "model_unavailable",
                "invalid_option",
                "invalid_idempotency_key",
                "invalid_request",
            ),
            _f(429, "Too many submits this minute.", "submit_rate_limited"),
            _f(
                503,
                "Firestore or the queue is down, or the catalog is misconfigured; retry after `Retry-After`.",
                "catalog_invalid",
            ),
        ),
    ),
    Operation(
        method="get",
        path="/jobs",
        operation_id="listJobs",
        summary="The account's jobs, newest first",
        tag="jobs",
        ok=200,
        answer=jobs.JobPage,
        query=(PageQuery, jobs.JobFilter),
        failures=(_AUTH, _PAGE, _f(422, "A filter is not a status, task type or tag.", "invalid_request")),
    ),
    Operation(
        method="get",
        path="/jobs/{job_id}",
        operation_id="getJob",
        summary="One job; with wait=N, answered as soon as it is final",
        description=(
            "With `wait=N` the call waits on the job (a Firestore listener) up to N seconds and "
            "answers as soon as it is completed, failed or canceled, else with its state then."
        ),
        tag="jobs",
        ok=200,
        answer=jobs.JobPublic,
        query=(jobs.WaitQuery,),
        path_params={"job_id": _ID},
        failures=(
            _AUTH,
            _f(404, "No such job of this account.", "job_not_found"),
            _f(422, "`wait` is not a whole number in range.", "invalid_wait"),
        ),
    ),
    Operation(
        method="patch",
        path="/jobs/{job_id}",
        operation_id="updateJob",
        summary="Set a job's title and tags",
        tag="jobs",
        ok=200,
        answer=jobs.JobPublic,
        body=jobs.JobUpdate,
        path_params={"job_id": _ID},
        failures=(
            *_BODY,
            _AUTH,
            _f(404, "No such job of this account.", "job_not_found"),
            _f(409, "The job was deleted.", "job_deleted"),
            _f(422, "An invalid title or tag, or neither given.", "invalid_request"),
        ),
    ),
    Operation(
        method="delete",
        path="/jobs/{job_id}",
        operation_id="deleteJob",
        summary="Delete a finished job's content, keeping its accounting",
        description=(
            "Wipes the input, output, title and tags of a completed, failed or canceled job; its "
            "status, cost, times, error and ledger entries stay. It then reads back with "
            "`deleted_at` set and no content. Deleting it again changes nothing."
        ),
        tag="jobs",
        ok=204,
        answer=None,
        path_params={"job_id": _ID},
        failures=(
            _AUTH,
            _f(404, "No such job of this account.", "job_not_found"),
            _f(409, "The job is queued or running.", "job_not_finished"),
        ),
    ),
    Operation(
        method="get",
        path="/jobs/{job_id}/image",
        operation_id="getJobImage",
        summary="The image a completed generate_image job made",
        description=(
            "The picture's bytes, streamed from Cloud Storage with the content type the model "
            "answered (the job's `output.image` says which, and its size). Only its owner gets it; "
            "a job without an image (another task type, not completed, or deleted) is `404 "
            "image_not_found`."
        ),
        tag="jobs",
        ok=200,
        answer=None,
        media_types=IMAGE_TYPES,
        path_params={"job_id": _ID},
        failures=(
            _AUTH,
            _f(404, "No such job of this account, or it has no image.", "job_not_found", "image_not_found"),
        ),
    ),
    Operation(
        method="post",
        path="/jobs/{job_id}/cancel",
        operation_id="cancelJob",
        summary="Cancel a queued job and refund its cost",
        tag="jobs",
        ok=200,
        answer=jobs.JobPublic,
        path_params={"job_id": _ID},
        failures=(
            _AUTH,
            _f(404, "No such job of this account.", "job_not_found"),
            _f(409, "The job is running or already final.", "job_in_progress", "job_not_cancelable"),
        ),
    ),
    Operation(
        method="post",
        path="/batches",
        operation_id="createBatch",
        summary="Charge and queue up to 500 jobs at once, all or nothing",
        description=(
            "Every job is checked first: an invalid one is `422` naming its index (`jobs.3: ...`), a "
            "balance that cannot pay them all is `402`; either way nothing is written. The charge is "
            "one ledger entry for the whole batch. Send an `Idempotency-Key` so a retry after a lost "
            "answer returns the same batch instead of charging again."
        ),
        tag="batches",
        ok=202,
        answer=batches.BatchAccepted,
        body=batches.BatchCreate,
        idempotency_key=True,
        replay_header=True,
        failures=(
            *_BODY,
            _AUTH,
            _TEAM_CHARGE_402,
            _TEAM_NOT_FOUND,
            _f(409, "The `Idempotency-Key` was used with another request.", "idempotency_key_reused"),
            _f(413, "The body or an input is too large.", "payload_too_large", "input_too_large"),
            _f(
                422,
                "An invalid job (the message names its index), or too many.",
                "unknown_task_type",
                "invalid_option",
                "unknown_model",
                "model_unavailable",
                "invalid_idempotency_key",
                "invalid_request",
            ),
        ),
    ),
    Operation(
        method="get",
        path="/batches",
        operation_id="listBatches",
        summary="The account's batches, newest first",
        tag="batches",
        ok=200,
        answer=batches.BatchPage,
        query=(PageQuery,),
        failures=(_AUTH, _PAGE),
    ),
    Operation(
        method="get",
        path="/batches/{batch_id}",
        operation_id="getBatch",
        summary="A batch: its jobs per status and a page of their ids",
        tag="batches",
        ok=200,
        answer=batches.BatchPublic,
        query=(PageQuery,),
        path_params={"batch_id": _ID},
        failures=(_AUTH, _PAGE, _f(404, "No such batch of this account.", "batch_not_found")),
    ),
    Operation(
        method="post",
        path="/batches/{batch_id}/cancel",
        operation_id="cancelBatch",
        summary="Cancel every job of a batch not yet started, refunding them in one move",
        tag="batches",
        ok=200,
        answer=batches.BatchCanceled,
        path_params={"batch_id": _ID},
        failures=(_AUTH, _f(404, "No such batch of this account.", "batch_not_found")),
    ),
    Operation(
        method="get",
        path="/usage",
        operation_id="getUsage",
        summary="Jobs and credits spent per task type and day",
        tag="account",
        ok=200,
        answer=usage.UsageHistory,
        query=(usage.UsageQuery,),
        failures=(_AUTH, _f(422, "The range is invalid or too long.", "invalid_request")),
    ),
    Operation(
        method="get",
        path="/catalog",
        operation_id="getCatalog",
        summary="Task types, their models with prices, the default model and the options",
        description=(
            "The same for every caller, so no token is needed and the answer may be cached "
            "(`Cache-Control`). A job's `options.model` names one of its task type's models "
            "(else `default_model` runs) and is charged that model's `cost` at submit; an "
            "`available: false` model is refused with `422 model_unavailable`, uncharged."
        ),
        tag="jobs",
        ok=200,
        answer=catalog.CatalogPublic,
        authenticated=False,
        failures=(
            _f(
                503,
                "Firestore is down, or the catalog is misconfigured; retry after `Retry-After`.",
                "catalog_invalid",
            ),
        ),
    ),
    Operation(
        method="get",
        path="/health",
        operation_id="getHealth",
        summary="Whether Firestore, the queue and the AI endpoint answer",
        tag="operations",
        ok=200,
        answer=HealthPublic,
        authenticated=False,
        failures=(),
    ),
    Operation(
        method="post",
        path="/admin/credits",
        operation_id="grantCredits",
        summary="Grant (or, negative, remove) credits; idempotent by grant_id",
        tag="admin",
        ok=200,
        answer=ledger.GrantResult,
        body=ledger.GrantCreate,
        replay_header=True,
        failures=(
            *_BODY,
            _AUTH,
            _ADMIN,
            _f(404, "No such username, or no such team.", "user_not_found", "team_not_found"),
            _f(
                409,
                "The `grant_id` was used with another grant, or the balance is too low to remove.",
                "grant_id_reused",
                "balance_too_low",
            ),
            _f(422, "An invalid grant.", "invalid_request"),
        ),
    ),
    Operation(
        method="get",
        path="/admin/users",
        operation_id="listUsers",
        summary="Accounts by username",
        tag="admin",
        ok=200,
        answer=auth.UserPage,
        query=(PageQuery,),
        failures=(_AUTH, _ADMIN, _PAGE),
    ),
    Operation(
        method="get",
        path="/admin/users/{username}",
        operation_id="getUser",
        summary="One account with its job counts",
        tag="admin",
        ok=200,
        answer=auth.UserAdminDetail,
        path_params={"username": {"type": "string", "minLength": 1, "examples": ["ada"]}},
        failures=(_AUTH, _ADMIN, _f(404, "No such username.", "user_not_found")),
    ),
    Operation(
        method="get",
        path="/admin/reports",
        operation_id="listReports",
        summary="Stored weekly reports, newest first",
        tag="admin",
        ok=200,
        answer=reports.ReportPage,
        query=(PageQuery,),
        failures=(_AUTH, _ADMIN, _PAGE),
    ),
    Operation(
        method="get",
        path="/admin/reports/{week}",
        operation_id="getReport",
        summary="One stored weekly report",
        tag="admin",
        ok=200,
        answer=reports.WeeklyReport,
        path_params={"week": _WEEK},
        failures=(_AUTH, _ADMIN, _f(404, "No report for this week.", "report_not_found")),
    ),
    Operation(
        method="post",
        path="/conversations",
        operation_id="createConversation",
        summary="Start a conversation whose history the server keeps",
        tag="conversations",
        ok=201,
        answer=conversations.ConversationPublic,
        body=conversations.ConversationCreate,
        failures=(
            *_BODY,
            _AUTH,
            _f(
                422,
                "A title or system message too long, or the account holds its most conversations.",
                "too_many_conversations",
                "invalid_request",
            ),
        ),
    ),
    Operation(
        method="get",
        path="/conversations",
        operation_id="listConversations",
        summary="The account's conversations, newest first",
        tag="conversations",
        ok=200,
        answer=conversations.ConversationPage,
        query=(PageQuery,),
        failures=(_AUTH, _PAGE),
    ),
    Operation(
        method="get",
        path="/conversations/{conversation_id}",
        operation_id="getConversation",
        summary="One conversation with its messages, their jobs and replies, in order",
        tag="conversations",
        ok=200,
        answer=conversations.ConversationDetail,
        path_params={"conversation_id": _ID},
        failures=(_AUTH, _f(404, "No such conversation of this account.", "conversation_not_found")),
    ),
    Operation(
        method="delete",
        path="/conversations/{conversation_id}",
        operation_id="deleteConversation",
        summary="Delete a conversation and its messages",
        description=(
            "Refused with `409 conversation_busy` while a message's job is unfinished (wait for "
            "it, or cancel it); the jobs themselves and their accounting stay."
        ),
        tag="conversations",
        ok=204,
        answer=None,
        path_params={"conversation_id": _ID},
        failures=(
            _AUTH,
            _f(404, "No such conversation of this account.", "conversation_not_found"),
            _f(409, "A message's job is unfinished.", "conversation_busy"),
        ),
    ),
    Operation(
        method="post",
        path="/conversations/{conversation_id}/messages",
        operation_id="postMessage",
        summary="Send a message: a chat job of the history and it, charged like any job",
        description=(
            "Only the new message is sent: the server adds the system message and the history "
            "(exchanges answered before this message was numbered, newest kept within the history "
            "budget). The reply is appended to the message when its job completes. Send an "
            "`Idempotency-Key` so a retry returns the same message and job instead of charging again."
        ),
        tag="conversations",
        ok=202,
        answer=conversations.MessageAccepted,
        body=conversations.MessageCreate,
        path_params={"conversation_id": _ID},
        idempotency_key=True,
        replay_header=True,
        failures=(
            *_BODY,
            _AUTH,
            _f(402, "The balance is less than the job's cost.", "insufficient_credits"),
            _f(404, "No such conversation of this account.", "conversation_not_found"),
            _f(409, "The `Idempotency-Key` was used with another request.", "idempotency_key_reused"),
            _f(
                413,
                "The message and the system message exceed the history budget.",
                "payload_too_large",
                "input_too_large",
            ),
            _f(
                422,
                "An invalid message, option or key, or the conversation is full.",
                "conversation_full",
                "invalid_option",
                "task_type_unsupported",
                "invalid_idempotency_key",
                "invalid_request",
            ),
            _f(429, "Too many submits this minute.", "submit_rate_limited"),
        ),
    ),
    Operation(
        method="post",
        path="/teams",
        operation_id="createTeam",
        summary="Create a team with an empty credit pool; the caller is its owner",
        tag="teams",
        ok=201,
        answer=teams.TeamPublic,
        body=teams.TeamCreate,
        failures=(
            *_BODY,
            _AUTH,
            _f(409, "The account belongs to its most teams.", "too_many_teams"),
            _f(422, "An invalid name.", "invalid_request"),
        ),
    ),
    Operation(
        method="get",
        path="/teams",
        operation_id="listTeams",
        summary="The caller's teams, by name, with the caller's role and each pool's balance",
        tag="teams",
        ok=200,
        answer=teams.TeamList,
        failures=(_AUTH,),
    ),
    Operation(
        method="get",
        path="/teams/{team_id}",
        operation_id="getTeam",
        summary="One of the caller's teams",
        tag="teams",
        ok=200,
        answer=teams.TeamPublic,
        path_params={"team_id": _TEAM_ID},
        failures=(_AUTH, _TEAM_NOT_FOUND),
    ),
    Operation(
        method="patch",
        path="/teams/{team_id}",
        operation_id="updateTeam",
        summary="Rename a team (owners and admins)",
        tag="teams",
        ok=200,
        answer=teams.TeamPublic,
        body=teams.TeamUpdate,
        path_params={"team_id": _TEAM_ID},
        failures=(*_BODY, _AUTH, _TEAM_ROLE, _TEAM_NOT_FOUND, _f(422, "An invalid name.", "invalid_request")),
    ),
    Operation(
        method="delete",
        path="/teams/{team_id}",
        operation_id="deleteTeam",
        summary="Delete a team whose pool is empty and whose jobs are all finished (owners)",
        description=(
            "Its members are removed; its ledger is kept for the books. Move its credits out first "
            "with a negative transfer."
        ),
        tag="teams",
        ok=204,
        answer=None,
        path_params={"team_id": _TEAM_ID},
        failures=(
            _AUTH,
            _TEAM_ROLE,
            _TEAM_NOT_FOUND,
            _f(
                409,
                "The pool holds credits, or a job charged to it is unfinished.",
                "team_not_empty",
                "team_busy",
            ),
        ),
    ),
    Operation(
        method="get",
        path="/teams/{team_id}/members",
        operation_id="listTeamMembers",
        summary="A team's members, with their roles, limits and what they spent today and this month",
        tag="teams",
        ok=200,
        answer=teams.MemberList,
        path_params={"team_id": _TEAM_ID},
        failures=(_AUTH, _TEAM_NOT_FOUND),
    ),
    Operation(
        method="post",
        path="/teams/{team_id}/members",
        operation_id="addTeamMember",
        summary="Add an account to a team with a role and optional limits (owners and admins)",
        description="Admins add admins and members; only owners add owners.",
        tag="teams",
        ok=201,
        answer=teams.MemberPublic,
        body=teams.MemberCreate,
        path_params={"team_id": _TEAM_ID},
        failures=(
            *_BODY,
            _AUTH,
            _TEAM_ROLE,
            _TEAM_NOT_FOUND,
            _f(
                409,
                "Already a member, the team is full, or the account belongs to its most teams.",
                "already_member",
                "team_full",
                "too_many_teams",
            ),
            _f(
                422,
                "No account has the username, or an invalid role or limit.",
                "unknown_user",
                "invalid_request",
            ),
        ),
    ),
    Operation(
        method="patch",
        path="/teams/{team_id}/members/{username}",
        operation_id="updateTeamMember",
        summary="Change a member's role or limits (owners and admins)",
        description=(
            "A limit is credits per UTC day or month charged to the pool by the member, net of "
            "refunds; `null` removes it. A lower limit applies to the next charge."
        ),
        tag="teams",
        ok=200,
        answer=teams.MemberPublic,
        body=teams.MemberUpdate,
        path_params={"team_id": _TEAM_ID, "username": _USERNAME},
        failures=(
            *_BODY,
            _AUTH,
            _TEAM_ROLE,
            _MEMBER_NOT_FOUND,
            _f(409, "That would leave the team without an owner.", "last_owner"),
            _f(422, "An invalid role or limit.", "invalid_request"),
        ),
    ),
    Operation(
        method="delete",
        path="/teams/{team_id}/members/{username}",
        operation_id="removeTeamMember",
        summary="Remove a member (owners and admins), or leave (anyone)",
        tag="teams",
        ok=204,
        answer=None,
        path_params={"team_id": _TEAM_ID, "username": _USERNAME},
        failures=(
            _AUTH,
            _TEAM_ROLE,
            _MEMBER_NOT_FOUND,
            _f(409, "That would leave the team without an owner.", "last_owner"),
        ),
    ),
    Operation(
        method="post",
        path="/teams/{team_id}/credits",
        operation_id="transferTeamCredits",
        summary="Move credits from the caller to the team, or back with a negative amount (owners)",
        description=(
            "Both sides move in one commit, each with a ledger entry. A repeat of the `transfer_id` "
            "moves nothing and answers the first result, marked `Idempotent-Replayed`."
        ),
        tag="teams",
        ok=200,
        answer=ledger.TransferResult,
        body=ledger.TransferCreate,
        path_params={"team_id": _TEAM_ID},
        replay_header=True,
        failures=(
            *_BODY,
            _AUTH,
            _f(402, "The paying side's balance is less than the amount.", "insufficient_credits"),
            _TEAM_ROLE,
            _TEAM_NOT_FOUND,
            _f(409, "The `transfer_id` was used for another transfer.", "transfer_id_reused"),
            _f(422, "An invalid amount or transfer id.", "invalid_request"),
        ),
    ),
    Operation(
        method="get",
        path="/teams/{team_id}/credits",
        operation_id="getTeamLedger",
        summary="The team's balance and its ledger, newest first (owners and admins)",
        tag="teams",
        ok=200,
        answer=ledger.LedgerPage,
        query=(PageQuery,),
        path_params={"team_id": _TEAM_ID},
        failures=(_AUTH, _TEAM_ROLE, _TEAM_NOT_FOUND, _PAGE),
    ),
    Operation(
        method="get",
        path="/teams/{team_id}/usage",
        operation_id="getTeamUsage",
        summary="The team's jobs and credits per member, task type or day (owners and admins)",
        description="`format=csv` (or `Accept: text/csv`) answers the same rows as CSV.",
        tag="teams",
        ok=200,
        answer=teams.TeamUsage,
        alternates=("text/csv",),
        query=(teams.TeamUsageQuery,),
        path_params={"team_id": _TEAM_ID},
        failures=(
            _AUTH,
            _TEAM_ROLE,
            _TEAM_NOT_FOUND,
            _f(422, "An invalid range, grouping or format.", "invalid_request"),
        ),
    ),
    Operation(
        method="post",
        path="/webhooks",
        operation_id="createWebhook",
        summary="Register a webhook endpoint; its signing secret is shown this once",
        description=(
            "Events are POSTed to the URL signed per Standard Webhooks (`webhook-id`, "
            "`webhook-timestamp`, `webhook-signature`): verify them with the `secret`. The URL must "
            "be https and resolve only to public addresses. Takes effect within "
            "`WEBHOOK_CACHE_SECONDS` (30 s)."
        ),
        tag="webhooks",
        ok=201,
        answer=webhooks.WebhookSecret,
        body=webhooks.WebhookCreate,
        failures=(
            *_BODY,
            _AUTH,
            _f(
                422,
                "The URL or the events are refused, or the account has its most endpoints.",
                "invalid_webhook_url",
                "invalid_webhook_events",
                "too_many_webhooks",
                "invalid_request",
            ),
        ),
    ),
    Operation(
        method="get",
        path="/webhooks",
        operation_id="listWebhooks",
        summary="The account's webhook endpoints, newest first",
        tag="webhooks",
        ok=200,
        answer=webhooks.WebhookPage,
        query=(PageQuery,),
        failures=(_AUTH, _PAGE),
    ),
    Operation(
        method="get",
        path="/webhooks/{webhook_id}",
        operation_id="getWebhook",
        summary="One webhook endpoint, disabled or not",
        tag="webhooks",
        ok=200,
        answer=webhooks.WebhookPublic,
        path_params={"webhook_id": _ID},
        failures=(_AUTH, _f(404, "No such webhook of this account.", "webhook_not_found")),
    ),
    Operation(
        method="delete",
        path="/webhooks/{webhook_id}",
        operation_id="deleteWebhook",
        summary="Delete a webhook endpoint; nothing more is sent to it",
        tag="webhooks",
        ok=204,
        answer=None,
        path_params={"webhook_id": _ID},
        failures=(_AUTH, _f(404, "No such webhook of this account.", "webhook_not_found")),
    ),
    Operation(
        method="post",
        path="/webhooks/{webhook_id}/rotate",
        operation_id="rotateWebhookSecret",
        summary="Replace a webhook's secret; the new one is shown this once",
        description=(
            "For `WEBHOOK_ROTATION_WINDOW_SECONDS` (a day) deliveries carry a signature with the old "
            "secret beside the new one, so a receiver can switch without losing events."
        ),
        tag="webhooks",
        ok=200,
        answer=webhooks.WebhookSecret,
        path_params={"webhook_id": _ID},
        failures=(_AUTH, _f(404, "No such webhook of this account.", "webhook_not_found")),
    ),
    Operation(
        method="get",
        path="/webhooks/{webhook_id}/deliveries",
        operation_id="listWebhookDeliveries",
        summary="What was sent to a webhook endpoint, newest first",
        tag="webhooks",
        ok=200,
        answer=webhooks.DeliveryPage,
        query=(PageQuery,),
        path_params={"webhook_id": _ID},
        failures=(_AUTH, _PAGE, _f(404, "No such webhook of this account.", "webhook_not_found")),
    ),
    Operation(
        method="post",
        path="/api_keys",
        operation_id="createApiKey",
        summary="Create an API key; the key is shown this once",
        description=(
            "Send the key as `Authorization: Bearer aij_live_...` to any user operation. "
            "Managing keys needs a password session: a key is refused here (`403`)."
        ),
        tag="api keys",
        ok=201,
        answer=api_keys.ApiKeySecret,
        body=api_keys.ApiKeyCreate,
        failures=(
            *_BODY,
            _AUTH,
            _KEY_REFUSED,
            _f(
                422,
                "The name is invalid, or the account has its most keys.",
                "too_many_api_keys",
                "invalid_request",
            ),
        ),
    ),
    Operation(
        method="get",
        path="/api_keys",
        operation_id="listApiKeys",
        summary="The account's API keys, newest first (never the keys themselves)",
        tag="api keys",
        ok=200,
        answer=api_keys.ApiKeyPage,
        query=(PageQuery,),
        failures=(_AUTH, _KEY_REFUSED, _PAGE),
    ),
    Operation(
        method="delete",
        path="/api_keys/{api_key_id}",
        operation_id="deleteApiKey",
        summary="Revoke an API key at once",
        tag="api keys",
        ok=204,
        answer=None,
        path_params={"api_key_id": _ID},
        failures=(_AUTH, _KEY_REFUSED, _f(404, "No such API key of this account.", "api_key_not_found")),
    ),
)

_ALWAYS = (
    _f(413, "The body is too large.", "payload_too_large"),
    _f(500, "A bug: logged, and answered with no detail.", "internal"),
    _f(503, "Firestore or the queue is down; retry after `Retry-After`.", "unavailable", "outcome_unknown"),
)
_HEADERS = {
    "Retry-After": {
        "description": "Seconds to wait before the same request can succeed.",
        "schema": {"type": "integer", "minimum": 1},
    },
    "Idempotent-Replayed": {
        "description": "`true` when this answers a repeat of an earlier request, which changed nothing.",
        "schema": {"type": "string", "enum": ["true"]},
    },
}


def document(server_url: str) -> dict[str, Any]:
    """The whole OpenAPI 3.1 document, for clients of the functions at ``server_url``."""
    models: list[tuple[type[BaseModel], Any]] = [(ErrorPublic, "serialization")]
    for op in OPERATIONS:
        if op.answer is not None:
            models.append((op.answer, "serialization"))
        if op.body is not None:
            models.append((op.body, "validation"))
    keys, defs = models_json_schema(models, ref_template=_REF)
    schemas = defs.get("$defs", {})
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op, keys)
    return {
        "openapi": "3.1.0",
        "info": {"title": "aijobs", "version": API_VERSION, "description": _DESCRIPTION},
        "servers": [{"url": server_url.rstrip("/")}],
        "tags": [{"name": t} for t in dict.fromkeys(op.tag for op in OPERATIONS)],
        "paths": paths,
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": (
                        "The `access_token` from `signup` or `login`, or a Firebase Authentication ID"
                        " token (its account, `fb-...`, is opened with the signup grant on its first"
                        " call; a revoked token or a disabled user is refused at once)."
                    ),
                }
            },
            "headers": _HEADERS,
        },
    }


def _operation(op: Operation, keys: Mapping[tuple[Any, Any], dict[str, Any]]) -> dict[str, Any]:
    ok: dict[str, Any] = {"description": op.summary}
    answer_ref = keys[(op.answer, "serialization")] if op.answer is not None else None
    if answer_ref is not None:
        ok["content"] = {"application/json": {"schema": answer_ref}}
        ok["content"] |= {t: {"schema": {"type": "string"}} for t in op.alternates}
    elif op.media_types:
        ok["content"] = {t: {"schema": {"type": "string", "format": "binary"}} for t in op.media_types}
    if op.replay_header:
        ok["headers"] = {"Idempotent-Replayed": {"$ref": "#/components/headers/Idempotent-Replayed"}}
    responses: dict[str, Any] = {str(op.ok): ok}
    # A sick health check answers its checks, with the error beside them.
    error_ref = keys[(HealthPublic if op.answer is HealthPublic else ErrorPublic, "serialization")]
    for failure in _merge(op.failures + _ALWAYS):
        codes = ", ".join(f"`{c}`" for c in failure.codes)
        error: dict[str, Any] = {
            "description": f"{failure.why} Codes: {codes}.",
            "content": {"application/json": {"schema": error_ref}},
        }
        if failure.status in (429, 503):
            error["headers"] = {"Retry-After": {"$ref": "#/components/headers/Retry-After"}}
        responses[str(failure.status)] = error
    result: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [op.tag],
        "parameters": _parameters(op),
        "responses": dict(sorted(responses.items())),
    }
    if op.description:
        result["description"] = op.description
    if op.body is not None:
        body_ref = keys[(op.body, "validation")]
        result["requestBody"] = {"required": True, "content": {"application/json": {"schema": body_ref}}}
    result["security"] = [{"bearer": []}] if op.authenticated else []
    if not result["parameters"]:
        del result["parameters"]
    return result


def _merge(failures: tuple[Failure, ...]) -> list[Failure]:
    """One entry per status: an operation's own description wins, the codes are joined."""
    by_status: dict[int, Failure] = {}
    for failure in failures:
        seen = by_status.get(failure.status)
        if seen is None:
            by_status[failure.status] = failure
        else:
            codes = tuple(dict.fromkeys(seen.codes + failure.codes))
            by_status[failure.status] = Failure(status=seen.status, codes=codes, why=seen.why)
    return sorted(by_status.values(), key=lambda f: f.status)


def _parameters(op: Operation) -> list[dict[str, Any]]:
    params = [
        {"name": name, "in": "path", "required": True, "schema": schema}
        for name, schema in op.path_params.items()
    ]
    for model in op.query:
        schema = model.model_json_schema(by_alias=True)
        required = set(schema.get("required", []))
        for name, prop in schema["properties"].items():
            param: dict[str, Any] = {"name": name, "in": "query", "required": name in required}
            if "description" in prop:
                param["description"] = prop.pop("description")
            prop.pop("title", None)
            param["schema"] = prop
            params.append(param)
    if op.idempotency_key:
        params.append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": (
                    "Any 1-255 printable ASCII characters, new per job: a repeat with the same key "
                    "and body answers the first job (marked `Idempotent-Replayed`) and charges nothing."
                ),
                "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x21-\\x7e]+$"},
                "example": "9b1f1f9e-8a8e-4c39-a6a2-5f2b5c1d2e3f",
            }
        )
    return params
