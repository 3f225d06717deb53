"""A real gRPC proxy that breaks chosen calls the way a network does.

It sits between the service and an emulator (Firestore or Cloud Tasks), forwards
every call as raw bytes, and on request fails the next call of a method that
matches: it can lose the reply after the emulator acted, refuse the call before
it reaches the emulator, or hold it until the caller gives up. The service's own
client code runs unchanged; only the wire misbehaves.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any, Literal

import grpc

Fault = Literal["lose_reply", "refuse", "hold", "hold_then_lose"]
"""- ``lose_reply``: forward, let the upstream act, then answer UNAVAILABLE.
- ``refuse``: answer ``code`` (UNAVAILABLE unless told) without forwarding.
- ``hold``: never forward; block until released or until the caller's deadline.
- ``hold_then_lose``: forward, then block as ``hold`` (a reply that never comes)."""

# Firestore's server-streaming methods; everything else the service calls is unary.
_STREAMING = {"BatchGetDocuments", "RunQuery", "RunAggregationQuery"}


@dataclass
class _Rule:
    method: str
    fault: Fault
    when: Callable[[bytes], bool]
    code: grpc.StatusCode
    times: int


@dataclass
class GrpcProxy:
    upstream: str
    rules: list[_Rule] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)
    """Method names of the calls that a rule broke, in order."""
    all_down: bool = False
    """Refuse every call (UNAVAILABLE) without forwarding: the upstream is unreachable."""
    blackhole: bool = False
    """Hold every call until its deadline: the upstream accepts but never answers."""

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._released = threading.Event()
        self.held = threading.Event()
        """Set when a call is being held (``hold``, ``hold_then_lose``)."""
        self._channel = grpc.insecure_channel(self.upstream)
        self._server = grpc.server(futures.ThreadPoolExecutor(32), handlers=[_Handler(self)])
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self.address = f"127.0.0.1:{self.port}"

    def __enter__(self) -> GrpcProxy:
        self._server.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._released.set()
        self._server.stop(grace=None)
        self._channel.close()

    def fail_next(
        self,
        method: str,
        fault: Fault,
        *,
        when: Callable[[bytes], bool] = lambda _: True,
        code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE,
        times: int = 1,
    ) -> None:
        """Break the next ``times`` calls of ``method`` (e.g. ``Commit``) whose request matches."""
        with self._lock:
            self.rules.append(_Rule(method, fault, when, code, times))

    def release(self) -> None:
        """Let held calls go (as errors: their callers have moved on)."""
        self._released.set()

    def pending(self) -> int:
        with self._lock:
            return sum(r.times for r in self.rules)

    def _rule_for(self, method: str, request: bytes) -> _Rule | None:
        with self._lock:
            for rule in self.rules:
                if rule.method == method and rule.when(request):
                    rule.times -= 1
                    if rule.times == 0:
                        self.rules.remove(rule)
                    self.seen.append(method)
                    return rule
        return None

    def _hold(self, context: grpc.ServicerContext) -> None:
        self.held.set()
        while not self._released.is_set() and context.is_active():
            time.sleep(0.02)
        context.abort(grpc.StatusCode.UNAVAILABLE, "held by the proxy")

    def _forward_metadata(self, context: grpc.ServicerContext) -> list[tuple[str, Any]]:
        return [
            (k, v) for k, v in context.invocation_metadata() if not k.startswith(("grpc-", "user-agent", ":"))
        ]

    def _timeout(self, context: grpc.ServicerContext) -> float | None:
        remaining = context.time_remaining()
        return remaining if remaining is not None and remaining < 3600 else None

    def unary(self, full_method: str, request: bytes, context: grpc.ServicerContext) -> bytes:
        method = full_method.rsplit("/", 1)[-1]
        rule = self._broken(method, request, context)
        try:
            call = self._channel.unary_unary(full_method)
            reply: bytes = call(
                request, metadata=self._forward_metadata(context), timeout=self._timeout(context)
            )
        except grpc.RpcError as exc:
            context.abort(exc.code(), exc.details() or "")
        self._after(rule, context)
        return reply

    def stream(self, full_method: str, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        method = full_method.rsplit("/", 1)[-1]
        rule = self._broken(method, request, context)
        try:
            call = self._channel.unary_stream(full_method)
            replies = list(
                call(request, metadata=self._forward_metadata(context), timeout=self._timeout(context))
            )
        except grpc.RpcError as exc:
            context.abort(exc.code(), exc.details() or "")
        self._after(rule, context)
        yield from replies

    def _broken(self, method: str, request: bytes, context: grpc.ServicerContext) -> _Rule | None:
        """Apply the part of a fault that comes before forwarding; returns the rule to finish."""
        if self.all_down:
            context.abort(grpc.StatusCode.UNAVAILABLE, "the upstream is down")
        if self.blackhole:
            self._hold(context)
        rule = self._rule_for(method, request)
        if rule is not None and rule.fault == "refuse":
            context.abort(rule.code, "refused by the proxy")
        if rule is not None and rule.fault == "hold":
            self._hold(context)
        return rule

    def _after(self, rule: _Rule | None, context: grpc.ServicerContext) -> None:
        if rule is None:
            return
        if rule.fault == "lose_reply":
            context.abort(rule.code, "the reply was lost")
        if rule.fault == "hold_then_lose":
            self._hold(context)


class _Handler(grpc.GenericRpcHandler):  # type: ignore[misc]
    def __init__(self, proxy: GrpcProxy) -> None:
        self._proxy = proxy

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        method: str = details.method
        if method.rsplit("/", 1)[-1] in _STREAMING:
            return grpc.unary_stream_rpc_method_handler(lambda req, ctx: self._proxy.stream(method, req, ctx))
        return grpc.unary_unary_rpc_method_handler(lambda req, ctx: self._proxy.unary(method, req, ctx))
