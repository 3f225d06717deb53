"""Jobs: submitted (charged in the same commit), run by the worker, read and canceled.

Documents:
- ``jobs/{job_id}``: ``{user_id, task_type, input_data, options, cost, model, provider,
  provider_model, status,
  output, error, attempts, lease_id, lease_expires_at, created_at, updated_at,
  expires_at}``; ``expires_at`` (``JOB_RETENTION_DAYS`` after submission) is the
  TTL field: Firestore deletes the job after it.
- ``idempotency/{user_id}-{sha256(key)}``: ``{user_id, job_id, request_hash,
  expires_at}``; written in the charge's commit, so a key maps to one job;
  ``expires_at`` is also its TTL field.

States (every arrow is one optimistic commit, see ``shared.db``)::

    queued --claim--> in_progress --> completed
      |                   |---------> failed    (+ refund)
      |                   '---------> queued    (retryable AI error, attempts left)
      |---> canceled  (+ refund; user)
      '---> failed    (+ refund; could not be enqueued)

A refund is staged only together with a transition out of ``queued`` or
``in_progress`` into ``failed``/``canceled``, guarded by a precondition on the
job document, and its ledger id is fixed per job: at most one per job. The job
document is every such commit's receipt (``shared.db``), so a commit whose reply
was lost is recognised as done.

Getting a charged job onto the queue (an outbox without a second document): the
charge commits first, then the task is created. If the queue refuses the task, the
job is failed and refunded and the client told "not charged". If the reply is lost
(the task may exist), the job stays accepted. Either way, and after a crash
between the two, a job still ``queued`` with no attempt is the outbox: the
sweeper (every minute) enqueues those older than ``OUTBOX_DELAY_SECONDS``, and a
client's retry with the same ``Idempotency-Key`` enqueues it at once. The task
name is the job's, so Cloud Tasks drops the repeats, and the claim below makes
any duplicate that gets through a no-op.

The worker is safe under at-least-once delivery: a claim writes a fresh
``lease_id``, and every later write of that run requires the job to still carry
it. A duplicate delivery finds the job claimed (409, the queue retries later)
or finished (acknowledged, nothing done), so the AI is called once per attempt.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal, get_args

from google.cloud import firestore
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from shared import catalog, credits, limits, logs, usage
from shared.db import Batch, Snapshot, client, commit_optimistically, newest_first, now, put, unchanged
from shared.errors import (
    Conflict,
    InvalidRequest,
    NotFound,
    NotQueued,
    PayloadTooLarge,
    PermanentProviderError,
    RetryableProviderError,
    Unavailable,
)
from shared.settings import get_settings

logger = logging.getLogger("aijobs.jobs")
Status = Literal["queued", "in_progress", "completed", "failed", "canceled"]
FINAL = ("completed", "failed", "canceled")
MAX_WAIT_SECONDS = 25
"""The longest ``GET /jobs/{id}?wait=``: inside the function's 30 s timeout."""
IDEMPOTENCY_TTL = timedelta(hours=24)
_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")
_ID = re.compile(r"[0-9a-f]{32}")
ID_PATTERN = _ID
"""What a job id (and a batch id) looks like: anything else is not looked up."""
STATUSES: tuple[Status, ...] = get_args(Status)

Enqueue = Callable[[str, int], None]
"""Puts ``(job_id, generation)`` on the queue. Raises ``NotQueued`` when the queue refused
the task, another ``Unavailable`` when the outcome is unknown (the task may exist)."""

Provider = Callable[[str, Any, dict[str, Any]], dict[str, Any]]
"""Runs ``(task_type, input_data, options)`` on the AI; raises ``ProviderError``."""


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str = Field(min_length=1)


TeamId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]


class JobCreate(BaseModel):
    """Body of ``submit_job``; options are checked against the catalog in Firestore."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"task_type": "summarize", "input_data": "A long text ...", "options": {}},
                {"task_type": "translate", "input_data": "Hallo", "options": {"target_language": "English"}},
                {"task_type": "chat", "input_data": [{"role": "user", "content": "Hello!"}]},
            ]
        },
    )

    task_type: str
    input_data: str | list[ChatMessage]
    options: dict[str, Any] = Field(default_factory=dict)
    team_id: TeamId | None = None
    """Charge the job to this team's pool (the caller must be a member); by default the caller pays."""


MAX_TITLE, MAX_TAGS = 200, 10
_TAG = r"^[a-z0-9][a-z0-9_-]{0,31}$"
Tag = Annotated[str, StringConstraints(pattern=_TAG)]
"""1-32 of ``[a-z0-9_-]``, lower-case, starting with a letter or digit."""


class JobPublic(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    job_id: str
    task_type: str
    status: Status
    input_data: Any
    """Null once the job is deleted."""
    output: dict[str, Any] | None
    """A text job's ``{"text"}``; an image job's ``{"image": {"path", "content_type", "bytes"}}``,
    the picture itself at ``GET /jobs/{job_id}/image``."""
    error: dict[str, str] | None
    cost: int
    model: str | None = None
    """The catalog model it runs on (``options.model`` or the default); null for jobs before models."""
    created_at: datetime
    updated_at: datetime
    title: str | None = None
    tags: list[str] = []
    deleted_at: datetime | None = None
    """When its owner deleted its content (input, output, title, tags); the rest is kept."""
    batch_id: str | None = None
    """The batch it was submitted in, if any."""
    team_id: str | None = None
    """The team it was charged to, if any (then refunded to the team too)."""


class JobUpdate(BaseModel):
    """Body of ``PATCH /jobs/{job_id}``: what a person finds the job by. ``null`` clears the
    title, ``[]`` the tags; a field left out is left as it is."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "minProperties": 1,
            "examples": [{"title": "Q3 report summary", "tags": ["finance", "q3"]}],
        },
    )

    title: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TITLE)] | None
    ) = None
    tags: Annotated[list[Tag], Field(max_length=MAX_TAGS)] | None = None

    @model_validator(mode="after")
    def _something(self) -> JobUpdate:
        if not self.model_fields_set:
            raise ValueError("set title or tags")
        return self


class JobFilter(BaseModel):
    """The filters of ``GET /jobs``, besides its page (``limit``, ``cursor``)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    status: Status | None = None
    task_type: Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]{1,64}$")] | None = None
    tag: Annotated[str, StringConstraints(pattern=_TAG)] | None = None
    """Jobs carrying this tag."""


class JobAccepted(BaseModel):
    """Answer to ``submit_job``; ``replayed`` marks a repeat of an ``Idempotency-Key``."""

    job_id: str
    status: Status
    cost: int
    credits: int
    """The balance the charge was decided on, less its cost: the team's for a team's job."""
    replayed: bool = Field(False, exclude=True)


class WaitQuery(BaseModel):
    """Query of ``GET /jobs/{job_id}``; read by the function, which names its refusal's code."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    wait: int = Field(0, ge=0, le=MAX_WAIT_SECONDS)
    """Seconds to wait for the job to become final; 0 answers at once."""


class JobPage(BaseModel):
    """A page of jobs, newest first; ``next_cursor`` is null on the last page."""

    jobs: list[JobPublic]
    next_cursor: str | None


def _jobs() -> firestore.CollectionReference:
    return client().collection("jobs")


collection = _jobs
"""The ``jobs`` collection, for the modules whose jobs live there too (batches)."""


def _public(snapshot: Snapshot) -> JobPublic:
    return JobPublic(job_id=snapshot.id, **(snapshot.to_dict() or {}))


def _check_input(job: JobCreate, max_chars: int) -> None:
    if job.task_type == "chat":
        if not isinstance(job.input_data, list) or not job.input_data:
            raise InvalidRequest("chat input_data must be a non-empty list of {role, content} messages")
        if any(not m.content.strip() for m in job.input_data):
            raise InvalidRequest("every chat message needs content that is not blank")
        size = sum(len(m.content) for m in job.input_data)
    else:
        if not isinstance(job.input_data, str) or not job.input_data.strip():
            raise InvalidRequest(f"{job.task_type} input_data must be a non-empty string")
        size = len(job.input_data)
    if size > max_chars:
        raise PayloadTooLarge(
            f"input_data has {size} characters; the limit is {max_chars}", code="input_too_large"
        )


def check_idempotency_key(key: str) -> None:
    if not _IDEMPOTENCY_KEY.fullmatch(key):
        raise InvalidRequest(
            "Idempotency-Key must be 1-255 printable ASCII characters", code="invalid_idempotency_key"
        )


def _idempotency_ref(user_id: str, key: str) -> firestore.DocumentReference:
    check_idempotency_key(key)
    digest = hashlib.sha256(key.encode()).hexdigest()
    return client().collection("idempotency").document(f"{user_id}-{digest}")


def submit(
    user_id: str,
    job: JobCreate,
    idempotency_key: str | None,
    enqueue: Enqueue,
    links: Mapping[str, str] | None = None,
) -> JobAccepted:
    """Charge, store and enqueue a job; with an idempotency key, at most once per key.

    202 means charged and on its way: if the task could not be confirmed, the job is
    in the outbox (see the module docstring). ``Unavailable`` from here means nothing
    was charged, except ``OutcomeUnknown``, which says so. ``links`` are stored on the job
    (``{"conversation_id": ...}``): what it belongs to, read back when it is final.
    """
    choice = priced(job)
    cost = choice.cost
    body = request_body(job)
    request_hash = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    idem_ref = _idempotency_ref(user_id, idempotency_key) if idempotency_key is not None else None
    job_ref = _jobs().document(uuid.uuid4().hex)
    payer = payer_of(user_id, job.team_id)
    # Where to look first: one aggregation read tells how wide the balance is spread.
    balance = credits.balance(payer)
    spread = credits.width(balance)

    def replay(seen: Snapshot) -> JobAccepted:
        if seen.get("request_hash") != request_hash:
            raise Conflict(
                "this Idempotency-Key was used with a different request", code="idempotency_key_reused"
            )
        first = _jobs().document(seen.get("job_id")).get()
        if first.get("status") == "queued" and first.get("attempts") == 0:
            # The client retries because it did not hear back: the first request may have
            # died before its task was created. The task name makes this a no-op otherwise.
            with contextlib.suppress(Unavailable):
                enqueue(first.id, 0)
        return JobAccepted(
            job_id=first.id,
            status=first.get("status"),
            cost=first.get("cost"),
            credits=balance,
            replayed=True,
        )

    def decide(batch: Batch) -> JobAccepted | None:
        at = now()
        if idem_ref is not None:
            seen = idem_ref.get()
            if seen.exists and seen.get("expires_at") > at:
                return replay(seen)  # before the submit limit: a replay costs no submit slot
            record = {
                "user_id": user_id,
                "job_id": job_ref.id,
                "request_hash": request_hash,
                "expires_at": at + IDEMPOTENCY_TTL,
            }
            put(batch, seen, record)
        by = None
        if job.team_id:
            from shared import teams  # only a team's job needs it

            by = teams.stage_member_charge(batch, job.team_id, user_id, cost, at)  # 404, 402 past a limit
        shard = credits.stage_charge(batch, payer, cost, job_ref.id, at, spread, by)
        if job.team_id and by:
            teams.stage_charged(batch, job.team_id, by, [(job.task_type, cost)], at, shard)
        # The submit limit is decided on the day-shard usage document this commit writes.
        counter = limits.submit_counter(user_id, shard, at)
        usage.stage_submitted(batch, user_id, job.task_type, cost, at, counter)
        document = new_job(user_id, body, choice, at, shard, {**(links or {}), **_member(by)})
        batch.create(job_ref, batch.receipt(job_ref, document))
        return None  # charged: the answer is made once the task is on its way

    replayed = commit_optimistically(decide)
    if replayed is not None:
        logs.bind(job_id=replayed.job_id)
        return replayed
    logs.bind(job_id=job_ref.id)
    try:
        enqueue(job_ref.id, 0)
    except NotQueued:
        error = _error("enqueue_failed", "the job could not be queued")
        if _finish(job_ref.id, None, "failed", error=error, forget=idem_ref) is not None:
            raise Unavailable("the job could not be queued and was not charged; retry") from None
        # Someone else moved it first (a cancel): it was charged and refunded like any job.
    except Unavailable:
        logger.warning("job %s: the queue did not confirm its task; the outbox will send it", job_ref.id)
    # The balance the charge was decided on, less its cost: exact unless other movements of
    # the account raced it (re-reading it would cost a read per job).
    return JobAccepted(job_id=job_ref.id, status="queued", cost=cost, credits=max(0, balance - cost))


def request_body(job: JobCreate) -> dict[str, Any]:
    """The request as stored on the job and hashed for its idempotency key (without an unset
    ``team_id``, so a user's own jobs read and hash as they always did)."""
    return job.model_dump(mode="json", exclude={"team_id"} if job.team_id is None else None)


def payer_of(user_id: str, team_id: str | None) -> credits.Holder:
    """Whose wallet a job is charged to and refunded to: the team's, or the user's own."""
    return credits.team(team_id) if team_id else user_id


def _member(by: dict[str, str] | None) -> dict[str, str]:
    # A team's job records who charged it, for its refund's ledger entry.
    return {"member_username": by["username"]} if by else {}


def unfinished_of_team(team_id: str) -> bool:
    """Whether a job charged to the team is still queued or running."""
    query = _jobs().where(filter=firestore.FieldFilter("team_id", "==", team_id))
    query = query.where(filter=firestore.FieldFilter("status", "in", ["queued", "in_progress"]))
    return bool(list(query.limit(1).select([]).stream()))


def priced(job: JobCreate) -> catalog.Choice:
    """What ``job`` is sold as (its model, route and cost), after every check of its request;
    a refusal is a 4xx before anything is charged."""
    choice = catalog.choose(job.task_type, job.options)  # 422 unknown_model, model_unavailable, ...
    check_input(job)
    return choice


def check_input(job: JobCreate) -> None:
    """413 or 422 for an input the task cannot take (its shape, blank, too long)."""
    _check_input(job, get_settings().max_input_chars)


def new_job(
    user_id: str,
    body: dict[str, Any],
    choice: catalog.Choice,
    at: datetime,
    shard: int,
    links: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The document of a job just charged (``body``: its request as JSON), queued."""
    return {
        **body,
        "user_id": user_id,
        "cost": choice.cost,
        "status": "queued",
        "output": None,
        "error": None,
        "attempts": 0,
        "lease_id": None,
        "lease_expires_at": None,
        "created_at": at,
        "updated_at": at,
        "expires_at": at + timedelta(days=get_settings().job_retention_days),
        "shard": shard,
        **choice.recorded(),  # its model and route: the worker calls them whatever the catalog says later
        **(links or {}),
    }


def _owned(user_id: str, job_id: str) -> Snapshot:
    """The job document, if ``user_id`` owns it; another user's job is indistinguishable from a
    missing one."""
    snapshot = _jobs().document(job_id).get() if _ID.fullmatch(job_id) else None
    if snapshot is None or not snapshot.exists or snapshot.get("user_id") != user_id:
        raise NotFound("no such job", code="job_not_found")
    return snapshot


def _ours(user_id: str, snapshot: Snapshot) -> Snapshot:
    if not snapshot.exists or snapshot.get("user_id") != user_id:
        raise NotFound("no such job", code="job_not_found")
    return snapshot


def get(user_id: str, job_id: str, wait: float = 0) -> JobPublic:
    """The job; with ``wait``, as soon as it is final, or as it is after ``wait`` seconds.

    A wait listens to the document (Firestore's ``on_snapshot``) instead of reading it in a
    loop: the listener's first snapshot is the job as it is, and each later one a change of
    it, so a job waited on from ``queued`` to ``completed`` costs 3 document reads in all.
    """
    if not wait or not _ID.fullmatch(job_id):
        return _public(_owned(user_id, job_id))
    seen: list[Snapshot] = []
    changed = threading.Condition()

    def on_change(docs: list[Snapshot], _changes: Any, _read_time: Any) -> None:
        with changed:
            seen.extend(docs)
            changed.notify_all()

    def final() -> bool:
        return bool(seen) and (not seen[-1].exists or seen[-1].get("status") in FINAL)

    watch = _jobs().document(job_id).on_snapshot(on_change)
    try:
        with changed:
            # The first snapshot decides ownership; a listener that never delivers one is an outage.
            if not changed.wait_for(lambda: bool(seen), timeout=get_settings().firestore_timeout_seconds):
                raise Unavailable("Firestore did not answer the wait")
            _ours(user_id, seen[0])
            changed.wait_for(final, timeout=wait)
            return _public(_ours(user_id, seen[-1]))
    finally:
        watch.unsubscribe()


def list_for(
    user_id: str, limit: int, cursor: str | None, filters: JobFilter | None = None
) -> tuple[list[JobPublic], str | None]:
    """A page of the user's jobs, newest first; ``cursor`` is the last job id of the previous page."""
    query = _jobs().where(filter=firestore.FieldFilter("user_id", "==", user_id))
    if filters is not None:
        # Each combination has its composite index (firestore.indexes.json).
        if filters.status is not None:
            query = query.where(filter=firestore.FieldFilter("status", "==", filters.status))
        if filters.task_type is not None:
            query = query.where(filter=firestore.FieldFilter("task_type", "==", filters.task_type))
        if filters.tag is not None:
            query = query.where(filter=firestore.FieldFilter("tags", "array_contains", filters.tag))
    docs, more = newest_first(query, limit, cursor, lambda job_id: _owned(user_id, job_id))
    jobs = [_public(d) for d in docs]
    return jobs, (jobs[-1].job_id if more else None)


def cancel(user_id: str, job_id: str) -> JobPublic:
    """Cancel a job that no worker has claimed yet, refunding its cost."""
    _owned(user_id, job_id)
    job = _finish(job_id, None, "canceled")
    if job is None:
        raise Conflict("only a queued job can be canceled", code="job_not_cancelable")
    return job


def update(user_id: str, job_id: str, changes: JobUpdate) -> JobPublic:
    """Set a job's title or tags (any status); a deleted job has no content to add to."""
    ref = _jobs().document(job_id)
    fields = changes.model_dump(include=changes.model_fields_set)
    if "tags" in fields:
        fields["tags"] = list(dict.fromkeys(fields["tags"] or []))  # null clears; a repeat counts once

    def decide(batch: Batch) -> JobPublic:
        snapshot = _owned(user_id, job_id)
        job = snapshot.to_dict() or {}
        if job.get("deleted_at") is not None:
            raise Conflict("the job was deleted", code="job_deleted")
        # Guarded like every job change: a worker finishing it meanwhile makes this round again.
        batch.update(ref, batch.receipt(ref, fields), option=unchanged(snapshot))
        return JobPublic(job_id=job_id, **{**job, **fields})

    return commit_optimistically(decide)


def delete(user_id: str, job_id: str) -> None:
    """Wipe a finished job's content: its input, output, title and tags, and then its image
    object. What the books need stays (status, cost, times, error, ledger entries). Deleting it
    again changes nothing (but deletes an image object a crash left behind)."""
    ref = _jobs().document(job_id)

    def decide(batch: Batch) -> bool:
        snapshot = _owned(user_id, job_id)
        job = snapshot.to_dict() or {}
        drawn = job.get("task_type") == "generate_image"
        if job.get("deleted_at") is not None:
            return drawn  # its object is deleted again: this repeat may follow a crash after the commit
        if job.get("status") not in FINAL:
            raise Conflict("only a completed, failed or canceled job can be deleted", code="job_not_finished")
        at = now()
        wiped: dict[str, Any] = {
            "input_data": None,
            "output": None,
            "title": None,
            "tags": [],
            "deleted_at": at,
            "updated_at": at,
        }
        batch.update(ref, batch.receipt(ref, wiped), option=unchanged(snapshot))
        return drawn

    if commit_optimistically(decide):
        from shared import images

        # After the commit: the job no longer points at it. An object left by a crash here is
        # deleted by a repeated delete, or by the bucket's lifecycle rule at JOB_RETENTION_DAYS.
        images.delete(images.path_of(user_id, job_id))


def image(user_id: str, job_id: str) -> tuple[str, str]:
    """Where the job's image is stored, and its content type; 404 ``image_not_found`` for a job
    of this user without one (not an image job, not completed, deleted)."""
    job = _owned(user_id, job_id).to_dict() or {}
    stored = (job.get("output") or {}).get("image")
    if not isinstance(stored, dict) or not isinstance(stored.get("path"), str):
        raise NotFound("the job has no image", code="image_not_found")
    return stored["path"], str(stored.get("content_type") or "image/png")


def _error(code: str, message: str) -> dict[str, str]:
    return {"code": code, "message": message}


@dataclass(frozen=True)
class _Known:
    """A job as a commit of this process left it, and that commit's time: a write guarded by
    ``update_time`` needs no read to know the job is still so."""

    data: dict[str, Any]
    update_time: datetime


def _finish(
    job_id: str,
    lease_id: str | None,
    status: Literal["completed", "failed", "canceled"],
    *,
    output: dict[str, Any] | None = None,
    error: dict[str, str] | None = None,
    forget: firestore.DocumentReference | None = None,
    still: Callable[[dict[str, Any]], bool] = lambda job: True,
    known: _Known | None = None,
) -> JobPublic | None:
    """Move a job to a final state; ``None`` if it is no longer ours to move.

    ``lease_id=None`` finishes a job still ``queued`` (cancel, enqueue failure);
    otherwise the job must be ``in_progress`` under that lease; ``still`` can
    require more of the job as read in the commit's own round. Failing and
    canceling refund the cost in the same commit. With ``known`` (the worker's own
    claim), the first round writes without reading; if the job changed since, the
    precondition fails and the next round reads it.
    """
    ref = _jobs().document(job_id)
    first = [known] if known is not None else []

    def decide(batch: Batch) -> JobPublic | None:
        at = now()
        if first:
            seen = first.pop()
            job, option = seen.data, client().write_option(last_update_time=seen.update_time)
        else:
            snapshot = ref.get()
            if not snapshot.exists:
                return None
            job, option = snapshot.to_dict() or {}, unchanged(snapshot)
        expected = "queued" if lease_id is None else "in_progress"
        if job.get("status") != expected or job.get("lease_id") != lease_id or not still(job):
            return None
        changes: dict[str, Any] = {
            "status": status,
            "output": output,
            "error": error,
            "updated_at": at,
            "lease_id": None,
            "lease_expires_at": None,
        }
        user_id, cost, shard = job["user_id"], job["cost"], int(job.get("shard") or 0)
        if status == "completed":
            # What the weekly report counts completions and their latency by, with no counter.
            changes["completed_at"] = at
            changes["latency_bucket"] = usage.latency_bucket((at - job["created_at"]).total_seconds())
        else:
            team_id = job.get("team_id")
            by = {"user_id": user_id, "username": job.get("member_username") or ""} if team_id else None
            credits.stage_refund(batch, payer_of(user_id, team_id), cost, job_id, at, shard, by)
            usage.stage_refunded(batch, user_id, job["task_type"], status, cost, job["created_at"], shard)
            if team_id:
                from shared import teams  # only a team's job needs it

                refunded = [(job["task_type"], cost)]
                teams.stage_refunded(batch, team_id, user_id, refunded, status, job["created_at"], shard)
        batch.update(ref, batch.receipt(ref, changes), option=option)
        if forget is not None:
            batch.delete(forget)
        _stage_on_final(batch, job_id, {**job, **changes}, at)
        return JobPublic(job_id=job_id, **{**job, **changes})

    finished = commit_optimistically(decide)
    if finished is not None:
        _after_final(finished)
    return finished


def _stage_on_final(batch: Batch, job_id: str, job: dict[str, Any], at: datetime) -> None:
    """What else changes in the very commit that makes a job final (``job`` as it is then).

    Called once per round of that commit, on a fresh batch, so it may stage writes freely;
    it must not commit, and it reads only what it must (this is every job's path)."""
    from shared import webhooks

    webhooks.stage_job_final(batch, job_id, job, at)
    if job.get("conversation_id"):  # imported only then: a reply lands in this very commit
        from shared import conversations

        conversations.stage_reply(batch, job_id, job, at)


def _after_final(job: JobPublic) -> None:
    """Work after a job's final commit landed (once per job: only the winner gets here)."""
    from shared import webhooks

    webhooks.after_job_final(job.job_id)
    if job.batch_id is not None:
        from shared import batches

        batches.after_job_final(job.batch_id)


@dataclass(frozen=True)
class _Claim:
    task_type: str
    input_data: Any
    options: dict[str, Any]
    attempt: int
    known: _Known


def _claim(job_id: str, lease_id: str) -> _Claim | str:
    """Take the job for one attempt, or say why not (its status, or ``missing``)."""
    settings = get_settings()
    ref = _jobs().document(job_id)
    rounds: list[Batch] = []
    taken: dict[str, Any] = {}

    def decide(batch: Batch) -> str | None:
        rounds.append(batch)
        at = now()
        job = ref.get()
        if not job.exists:
            return "missing"
        status = job.get("status")
        if status == "in_progress" and job.get("lease_expires_at") > at:
            raise Conflict("another delivery is running this job", code="job_in_progress")
        if status not in ("queued", "in_progress"):
            return str(status)
        batch_id = (job.to_dict() or {}).get("batch_id")
        if status == "queued" and batch_id is not None:
            from shared import batches  # only a batch's jobs pay this read

            if batches.canceled(batch_id):
                return "batch_canceled"  # left queued: the batch's cancel refunds it with the others
        claim = {
            "status": "in_progress",
            "attempts": int(job.get("attempts")) + 1,
            "lease_id": lease_id,
            "lease_expires_at": at + timedelta(seconds=settings.job_lease_seconds),
            "updated_at": at,
        }
        batch.update(ref, batch.receipt(ref, claim), option=unchanged(job))
        taken.clear()
        taken.update({**(job.to_dict() or {}), **claim})
        return None

    refused = commit_optimistically(decide)
    if refused is not None:
        return refused
    when = rounds[-1].receipt_time
    assert when is not None  # the round committed (or was found landed): its time is known
    return _Claim(
        taken["task_type"], taken["input_data"], taken["options"], taken["attempts"], _Known(taken, when)
    )


def _release(job_id: str, lease_id: str, error: dict[str, str]) -> bool:
    """Hand a job back to the queue (a retryable failure, or a lease that ran out)."""
    ref = _jobs().document(job_id)

    def decide(batch: Batch) -> bool:
        job = ref.get()
        if not (job.exists and job.get("status") == "in_progress" and job.get("lease_id") == lease_id):
            return False
        changes = {
            "status": "queued",
            "lease_id": None,
            "lease_expires_at": None,
            "error": error,
            "updated_at": now(),
        }
        batch.update(ref, batch.receipt(ref, changes), option=unchanged(job))
        return True

    return commit_optimistically(decide)


def run(job_id: str, provider: Provider) -> str:
    """One delivery of a job to the worker; returns what became of it.

    Raises ``Conflict`` while another delivery holds the job and ``Unavailable``
    after a retryable AI failure with attempts left: both ask the queue to retry.
    """
    if not _ID.fullmatch(job_id):
        return "missing"
    logs.bind(job_id=job_id)
    lease_id = uuid.uuid4().hex
    claim = _claim(job_id, lease_id)
    if isinstance(claim, str):
        return claim
    known = claim.known
    if claim.attempt > get_settings().job_max_attempts:
        error = _error("attempts_exhausted", "the AI call kept failing")
        _finish(job_id, lease_id, "failed", error=error, known=known)
        return "failed"
    try:
        output = provider(claim.task_type, claim.input_data, catalog.run_options(known.data))
        if claim.task_type == "generate_image":
            # Inside the try: an upload that fails is retried like a failed AI call.
            output = _stored(job_id, str(known.data["user_id"]), output)
    except RetryableProviderError as exc:
        if claim.attempt >= get_settings().job_max_attempts:
            _finish(job_id, lease_id, "failed", error=_error(exc.code, exc.message), known=known)
            return "failed"
        _release(job_id, lease_id, _error(exc.code, exc.message))
        raise Unavailable(f"the AI call failed ({exc.code}); retry", code=exc.code) from None
    except PermanentProviderError as exc:
        _finish(job_id, lease_id, "failed", error=_error(exc.code, exc.message), known=known)
        return "failed"
    done = _finish(job_id, lease_id, "completed", output=output, known=known)
    return "completed" if done is not None else "lease_lost"


def _stored(job_id: str, user_id: str, output: dict[str, Any]) -> dict[str, Any]:
    """An image answer as the job keeps it: the object's path, type and size, never the bytes.

    The upload lands before the final commit, so a completed job's image exists; a retried
    attempt overwrites the same object (``images.path_of``)."""
    from shared import images  # the worker's image jobs load google-cloud-storage, no one else

    picture = output.get("image")
    if not isinstance(picture, images.Picture):
        return output
    return {"image": images.put(user_id, job_id, picture)}


def _stuck(status: Status, field: str, before: datetime, limit: int, **equal: Any) -> list[Snapshot]:
    """Jobs in ``status`` whose ``field`` is older than ``before`` (the sweeper's queries)."""
    query = _jobs().where(filter=firestore.FieldFilter("status", "==", status))
    for name, value in equal.items():
        query = query.where(filter=firestore.FieldFilter(name, "==", value))
    query = query.where(filter=firestore.FieldFilter(field, "<", before))
    return list(query.limit(limit).stream())


def sweep(enqueue: Enqueue, limit: int = 500) -> dict[str, int]:
    """Recover stuck jobs; safe to run concurrently with workers and with itself.

    - ``in_progress`` with an expired lease (its worker died): back to ``queued`` and
      on the queue again, or ``failed`` and refunded when it used all its attempts.
    - ``queued`` for ``QUEUED_TIMEOUT_SECONDS`` since its last change (its task was
      lost for good): ``failed``, refunded.
    - ``queued`` with no attempt yet for ``OUTBOX_DELAY_SECONDS`` (the process died
      between the charge and the enqueue, or the queue's reply was lost): enqueued
      under the job's own task name, which the queue drops if the task exists.

    Each move is the same guarded commit the worker uses, so a late delivery racing
    the sweeper changes the job at most once and a job is refunded at most once.
    """
    settings = get_settings()
    at = now()
    counts = {"requeued": 0, "failed": 0, "enqueued": 0}
    for job in _stuck("in_progress", "lease_expires_at", at, limit):
        lease_id, attempts = job.get("lease_id"), int(job.get("attempts"))
        if attempts >= settings.job_max_attempts:
            error = _error("attempts_exhausted", "the job's worker stopped on its last attempt")
            if _finish(job.id, lease_id, "failed", error=error, still=lambda j: j["lease_expires_at"] < at):
                counts["failed"] += 1
        elif _release(job.id, lease_id, _error("lease_expired", "the job's worker stopped; retrying")):
            counts["requeued"] += 1
            # If this fails the job stays queued: a later sweep fails and refunds it if never delivered.
            with contextlib.suppress(Unavailable):
                enqueue(job.id, attempts)
    cutoff = at - timedelta(seconds=settings.queued_timeout_seconds)
    for job in _stuck("queued", "updated_at", cutoff, limit):
        error = _error("queue_timeout", "the job was never run")
        if _finish(job.id, None, "failed", error=error, still=lambda j: j["updated_at"] < cutoff):
            counts["failed"] += 1
    unsent = at - timedelta(seconds=settings.outbox_delay_seconds)
    for job in _stuck("queued", "updated_at", unsent, limit, attempts=0):
        try:
            enqueue(job.id, 0)
        except Unavailable:
            continue  # the next sweep tries again; after QUEUED_TIMEOUT_SECONDS it is refunded
        counts["enqueued"] += 1
    return counts
