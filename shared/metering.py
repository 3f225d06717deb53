"""What one request costs: Firestore document reads, writes and deletes, Cloud Tasks calls.

``shared.web`` starts a ``Meter`` per request and logs its counts with the request line
(``firestore_reads``, ``firestore_writes``, ``firestore_deletes``, ``tasks_calls``), so
Cloud Logging shows each request's bill beside its latency. ``shared.db`` wraps every
Firestore RPC with ``firestore_call``; ``shared.queue`` calls ``count_tasks_call``.

Counted as Firestore bills them (https://cloud.google.com/firestore/pricing), from the
protobufs the client already has, with no extra call:

- a ``BatchGetDocuments`` response, found or missing: 1 read (a missing document is billed);
- a ``RunQuery``: 1 read per document returned, and 1 when it returns none;
- a ``RunAggregationQuery`` (count, sum): 1 read. Firestore bills 1 per up to 1000 index
  entries it scans; the counts this service runs are per user or per week, so 1 is the
  usual figure, and a low one for a large scan;
- an applied ``Commit``: 1 write per ``update`` or transform-only write, 1 delete per
  ``delete``. A commit that failed (a precondition, a lost race) wrote nothing and counts
  nothing; its reads were counted when they were made.

Not counted: calls outside a request (scripts, tests, threads a handler starts without
copying its context) and methods this service does not use (``ListDocuments``, listeners).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class Meter:
    firestore_reads: int = 0
    firestore_writes: int = 0
    firestore_deletes: int = 0
    tasks_calls: int = 0

    def fields(self) -> dict[str, int]:
        return asdict(self)


_current: ContextVar[Meter | None] = ContextVar("aijobs_meter", default=None)


def start() -> Meter:
    """A fresh meter for the request this context serves."""
    meter = Meter()
    _current.set(meter)
    return meter


def current() -> Meter | None:
    return _current.get()


def count_tasks_call() -> None:
    meter = _current.get()
    if meter is not None:
        meter.tasks_calls += 1


def _pb(message: Any) -> Any:
    """The raw protobuf of a proto-plus message: its fields read without wrapping."""
    return type(message).pb(message) if hasattr(type(message), "pb") else message


def _commit(call: Callable[..., Any]) -> Callable[..., Any]:
    def counted(request: Any, *args: Any, **kwargs: Any) -> Any:
        response = call(request, *args, **kwargs)
        meter = _current.get()
        if meter is not None:
            for write in _pb(request).writes:
                if write.WhichOneof("operation") == "delete":
                    meter.firestore_deletes += 1
                else:
                    meter.firestore_writes += 1
        return response

    return counted


def _stream(call: Callable[..., Any], is_document: Callable[[Any], bool], minimum: int) -> Callable[..., Any]:
    """``call`` (a server-streaming RPC), counting a read per document response it yields.

    ``minimum`` reads are counted at the call (an empty query is billed 1), so a caller that
    stops reading early still leaves the right count."""

    def counted(*args: Any, **kwargs: Any) -> Any:
        meter = _current.get()
        responses = call(*args, **kwargs)
        if meter is None:
            return responses
        meter.firestore_reads += minimum
        return _each(responses, is_document, meter, minimum)

    return counted


def _each(responses: Any, is_document: Callable[[Any], bool], meter: Meter, free: int) -> Iterator[Any]:
    seen = 0
    for response in responses:
        if is_document(response):
            seen += 1
            if seen > free:
                meter.firestore_reads += 1
        yield response


def _aggregation(call: Callable[..., Any]) -> Callable[..., Any]:
    def counted(*args: Any, **kwargs: Any) -> Any:
        meter = _current.get()
        if meter is not None:
            meter.firestore_reads += 1
        return call(*args, **kwargs)

    return counted


def firestore_call(transport: Any, method: Any, call: Callable[..., Any]) -> Callable[..., Any]:
    """``call`` (the transport's wrapped ``method``), counting what it bills on the current meter."""
    if method is transport.commit:
        return _commit(call)
    if method is transport.batch_get_documents:
        return _stream(call, lambda r: _pb(r).WhichOneof("result") is not None, minimum=0)
    if method is transport.run_query:
        return _stream(call, lambda r: _pb(r).HasField("document"), minimum=1)
    if method is transport.run_aggregation_query:
        return _aggregation(call)
    return call
