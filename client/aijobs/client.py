"""``Client``: the aijobs HTTP API in Python, on httpx, with retries and long-poll waits."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from types import TracebackType
from typing import Any, Literal, cast
from urllib.parse import quote

import httpx

from ._version import __version__
from .errors import (
    AijobsError,
    NetworkError,
    OutcomeUnknown,
    RetryableError,
    ServerError,
    TokenExpired,
    WaitTimeout,
    error_for,
)
from .types import (
    FINAL_STATUSES,
    ApiKeyPage,
    ApiKeySecret,
    Catalog,
    Conversation,
    ConversationDetail,
    ConversationPage,
    Credits,
    Health,
    Job,
    JobAccepted,
    JobPage,
    Me,
    MessageAccepted,
    Signup,
    Team,
    TeamList,
    TeamMember,
    TeamMemberList,
    TeamRole,
    TeamUsage,
    Token,
    Transaction,
    Transfer,
    Usage,
)

__all__ = ["DEFAULT_BASE_URL", "MAX_WAIT_SECONDS", "Client", "RetryPolicy"]

DEFAULT_BASE_URL = "http://127.0.0.1:8080"
MAX_WAIT_SECONDS = 25
"""The longest ``?wait=N`` the server accepts."""
_WAIT_SLACK_SECONDS = 15.0
"""A long-poll's read timeout is its ``wait`` plus this."""
_GroupBy = Literal["member", "task_type", "day"]


@dataclass(frozen=True)
class RetryPolicy:
    """How one call is retried after a ``RetryableError`` (429, 503, no answer).

    A call makes at most ``max_attempts`` attempts and sleeps at most ``max_wait`` seconds
    in all between them. Each pause is the answer's ``Retry-After`` when it has one, else
    ``backoff`` seconds doubling per retry up to ``max_backoff``. A ``Retry-After`` that would
    take the call past ``max_wait`` is not waited for: the error is raised at once, its
    ``retry_after`` telling when to come back.

    What is retried: 429 and 503 on every call, except ``503 outcome_unknown``, which only
    calls that are safe to repeat retry (reads, login, a submit with its ``Idempotency-Key``,
    a transfer with its ``transfer_id``);
    a failed connection (the request surely never left) on every call; a connection lost
    after sending, or a read timeout, only on calls that are safe to repeat.
    ``RetryPolicy.none()`` turns retries off.
    """

    max_attempts: int = 4
    max_wait: float = 60.0
    backoff: float = 0.5
    max_backoff: float = 8.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.max_wait < 0 or self.backoff < 0 or self.max_backoff < 0:
            raise ValueError("max_wait, backoff and max_backoff must not be negative")

    @classmethod
    def none(cls) -> RetryPolicy:
        return cls(max_attempts=1)

    def delay(self, retry: int, error: RetryableError) -> float:
        """The pause before retry number ``retry`` (1 for the first retry)."""
        if error.retry_after is not None:
            return error.retry_after
        return float(min(self.max_backoff, self.backoff * 2 ** (retry - 1)))


class Client:
    """A client of one aijobs deployment.

    ``base_url`` is where the functions are served (each at ``/<name>``), e.g.
    ``http://127.0.0.1:8080`` for the local stack. ``token`` is an access token (``signup``
    and ``login`` set it). Pass ``http`` (an ``httpx.Client`` you own and close) or
    ``transport`` (e.g. ``httpx.MockTransport``) to control how requests are sent; ``sleep``
    is how the client pauses between retries.

    Every method returns the decoded JSON answer and raises an ``AijobsError`` subclass
    named after the error's ``code`` (see ``aijobs.errors``).
    """

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        token: str | None = None,
        refresh_token: str | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        http: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if http is not None and transport is not None:
            raise ValueError("pass http or transport, not both")
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.refresh_token = refresh_token
        """Held after signup, login or refresh: an expired access token is then renewed once, by
        itself (``Client.refresh``), and the call repeated."""
        self._refreshing = threading.Lock()  # one refresh at a time: a second would be reuse
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._owns_http = http is None
        self._http = http or httpx.Client(transport=transport, timeout=timeout)

    # -- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        """Close the HTTP connections (not an ``http`` client passed in)."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- accounts ------------------------------------------------------------------------

    def signup(self, username: str, password: str) -> Signup:
        """Create an account (10 credits); the client keeps its access token."""
        body = {"username": username, "password": password}
        answer = cast(Signup, self._call("POST", "/signup", json=body, auth=False, idempotent=False))
        self.token, self.refresh_token = answer["access_token"], answer["refresh_token"]
        return answer

    def login(self, username: str, password: str) -> Token:
        """Log in; the client keeps the new access token (valid 30 minutes)."""
        body = {"username": username, "password": password}
        answer = cast(Token, self._call("POST", "/login", json=body, auth=False, idempotent=True))
        self.token, self.refresh_token = answer["access_token"], answer["refresh_token"]
        return answer

    def refresh(self, refresh_token: str | None = None) -> Token:
        """A new access token and the next refresh token (kept); the one sent is retired.

        Never retried: a repeat of a refresh that landed would be reuse and revoke the sign-in."""
        sent = refresh_token or self.refresh_token
        if sent is None:
            raise ValueError("no refresh token: sign up or log in first")
        body = {"refresh_token": sent}
        answer = cast(
            Token, self._call("POST", "/refresh", json=body, auth=False, idempotent=False, retry=False)
        )
        self.token, self.refresh_token = answer["access_token"], answer["refresh_token"]
        return answer

    def logout(self, refresh_token: str | None = None) -> None:
        """Revoke the sign-in of ``refresh_token`` (default: the one held) and forget the tokens."""
        sent = refresh_token or self.refresh_token
        if sent is None:
            return
        self._call("POST", "/logout", json={"refresh_token": sent}, auth=False, idempotent=True)
        if sent == self.refresh_token:
            self.token = self.refresh_token = None

    # -- API keys (a password session only: a client holding a key gets ApiKeyNotAllowed) --

    def create_api_key(self, name: str) -> ApiKeySecret:
        """A new API key; its ``key`` is in this answer only."""
        body = {"name": name}
        return cast(ApiKeySecret, self._call("POST", "/api_keys", json=body, idempotent=False))

    def list_api_keys(self, limit: int | None = None, cursor: str | None = None) -> ApiKeyPage:
        return cast(ApiKeyPage, self._call("GET", "/api_keys", params=_page(limit, cursor)))

    def delete_api_key(self, key_id: str) -> None:
        """Revoke a key at once."""
        self._call("DELETE", f"/api_keys/{_segment(key_id)}", idempotent=True)

    def me(self) -> Me:
        return cast(Me, self._call("GET", "/me"))

    def credits(self, limit: int | None = None, cursor: str | None = None) -> Credits:
        """The balance and one page of the ledger, newest first (``next_cursor`` for the next)."""
        return cast(Credits, self._call("GET", "/credits", params=_page(limit, cursor)))

    def iter_transactions(self, page_size: int | None = None) -> Iterator[Transaction]:
        """Every ledger entry, newest first, fetching page after page."""
        cursor: str | None = None
        while True:
            page = self.credits(page_size, cursor)
            yield from page["transactions"]
            cursor = page["next_cursor"]
            if not cursor:
                return

    # -- jobs ----------------------------------------------------------------------------

    def submit(
        self,
        task_type: str,
        input_data: str | list[dict[str, str]],
        options: Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        team_id: str | None = None,
    ) -> JobAccepted:
        """Submit a job (charged at once, refunded if it fails).

        Sends an ``Idempotency-Key`` (a fresh uuid4 unless ``idempotency_key`` is given) and
        the same key on every retry, so retries never charge twice: a repeat answers the
        first job. With ``team_id`` the job is charged to that team's pool (the caller must be
        a member; ``MemberDailyLimit``/``MemberMonthlyLimit`` past the member's limits).
        """
        key = idempotency_key or str(uuid.uuid4())
        body = {"task_type": task_type, "input_data": input_data, "options": dict(options or {})}
        if team_id is not None:
            body["team_id"] = team_id
        answer = self._call(
            "POST", "/submit_job", json=body, headers={"Idempotency-Key": key}, idempotent=True
        )
        return cast(JobAccepted, answer)

    def get_job(self, job_id: str, wait: int | None = None) -> Job:
        """The job; with ``wait`` (0-25 s), as soon as it is final or as it is after that long."""
        if wait is not None and not 0 <= wait <= MAX_WAIT_SECONDS:
            raise ValueError(f"wait must be from 0 to {MAX_WAIT_SECONDS} seconds")
        params = {} if wait is None else {"wait": str(wait)}
        timeout = self.timeout if not wait else max(self.timeout, wait + _WAIT_SLACK_SECONDS)
        return cast(Job, self._call("GET", f"/jobs/{_segment(job_id)}", params=params, timeout=timeout))

    def get_image(self, job_id: str) -> bytes:
        """The picture a completed ``generate_image`` job made, as its bytes (its content type is
        the job's ``output.image.content_type``); ``ImageNotFound`` for a job without one."""
        path = f"/jobs/{_segment(job_id)}/image"
        return cast(bytes, self._call("GET", path, headers={"Accept": "image/*"}))

    def wait(
        self,
        job_id: str,
        timeout: float | None = 300.0,
        *,
        on_progress: Callable[[Job], None] | None = None,
        poll: int = MAX_WAIT_SECONDS,
    ) -> Job:
        """Long-poll ``GET /jobs/{id}?wait=N`` until the job is completed, failed or canceled.

        ``timeout`` (seconds, None for no limit) bounds the whole wait: past it,
        ``WaitTimeout`` is raised with the last job seen. ``on_progress`` is called with the
        job after every answer. ``poll`` is the longest single wait asked of the server.
        """
        if not 1 <= poll <= MAX_WAIT_SECONDS:
            raise ValueError(f"poll must be from 1 to {MAX_WAIT_SECONDS} seconds")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = poll
            if deadline is not None:
                remaining = deadline - time.monotonic()
                left = min(poll, max(0, int(remaining)))
                if left == 0 and remaining > 0:
                    self._sleep(remaining)  # the last fraction of a second, then one last look
            job = self.get_job(job_id, wait=left)
            if on_progress is not None:
                on_progress(job)
            if job["status"] in FINAL_STATUSES:
                return job
            if deadline is not None and (left == 0 or time.monotonic() >= deadline):
                raise WaitTimeout(job, cast(float, timeout))

    def list_jobs(
        self,
        limit: int | None = None,
        cursor: str | None = None,
        *,
        status: str | None = None,
        task_type: str | None = None,
        tag: str | None = None,
    ) -> JobPage:
        """One page of the user's jobs, newest first (``next_cursor`` for the next), optionally
        only those with that status, task type and tag."""
        filters = {"status": status, "task_type": task_type, "tag": tag}
        params = _page(limit, cursor) | {k: v for k, v in filters.items() if v is not None}
        return cast(JobPage, self._call("GET", "/jobs", params=params))

    def update_job(self, job_id: str, **changes: Any) -> Job:
        """Set ``title`` and/or ``tags`` (``None`` clears); ``JobDeleted`` for a deleted job."""
        path = f"/jobs/{_segment(job_id)}"
        return cast(Job, self._call("PATCH", path, json=changes, idempotent=True))

    def delete_job(self, job_id: str) -> None:
        """Wipe a finished job's content (its accounting stays); ``JobNotFinished`` before."""
        self._call("DELETE", f"/jobs/{_segment(job_id)}", idempotent=True)

    def iter_jobs(self, page_size: int | None = None) -> Iterator[Job]:
        """Every job of the user, newest first, fetching page after page."""
        cursor: str | None = None
        while True:
            page = self.list_jobs(page_size, cursor)
            yield from page["jobs"]
            cursor = page["next_cursor"]
            if not cursor:
                return

    def cancel_job(self, job_id: str) -> Job:
        """Cancel a queued job (its cost is refunded); ``JobNotCancelable`` once it runs."""
        return cast(Job, self._call("POST", f"/jobs/{_segment(job_id)}/cancel", idempotent=False))

    # -- batches -------------------------------------------------------------------------

    def create_batch(
        self,
        jobs: list[Mapping[str, Any]],
        *,
        idempotency_key: str | None = None,
        team_id: str | None = None,
    ) -> dict[str, Any]:
        """Submit up to 500 jobs (``{"task_type", "input_data", "options"}`` each), charged as
        one, all or nothing; the same ``Idempotency-Key`` on every retry, as ``submit``. With
        ``team_id`` the batch is charged to that team's pool, as ``submit``'s."""
        key = idempotency_key or str(uuid.uuid4())
        body: dict[str, Any] = {"jobs": [dict(job) for job in jobs]}
        if team_id is not None:
            body["team_id"] = team_id
        answer = self._call("POST", "/batches", json=body, headers={"Idempotency-Key": key}, idempotent=True)
        return cast(dict[str, Any], answer)

    def get_batch(self, batch_id: str, limit: int | None = None, cursor: str | None = None) -> dict[str, Any]:
        """A batch's counts per status and a page of its job ids."""
        path = f"/batches/{_segment(batch_id)}"
        return cast(dict[str, Any], self._call("GET", path, params=_page(limit, cursor)))

    def cancel_batch(self, batch_id: str) -> dict[str, Any]:
        """Cancel the batch's jobs not yet started; they are refunded together."""
        path = f"/batches/{_segment(batch_id)}/cancel"
        return cast(dict[str, Any], self._call("POST", path, idempotent=True))

    # -- conversations -------------------------------------------------------------------

    def create_conversation(self, title: str | None = None, system: str | None = None) -> Conversation:
        """A conversation whose history the server keeps; ``system`` is sent first with every message."""
        body = {k: v for k, v in {"title": title, "system": system}.items() if v is not None}
        return cast(Conversation, self._call("POST", "/conversations", json=body, idempotent=False))

    def list_conversations(self, limit: int | None = None, cursor: str | None = None) -> ConversationPage:
        """One page of the user's conversations, newest first (``next_cursor`` for the next)."""
        return cast(ConversationPage, self._call("GET", "/conversations", params=_page(limit, cursor)))

    def get_conversation(self, conversation_id: str) -> ConversationDetail:
        """The conversation with its messages in order, each with its job and, once done, its reply."""
        path = f"/conversations/{_segment(conversation_id)}"
        return cast(ConversationDetail, self._call("GET", path))

    def delete_conversation(self, conversation_id: str) -> None:
        """Delete it and its messages; ``ConversationBusy`` while a message waits for its reply."""
        self._call("DELETE", f"/conversations/{_segment(conversation_id)}", idempotent=True)

    def send_message(
        self,
        conversation_id: str,
        content: str,
        options: Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> MessageAccepted:
        """Post a message: a chat job of the server's history and it, charged like ``submit``.

        Like ``submit``, it sends an ``Idempotency-Key`` (a fresh uuid4 unless given) and the
        same key on every retry: a retry answers the same message and job. ``wait(job_id)``
        follows the job; ``get_conversation`` then shows the reply on the message.
        """
        key = idempotency_key or str(uuid.uuid4())
        body = {"content": content, "options": dict(options or {})}
        path = f"/conversations/{_segment(conversation_id)}/messages"
        answer = self._call("POST", path, json=body, headers={"Idempotency-Key": key}, idempotent=True)
        return cast(MessageAccepted, answer)

    # -- teams ---------------------------------------------------------------------------

    def create_team(self, name: str) -> Team:
        """A team with an empty credit pool; the caller is its owner (``TooManyTeams`` past the most)."""
        return cast(Team, self._call("POST", "/teams", json={"name": name}, idempotent=False))

    def list_teams(self) -> TeamList:
        """The caller's teams, by name, with the caller's role and each pool's balance."""
        return cast(TeamList, self._call("GET", "/teams"))

    def get_team(self, team_id: str) -> Team:
        """One of the caller's teams; ``TeamNotFound`` if the caller is not its member."""
        return cast(Team, self._call("GET", f"/teams/{_segment(team_id)}"))

    def rename_team(self, team_id: str, name: str) -> Team:
        """Owners and admins (else ``TeamRoleRequired``)."""
        path = f"/teams/{_segment(team_id)}"
        return cast(Team, self._call("PATCH", path, json={"name": name}, idempotent=True))

    def delete_team(self, team_id: str) -> None:
        """Owners; ``TeamNotEmpty`` while the pool holds credits, ``TeamBusy`` while a job
        charged to it is unfinished."""
        self._call("DELETE", f"/teams/{_segment(team_id)}", idempotent=True)

    def list_team_members(self, team_id: str) -> TeamMemberList:
        """The members by username, with their roles, limits and what they spent."""
        return cast(TeamMemberList, self._call("GET", f"/teams/{_segment(team_id)}/members"))

    def add_team_member(
        self,
        team_id: str,
        username: str,
        role: TeamRole = "member",
        daily_limit: int | None = None,
        monthly_limit: int | None = None,
    ) -> TeamMember:
        """Add an existing account (owners and admins; only owners add owners). A limit is the
        credits the member may spend from the pool in a UTC day or month; None: no limit."""
        body: dict[str, Any] = {"username": username, "role": role}
        limits = {"daily_limit": daily_limit, "monthly_limit": monthly_limit}
        body |= {k: v for k, v in limits.items() if v is not None}
        path = f"/teams/{_segment(team_id)}/members"
        return cast(TeamMember, self._call("POST", path, json=body, idempotent=False))

    def update_team_member(self, team_id: str, username: str, **changes: Any) -> TeamMember:
        """Set ``role``, ``daily_limit`` and/or ``monthly_limit`` (a limit of ``None`` removes
        it); ``LastOwner`` if that would leave the team without an owner."""
        path = f"/teams/{_segment(team_id)}/members/{_segment(username)}"
        return cast(TeamMember, self._call("PATCH", path, json=changes, idempotent=True))

    def remove_team_member(self, team_id: str, username: str) -> None:
        """Remove a member (owners and admins), or leave (your own username); never the last owner."""
        path = f"/teams/{_segment(team_id)}/members/{_segment(username)}"
        self._call("DELETE", path, idempotent=True)

    def transfer_to_team(self, team_id: str, amount: int, transfer_id: str | None = None) -> Transfer:
        """Move ``amount`` credits from the caller (an owner) to the team; negative: back.

        Sends a ``transfer_id`` (a fresh uuid4 unless given) and the same one on every retry,
        so a transfer moves at most once: a repeat answers the first, ``TransferIdReused`` if
        it was used for another amount.
        """
        body = {"amount": amount, "transfer_id": transfer_id or str(uuid.uuid4())}
        path = f"/teams/{_segment(team_id)}/credits"
        return cast(Transfer, self._call("POST", path, json=body, idempotent=True))

    def team_credits(self, team_id: str, limit: int | None = None, cursor: str | None = None) -> Credits:
        """The team's balance and a page of its ledger, newest first (owners and admins)."""
        path = f"/teams/{_segment(team_id)}/credits"
        return cast(Credits, self._call("GET", path, params=_page(limit, cursor)))

    def team_usage(
        self, team_id: str, from_date: date | str, to_date: date | str, group_by: _GroupBy = "day"
    ) -> TeamUsage:
        """The team's jobs and credits per ``member``, ``task_type`` or ``day`` (owners and admins)."""
        params = {"from": str(from_date), "to": str(to_date), "group_by": group_by}
        return cast(TeamUsage, self._call("GET", f"/teams/{_segment(team_id)}/usage", params=params))

    def team_usage_csv(
        self, team_id: str, from_date: date | str, to_date: date | str, group_by: _GroupBy = "day"
    ) -> str:
        """The same as ``team_usage``, as the server's CSV text."""
        params = {"from": str(from_date), "to": str(to_date), "group_by": group_by, "format": "csv"}
        path = f"/teams/{_segment(team_id)}/usage"
        return cast(str, self._call("GET", path, params=params, headers={"Accept": "text/csv"}))

    # -- the rest ------------------------------------------------------------------------

    def usage(self, from_date: date | str, to_date: date | str) -> Usage:
        """Jobs and credits per day and task type, ``from_date`` to ``to_date`` inclusive."""
        params = {"from": str(from_date), "to": str(to_date)}
        return cast(Usage, self._call("GET", "/usage", params=params))

    def catalog(self) -> Catalog:
        """``GET /catalog`` (no token): task types, their models with prices, the default model
        and the options. ``submit(..., {"model": id})`` picks a model."""
        return cast(Catalog, self._call("GET", "/catalog", auth=False))

    def health(self) -> Health:
        """``GET /health`` (no token, no retries): ``Unhealthy`` names what is down."""
        return cast(Health, self._call("GET", "/health", auth=False, retry=False))

    # -- plumbing ------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        auth: bool = True,
        idempotent: bool | None = None,
        retry: bool = True,
        timeout: float | None = None,
    ) -> Any:
        """One API call with its retries; ``idempotent`` defaults to true for GET. An expired
        access token is renewed once with the refresh token held, and the call sent again."""
        used = self.token
        try:
            return self._send(method, path, json, params, headers, auth, idempotent, retry, timeout)
        except TokenExpired:
            if not (auth and self.refresh_token):
                raise
            with self._refreshing:
                if self.token == used:  # not renewed meanwhile by another thread
                    self.refresh()
            return self._send(method, path, json, params, headers, auth, idempotent, retry, timeout)

    def _send(
        self,
        method: str,
        path: str,
        json: Any,
        params: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
        auth: bool,
        idempotent: bool | None,
        retry: bool,
        timeout: float | None,
    ) -> Any:
        safe = method == "GET" if idempotent is None else idempotent
        sent = {"User-Agent": f"aijobs-python/{__version__}", "Accept": "application/json", **(headers or {})}
        if auth and self.token:
            sent["Authorization"] = f"Bearer {self.token}"
        policy = self.retry if retry else RetryPolicy.none()
        slept = 0.0
        attempt = 0
        while True:
            attempt += 1
            answer, error = self._attempt(method, path, json, params, sent, timeout)
            if error is None:
                return answer
            if not _may_retry(error, safe):
                raise error
            pause = policy.delay(attempt, cast(RetryableError, error))
            if attempt >= policy.max_attempts or slept + pause > policy.max_wait:
                raise error
            self._sleep(pause)
            slept += pause

    def _attempt(
        self,
        method: str,
        path: str,
        body: Any,
        params: Mapping[str, str] | None,
        headers: Mapping[str, str],
        timeout: float | None,
    ) -> tuple[Any, AijobsError | None]:
        """Send once: the decoded answer, or the error (returned, not raised)."""
        try:
            response = self._http.request(
                method,
                self.base_url + path,
                json=body,
                params=params,
                headers=headers,
                timeout=timeout if timeout is not None else self.timeout,
            )
        except httpx.UnsupportedProtocol as exc:
            raise NetworkError(f"{self.base_url}: {exc}") from exc
        except httpx.TransportError as exc:
            # Refused or timed out while connecting: the request never left, any call may retry.
            unsent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
            error = NetworkError(
                f"{method} {self.base_url}{path}: {type(exc).__name__}: {exc}", unsent=unsent
            )
            error.__cause__ = exc
            return None, error
        if response.is_success and response.headers.get("content-type", "").startswith("image/"):
            return response.content, None  # get_image: the picture's bytes, never decoded
        if response.is_success and response.headers.get("content-type", "").startswith("text/csv"):
            return response.text, None  # team_usage_csv: the CSV as text
        try:
            decoded = response.json() if response.content else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            decoded = None
        headers_in = dict(response.headers)
        if response.is_success:
            if response.status_code == 204:
                return None, None
            if isinstance(decoded, dict | list):
                return decoded, None
            return None, ServerError(response.status_code, "invalid_response", "the answer is not JSON")
        if decoded is None and response.content:
            decoded = response.text[:1000]
        return None, error_for(response.status_code, decoded, headers_in)


def _may_retry(error: AijobsError, safe: bool) -> bool:
    if not isinstance(error, RetryableError):
        return False
    if isinstance(error, NetworkError):
        return safe or error.unsent
    if isinstance(error, OutcomeUnknown):
        return safe
    return True


def _page(limit: int | None, cursor: str | None) -> dict[str, str]:
    params = {}
    if limit is not None:
        params["limit"] = str(limit)
    if cursor:
        params["cursor"] = cursor
    return params


def _segment(part: str) -> str:
    if not part:
        raise ValueError("a path part (an id or a username) must not be empty")
    return quote(part, safe="")
