"""A scriptable fake of the OpenAI REST API for tests, served over real HTTP.

The real ``openai`` SDK talks to it unchanged::

    fake = FakeOpenAI().start()
    client = openai.OpenAI(base_url=fake.base_url, api_key="test", max_retries=0, timeout=0.3)
    fake.script(Status(429), Delay(1.0), Reply("hi"))
    ...
    fake.stop()

Endpoints: ``POST /v1/chat/completions`` (non-streaming), ``POST /v1/images/generations``,
``GET /v1/models``, ``GET /images/fake.png`` (the image the fake URLs point at) and
``GET /images/served/{n}.png`` (an ``Image(..., as_url=True)`` step's picture).
Anything else gets a 404 with an OpenAI-style error body.

Scripted steps are consumed one per chat/images request, in arrival order; once the
queue is empty requests are answered normally. What openai 3.51.0 (httpx2 transport)
does for each fault with ``max_retries=0`` (pinned by tests/test_fake_openai.py):

- ``Status(400)``: ``openai.BadRequestError``; ``content_policy_violation()`` is the same
  class with ``.code == "content_policy_violation"``.
- ``Status(401)``: ``openai.AuthenticationError``.
- ``Status(429)``: ``openai.RateLimitError`` (``.code == "rate_limit_exceeded"``).
- ``Status(500)`` / ``Status(503)``: ``openai.InternalServerError``.
- ``Delay(s)`` with ``s`` beyond the client timeout: ``openai.APITimeoutError``, which
  subclasses ``openai.APIConnectionError``.
- ``Disconnect()``: ``openai.APIConnectionError`` (not ``APITimeoutError``).
- ``Malformed()`` (JSON content type): a bare ``json.JSONDecodeError`` -- a ``ValueError``,
  *not* an ``openai.OpenAIError``, so error classifiers must catch it explicitly.
- ``Malformed(content_type="text/html")``: no exception; ``create()`` returns the body as
  a ``str``. Only with ``_strict_response_validation=True`` does the SDK raise
  ``openai.APIResponseValidationError``.
- ``EmptyChoices()``: no exception; ``completion.choices == []``.
- ``Trickle(...)`` with ``interval`` under the client timeout: no exception, however long
  it lasts -- the SDK's timeout bounds each socket read, not the call.

``models_step`` (a ``Step``, None by default) answers every ``GET /v1/models`` until reset,
so the health check's ping can be faulted without consuming the chat/images script.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, cast
from urllib.parse import urlsplit

__all__ = [
    "CHAT_PATH",
    "FAKE_PNG",
    "IMAGES_PATH",
    "IMAGE_FILE_PATH",
    "MODELS_PATH",
    "Delay",
    "Disconnect",
    "EmptyChoices",
    "FakeOpenAI",
    "Image",
    "Malformed",
    "Raw",
    "RecordedRequest",
    "Reply",
    "Status",
    "Step",
    "Trickle",
    "content_policy_violation",
    "error_body",
]

CHAT_PATH = "/v1/chat/completions"
IMAGES_PATH = "/v1/images/generations"
MODELS_PATH = "/v1/models"
IMAGE_FILE_PATH = "/images/fake.png"
SERVED_PREFIX = "/images/served/"

# 1x1 transparent PNG, so image URLs and b64_json payloads decode as a real image.
FAKE_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


@dataclass(frozen=True)
class Reply:
    """Answer 200 normally, optionally overriding the chat content (or image revised_prompt)."""

    content: str | None = None
    finish_reason: str = "stop"


@dataclass(frozen=True)
class Status:
    """Answer ``code`` with an OpenAI error body; type/code default by status."""

    code: int = 500
    message: str | None = None
    error_type: str | None = None
    error_code: str | None = None
    # Excluded from hashing because a dict is unhashable.
    headers: Mapping[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class Delay:
    """Sleep ``seconds`` then perform ``then`` (a normal answer when None)."""

    seconds: float
    then: Step | None = None


@dataclass(frozen=True)
class Malformed:
    """Answer 200 with a body that is not valid JSON."""

    body: bytes = b'{"id": "chatcmpl-broken", "object": "chat.completion", "choices": [{'
    content_type: str = "application/json"


@dataclass(frozen=True)
class EmptyChoices:
    """Answer 200 with valid JSON but an empty ``choices`` (or images ``data``) list."""


@dataclass(frozen=True)
class Disconnect:
    """Close the socket without sending any response."""


@dataclass(frozen=True)
class Raw:
    """Escape hatch: answer exactly this status, body and content type."""

    status: int = 200
    body: bytes = b"{}"
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class Trickle:
    """Send the normal answer one byte every ``interval`` seconds for ``seconds``, then the rest.

    ``part="headers"`` dribbles from the status line on; ``part="body"`` sends the status
    line and headers at once and dribbles the body. Ending after ``seconds`` keeps a test
    that is not cut off short, rather than minutes long.
    """

    part: Literal["headers", "body"] = "body"
    interval: float = 0.3
    seconds: float = 6.0


@dataclass(frozen=True)
class Image:
    """Answer an images request with ``data`` (any size): in ``b64_json`` as GPT image models
    always do, or with ``as_url`` as a URL this fake serves itself, as older models did."""

    data: bytes = field(repr=False)
    as_url: bool = False


Step = Reply | Status | Delay | Malformed | EmptyChoices | Disconnect | Raw | Trickle | Image


def content_policy_violation(message: str | None = None) -> Status:
    """A 400 as OpenAI sends when it refuses a prompt (mostly seen on images)."""
    return Status(
        400,
        message=message
        or "Your request was rejected as a result of our safety system. "
        "Your prompt may contain text that is not allowed by our safety system.",
        error_type="invalid_request_error",
        error_code="content_policy_violation",
    )


@dataclass(frozen=True)
class RecordedRequest:
    """One received request; ``body`` is the parsed JSON (raw text if not JSON, None if empty)."""

    path: str
    body: Any
    headers: dict[str, str]
    method: str = "POST"


_DEFAULT_ERRORS: dict[int, tuple[str, str, str | None]] = {
    400: ("Invalid request.", "invalid_request_error", None),
    401: ("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
    403: ("You are not allowed to access this resource.", "invalid_request_error", None),
    404: ("Not found.", "invalid_request_error", None),
    429: ("Rate limit reached for requests.", "requests", "rate_limit_exceeded"),
    500: ("The server had an error while processing your request.", "server_error", None),
    502: ("Bad gateway.", "server_error", None),
    503: ("The engine is currently overloaded, please try again later.", "server_error", None),
}


def error_body(
    code: int, message: str | None, error_type: str | None, error_code: str | None
) -> dict[str, Any]:
    """The ``{"error": {...}}`` document OpenAI returns for ``code``."""
    d_msg, d_type, d_code = _DEFAULT_ERRORS.get(code, (f"HTTP {code}.", "api_error", None))
    return {
        "error": {
            "message": message if message is not None else d_msg,
            "type": error_type if error_type is not None else d_type,
            "param": None,
            "code": error_code if error_code is not None else d_code,
        }
    }


def _text_of(content: Any) -> str:
    # Messages may carry multimodal part lists instead of a plain string.
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _tokens(text: str) -> int:
    return len(text.split())


class _Server(ThreadingHTTPServer):
    # Handler threads must never keep the interpreter (or server_close) waiting.
    daemon_threads = True
    block_on_close = False
    # The stdlib backlog of 5 drops SYNs under a burst of concurrent clients, which then
    # surface as ConnectTimeout after the 1 s SYN retransmit.
    request_queue_size = 128

    def __init__(self, fake: FakeOpenAI) -> None:
        self.fake = fake
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 so httpx keeps connections alive, as it does against the real API.
    protocol_version = "HTTP/1.1"
    server_version = "fake-openai"
    # Headers and body go out in separate writes; Nagle + delayed ACK would add ~40 ms each.
    disable_nagle_algorithm = True
    sys_version = ""
    _rid = 0

    @property
    def fake(self) -> FakeOpenAI:
        return cast(_Server, self.server).fake

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        self.fake._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.fake._track(self.connection, add=False)

    def handle(self) -> None:
        # Clients abandon connections on timeout; writing to them later must stay silent.
        try:
            super().handle()
        except OSError:
            self.close_connection = True

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    # -- plumbing -------------------------------------------------------------

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(
        self, status: int, body: bytes, content_type: str, headers: Mapping[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-request-id", f"req_fake_{self._rid}")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _send_json(self, status: int, doc: Any, headers: Mapping[str, str] | None = None) -> None:
        self._send(status, json.dumps(doc).encode(), "application/json", headers)

    def _send_error(self, status: int, message: str | None = None, error_type: str | None = None) -> None:
        self._send_json(status, error_body(status, message, error_type, None))

    def _disconnect(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    # -- routing --------------------------------------------------------------

    def _dispatch(self, method: str) -> None:
        self._rid = self.fake._next_id()
        path = urlsplit(self.path).path
        raw = self._read_body()
        if method == "GET" and path == MODELS_PATH:
            self._perform(self.fake.models_step, path, {}, default_delay=False)
            return

        payload: Any = None
        bad_json = False
        if raw:
            try:
                payload = json.loads(raw)
            except ValueError:
                payload, bad_json = raw.decode("utf-8", "replace"), True
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.fake._record(RecordedRequest(path=path, body=payload, headers=headers, method=method))

        if method == "GET" and path == IMAGE_FILE_PATH:
            self._send(200, FAKE_PNG, "image/png")
            return
        if method == "GET" and path.startswith(SERVED_PREFIX):
            served = self.fake._served.get(path)
            if served is None:
                self._send_error(404, f"Invalid URL ({method} {path})")
            else:
                self._send(200, served, "image/png")
            return
        if method != "POST" or path not in (CHAT_PATH, IMAGES_PATH):
            self._send_error(404, f"Invalid URL ({method} {path})")
            return
        if bad_json or not isinstance(payload, dict):
            self._send_error(400, "We could not parse the JSON body of your request.")
            return
        if payload.get("stream"):
            # Fail loudly rather than pretend: a test relying on streaming needs a real implementation.
            self._send_error(400, "fake_openai does not implement streaming.")
            return
        self._perform(self.fake._next_step(), path, payload, default_delay=True)

    def _perform(self, step: Step | None, path: str, payload: dict[str, Any], *, default_delay: bool) -> None:
        if isinstance(step, Delay):
            if self.fake._sleep(step.seconds):
                self._disconnect()
                return
            self._perform(step.then, path, payload, default_delay=False)
        elif step is None or isinstance(step, Reply):
            if default_delay and self.fake._sleep(self.fake.default_delay):
                self._disconnect()
                return
            self._send_json(200, self._answer(path, payload, step or Reply()))
        elif isinstance(step, Status):
            # retry-after-ms too: the SDK ignores a zero retry-after and would back off >= 0.375 s.
            headers = {"retry-after": "0", "retry-after-ms": "1"} if step.code == 429 else {}
            headers.update(step.headers)
            body = error_body(step.code, step.message, step.error_type, step.error_code)
            self._send_json(step.code, body, headers)
        elif isinstance(step, Malformed):
            self._send(200, step.body, step.content_type)
        elif isinstance(step, EmptyChoices):
            doc = self._answer(path, payload, Reply())
            doc["choices" if path == CHAT_PATH else "data"] = []
            self._send_json(200, doc)
        elif isinstance(step, Image):
            self._send_json(200, self._images(payload, Reply(), step))
        elif isinstance(step, Disconnect):
            self._disconnect()
        elif isinstance(step, Trickle):
            self._trickle(step, json.dumps(self._answer(path, payload, Reply())).encode())
        else:
            self._send(step.status, step.body, step.content_type, step.headers)

    def _trickle(self, step: Trickle, body: bytes) -> None:
        head = (
            f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"x-request-id: req_fake_{self._rid}\r\n\r\n"
        ).encode()
        data = head + body
        if step.part == "body":
            self.wfile.write(head)
            data = body
        until = time.monotonic() + step.seconds
        for i in range(len(data)):
            if time.monotonic() >= until:
                self.wfile.write(data[i:])
                return
            self.wfile.write(data[i : i + 1])
            if self.fake._sleep(step.interval):
                self._disconnect()
                return

    # -- bodies ---------------------------------------------------------------

    def _answer(self, path: str, payload: dict[str, Any], reply: Reply) -> dict[str, Any]:
        """The normal 200 document for ``path``."""
        if path == CHAT_PATH:
            return self._chat(payload, reply)
        if path == IMAGES_PATH:
            return self._images(payload, reply)
        model = {"id": "fake-model", "object": "model", "created": 0, "owned_by": "test"}
        return {"object": "list", "data": [model]}

    def _chat(self, payload: dict[str, Any], reply: Reply) -> dict[str, Any]:
        messages = payload.get("messages") or []
        texts = [_text_of(m.get("content")) for m in messages if isinstance(m, dict)]
        if reply.content is not None:
            content = reply.content
        else:
            content = "fake reply: " + (texts[-1][:200] if texts else "")
        n = payload.get("n") or 1
        prompt_tokens = sum(_tokens(t) for t in texts)
        completion_tokens = _tokens(content) * n
        return {
            "id": f"chatcmpl-fake-{self._rid}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": payload.get("model") or "fake-model",
            "choices": [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                    "logprobs": None,
                    "finish_reason": reply.finish_reason,
                }
                for i in range(n)
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    def _images(self, payload: dict[str, Any], reply: Reply, picture: Image | None = None) -> dict[str, Any]:
        prompt = str(payload.get("prompt") or "")
        revised = reply.content if reply.content is not None else prompt
        item: dict[str, Any] = {"revised_prompt": revised}
        if picture is not None and picture.as_url:
            path = f"{SERVED_PREFIX}{self._rid}.png"
            self.fake._serve(path, picture.data)
            item["url"] = f"http://127.0.0.1:{self.fake.port}{path}"
        elif picture is not None:
            item["b64_json"] = base64.b64encode(picture.data).decode()
        elif payload.get("response_format") == "b64_json":
            item["b64_json"] = base64.b64encode(FAKE_PNG).decode()
        else:
            item["url"] = f"http://127.0.0.1:{self.fake.port}{IMAGE_FILE_PATH}"
        return {"created": int(time.time()), "data": [dict(item) for _ in range(payload.get("n") or 1)]}


class FakeOpenAI:
    """In-process fake OpenAI server; use ``start()``/``stop()`` or as a context manager.

    ``default_delay`` (seconds) is slept before every normal answer, i.e. unscripted
    requests and ``Reply`` steps; ``Delay`` steps replace it rather than add to it.
    """

    def __init__(self) -> None:
        self.default_delay: float = 0.0
        self.models_step: Step | None = None
        self._lock = threading.Lock()
        self._steps: deque[Step] = deque()
        self._requests: list[RecordedRequest] = []
        self._served: dict[str, bytes] = {}
        self._ids = 0
        self._conns: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> FakeOpenAI:
        """Bind an ephemeral port on 127.0.0.1 and serve in a daemon thread."""
        if self._server is not None:
            raise RuntimeError("FakeOpenAI already started")
        self._stopping.clear()
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-openai", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake pending delays and drop open keep-alive connections."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port."""
        if self._server is None:
            raise RuntimeError("FakeOpenAI not started")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``, for ``openai.OpenAI(base_url=...)``."""
        return f"http://127.0.0.1:{self.port}/v1"

    # -- scripting ------------------------------------------------------------

    def script(self, *steps: Step) -> None:
        """Append steps; each chat/images request consumes one, in arrival order."""
        with self._lock:
            self._steps.extend(steps)

    def reset(self) -> None:
        """Clear the script, the recorded requests, ``default_delay`` and ``models_step``."""
        with self._lock:
            self._steps.clear()
            self._requests.clear()
            self._served.clear()
            self.default_delay = 0.0
            self.models_step = None

    @property
    def pending(self) -> int:
        """Number of scripted steps not yet consumed."""
        with self._lock:
            return len(self._steps)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Snapshot of every request received except ``/v1/models``, in order."""
        with self._lock:
            return list(self._requests)

    def count(self, path_suffix: str = "/chat/completions") -> int:
        """Number of recorded requests whose path ends with ``path_suffix``."""
        with self._lock:
            return sum(1 for r in self._requests if r.path.endswith(path_suffix))

    # -- used by the handler --------------------------------------------------

    def _next_step(self) -> Step | None:
        with self._lock:
            return self._steps.popleft() if self._steps else None

    def _serve(self, path: str, data: bytes) -> None:
        with self._lock:
            self._served[path] = data

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _next_id(self) -> int:
        with self._lock:
            self._ids += 1
            return self._ids

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless stopping; True means the server is shutting down."""
        if seconds <= 0:
            return self._stopping.is_set()
        return self._stopping.wait(seconds)
