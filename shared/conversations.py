"""Conversations: chat history kept by the server, each new message a charged ``chat`` job.

Documents (this module owns them):
- ``conversations/{id}``: ``{user_id, title, system, next_seq, created_at, updated_at}``.
- ``conversations/{id}/messages/{seq}``: ``{seq, content, options, status, job_id, job_key,
  reply, error, replied_at, created_at, updated_at}``. ``status`` is ``pending`` until the
  message's job is final, then the job's: ``completed`` (with ``reply``), ``failed`` (with
  ``error``) or ``canceled``.
- ``conversations/{id}/idempotency/{sha256(key)}``: ``{message_id, request_hash,
  expires_at}``, an ``Idempotency-Key`` of ``POST .../messages`` for 24 h (the TTL policy of
  the ``idempotency`` collection group covers it).
- ``conversation_owners/{user_id}``: ``{count}``, so the conversations-per-user limit is
  exact under racing creates.

Posting a message is three steps, because ``shared.jobs.submit`` makes its own commit:

1. One commit takes the message's number: ``next_seq`` of the conversation, guarded by its
   update time (two posts at once get two numbers, in the order their commits land), and
   creates the message ``pending`` with a random ``job_key``, and the key's record.
2. ``jobs.submit`` charges and queues the ``chat`` job, under the idempotency key
   ``message-<job_key>`` and with ``links`` naming the message: however often this step is
   repeated, a message has at most one job, and the job knows its message.
3. One commit notes the job id on the message (no read: guarded by step 1's commit time).

A charge refused (402, 429, 422 from the catalog, 503 "not charged") deletes the message and
the key's record in one commit, and gives the number back if no later message took the next
one: a refused message leaves nothing. (Numbers are gap-free unless a message was refused
while a later one was already numbered: that later number is kept, so the order is.) If the
answer is unknown (``503 outcome_unknown``) or the process dies between the steps, the message
stays ``pending``; a retry with the same ``Idempotency-Key`` rebuilds the very same job (see
History) and submits it under the same job key, so jobs answers the job if its charge had
landed and charges it once if not. The reply is written by the job's own final commit
(``stage_reply``, called from ``shared.jobs._stage_on_final``), which Firestore applies once,
so a reply is never lost nor doubled, also when step 3 never happened.

History. A message's job is sent: the system message, then the exchanges (a user message and
its reply) numbered before it whose reply was committed before the message took its number
(Firestore commit times: ``replied_at`` against the message's create time), oldest first,
then the new message. Failed, canceled and unanswered messages are never history. So of two
messages posted at once neither sees the other, and an exchange whose reply was still on its
way is left out. That set cannot change once the number is taken, which is what lets a retry
rebuild the same job. It is then cut to ``CONVERSATION_HISTORY_CHARS`` (at most
``MAX_INPUT_CHARS``) characters of content: the system message and the new message always
stay (if they alone exceed it the post is ``413 input_too_large``, before anything is
written), and whole exchanges are dropped, oldest first, until the rest fits.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from google.cloud import firestore
from pydantic import BaseModel, ConfigDict, Field

from shared import catalog, credits, jobs
from shared.db import (
    Batch,
    Snapshot,
    client,
    commit_optimistically,
    newest_first,
    now,
    put,
    stage_count_up,
    unchanged,
)
from shared.errors import (
    AppError,
    Conflict,
    InvalidRequest,
    NotFound,
    OutcomeUnknown,
    PayloadTooLarge,
)
from shared.settings import get_settings

MAX_TITLE, MAX_SYSTEM, MAX_CONTENT = 200, 4000, 8000
"""Longest title, system message and user message, in characters."""
MessageStatus = Literal["pending", "completed", "failed", "canceled"]
IDEMPOTENCY_TTL = timedelta(hours=24)
SUBMIT_DEADLINE = timedelta(minutes=2)
"""A message still without a job this long after it was numbered never gets one from the
request that numbered it (a function runs at most 30 s): it no longer keeps the conversation
from being deleted."""
_ID = re.compile(r"[0-9a-f]{32}")
_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")
_HISTORY_PAGE = 50
_CANCELED = (("code", "canceled"), ("message", "the job was canceled"))
"""A canceled job's message has this ``error`` (a job's own outcome, not an HTTP error)."""


class ConversationCreate(BaseModel):
    """Body of ``POST /conversations``."""

    model_config = ConfigDict(
        extra="forbid",
        use_attribute_docstrings=True,
        json_schema_extra={
            "examples": [{"title": "Trip planning", "system": "You are a concise travel agent."}]
        },
    )

    title: str | None = Field(None, max_length=MAX_TITLE)
    system: str | None = Field(None, max_length=MAX_SYSTEM)
    """The system message, sent first with every message's job; blank means none."""


class ConversationPublic(BaseModel):
    conversation_id: str
    title: str | None
    system: str | None
    created_at: datetime
    updated_at: datetime


class MessagePublic(BaseModel):
    """A user message with its job and, once the job completed, the assistant's reply."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    message_id: str
    seq: int
    """Its place in the conversation: 1, 2, 3, ... in the order messages were accepted."""
    content: str
    options: dict[str, Any]
    status: MessageStatus
    """``pending`` until its job is final (``GET /jobs/{job_id}`` tells more), then the job's."""
    job_id: str | None
    """Null only while the job is being submitted."""
    reply: str | None
    error: dict[str, str] | None
    """Why the job failed or was canceled; such a message is not part of later history."""
    created_at: datetime
    updated_at: datetime


class ConversationDetail(ConversationPublic):
    """A conversation with every message, in order."""

    messages: list[MessagePublic]


class ConversationPage(BaseModel):
    """A page of conversations, newest first; ``next_cursor`` is null on the last page."""

    conversations: list[ConversationPublic]
    next_cursor: str | None


class MessageCreate(BaseModel):
    """Body of ``POST /conversations/{id}/messages``: only the new message; the server adds
    the history. ``options`` are the ``chat`` task type's (checked against the catalog)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"content": "And what should I pack?", "options": {"max_tokens": 200}}]
        },
    )

    content: str = Field(min_length=1, max_length=MAX_CONTENT)
    options: dict[str, Any] = Field(default_factory=dict)


class MessageAccepted(BaseModel):
    """Answer to a posted message: its number and its job, charged and queued."""

    conversation_id: str
    message_id: str
    seq: int
    job_id: str
    status: jobs.Status
    cost: int
    credits: int
    replayed: bool = Field(False, exclude=True)


def _conversations() -> firestore.CollectionReference:
    return client().collection("conversations")


def _messages(conversation_id: str) -> firestore.CollectionReference:
    return _conversations().document(conversation_id).collection("messages")


def _owner_ref(user_id: str) -> firestore.DocumentReference:
    return client().collection("conversation_owners").document(user_id)


def _not_found() -> NotFound:
    return NotFound("no such conversation", code="conversation_not_found")


def _owned(user_id: str, conversation_id: str) -> Snapshot:
    """The conversation, if ``user_id`` owns it; another user's is indistinguishable from none."""
    snapshot = _conversations().document(conversation_id).get() if _ID.fullmatch(conversation_id) else None
    if snapshot is None or not snapshot.exists or snapshot.get("user_id") != user_id:
        raise _not_found()
    return snapshot


def _public(snapshot: Snapshot) -> ConversationPublic:
    data = snapshot.to_dict() or {}
    return ConversationPublic(
        conversation_id=snapshot.id,
        title=data.get("title"),
        system=data.get("system"),
        created_at=data["created_at"],
        updated_at=data["updated_at"],
    )


def _message(snapshot: Snapshot) -> MessagePublic:
    data = snapshot.to_dict() or {}
    fields = {name: data.get(name) for name in MessagePublic.model_fields if name != "message_id"}
    return MessagePublic(message_id=snapshot.id, **fields)


def create(user_id: str, body: ConversationCreate) -> ConversationPublic:
    """A new conversation; ``CONVERSATIONS_PER_USER`` at most, counted exactly."""
    limit = get_settings().conversations_per_user
    ref = _conversations().document(uuid.uuid4().hex)
    system = body.system if body.system and body.system.strip() else None

    def decide(batch: Batch) -> ConversationPublic:
        at = now()
        full = InvalidRequest(
            f"an account keeps at most {limit} conversations: delete one first", code="too_many_conversations"
        )
        stage_count_up(batch, _owner_ref(user_id), limit, full)
        document = {
            "user_id": user_id,
            "title": body.title,
            "system": system,
            "next_seq": 1,
            "created_at": at,
            "updated_at": at,
        }
        batch.create(ref, batch.receipt(ref, document))
        return ConversationPublic(
            conversation_id=ref.id, title=body.title, system=system, created_at=at, updated_at=at
        )

    return commit_optimistically(decide)


def list_for(user_id: str, limit: int, cursor: str | None) -> tuple[list[ConversationPublic], str | None]:
    """A page of the user's conversations, newest first; ``cursor`` is the last id of the previous page."""
    query = _conversations().where(filter=firestore.FieldFilter("user_id", "==", user_id))
    docs, more = newest_first(query, limit, cursor, lambda conversation_id: _owned(user_id, conversation_id))
    found = [_public(d) for d in docs]
    return found, (found[-1].conversation_id if more else None)


def get(user_id: str, conversation_id: str) -> ConversationDetail:
    """The conversation and all its messages, in order (at most ``CONVERSATION_MAX_MESSAGES``)."""
    conversation = _public(_owned(user_id, conversation_id))
    messages = [_message(m) for m in _messages(conversation_id).order_by("seq").stream()]
    return ConversationDetail(**conversation.model_dump(), messages=messages)


def delete(user_id: str, conversation_id: str) -> None:
    """Delete the conversation, its messages and key records in one commit; ``409
    conversation_busy`` while a message's job is unfinished, so no charged reply is dropped."""
    ref = _conversations().document(conversation_id)
    rounds: list[Batch] = []

    def decide(batch: Batch) -> None:
        at = now()
        try:
            conversation = _owned(user_id, conversation_id)
        except NotFound:
            if rounds:
                return  # gone since this call's first round: a re-sent copy of it landed (or another delete)
            raise
        rounds.append(batch)
        messages = list(_messages(conversation_id).stream())
        for message in messages:
            if message.get("status") == "pending" and (
                message.get("job_id") is not None or message.get("created_at") > at - SUBMIT_DEADLINE
            ):
                raise Conflict(
                    "a message of this conversation is still waiting for its reply",
                    code="conversation_busy",
                )
        # Guarded: a message posted meanwhile moved next_seq, so this round is decided again.
        batch.delete(ref, option=unchanged(conversation))
        for message in messages:
            batch.delete(message.reference, option=unchanged(message))
        for record in ref.collection("idempotency").stream():
            batch.delete(record.reference)
        batch.update(_owner_ref(user_id), {"count": firestore.Increment(-1)})

    commit_optimistically(decide)


@dataclass(frozen=True)
class _Numbered:
    """A message as step 1 left it (or as a replay found it)."""

    conversation: dict[str, Any]
    ref: firestore.DocumentReference
    seq: int
    job_key: str
    job_id: str | None
    posted_at: datetime
    """Its create time: the commit that took its number."""
    replayed: bool


def post(
    user_id: str, conversation_id: str, body: MessageCreate, key: str | None, enqueue: jobs.Enqueue
) -> MessageAccepted:
    """Number the message, submit its ``chat`` job with the history, note the job on it
    (the module docstring says why in three steps)."""
    settings = get_settings()
    if not body.content.strip():
        raise InvalidRequest("content must not be blank")
    catalog.price("chat", body.options)  # unknown options are refused before a number is taken
    conversation = _owned(user_id, conversation_id)
    system = conversation.get("system")  # never changes: checked once, here
    budget = min(settings.conversation_history_chars, settings.max_input_chars)
    if len(body.content) + len(system or "") > budget:
        raise PayloadTooLarge(
            f"the message and the system message exceed the {budget}-character history budget",
            code="input_too_large",
        )
    body_json = json.dumps(body.model_dump(mode="json"), sort_keys=True)
    request_hash = hashlib.sha256(body_json.encode()).hexdigest()
    key_ref = _key_ref(conversation_id, key) if key is not None else None
    numbered = _number(user_id, conversation, body, key_ref, request_hash)
    if numbered.job_id is not None:
        return _answer_replay(user_id, conversation_id, numbered)
    links = {"conversation_id": conversation_id, "message_id": numbered.ref.id}
    try:
        job = jobs.JobCreate(
            task_type="chat",
            input_data=_prompt(conversation_id, numbered, body.content, budget),
            options=body.options,
        )
        accepted = jobs.submit(user_id, job, f"message-{numbered.job_key}", enqueue, links=links)
    except OutcomeUnknown:
        raise  # the charge may have landed: the message stays, a retry with the key learns which
    except AppError:
        # Nothing was charged. If even the undo fails, the refusal is still the true answer.
        with contextlib.suppress(AppError):
            _release(conversation_id, numbered, key_ref)
        raise
    _note_job(numbered, accepted.job_id)
    return MessageAccepted(
        conversation_id=conversation_id,
        message_id=numbered.ref.id,
        seq=numbered.seq,
        job_id=accepted.job_id,
        status=accepted.status,
        cost=accepted.cost,
        credits=accepted.credits,
        replayed=numbered.replayed or accepted.replayed,
    )


def _key_ref(conversation_id: str, key: str) -> firestore.DocumentReference:
    if not _IDEMPOTENCY_KEY.fullmatch(key):
        raise InvalidRequest(
            "Idempotency-Key must be 1-255 printable ASCII characters", code="invalid_idempotency_key"
        )
    digest = hashlib.sha256(key.encode()).hexdigest()
    return _conversations().document(conversation_id).collection("idempotency").document(digest)


def _number(
    user_id: str,
    first: Snapshot,
    body: MessageCreate,
    key_ref: firestore.DocumentReference | None,
    request_hash: str,
) -> _Numbered:
    """Step 1: take the next number (or find the message a repeated key already numbered).

    ``first`` is the conversation as just read: the first round decides on it (its write is
    guarded by that read's update time), a later one reads it again."""
    limit = get_settings().conversation_max_messages
    conversation_id, ref = first.id, first.reference
    known = [first]
    job_key = uuid.uuid4().hex
    rounds: list[Batch] = []
    numbered: list[_Numbered] = []

    def decide(batch: Batch) -> _Numbered | None:
        rounds.append(batch)
        at = now()
        conversation = known.pop() if known else _owned(user_id, conversation_id)
        seen = key_ref.get() if key_ref is not None else None
        if seen is not None and seen.exists and seen.get("expires_at") > at:
            if seen.get("request_hash") != request_hash:
                raise Conflict(
                    "this Idempotency-Key was used with a different request", code="idempotency_key_reused"
                )
            return _replayed(conversation, _messages(conversation_id).document(seen.get("message_id")))
        seq = int(conversation.get("next_seq"))
        if seq > limit:
            raise InvalidRequest(
                f"a conversation holds at most {limit} messages: start another", code="conversation_full"
            )
        message_ref = _messages(conversation_id).document(str(seq))
        batch.update(ref, {"next_seq": seq + 1, "updated_at": at}, option=unchanged(conversation))
        message = {
            "seq": seq,
            "content": body.content,
            "options": body.options,
            "status": "pending",
            "job_id": None,
            "job_key": job_key,
            "reply": None,
            "error": None,
            "replied_at": None,
            "created_at": at,
            "updated_at": at,
        }
        batch.create(message_ref, batch.receipt(message_ref, message))
        if seen is not None:
            record = {
                "message_id": message_ref.id,
                "request_hash": request_hash,
                "expires_at": at + IDEMPOTENCY_TTL,
            }
            put(batch, seen, record)
        numbered.append(_Numbered(conversation.to_dict() or {}, message_ref, seq, job_key, None, at, False))
        return None

    replayed = commit_optimistically(decide)
    if replayed is not None:
        return replayed
    posted_at = rounds[-1].receipt_time  # the message's create time: the commit's own
    assert posted_at is not None  # the round committed (or was found landed): its time is known
    return dataclasses.replace(numbered[-1], posted_at=posted_at)


def _replayed(conversation: Snapshot, message_ref: firestore.DocumentReference) -> _Numbered:
    message = message_ref.get()
    if not message.exists:  # numbered, then refused, in the same moment: its record goes with it
        raise Conflict(
            "this Idempotency-Key's message is being refused; retry", code="idempotency_key_reused"
        )
    assert message.create_time is not None
    return _Numbered(
        conversation.to_dict() or {},
        message_ref,
        int(message.get("seq")),
        message.get("job_key"),
        message.get("job_id"),
        message.create_time,
        replayed=True,
    )


def _answer_replay(user_id: str, conversation_id: str, numbered: _Numbered) -> MessageAccepted:
    """A repeated key whose message already has its job: that job, charging nothing."""
    assert numbered.job_id is not None
    job = jobs.get(user_id, numbered.job_id)
    return MessageAccepted(
        conversation_id=conversation_id,
        message_id=numbered.ref.id,
        seq=numbered.seq,
        job_id=job.job_id,
        status=job.status,
        cost=job.cost,
        credits=credits.balance(user_id),
        replayed=True,
    )


def _history(conversation_id: str, numbered: _Numbered) -> Iterator[tuple[str, str]]:
    """``(user message, reply)`` of each exchange before ``numbered``, newest first (see the
    module docstring: answered before it took its number)."""
    if numbered.seq == 1:
        return  # nothing before it: no query to pay for
    query = _messages(conversation_id).where(filter=firestore.FieldFilter("seq", "<", numbered.seq))
    query = query.order_by("seq", direction=firestore.Query.DESCENDING).limit(_HISTORY_PAGE)
    last: Snapshot | None = None
    while True:
        page = list((query.start_after(last) if last is not None else query).stream())
        for message in page:
            replied_at = message.get("replied_at")
            answered = message.get("status") == "completed" and message.get("reply")
            if answered and replied_at is not None and replied_at < numbered.posted_at:
                yield message.get("content"), message.get("reply")
        if len(page) < _HISTORY_PAGE:
            return
        last = page[-1]


def _prompt(conversation_id: str, numbered: _Numbered, content: str, budget: int) -> list[jobs.ChatMessage]:
    """The job's messages: system, the newest whole exchanges within ``budget``, the new one."""
    system = numbered.conversation.get("system")
    left = budget - len(content) - len(system or "")  # not negative: ``post`` checked it
    kept: list[tuple[str, str]] = []
    for asked, answered in _history(conversation_id, numbered):
        left -= len(asked) + len(answered)
        if left < 0:
            break  # this and every older exchange are cut
        kept.append((asked, answered))
    prompt = [jobs.ChatMessage(role="system", content=system)] if system else []
    for asked, answered in reversed(kept):
        prompt += [
            jobs.ChatMessage(role="user", content=asked),
            jobs.ChatMessage(role="assistant", content=answered),
        ]
    return [*prompt, jobs.ChatMessage(role="user", content=content)]


def _release(conversation_id: str, numbered: _Numbered, key_ref: firestore.DocumentReference | None) -> None:
    """Undo step 1 after a refused charge: the message and its key's record go, and the
    number comes back if it is still the last one taken."""
    ref = _conversations().document(conversation_id)

    def decide(batch: Batch) -> None:
        message = numbered.ref.get()
        # A job the queue refused was failed and refunded in its own commit, which noted it here.
        unqueued = (message.get("error") or {}).get("code") == "enqueue_failed" if message.exists else False
        if not message.exists or (message.get("job_id") is not None and not unqueued):
            return  # it has a job after all (a concurrent repeat of its key got one)
        batch.delete(numbered.ref, option=unchanged(message))
        if key_ref is not None:
            batch.delete(key_ref)
        conversation = ref.get()
        if conversation.exists and conversation.get("next_seq") == numbered.seq + 1:
            batch.update(ref, {"next_seq": numbered.seq}, option=unchanged(conversation))

    commit_optimistically(decide)


def _note_job(numbered: _Numbered, job_id: str) -> None:
    """Step 3: the job's id on its message, unless its final commit already put it there."""
    known = [numbered.posted_at] if not numbered.replayed else []

    def decide(batch: Batch) -> None:
        if known:
            # Untouched since step 1 (the usual case): written without a read.
            option = client().write_option(last_update_time=known.pop())
        else:
            message = numbered.ref.get()
            if not message.exists or message.get("job_id") is not None:
                return
            option = unchanged(message)
        batch.update(numbered.ref, {"job_id": job_id}, option=option)

    commit_optimistically(decide)


def stage_reply(batch: Batch, job_id: str, job: dict[str, Any], at: datetime) -> None:
    """In the job's final commit: its outcome on its message (the reply, or why there is none).

    One read; a message that is gone (its conversation was deleted) gets nothing, so a
    job's final commit never fails because of its conversation."""
    ref = _messages(job["conversation_id"]).document(job["message_id"])
    message = ref.get()
    if not message.exists or message.get("job_id") not in (None, job_id):
        return
    status = job["status"]
    changes: dict[str, Any] = {"status": status, "job_id": job_id, "updated_at": at}
    if status == "completed":
        changes["reply"] = (job.get("output") or {}).get("text", "")
        changes["replied_at"] = firestore.SERVER_TIMESTAMP  # the commit's own time: see History
    else:
        changes["error"] = job.get("error") or dict(_CANCELED)
    batch.update(ref, changes, option=unchanged(message))
