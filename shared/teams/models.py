"""Request and response models of the teams API (``functions/teams.py``)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StringConstraints,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from shared.credits.grants import no_default, whole
from shared.usage import UsageQuery
from shared.usernames import Username

Role = Literal["owner", "admin", "member"]
"""``owner``: everything, and only owners move money; ``admin``: the name, members and limits
(not owners'); ``member``: submits jobs charged to the team."""

MAX_LIMIT = 1_000_000_000
_NAME = r"^[^\x00-\x1f\x7f]+$"  # no control characters: a name is shown in consoles and CSV
TeamName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100, pattern=_NAME)
]
Limit = Annotated[StrictInt, Field(ge=0, le=MAX_LIMIT), BeforeValidator(whole)]
"""Credits a member may spend from the pool in a UTC day or month; null: no limit."""


class TeamCreate(BaseModel):
    """Body of ``POST /teams``: the caller becomes its owner."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"name": "Research"}]})

    name: TeamName


class TeamUpdate(BaseModel):
    """Body of ``PATCH /teams/{team_id}``."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"name": "Research (EU)"}]})

    name: TeamName


class TeamPublic(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    team_id: str
    name: str
    role: Role
    """The caller's role in the team."""
    credits: int
    """The team's balance: the pool its members' jobs are charged to."""
    members: int
    created_at: datetime


class TeamList(BaseModel):
    """The caller's teams, by name."""

    teams: list[TeamPublic]


class MemberCreate(BaseModel):
    """Body of ``POST /teams/{team_id}/members``: an existing account joins with a role."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"username": "grace", "role": "member", "daily_limit": 50}]},
    )

    username: Username
    role: Role = "member"
    daily_limit: Limit | None = None
    monthly_limit: Limit | None = None


class MemberUpdate(BaseModel):
    """Body of ``PATCH /teams/{team_id}/members/{username}``: a field left out is kept; a limit
    set to null is removed."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"minProperties": 1, "examples": [{"role": "admin"}, {"monthly_limit": 1000}]},
    )

    role: Role | SkipJsonSchema[None] = Field(None, json_schema_extra=no_default)  # not null
    daily_limit: Limit | None = None
    monthly_limit: Limit | None = None

    @model_validator(mode="after")
    def _something(self) -> MemberUpdate:
        if not self.model_fields_set:
            raise ValueError("set role, daily_limit or monthly_limit")
        if "role" in self.model_fields_set and self.role is None:
            raise ValueError("role may not be null")
        return self


class MemberPublic(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    username: str
    role: Role
    daily_limit: int | None
    monthly_limit: int | None
    spent_today: int
    """Credits charged to the team by this member this UTC day, net of refunds."""
    spent_this_month: int
    """The same for this UTC month."""
    joined_at: datetime


class MemberList(BaseModel):
    """A team's members, by username."""

    members: list[MemberPublic]


GroupBy = Literal["member", "task_type", "day"]


class TeamUsageQuery(UsageQuery):
    """Query of ``GET /teams/{team_id}/usage``: a range of UTC days as ``GET /usage`` takes it,
    how to group it, and ``format=csv`` for the same as CSV (or ``Accept: text/csv``)."""

    group_by: GroupBy = "day"
    format: Literal["json", "csv"] = "json"


class TeamUsageRow(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    key: str
    """The member's username, the task type or the day (``YYYY-MM-DD``)."""
    jobs: int
    """Jobs submitted."""
    credits: int
    """Credits charged, net of refunds."""
    refunded: int
    """Credits refunded (failed and canceled jobs)."""


class TeamUsage(BaseModel):
    """Answer to ``GET /teams/{team_id}/usage``: one row per group with jobs, sorted by key."""

    model_config = ConfigDict(populate_by_name=True)

    team_id: str
    from_: date = Field(alias="from")
    to: date
    group_by: GroupBy
    rows: list[TeamUsageRow]
    total_jobs: int
    total_credits: int
