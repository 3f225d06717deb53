"""Abuse limits, internal callers' OIDC tokens, structured logs, and secrets that never leak."""

from __future__ import annotations

import datetime as dt
import json
import secrets
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
import requests
from conftest import AI_API_KEY, PASSWORD, Api, at_once, books, footprint
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from scripts.stack import DEV_JWT_SECRET, Stack

TASKS_ACCOUNT = "aijobs-tasks@demo-aijobs.iam.gserviceaccount.com"

# ---- login lockout --------------------------------------------------------------------------------

WINDOW = 900  # LOGIN_WINDOW_SECONDS on the test stack (the default)


def login(api: Api, username: str, password: str) -> requests.Response:
    return api.call("POST", "/login", json={"username": username, "password": password})


def seconds_left(window: int) -> float:
    """Until the current clock window of ``window`` seconds ends (the limits count per window)."""
    return window - time.time() % window


def in_one_window(window: int, need: float) -> None:
    """Wait for the next clock window unless ``need`` seconds are left in this one."""
    if seconds_left(window) < need:
        time.sleep(seconds_left(window) + 0.1)


def assert_locked(response: requests.Response, window: int) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["error"]["code"] == "too_many_login_attempts"
    # When a check frees up: the end of the window, whose counter then starts afresh.
    assert abs(int(response.headers["Retry-After"]) - seconds_left(window)) <= 2


def test_five_failures_lock_a_username_and_do_not_reveal_it_exists(api: Api) -> None:
    known = api.signup()[1]["username"]
    unknown = "nobody_" + known[1:]
    in_one_window(WINDOW, 30)
    for username in (known, unknown):
        assert [login(api, username, "wrong-password").status_code for _ in range(5)] == [401] * 5
        assert_locked(login(api, username, "wrong-password"), WINDOW)
    # Even the right password waits: the lock is on the name, whoever types it.
    assert_locked(login(api, known, PASSWORD), WINDOW)
    assert login(api, known, "x" * 8).json() == login(api, unknown, "x" * 8).json()


def test_a_success_resets_the_failures(api: Api) -> None:
    username = api.signup()[1]["username"]
    in_one_window(WINDOW, 30)
    for _ in range(4):
        assert login(api, username, "wrong-password").status_code == 401
    assert login(api, username, PASSWORD).status_code == 200
    assert [login(api, username, "wrong-password").status_code for _ in range(4)] == [401] * 4
    assert login(api, username, PASSWORD).status_code == 200
    # Normal use never locks a user out: successes alone always start afresh.
    assert [login(api, username, PASSWORD).status_code for _ in range(8)] == [200] * 8


def test_the_lock_ends_when_the_window_passes(api: Api, functions_server: Any) -> None:
    window = 5
    short = Api(functions_server(LOGIN_WINDOW_SECONDS=str(window)))
    username = short.signup()[1]["username"]
    time.sleep(seconds_left(window) + 0.05)  # start at the beginning of a window
    assert [login(short, username, "wrong-password").status_code for _ in range(5)] == [401] * 5
    assert_locked(login(short, username, PASSWORD), window)
    time.sleep(seconds_left(window) + 0.1)
    assert login(short, username, PASSWORD).status_code == 200


def test_a_burst_of_guesses_gets_five_password_checks(api: Api) -> None:
    username = api.signup()[1]["username"]
    in_one_window(WINDOW, 20)
    burst = at_once(30, lambda _: login(api, username, "wrong-password"))
    assert sorted(r.status_code for r in burst) == [401] * 5 + [429] * 25
    assert_locked(login(api, username, PASSWORD), WINDOW)


def test_the_right_password_in_a_burst_needs_a_slot_like_any_guess(api: Api) -> None:
    username = api.signup()[1]["username"]
    in_one_window(WINDOW, 20)
    right = 17
    burst = at_once(30, lambda i: login(api, username, PASSWORD if i == right else "wrong-password"))
    statuses = [r.status_code for r in burst]
    checked = [s for s in statuses if s != 429]
    assert len(checked) == 5 and statuses.count(429) == 25, statuses
    # 200 if it got one of the five checks, else refused unchecked like the others.
    assert statuses[right] in (200, 429) and statuses.count(200) == (statuses[right] == 200)
    # The success was inside the burst: it reset nothing, the name stays locked.
    assert_locked(login(api, username, PASSWORD), WINDOW)


# ---- signup limit ----------------------------------------------------------------------------------


def test_signups_per_address_are_limited_and_refused_ones_create_nothing(
    api: Api, functions_server: Any
) -> None:
    from google.cloud.firestore import FieldFilter

    from shared.db import client

    limited = Api(functions_server(SIGNUP_RATE_PER_HOUR="20"))
    address = f"203.0.113.{secrets.randbelow(256)}"
    names = [f"s{secrets.token_hex(6)}" for _ in range(26)]

    def signup(username: str, forwarded: str) -> requests.Response:
        body = {"username": username, "password": PASSWORD}
        return limited.call("POST", "/signup", json=body, headers={"X-Forwarded-For": forwarded})

    in_one_window(3600, 60)
    # Each with a different left-most entry, as a client may write: only Google's own hop counts.
    answers = [signup(name, f"198.51.100.{i}, {address}") for i, name in enumerate(names[:25])]
    assert [r.status_code for r in answers] == [201] * 20 + [429] * 5
    for refused, username in zip(answers[20:], names[20:25], strict=True):
        assert refused.json()["error"]["code"] == "signup_rate_limited"
        assert abs(int(refused.headers["Retry-After"]) - seconds_left(3600)) <= 2
        assert not client().collection("usernames").document(username).get().exists
        users = client().collection("users").where(filter=FieldFilter("username", "==", username))
        assert not list(users.stream())
    assert signup(names[25], f"{address}, 198.51.100.1").status_code == 201  # another client


def test_a_bogus_forwarded_header_falls_back_to_the_peer(api: Api) -> None:
    response = api.call(
        "POST",
        "/signup",
        json={"username": f"s{secrets.token_hex(6)}", "password": PASSWORD},
        headers={"X-Forwarded-For": "not-an-address"},
    )
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    ("forwarded", "key"),
    [
        (None, "192.0.2.9"),  # local: no front end, the socket's peer
        ("203.0.113.5", "203.0.113.5"),
        ("10.9.9.9, 203.0.113.5", "203.0.113.5"),  # the client's own entries are ignored
        (" 10.9.9.9 ,203.0.113.5 ", "203.0.113.5"),
        ("::ffff:203.0.113.5", "203.0.113.5"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb:cccc:dddd:eeee", "2001:db8:1:2::/64"),  # same /64, same key
        ("not-an-address", "192.0.2.9"),
        ("203.0.113.5, garbage", "192.0.2.9"),  # never the client-written entry to its left
        ("", "192.0.2.9"),
    ],
)
def test_client_address_trusts_only_the_right_most_hop(forwarded: str | None, key: str) -> None:
    import flask
    from werkzeug.test import EnvironBuilder

    from shared.limits import client_address

    headers = [] if forwarded is None else [("X-Forwarded-For", forwarded)]
    environ = EnvironBuilder(headers=headers, environ_base={"REMOTE_ADDR": "192.0.2.9"}).get_environ()
    assert client_address(flask.Request(environ)) == key


# ---- submit rate limit -----------------------------------------------------------------------------


def test_submit_rate_limit_is_uncharged(api: Api, functions_server: Any) -> None:
    limited = Api(functions_server(SUBMIT_RATE_PER_MINUTE="3"))
    token, user = limited.signup()
    if 60 - time.time() % 60 < 10:  # keep all four submits inside one clock minute
        time.sleep(60 - time.time() % 60 + 0.1)
    accepted = [limited.submit(token) for _ in range(3)]
    assert [r.status_code for r in accepted] == [202] * 3
    before = footprint(user["id"])
    refused = limited.submit(token)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "submit_rate_limited"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert footprint(user["id"]) == before
    # Their tasks target this server's worker: let them finish while it runs.
    for response in accepted:
        assert limited.wait(token, response.json()["job_id"])["status"] == "completed"


def test_oversized_bodies_are_refused_before_anything_else(api: Api) -> None:
    body = json.dumps({"task_type": "summarize", "input_data": "x" * 70_000})
    response = api.call("POST", "/submit_job", data=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"


# ---- OIDC tokens of internal callers ------------------------------------------------------------------


class Issuer:
    """A stand-in for Google's token issuer: an RSA key, and its certificate served on loopback
    in the format of https://www.googleapis.com/oauth2/v1/certs."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-issuer")])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(1)
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .sign(self.key, hashes.SHA256())
        )
        body = json.dumps({"test-kid": cert.public_bytes(serialization.Encoding.PEM).decode()}).encode()

        class Certs(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Certs)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.certs_url = f"http://127.0.0.1:{self.server.server_address[1]}/certs"

    def token(self, audience: str, **changes: Any) -> str:
        now = int(time.time())
        claims = {
            "iss": "https://accounts.google.com",
            "aud": audience,
            "email": TASKS_ACCOUNT,
            "email_verified": True,
            "sub": "1234",
            "iat": now,
            "exp": now + 600,
            **changes,
        }
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": "test-kid"})


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    found = Issuer()
    yield found
    found.server.shutdown()


@pytest.fixture
def oidc(issuer: Issuer, stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Issuer]:
    """The test process's settings on the production path for internal callers."""
    from shared.settings import get_settings

    monkeypatch.setenv("WORKER_SECRET", "")
    monkeypatch.setenv("OIDC_CERTS_URL", issuer.certs_url)
    monkeypatch.setenv("TASKS_SERVICE_ACCOUNT", TASKS_ACCOUNT)
    monkeypatch.setenv("FUNCTIONS_BASE_URL", "https://europe-west1-demo.cloudfunctions.net")
    get_settings.cache_clear()
    yield issuer
    get_settings.cache_clear()


AUDIENCE = "https://europe-west1-demo.cloudfunctions.net/worker"
other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
CASES: dict[str, tuple[Any, int | None]] = {
    "valid": (lambda i: i.token(AUDIENCE), None),
    "other audience": (lambda i: i.token(AUDIENCE.replace("worker", "sweep_jobs")), 401),
    "other account": (lambda i: i.token(AUDIENCE, email="someone@evil.example"), 403),
    "unverified email": (lambda i: i.token(AUDIENCE, email_verified=False), 403),
    "expired": (lambda i: i.token(AUDIENCE, iat=int(time.time()) - 7200, exp=int(time.time()) - 3600), 401),
    "other issuer": (lambda i: i.token(AUDIENCE, iss="https://evil.example"), 401),
    "other key": (
        lambda i: jwt.encode(
            jwt.decode(i.token(AUDIENCE), options={"verify_signature": False}),
            other_key,
            algorithm="RS256",
            headers={"kid": "test-kid"},
        ),
        401,
    ),
    "HS256 with the dev secret": (
        lambda i: jwt.encode({"aud": AUDIENCE, "email": TASKS_ACCOUNT}, DEV_JWT_SECRET, algorithm="HS256"),
        401,
    ),
    "garbage": (lambda i: "not.a.token", 401),
}


@pytest.mark.parametrize("case", list(CASES))
def test_internal_callers_oidc_tokens(oidc: Issuer, case: str) -> None:
    from werkzeug.datastructures import Headers

    from shared.errors import AppError
    from shared.internal_auth import verify_internal_caller

    make, status = CASES[case]
    headers = Headers({"Authorization": f"Bearer {make(oidc)}"})
    if status is None:
        verify_internal_caller(headers, "worker", TASKS_ACCOUNT)
        return
    with pytest.raises(AppError) as refused:
        verify_internal_caller(headers, "worker", TASKS_ACCOUNT)
    assert refused.value.status == status


def test_worker_on_the_production_path_takes_only_the_queues_token(
    api: Api, issuer: Issuer, functions_server: Any, paused_queue: None
) -> None:
    base = functions_server(
        WORKER_SECRET="", OIDC_CERTS_URL=issuer.certs_url, TASKS_SERVICE_ACCOUNT=TASKS_ACCOUNT
    )
    token, user = api.signup()
    job_id = api.submit(token).json()["job_id"]
    secret_only = requests.post(
        f"{base}/worker", json={"job_id": job_id}, timeout=30, headers={"X-Aijobs-Worker-Secret": "anything"}
    )
    assert secret_only.status_code == 401
    wrong = issuer.token(f"{base}/worker", email="someone@evil.example")
    denied = requests.post(
        f"{base}/worker", json={"job_id": job_id}, timeout=30, headers={"Authorization": f"Bearer {wrong}"}
    )
    assert denied.status_code == 403 and books(user["id"])["jobs"][job_id]["status"] == "queued"
    good = issuer.token(f"{base}/worker")
    ran = requests.post(
        f"{base}/worker", json={"job_id": job_id}, timeout=30, headers={"Authorization": f"Bearer {good}"}
    )
    assert ran.status_code == 200 and ran.json()["outcome"] == "completed"


# ---- logs and secrets ------------------------------------------------------------------------------


def all_documents() -> Iterator[dict[str, Any]]:
    from shared.db import client

    pending = list(client().collections())
    while pending:
        for doc in pending.pop().stream():
            yield doc.to_dict() or {}
            pending.extend(doc.reference.collections())


def test_no_secret_reaches_logs_bodies_or_documents(api: Api, stack: Stack) -> None:
    password = "Sup3r-secret-" + "p" * 12
    username = "leak_check_user"
    signup = api.call("POST", "/signup", json={"username": username, "password": password})
    token = signup.json()["access_token"]
    bodies = [signup.text]
    bodies.append(api.call("POST", "/login", json={"username": username, "password": password}).text)
    bodies.append(api.call("POST", "/login", json={"username": username, "password": password + "x"}).text)
    bodies.append(api.call("POST", "/signup", json={"username": "x", "password": password}).text)
    bodies.append(api.call("POST", "/signup", json={"username": username, "password": password, "x": 1}).text)
    job = api.submit(token, headers={"Idempotency-Key": "leak-check"}).json()
    api.wait(token, job["job_id"])
    bodies += [
        api.call("GET", path, token).text for path in ("/me", "/credits", f"/jobs/{job['job_id']}", "/jobs")
    ]
    bodies.append(requests.get(f"{stack.base_url}/health", timeout=30).text)
    secrets = {
        "password": password,
        "token": token,
        "ai key": AI_API_KEY,
        "jwt secret": DEV_JWT_SECRET,
        "worker secret": stack.worker_secret,
    }

    log = (stack.log_dir / "functions.log").read_text()
    documents = json.dumps(list(all_documents()), default=str)
    for name, secret in secrets.items():
        assert secret not in log, f"{name} in the functions log"
        assert secret not in documents, f"{name} in a stored document"
        # Signup's and login's own answers carry a token (the same one, within a second).
        for body in bodies[2:] if name == "token" else bodies:
            assert secret not in body, f"{name} in a response body"


def test_logs_are_structured_for_cloud_logging(api: Api, stack: Stack) -> None:
    token, user = api.signup()
    trace = "0123456789abcdef0123456789abcdef"
    job_id = api.submit(token, headers={"X-Cloud-Trace-Context": f"{trace}/1;o=1"}).json()["job_id"]
    api.wait(token, job_id)
    entries = [
        json.loads(line)
        for line in (stack.log_dir / "functions.log").read_text().splitlines()
        if line.startswith("{")
    ]
    submit = [e for e in entries if e.get("function") == "submit_job" and e.get("job_id") == job_id]
    assert submit and submit[-1]["severity"] == "INFO" and submit[-1]["user_id"] == user["id"]
    assert submit[-1]["logging.googleapis.com/trace"] == f"projects/demo-aijobs/traces/{trace}"
    assert "-> 202" in submit[-1]["message"]
    worker = [e for e in entries if e.get("function") == "worker" and e.get("job_id") == job_id]
    assert worker and {"severity", "message", "time"} <= set(worker[-1])
