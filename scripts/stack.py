"""Start and stop the local stack: Firestore emulator, Cloud Tasks emulator, Firebase Auth
emulator, local model server and the functions server; and serve the web console (``web/``).
Used by ``scripts/dev`` and the tests.

Every child runs in its own session, is remembered by PID and stopped by that
PID (SIGTERM, then SIGKILL), so nothing is left holding a port.
"""

from __future__ import annotations

import functools
import glob
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
FIRESTORE_JAR = Path(
    "/usr/lib/google-cloud-sdk/platform/cloud-firestore-emulator/cloud-firestore-emulator.jar"
)
MODEL_VENV = ROOT / ".venv-model"
FIREBASE_CLI = ROOT / "node_modules" / ".bin" / "firebase"  # firebase-tools, pinned in package.json
PROJECT = "demo-aijobs"
IMAGES_BUCKET = "demo-aijobs-images"  # the storage emulator's default bucket, made at its start
DEV_JWT_SECRET = "dev-only-jwt-secret-not-for-production-use"  # = shared.settings.DEV_JWT_SECRET
WEB_DIR = ROOT / "web"


# What every child inherits: enough to run programs, find the locale, a temp dir and Java.
# Nothing else leaks in: llama.cpp's server, for one, lets an inherited PORT or HOST beat --port.
_BASE_ENV = {"PATH", "HOME", "LANG", "TMPDIR", "JAVA_HOME", "JAVA_TOOL_OPTIONS"}
# The functions may call an AI endpoint beyond loopback: they also get the proxy and CA settings.
_NETWORK_ENV = {"HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"}


def inherited(names: Iterable[str] = ()) -> dict[str, str]:
    """The base environment of a child, plus ``names`` where set, from this process's."""
    wanted = _BASE_ENV | set(names)
    return {name: value for name, value in os.environ.items() if name in wanted or name.startswith("LC_")}


class StackError(RuntimeError):
    """A part of the stack could not be started; the message says what to do."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def firestore_jar() -> Path:
    if not FIRESTORE_JAR.exists():
        raise StackError(
            f"The Firestore emulator jar is missing ({FIRESTORE_JAR}).\n"
            "Install it with: gcloud components install cloud-firestore-emulator\n"
            "  (or on Debian: apt-get install google-cloud-cli-firestore-emulator), and Java 17+."
        )
    return FIRESTORE_JAR


def model_file() -> Path:
    found = glob.glob(
        str(MODEL_VENV / "lib" / "python3*" / "site-packages" / "**" / "*.gguf"), recursive=True
    )
    if not found:
        raise StackError("no .gguf model in .venv-model: run scripts/_setup model")
    return Path(found[0])


def latest_export(directory: Path) -> Path | None:
    found = sorted(directory.glob("**/*.overall_export_metadata"))
    return found[-1] if found else None


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def stop(self, grace: float = 5.0) -> None:
        if self.popen.poll() is not None:
            return
        # Signal the child's own process group: gunicorn's workers go with it.
        try:
            os.killpg(self.popen.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class Stack:
    """One local stack. Ports default to fresh free ones (tests); ``scripts/dev`` pins them."""

    functions_port: int = field(default_factory=free_port)
    firestore_port: int = field(default_factory=free_port)
    tasks_port: int = field(default_factory=free_port)
    model_port: int = field(default_factory=free_port)
    storage_port: int = field(default_factory=free_port)
    """The Cloud Storage emulator (in memory: images live as long as the stack)."""
    auth_port: int = field(default_factory=free_port)
    """The Firebase Auth emulator; its hub and logging ports are always fresh ones (nobody calls
    them), so stacks side by side never collide on the CLI's defaults (4400, 4500)."""
    log_dir: Path = ROOT / ".run" / "logs"
    import_dir: Path | None = ROOT / "emulator-export"
    ai_base_url: str | None = None
    """An OpenAI-compatible endpoint; ``None`` starts the local model server."""
    extra_env: dict[str, str] = field(default_factory=dict)
    tasks_max_retries: int = 20
    processes: list[Process] = field(default_factory=list)
    worker_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.functions_port}"

    @property
    def queue(self) -> str:
        return f"projects/{PROJECT}/locations/us-central1/queues/aijobs-jobs"

    @property
    def webhook_queue(self) -> str:
        """Webhook deliveries' own queue (``WEBHOOK_QUEUE``): a slow receiver never holds up jobs."""
        return f"projects/{PROJECT}/locations/us-central1/queues/aijobs-webhooks"

    def env(self) -> dict[str, str]:
        """The environment of the functions (also used by tests to talk to the emulators)."""
        return {
            "APP_ENV": "local",
            "GOOGLE_CLOUD_PROJECT": PROJECT,
            "FIRESTORE_EMULATOR_HOST": f"127.0.0.1:{self.firestore_port}",
            "TASKS_EMULATOR_HOST": f"127.0.0.1:{self.tasks_port}",
            "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{self.storage_port}",
            "IMAGES_BUCKET": IMAGES_BUCKET,
            "FIREBASE_AUTH_EMULATOR_HOST": f"127.0.0.1:{self.auth_port}",
            "TASKS_LOCATION": "us-central1",
            "TASKS_QUEUE": "aijobs-jobs",
            "WEBHOOK_QUEUE": "aijobs-webhooks",
            "FUNCTIONS_BASE_URL": self.base_url,
            "WORKER_SECRET": self.worker_secret,
            "JWT_SECRET": DEV_JWT_SECRET,
            "AI_BASE_URL": self.ai_base_url or f"http://127.0.0.1:{self.model_port}/v1",
            "AI_API_KEY": "local",
            "AI_MODEL": "smollm2",
            "AI_IMAGE_MODEL": "",  # the local model cannot draw: generate_image is refused (422)
            **self.extra_env,
        }

    def _spawn(self, name: str, argv: list[str], env: dict[str, str], cwd: Path = ROOT) -> Process:
        """Start ``argv`` with exactly ``env`` as its environment (see ``inherited``)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{name}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=cwd,
                env=env,
                start_new_session=True,
            )
        process = Process(name, popen, log)
        self.processes.append(process)
        return process

    def _wait(self, process: Process, port: int, timeout: float, path: str | None = None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.popen.poll() is not None:
                raise StackError(f"{process.name} exited ({process.popen.returncode}):\n{process.tail()}")
            if port_in_use(port):
                if path is None:
                    return
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2)
                    return
                except OSError:
                    pass
            time.sleep(0.1)
        raise StackError(
            f"{process.name} did not come up on port {port} in {timeout:.0f}s:\n{process.tail()}"
        )

    def check_ports(self, with_model: bool) -> None:
        ports = {
            "functions": self.functions_port,
            "firestore": self.firestore_port,
            "tasks": self.tasks_port,
            "storage": self.storage_port,
            "auth": self.auth_port,
        }
        if with_model:
            ports["model"] = self.model_port
        busy = [f"{name} ({port})" for name, port in ports.items() if port_in_use(port)]
        if busy:
            raise StackError("ports already in use: " + ", ".join(busy))

    def start_firestore(self) -> None:
        argv = [
            "java",
            "-Duser.language=en",
            "-cp",
            str(firestore_jar()),
            "com.google.cloud.datastore.emulator.firestore.CloudFirestore",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.firestore_port),
            "--project_id",
            PROJECT,
            # As in production: clients are denied; the functions' admin access is not affected.
            "--rules",
            str(ROOT / "firestore.rules"),
        ]
        export = latest_export(self.import_dir) if self.import_dir else None
        if export is not None:
            argv += ["--import-data", str(export)]
        self._wait(self._spawn("firestore", argv, inherited()), self.firestore_port, 60)

    def start_tasks(self) -> None:
        argv = [
            sys.executable,
            str(ROOT / "scripts" / "tasks_emulator.py"),
            str(self.tasks_port),
            f"{self.queue},{self.webhook_queue}",
            str(self.tasks_max_retries),
        ]
        self._wait(self._spawn("tasks", argv, inherited()), self.tasks_port, 30)

    def spawn_auth(self) -> Process:
        """Start the Firebase Auth emulator without waiting for it (the Node CLI takes seconds to
        boot: the other parts start meanwhile); ``wait_auth`` waits."""
        if not FIREBASE_CLI.exists():
            raise StackError("firebase-tools is missing (node_modules/): run scripts/_setup (needs npm)")
        # A config of this run's own: firebase.json's ports are the dev stack's, and the CLI
        # would start its hub and logging on fixed ports that a second stack would find taken.
        run = self.log_dir / "auth-emulator"
        run.mkdir(parents=True, exist_ok=True)
        config = {
            "emulators": {
                "singleProjectMode": True,
                "auth": {"host": "127.0.0.1", "port": self.auth_port},
                "hub": {"host": "127.0.0.1", "port": free_port()},
                "logging": {"host": "127.0.0.1", "port": free_port()},
                "ui": {"enabled": False},  # else it downloads the UI, which fails offline
            }
        }
        (run / "firebase.json").write_text(json.dumps(config, indent=2))
        argv = [str(FIREBASE_CLI), "emulators:start", "--only", "auth", "--project", PROJECT]
        argv += ["--config", str(run / "firebase.json")]
        # No update check or usage prompt: this network is closed and nobody answers.
        env = {**inherited(), "NO_UPDATE_NOTIFIER": "1", "FIREBASE_CLI_EXPERIMENTS": "", "CI": "1"}
        return self._spawn("auth", argv, env, cwd=run)  # cwd: its firebase-debug.log lands there

    def wait_auth(self, process: Process) -> None:
        self._wait(process, self.auth_port, 60, "/")

    def start_storage(self) -> None:
        argv = [
            str(Path(sys.executable).parent / "gcp-storage-emulator"),
            "start",
            "--host=127.0.0.1",
            f"--port={self.storage_port}",
            "--in-memory",
            f"--default-bucket={IMAGES_BUCKET}",
        ]
        self._wait(self._spawn("storage", argv, inherited()), self.storage_port, 30)

    def start_model(self) -> None:
        argv = [
            str(MODEL_VENV / "bin" / "python"),
            "-m",
            "llama_cpp.server",
            "--model",
            str(model_file()),
            "--model_alias",
            "smollm2",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.model_port),
            "--n_threads",
            "2",
            "--interrupt_requests",
            "False",
        ]
        self._wait(self._spawn("model", argv, inherited()), self.model_port, 120, "/v1/models")

    def start_functions(self, threads: int = 16) -> None:
        argv = [
            sys.executable,
            "-m",
            "gunicorn",
            "--chdir",
            str(ROOT / "scripts"),
            "--workers",
            "1",
            "--threads",
            str(threads),
            "--bind",
            f"127.0.0.1:{self.functions_port}",
            "--timeout",
            "0",
            "--graceful-timeout",
            "3",
            "--no-control-socket",
            # No request-line limit (gunicorn's is 4094 bytes, answered with an HTML 414): the
            # functions bound every query parameter themselves and answer a JSON 422.
            "--limit-request-line",
            "0",
            "devserver:app",
        ]
        env = {**inherited(_NETWORK_ENV), **self.env(), "PYTHONPATH": str(ROOT)}
        self._wait(self._spawn("functions", argv, env), self.functions_port, 60)

    def start(self) -> None:
        with_model = self.ai_base_url is None
        self.check_ports(with_model)
        try:
            auth = self.spawn_auth()
            self.start_firestore()
            self.start_tasks()
            self.start_storage()
            if with_model:
                self.start_model()
            self.wait_auth(auth)
            self.start_functions()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()

    def export(self, directory: Path) -> None:
        """Write the emulator's data to ``directory`` (what ``scripts/dev`` imports)."""
        directory.mkdir(parents=True, exist_ok=True)
        body = json.dumps(
            {"database": f"projects/{PROJECT}/databases/(default)", "export_directory": str(directory)}
        ).encode()
        url = f"http://127.0.0.1:{self.firestore_port}/emulator/v1/projects/{PROJECT}:export"
        urllib.request.urlopen(
            urllib.request.Request(url, body, {"Content-Type": "application/json"}), timeout=30
        )


def console_config(api_base_url: str, auth_emulator: str | None) -> dict[str, Any]:
    """The web console's ``config.json``: where the API is, and where Firebase sign-in goes.
    ``auth_emulator`` is the Auth emulator's ``host:port``, which serves Google's two REST
    APIs under their host names as path prefixes (any API key does)."""
    firebase = None
    if auth_emulator is not None:
        firebase = {
            "api_key": "local-emulator",
            "identity_toolkit_url": f"http://{auth_emulator}/identitytoolkit.googleapis.com",
            "secure_token_url": f"http://{auth_emulator}/securetoken.googleapis.com",
        }
    return {"api_base_url": api_base_url, "firebase": firebase}


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def content_security_policy(config: dict[str, Any]) -> str:
    """What the console's pages may load or call: its own files, the API and Firebase sign-in,
    nothing else. The browser enforces it, so a stray third-party URL fails loudly."""
    connect = ["'self'", _origin(config["api_base_url"])]
    firebase = config.get("firebase") or {}
    connect += sorted(
        {_origin(firebase[k]) for k in ("identity_toolkit_url", "secure_token_url") if k in firebase}
    )
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
        f"connect-src {' '.join(dict.fromkeys(connect))}; manifest-src 'self'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )


class _ConsoleHandler(SimpleHTTPRequestHandler):
    """``web/`` as files, ``/config.json`` generated, every answer with the console's headers."""

    config: bytes = b"{}"
    policy: str = ""
    extensions_map = {  # noqa: RUF012 (a base class attribute, as the standard library declares it)
        **SimpleHTTPRequestHandler.extensions_map,
        ".js": "text/javascript",
        ".json": "application/json",
        ".svg": "image/svg+xml",
        ".css": "text/css",
    }

    def do_GET(self) -> None:
        if urlsplit(self.path).path == "/config.json":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(self.config)))
            self.end_headers()
            self.wfile.write(self.config)
            return
        super().do_GET()

    def end_headers(self) -> None:
        # As firebase.json's hosting headers say for production (there connect-src is wider).
        self.send_header("Content-Security-Policy", self.policy)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a page load is a dozen requests: the terminal stays readable


@dataclass
class ConsoleServer:
    """The web console on loopback: a static server standing in for Firebase Hosting, in this
    process (a thread), so it stops with whoever started it."""

    config: dict[str, Any]
    port: int = 0
    host: str = "127.0.0.1"
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ConsoleServer:
        if not (WEB_DIR / "index.html").exists():
            raise StackError(f"the web console is missing: {WEB_DIR}/index.html")
        handler = type(
            "ConsoleHandler",
            (_ConsoleHandler,),
            {"config": json.dumps(self.config).encode(), "policy": content_security_policy(self.config)},
        )
        try:
            server = ThreadingHTTPServer(
                (self.host, self.port), functools.partial(handler, directory=str(WEB_DIR))
            )
        except OSError as exc:
            raise StackError(f"the web console cannot listen on {self.host}:{self.port}: {exc}") from None
        server.daemon_threads = True
        self.port = int(server.server_address[1])
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
