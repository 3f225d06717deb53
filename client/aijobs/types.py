"""The shapes of the API's answers, as the server sends them (timestamps are RFC 3339 strings)."""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

__all__ = [
    "FINAL_STATUSES",
    "Account",
    "ApiKey",
    "ApiKeyPage",
    "ApiKeySecret",
    "Catalog",
    "CatalogModel",
    "CatalogTaskType",
    "Conversation",
    "ConversationDetail",
    "ConversationPage",
    "Credits",
    "Health",
    "Job",
    "JobAccepted",
    "JobPage",
    "JobStatus",
    "Me",
    "Message",
    "MessageAccepted",
    "MessageStatus",
    "Signup",
    "Team",
    "TeamList",
    "TeamMember",
    "TeamMemberList",
    "TeamRole",
    "TeamUsage",
    "TeamUsageRow",
    "Token",
    "Transaction",
    "Transfer",
    "Usage",
    "UsageDay",
    "UsageTotals",
]

JobStatus = Literal["queued", "in_progress", "completed", "failed", "canceled"]
FINAL_STATUSES: frozenset[str] = frozenset({"completed", "failed", "canceled"})
MessageStatus = Literal["pending", "completed", "failed", "canceled"]


class Token(TypedDict):
    access_token: str
    token_type: str
    expires_in: int
    refresh_token: str
    """Exchange it at ``Client.refresh`` for the next pair (it is then retired)."""


class ApiKey(TypedDict):
    id: str
    name: str
    prefix: str
    created_at: str
    last_used_at: str | None


class ApiKeySecret(ApiKey):
    key: str
    """Shown this once: ``Client(token=key)`` uses it."""


class ApiKeyPage(TypedDict):
    api_keys: list[ApiKey]
    next_cursor: str | None


class Account(TypedDict):
    id: str
    username: str
    credits: int


class Signup(Token):
    user: Account


class Me(Account):
    created_at: str


class Transaction(TypedDict):
    id: str
    type: Literal["grant", "adjustment", "charge", "refund", "transfer"]
    amount: int
    job_id: str | None
    created_at: str
    reason: NotRequired[str | None]
    team_id: NotRequired[str | None]
    """A transfer's team, in a user's ledger."""
    username: NotRequired[str | None]
    """In a team's ledger: the member a charge, refund or transfer was made by."""


class Credits(TypedDict):
    credits: int
    transactions: list[Transaction]
    next_cursor: str | None


class JobAccepted(TypedDict):
    job_id: str
    status: JobStatus
    cost: int
    credits: int


class Job(TypedDict):
    job_id: str
    task_type: str
    status: JobStatus
    input_data: Any
    output: dict[str, Any] | None
    """``{"text"}`` for text tasks, ``{"image_url"}`` or ``{"image_b64"}`` for images."""
    error: dict[str, str] | None
    """``{"code", "message"}`` when the job failed."""
    cost: int
    model: NotRequired[str | None]
    """The catalog model it runs on; None for jobs from before models."""
    created_at: str
    updated_at: str
    title: NotRequired[str | None]
    tags: NotRequired[list[str]]
    deleted_at: NotRequired[str | None]
    """Set once its owner deleted its content (input, output, title, tags)."""


class JobPage(TypedDict):
    jobs: list[Job]
    next_cursor: str | None


class UsageTotals(TypedDict):
    jobs: dict[str, int]
    credits: dict[str, int]
    total_jobs: int
    total_credits: int


class UsageDay(UsageTotals):
    date: str


# ``from`` is a Python keyword, hence the functional form.
Usage = TypedDict("Usage", {"from": str, "to": str, "days": list[UsageDay], "totals": UsageTotals})


class Health(TypedDict):
    status: str
    checks: dict[str, str]


class CatalogModel(TypedDict):
    id: str
    """What ``options["model"]`` names."""
    cost: int
    available: bool
    """False: its provider is not configured here; a job on it is ``ModelUnavailable``."""
    description: str | None


class CatalogTaskType(TypedDict):
    task_type: str
    default_model: str
    models: list[CatalogModel]
    """Cheapest first."""
    options: dict[str, dict[str, Any]]
    """Besides ``model``: each option's ``type``, ``required``, ``min``, ``max``, ``enum``."""


class Catalog(TypedDict):
    task_types: list[CatalogTaskType]


class Conversation(TypedDict):
    conversation_id: str
    title: str | None
    system: str | None
    created_at: str
    updated_at: str


class Message(TypedDict):
    message_id: str
    seq: int
    """1, 2, 3, ... in the order the conversation's messages were accepted."""
    content: str
    options: dict[str, Any]
    status: MessageStatus
    """``pending`` until its job is final, then the job's."""
    job_id: str | None
    reply: str | None
    error: dict[str, str] | None
    created_at: str
    updated_at: str


class ConversationDetail(Conversation):
    messages: list[Message]


class ConversationPage(TypedDict):
    conversations: list[Conversation]
    next_cursor: str | None


class MessageAccepted(TypedDict):
    conversation_id: str
    message_id: str
    seq: int
    job_id: str
    status: JobStatus
    cost: int
    credits: int


TeamRole = Literal["owner", "admin", "member"]
"""``owner``: everything, and only owners move money; ``admin``: the name, members and limits
(not owners'); ``member``: submits jobs charged to the team."""


class Team(TypedDict):
    team_id: str
    name: str
    role: TeamRole
    """The caller's role in the team."""
    credits: int
    """The team's balance: the pool its members' jobs (``submit(..., team_id=...)``) are charged to."""
    members: int
    created_at: str


class TeamList(TypedDict):
    teams: list[Team]
    """The caller's teams, by name."""


class TeamMember(TypedDict):
    username: str
    role: TeamRole
    daily_limit: int | None
    monthly_limit: int | None
    spent_today: int
    """Credits charged to the team by this member this UTC day, net of refunds."""
    spent_this_month: int
    joined_at: str


class TeamMemberList(TypedDict):
    members: list[TeamMember]
    """By username."""


class Transfer(TypedDict):
    transfer_id: str
    team_id: str
    amount: int
    """Credits moved to the team (negative: to the caller)."""
    team_credits: int
    """The team's balance after the transfer landed."""
    created_at: str


class TeamUsageRow(TypedDict):
    key: str
    """The member's username, the task type or the day (``YYYY-MM-DD``)."""
    jobs: int
    credits: int
    """Credits charged, net of refunds."""
    refunded: int


TeamUsage = TypedDict(
    "TeamUsage",
    {
        "team_id": str,
        "from": str,
        "to": str,
        "group_by": Literal["member", "task_type", "day"],
        "rows": list[TeamUsageRow],
        "total_jobs": int,
        "total_credits": int,
    },
)
