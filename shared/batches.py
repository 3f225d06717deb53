"""Batches: up to ``MAX_JOBS`` jobs accepted, charged and canceled as one (the OpenAI Batch API).

Documents: ``batches/{batch_id}``: ``{user_id, team_id, member_username, job_ids, jobs, cost,
shard, request_hash, created_at, canceled_at, cancel_pending, expires_at}``; a batch with
``team_id`` is charged to (and refunded to) that team, its total within the member's limits.
Its jobs are ordinary ``jobs/{id}`` documents with ``batch_id``, run one by one through the
queue like any job (so within the queue's dispatch rate, set for the AI provider's rate limit).

- **All or nothing.** Every item is checked (catalog, options, input size) before anything is
  written: an invalid one is ``422`` naming its index, a balance that cannot pay the whole
  batch is ``402``. Then one commit creates the batch, its jobs, one ledger entry for the
  whole charge (``batch-{batch_id}``, type ``charge``), the wallet writes (bounded by its
  shards, whatever the batch's size) and one usage counter write.
- **Idempotent.** With an ``Idempotency-Key`` the batch id is derived from the user and the
  key, so a repeat finds the batch (``exists=False`` on create makes racing repeats commit
  once) and answers it, marked replayed; the same key with another body is ``409``.
- **Refunds.** A failed job of a batch is refunded like any job (``refund-{job_id}``).
  ``cancel`` marks the batch canceled, then cancels every job still queued in one commit:
  one wallet write, one usage write, a ``refund-{job_id}`` entry each (so none is refunded
  twice). A worker that meets a job of a canceled batch leaves it queued for that commit;
  if the canceling request died before it, the sweeper makes it (``cancel_pending``).
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import logging
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, Literal

from google.cloud import firestore
from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared import credits, jobs, usage
from shared.db import Batch, Snapshot, client, commit_optimistically, newest_first, now, unchanged
from shared.errors import AppError, Conflict, InvalidRequest, NotFound, Unavailable
from shared.jobs import JobCreate, TeamId
from shared.settings import get_settings

logger = logging.getLogger("aijobs.batches")
MAX_JOBS = 500
"""The most jobs one batch may hold (the OpenAI Batch API allows more, over hours)."""
_ENQUEUE_THREADS = 16
_ID = jobs.ID_PATTERN


class BatchCreate(BaseModel):
    """Body of ``POST /batches``: the jobs, each as ``submit_job`` takes one."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "jobs": [
                        {"task_type": "summarize", "input_data": "First text ..."},
                        {
                            "task_type": "translate",
                            "input_data": "Hallo",
                            "options": {"target_language": "English"},
                        },
                    ]
                }
            ]
        },
    )

    jobs: list[JobCreate] = Field(min_length=1, max_length=MAX_JOBS)
    team_id: TeamId | None = None
    """Charge the whole batch to this team's pool (the caller must be a member)."""

    @model_validator(mode="after")
    def _team_on_batch(self) -> BatchCreate:
        if any(job.team_id is not None for job in self.jobs):
            raise ValueError("set team_id on the batch, not on its jobs")
        return self


class BatchAccepted(BaseModel):
    """Answer to ``POST /batches``: charged, and every job on its way."""

    batch_id: str
    job_ids: list[str]
    cost: int
    credits: int
    """The balance the charge was decided on, less its cost."""
    replayed: bool = Field(False, exclude=True)


BatchStatus = Literal["in_progress", "completed", "canceled"]


class BatchSummary(BaseModel):
    batch_id: str
    jobs: int
    cost: int
    created_at: datetime
    canceled_at: datetime | None
    completed_at: datetime | None = None
    """When its last job became final (then ``batch.completed`` was sent)."""


class BatchPublic(BatchSummary):
    """A batch: how many of its jobs are in each status, and a page of its job ids."""

    status: BatchStatus
    """``completed`` once no job is queued or running; ``canceled`` once canceled and settled."""
    counts: dict[str, int]
    job_ids: list[str]
    next_cursor: str | None


class BatchPage(BaseModel):
    batches: list[BatchSummary]
    next_cursor: str | None


class BatchCanceled(BaseModel):
    batch_id: str
    canceled: int
    """Jobs canceled by this call (a repeat cancels none)."""
    refunded: int
    """Credits refunded by this call."""


def _batches() -> firestore.CollectionReference:
    return client().collection("batches")


def _summary(snapshot: Snapshot) -> BatchSummary:
    data = snapshot.to_dict() or {}
    return BatchSummary(
        batch_id=snapshot.id,
        jobs=data["jobs"],
        cost=data["cost"],
        created_at=data["created_at"],
        canceled_at=data.get("canceled_at"),
        completed_at=data.get("completed_at"),
    )


def _owned(user_id: str, batch_id: str) -> Snapshot:
    snapshot = _batches().document(batch_id).get() if _ID.fullmatch(batch_id) else None
    if snapshot is None or not snapshot.exists or snapshot.get("user_id") != user_id:
        raise NotFound("no such batch", code="batch_not_found")
    return snapshot


def _priced(order: BatchCreate) -> list[Any]:
    """Each job's model and cost, checked as ``submit_job`` checks one; a refusal names its index."""
    seen: dict[tuple[str, str], Any] = {}  # the same task and options are priced once
    choices = []
    for i, job in enumerate(order.jobs):
        key = (job.task_type, json.dumps(job.options, sort_keys=True))
        try:
            if key not in seen:
                seen[key] = jobs.priced(job)
            else:
                jobs.check_input(job)
            choices.append(seen[key])
        except AppError as exc:
            exc.message = f"jobs.{i}: {exc.message}"
            raise
    return choices


def create(user_id: str, order: BatchCreate, key: str | None, enqueue: jobs.Enqueue) -> BatchAccepted:
    """Charge and queue every job of ``order``, or nothing (see the module docstring)."""
    choices = _priced(order)
    bodies = [jobs.request_body(job) for job in order.jobs]
    hashed: Any = bodies if order.team_id is None else {"team_id": order.team_id, "jobs": bodies}
    request_hash = hashlib.sha256(json.dumps(hashed, sort_keys=True).encode()).hexdigest()
    if key is not None:
        jobs.check_idempotency_key(key)
        batch_id = hashlib.sha256(f"{user_id}\n{key}".encode()).hexdigest()[:32]
    else:
        batch_id = uuid.uuid4().hex
    ref = _batches().document(batch_id)
    job_ids = [uuid.uuid4().hex for _ in bodies]
    total = sum(choice.cost for choice in choices)
    payer = jobs.payer_of(user_id, order.team_id)
    balance = credits.balance(payer)

    def decide(batch: Batch) -> BatchAccepted | None:
        at = now()
        if key is not None:
            seen = ref.get()
            if seen.exists:
                if seen.get("user_id") != user_id or seen.get("request_hash") != request_hash:
                    raise Conflict(
                        "this Idempotency-Key was used with a different request",
                        code="idempotency_key_reused",
                    )
                return BatchAccepted(
                    batch_id=batch_id, job_ids=seen.get("job_ids"), cost=total, credits=balance, replayed=True
                )
        by, links = None, {"batch_id": batch_id}
        if order.team_id:
            from shared import teams  # only a team's batch needs it

            by = teams.stage_member_charge(batch, order.team_id, user_id, total, at)  # 404, 402 past a limit
            links |= {"team_id": order.team_id, "member_username": by["username"]}
        shard = credits.stage_batch_charge(batch, payer, total, batch_id, at, credits.width(balance), by)
        costs = [(j.task_type, c.cost) for j, c in zip(order.jobs, choices, strict=True)]
        usage.stage_batch_submitted(batch, user_id, costs, at, shard)
        if order.team_id and by:
            teams.stage_charged(batch, order.team_id, by, costs, at, shard)
        for job_id, body, choice in zip(job_ids, bodies, choices, strict=True):
            document = jobs.new_job(user_id, body, choice, at, shard, links)
            batch.create(jobs.collection().document(job_id), document)
        record = {
            "user_id": user_id,
            "team_id": order.team_id,
            "member_username": by["username"] if by else None,
            "job_ids": job_ids,
            "jobs": len(job_ids),
            "cost": total,
            "shard": shard,
            "request_hash": request_hash,
            "created_at": at,
            "canceled_at": None,
            "completed_at": None,
            "cancel_pending": False,
            "expires_at": at + timedelta(days=get_settings().job_retention_days),
        }
        batch.create(ref, batch.receipt(ref, record))
        return None

    replayed = commit_optimistically(decide)
    if replayed is not None:
        return replayed
    _enqueue_all(job_ids, enqueue)
    return BatchAccepted(batch_id=batch_id, job_ids=job_ids, cost=total, credits=max(0, balance - total))


def _enqueue_all(job_ids: list[str], enqueue: jobs.Enqueue) -> None:
    """Each job's task, several at once; one that does not go now goes from the outbox (the
    sweeper), like a single job's whose enqueue failed."""

    def one(job_id: str) -> bool:
        try:
            enqueue(job_id, 0)
        except Unavailable:
            return False
        return True

    # Each in a copy of the request's context, so its meter counts the calls of every thread.
    request = contextvars.copy_context()
    with ThreadPoolExecutor(_ENQUEUE_THREADS) as pool:
        sent = sum(pool.map(lambda job_id: request.copy().run(one, job_id), job_ids))
    if sent < len(job_ids):
        logger.warning(
            "%d of %d jobs not on the queue yet: the outbox will send them", len(job_ids) - sent, len(job_ids)
        )


def get(user_id: str, batch_id: str, limit: int, cursor: str | None) -> BatchPublic:
    """The batch with its counts per status (one count per status, no job read) and a page of
    its job ids; ``cursor`` is the last job id of the previous page."""
    snapshot = _owned(user_id, batch_id)
    job_ids: list[str] = snapshot.get("job_ids")
    start = 0
    if cursor:
        if cursor not in job_ids:
            raise InvalidRequest("unknown cursor", code="invalid_cursor")
        start = job_ids.index(cursor) + 1
    page = job_ids[start : start + limit]
    counts = _counts(batch_id)
    summary = _summary(snapshot)
    unfinished = counts["queued"] + counts["in_progress"]
    status: BatchStatus = "in_progress" if unfinished else "completed"
    if summary.canceled_at is not None and not snapshot.get("cancel_pending"):
        status = "canceled" if not unfinished else "in_progress"
    return BatchPublic(
        **summary.model_dump(),
        status=status,
        counts=counts,
        job_ids=page,
        next_cursor=page[-1] if start + limit < len(job_ids) else None,
    )


def _counts(batch_id: str) -> dict[str, int]:
    of_batch = jobs.collection().where(filter=firestore.FieldFilter("batch_id", "==", batch_id))

    def count(status: str) -> int:
        query: Any = of_batch.where(filter=firestore.FieldFilter("status", "==", status))
        results = query.count().get()
        return int(results[0][0].value)

    request = contextvars.copy_context()  # so the request's meter counts them
    with ThreadPoolExecutor(len(jobs.STATUSES)) as pool:
        found = pool.map(lambda status: request.copy().run(count, status), jobs.STATUSES)
        return dict(zip(jobs.STATUSES, found, strict=True))


def list_for(user_id: str, limit: int, cursor: str | None) -> BatchPage:
    """A page of the user's batches, newest first; ``cursor`` is the last batch id of the previous page."""
    query = _batches().where(filter=firestore.FieldFilter("user_id", "==", user_id))
    docs, more = newest_first(query, limit, cursor, lambda batch_id: _owned(user_id, batch_id))
    found = [_summary(d) for d in docs]
    return BatchPage(batches=found, next_cursor=found[-1].batch_id if more else None)


def cancel(user_id: str, batch_id: str) -> BatchCanceled:
    """Cancel every job of the batch that has not started, refunding them in one commit."""
    snapshot = _owned(user_id, batch_id)
    if snapshot.get("canceled_at") is None:

        def mark(batch: Batch) -> None:
            seen = _owned(user_id, batch_id)
            if seen.get("canceled_at") is None:
                batch.update(
                    seen.reference, {"canceled_at": now(), "cancel_pending": True}, option=unchanged(seen)
                )

        commit_optimistically(mark)
    canceled, refunded = settle(batch_id)
    return BatchCanceled(batch_id=batch_id, canceled=canceled, refunded=refunded)


def canceled(batch_id: str) -> bool:
    """Whether the batch was canceled (a worker then leaves its jobs to ``settle``)."""
    seen = _batches().document(batch_id).get(field_paths=["canceled_at"])
    return (seen.to_dict() or {}).get("canceled_at") is not None


def settle(batch_id: str) -> tuple[int, int]:
    """Cancel the canceled batch's queued jobs and refund them, in one commit: how many, and
    the credits. Guarded job by job, so a worker claiming one meanwhile makes it decide again."""
    ref = _batches().document(batch_id)

    def decide(batch: Batch) -> tuple[int, int]:
        seen = ref.get()
        record = seen.to_dict() or {}
        if not record.get("cancel_pending"):
            return 0, 0
        at = now()
        user_id, shard, team_id = record["user_id"], int(record.get("shard") or 0), record.get("team_id")
        queued = jobs.collection().where(filter=firestore.FieldFilter("batch_id", "==", batch_id))
        queued = queued.where(filter=firestore.FieldFilter("status", "==", "queued"))
        refunds: dict[str, int] = {}
        each: list[tuple[str, int]] = []
        by_type: Counter[str] = Counter()
        costs: Counter[str] = Counter()
        created_at: datetime | None = None
        for job in queued.stream():
            data = job.to_dict() or {}
            changes = {"status": "canceled", "updated_at": at, "lease_id": None, "lease_expires_at": None}
            batch.update(job.reference, changes, option=unchanged(job))
            refunds[job.id] = data["cost"]
            each.append((data["task_type"], data["cost"]))
            by_type[data["task_type"]] += 1
            costs[data["task_type"]] += data["cost"]
            created_at = data["created_at"]
        if refunds:
            assert created_at is not None  # every job of a batch was created in its one commit
            by = {"user_id": user_id, "username": record.get("member_username") or ""} if team_id else None
            credits.stage_batch_refund(batch, jobs.payer_of(user_id, team_id), refunds, at, shard, by)
            for task_type, n in by_type.items():
                usage.stage_refunded(
                    batch, user_id, task_type, "canceled", costs[task_type], created_at, shard, jobs=n
                )
            if team_id:
                from shared import teams

                teams.stage_refunded(batch, team_id, user_id, each, "canceled", created_at, shard)
        batch.update(ref, batch.receipt(ref, {"cancel_pending": False}), option=unchanged(seen))
        return len(refunds), sum(refunds.values())

    settled = commit_optimistically(decide)
    if settled[0]:
        after_job_final(batch_id)  # its jobs are all final now, unless some still run
    return settled


def after_job_final(batch_id: str) -> None:
    """Once the batch's last job is final: mark it completed, with its ``batch.completed``
    webhook event in the same commit (so of two last jobs finishing at once, one sends it).
    Costs each of a batch's jobs two counts when it ends."""
    if _unfinished(batch_id):
        return
    ref = _batches().document(batch_id)

    def decide(batch: Batch) -> list[str]:
        seen = ref.get()
        if not seen.exists or (seen.to_dict() or {}).get("completed_at") is not None:
            return []
        at = now()
        batch.update(ref, batch.receipt(ref, {"completed_at": at}), option=unchanged(seen))
        data = {**_summary(seen).model_dump(mode="json"), "counts": _counts(batch_id)}
        from shared import webhooks  # only when a batch ends

        return webhooks.stage_event(batch, seen.get("user_id"), "batch.completed", data, at)

    staged = commit_optimistically(decide)
    if staged:
        from shared import webhooks

        webhooks.send(staged)


def _unfinished(batch_id: str) -> int:
    of_batch = jobs.collection().where(filter=firestore.FieldFilter("batch_id", "==", batch_id))
    total = 0
    for status in ("queued", "in_progress"):
        query: Any = of_batch.where(filter=firestore.FieldFilter("status", "==", status))
        total += int(query.count().get()[0][0].value)
    return total


def sweep(limit: int = 100) -> int:
    """Settle batches whose cancel did not finish (the request died between its two commits)."""
    pending = _batches().where(filter=firestore.FieldFilter("cancel_pending", "==", True)).limit(limit)
    settled = 0
    for found in pending.stream():
        settle(found.id)
        settled += 1
    return settled
