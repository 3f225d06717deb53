"""The HTTP sender: one bounded POST to the address it checked, the name kept for TLS."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpcore2
import httpx2

from shared.settings import get_settings
from shared.webhooks.addresses import Refused, Resolver, check_url, checked_addresses, system_resolver


@dataclass(frozen=True)
class Attempt:
    """What one POST to an endpoint came to."""

    status: int | None
    """The HTTP status, ``None`` if no answer came."""
    error: str | None
    """Why it did not succeed (``None`` for a 2xx)."""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


Post = Callable[[str, bytes, Mapping[str, str]], Attempt]
"""Sends one delivery: ``(url, body, headers)`` to what came of it. Never raises."""


class _Deadline:
    """One bound on everything a delivery does on the network, in total: a receiver that
    trickles bytes cannot hold the function (or the queue's dispatch) past it."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self, timeout: float | None, expired: type[Exception]) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise expired("the webhook delivery ran out of time")
        return left if timeout is None else min(timeout, left)


class _BoundedStream(httpcore2.NetworkStream):
    def __init__(self, inner: httpcore2.NetworkStream, deadline: _Deadline) -> None:
        self._inner, self._deadline = inner, deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._deadline.left(timeout, httpcore2.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._deadline.left(timeout, httpcore2.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore2.NetworkStream:
        # server_hostname is the URL's name, not the address connected to: SNI and the
        # certificate check are the name's.
        timeout = self._deadline.left(timeout, httpcore2.ConnectTimeout)
        return _BoundedStream(self._inner.start_tls(ssl_context, server_hostname, timeout), self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _CheckedBackend(httpcore2.NetworkBackend):
    """Connects only to addresses it has just checked: resolve, check every one, connect to
    the first by address (the request keeps the name in ``Host`` and TLS)."""

    def __init__(
        self, inner: httpcore2.NetworkBackend, resolver: Resolver, allow_loopback: bool, deadline: _Deadline
    ) -> None:
        self._inner, self._resolver = inner, resolver
        self._loopback, self._deadline = allow_loopback, deadline

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.NetworkStream:
        address = checked_addresses(host, port, self._resolver, self._loopback)[0]
        timeout = self._deadline.left(timeout, httpcore2.ConnectTimeout)
        stream = self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
        return _BoundedStream(stream, self._deadline)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore2.NetworkStream:
        raise Refused("webhooks are never sent to a unix socket")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def http_post(resolver: Resolver = system_resolver, *, local: bool | None = None) -> Post:
    """The real sender: one bounded POST, no redirects followed, no proxy from the environment
    (a proxy would resolve the name itself, past the check), the answer's body never read."""

    def post(url: str, body: bytes, headers: Mapping[str, str]) -> Attempt:
        settings = get_settings()
        loopback = settings.is_local if local is None else local
        try:
            check_url(url, resolver, local=loopback)
        except Refused as exc:
            return Attempt(None, f"refused: {exc}")
        seconds = settings.webhook_timeout_seconds
        deadline = _Deadline(seconds)
        transport = httpx2.HTTPTransport()
        # httpx2 offers no parameter for httpcore's network backend: wrap the one it chose.
        pool = transport._pool
        pool._network_backend = _CheckedBackend(pool._network_backend, resolver, loopback, deadline)
        try:
            with (
                httpx2.Client(
                    transport=transport, timeout=seconds, follow_redirects=False, trust_env=False
                ) as http,
                http.stream("POST", url, content=body, headers=dict(headers)) as answer,
            ):
                status = answer.status_code
        except Refused as exc:
            return Attempt(None, f"refused: {exc}")
        except httpx2.TimeoutException:
            return Attempt(None, "timed out")
        except httpx2.HTTPError as exc:
            return Attempt(None, f"could not connect: {type(exc).__name__}")
        return Attempt(status, None if 200 <= status < 300 else f"answered HTTP {status}")

    return post
