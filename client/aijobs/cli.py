"""The ``aijobs`` command: the aijobs API from a shell.

Exit codes: 0 done, 1 the API (or the network) said no (``code`` and message on stderr),
2 a usage error (bad arguments, not logged in). ``--json`` prints the answer as JSON on
stdout and nothing else there; errors then also go to stdout as ``{"error": {...}}``.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, TextIO

from . import config
from ._version import __version__
from .client import DEFAULT_BASE_URL, Client
from .errors import AijobsError, Unauthenticated
from .types import Job

__all__ = ["main"]

TOKEN_ENV = "AIJOBS_TOKEN"
BASE_URL_ENV = "AIJOBS_BASE_URL"
PASSWORD_ENV = "AIJOBS_PASSWORD"


class UsageError(Exception):
    """A mistake in how the command was called: exit code 2."""


# -- arguments -----------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    # --json and --base-url are accepted before the command and after it; the sub-parsers'
    # copies default to "not given", so they never undo the main parser's.
    json_help = "print the answer as JSON on stdout (and nothing else there)"
    url_help = (
        f"where the functions are served (else env {BASE_URL_ENV}, else the saved login's, "
        f"else {DEFAULT_BASE_URL})"
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help=json_help)
    common.add_argument("--base-url", default=argparse.SUPPRESS, metavar="URL", help=url_help)
    parser = argparse.ArgumentParser(
        prog="aijobs",
        description="Submit AI jobs to an aijobs deployment and follow them.",
        epilog="Exit codes: 0 ok, 1 API error, 2 usage error.",
    )
    parser.add_argument("--json", action="store_true", help=json_help)
    parser.add_argument("--base-url", metavar="URL", help=url_help)
    parser.add_argument("--version", action="version", version=f"aijobs {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help: str, parent: Any = commands) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = parent.add_parser(name, help=help, description=help, parents=[common])
        return sub

    for name, help in (("signup", "create an account and log in"), ("login", "log in")):
        sub = command(name, help)
        sub.add_argument("username")
        sub.add_argument("--password", help=f"the password (else env {PASSWORD_ENV}, else it is asked for)")
        sub.set_defaults(run=_signup if name == "signup" else _login)
    command("logout", "forget the saved login").set_defaults(run=_logout)
    command("me", "who am I, and my balance").set_defaults(run=_me)

    sub = command("credits", "the balance and the ledger, newest first")
    _paging(sub)
    sub.set_defaults(run=_credits)

    sub = command("submit", "submit a job")
    sub.add_argument("task_type", metavar="TASK", help="summarize, translate, generate_text, chat, ...")
    sub.add_argument(
        "input", metavar="INPUT", help="the text, '-' to read it from stdin (chat: JSON messages, or a text)"
    )
    sub.add_argument(
        "--option",
        "-o",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a task option (VALUE is read as JSON when it parses, else as a string); repeatable",
    )
    sub.add_argument("--idempotency-key", metavar="KEY", help="the Idempotency-Key (default: a new uuid4)")
    sub.add_argument(
        "--team", metavar="TEAM_ID", help="charge the job to this team's pool (you are its member)"
    )
    _waiting(sub, "wait for the job to finish and print its output")
    sub.set_defaults(run=_submit)

    jobs = command("jobs", "list, show or cancel jobs")
    actions = jobs.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub = command("list", "my jobs, newest first", actions)
    _paging(sub)
    sub.add_argument("--all", action="store_true", help="every page")
    sub.set_defaults(run=_jobs_list)
    sub = command("get", "one job", actions)
    sub.add_argument("job_id", metavar="JOB_ID")
    _waiting(sub, "wait until the job is final")
    sub.set_defaults(run=_jobs_get)
    sub = command("cancel", "cancel a queued job (its cost is refunded)", actions)
    sub.add_argument("job_id", metavar="JOB_ID")
    sub.set_defaults(run=_jobs_cancel)

    teams = command("teams", "list or create teams (shared credit pools)")
    actions = teams.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub = command("list", "my teams, by name, with my role and each pool's balance", actions)
    sub.set_defaults(run=_teams_list)
    sub = command("create", "create a team (you are its owner)", actions)
    sub.add_argument("name", metavar="NAME")
    sub.set_defaults(run=_teams_create)

    sub = command("usage", "jobs and credits per day and task type")
    sub.add_argument(
        "--from", dest="from_date", type=_date, metavar="YYYY-MM-DD", help="default: 29 days ago"
    )
    sub.add_argument("--to", dest="to_date", type=_date, metavar="YYYY-MM-DD", help="default: today (UTC)")
    sub.set_defaults(run=_usage)

    command("health", "is the service up (no login needed)").set_defaults(run=_health)
    return parser


def _paging(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--limit", type=int, metavar="N", help="entries per page (1-100)")
    sub.add_argument("--cursor", metavar="CURSOR", help="the next_cursor of the previous page")


def _waiting(sub: argparse.ArgumentParser, help: str) -> None:
    sub.add_argument("--wait", action="store_true", help=help)
    sub.add_argument(
        "--timeout", type=float, default=600.0, metavar="SECONDS", help="how long to wait (default 600)"
    )


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def parse_option(text: str) -> tuple[str, Any]:
    """``KEY=VALUE``; VALUE as JSON when it parses (``20``, ``true``, ``"x"``), else the string."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise UsageError(f"--option must be KEY=VALUE, not {text!r}")
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    return key.strip(), value


# -- the session ---------------------------------------------------------------------------


class Session:
    """What a command works with: the resolved base URL, the saved login, the output mode."""

    def __init__(self, args: argparse.Namespace, out: TextIO, err: TextIO) -> None:
        self.args = args
        self.json: bool = bool(args.json)
        self.out = out
        self.err = err
        self.saved = config.load()
        self.base_url = (
            args.base_url or os.environ.get(BASE_URL_ENV) or self.saved.get("base_url") or DEFAULT_BASE_URL
        ).rstrip("/")

    def client(self, *, login: bool = True) -> Client:
        token = None
        if login:
            token = os.environ.get(TOKEN_ENV) or self._saved_token()
            if not token:
                raise UsageError(f"not logged in to {self.base_url}: run `aijobs login USERNAME` first")
        return Client(self.base_url, token=token)

    def _saved_token(self) -> str | None:
        if self.saved.get("base_url", "").rstrip("/") != self.base_url:
            return None
        token = self.saved.get("access_token")
        return token if isinstance(token, str) else None

    def emit(self, answer: Any, human: Callable[[], None]) -> None:
        """The answer as JSON with --json, else as ``human`` prints it."""
        if self.json:
            json.dump(answer, self.out, indent=2, ensure_ascii=False)
            self.out.write("\n")
        else:
            human()

    def print(self, *parts: Any) -> None:
        print(*parts, file=self.out)

    def note(self, *parts: Any) -> None:
        print(*parts, file=self.err)


# -- commands ------------------------------------------------------------------------------


def _password(args: argparse.Namespace, confirm: bool) -> str:
    password = args.password or os.environ.get(PASSWORD_ENV)
    if password:
        return str(password)
    if not sys.stdin.isatty():
        raise UsageError(f"no password: pass --password or set {PASSWORD_ENV}")
    password = getpass.getpass("Password: ")
    if confirm and getpass.getpass("Repeat the password: ") != password:
        raise UsageError("the passwords differ")
    return password


def _remember(s: Session, username: str, token: str, expires_in: int) -> str:
    expires = datetime.now(UTC) + timedelta(seconds=expires_in)
    path = config.save(
        {
            "base_url": s.base_url,
            "username": username,
            "access_token": token,
            "expires_at": expires.isoformat(timespec="seconds"),
        }
    )
    return str(path)


def _signup(s: Session) -> None:
    password = _password(s.args, confirm=True)
    with s.client(login=False) as api:
        answer = api.signup(s.args.username, password)
    user = answer["user"]
    path = _remember(s, user["username"], answer["access_token"], answer["expires_in"])
    s.emit(
        answer,
        lambda: s.print(
            f"Signed up as {user['username']} ({user['credits']} credits), logged in; token saved in {path}"
        ),
    )


def _login(s: Session) -> None:
    password = _password(s.args, confirm=False)
    with s.client(login=False) as api:
        answer = api.login(s.args.username, password)
    username = s.args.username.lower()
    path = _remember(s, username, answer["access_token"], answer["expires_in"])
    minutes = answer["expires_in"] // 60
    s.emit(
        answer, lambda: s.print(f"Logged in as {username}; token saved in {path} (valid {minutes} minutes)")
    )


def _logout(s: Session) -> None:
    removed = config.remove()
    s.emit(
        {"logged_out": removed},
        lambda: s.print("Logged out." if removed else "Not logged in."),
    )


def _me(s: Session) -> None:
    with s.client() as api:
        me = api.me()
    s.emit(
        me,
        lambda: s.print(
            f"{me['username']} (id {me['id']}): {me['credits']} credits, since {me['created_at']}"
        ),
    )


def _credits(s: Session) -> None:
    with s.client() as api:
        answer = api.credits(s.args.limit, s.args.cursor)

    def human() -> None:
        s.print(f"Balance: {answer['credits']} credits")
        rows = [
            [t["created_at"], t["type"], f"{t['amount']:+d}", t.get("job_id") or ""]
            for t in answer["transactions"]
        ]
        if rows:
            s.print()
            _table(s.out, ["WHEN", "TYPE", "AMOUNT", "JOB"], rows)
        if answer["next_cursor"]:
            s.note(f"more: aijobs credits --cursor {answer['next_cursor']}")

    s.emit(answer, human)


def _input(s: Session) -> Any:
    raw: str = s.args.input
    if raw == "-":
        raw = sys.stdin.read()
    if s.args.task_type == "chat":
        try:
            messages = json.loads(raw)
        except ValueError:
            messages = None
        if isinstance(messages, list):
            return messages
        return [{"role": "user", "content": raw}]
    return raw


def _submit(s: Session) -> None:
    options = dict(parse_option(o) for o in s.args.option)
    input_data = _input(s)
    with s.client() as api:
        accepted = api.submit(
            s.args.task_type, input_data, options, idempotency_key=s.args.idempotency_key, team_id=s.args.team
        )
        job_id = accepted["job_id"]
        if not s.args.wait:
            s.emit(
                accepted,
                lambda: s.print(
                    f"job {job_id} {accepted['status']}: cost {accepted['cost']}, "
                    f"{accepted['credits']} credits left"
                ),
            )
            return
        s.note(
            f"job {job_id} {accepted['status']} (cost {accepted['cost']}, {accepted['credits']} credits left)"
        )
        job = _follow(s, api, job_id)
    _show_final(s, job)


def _follow(s: Session, api: Client, job_id: str) -> Job:
    with Progress(s.err, job_id) as progress:
        return api.wait(job_id, timeout=s.args.timeout, on_progress=progress.update)


def _show_final(s: Session, job: Job) -> None:
    """Print a finished job's output; a failed or canceled one exits 1."""
    s.emit(job, lambda: _print_output(s, job))
    if job["status"] == "failed":
        error = job.get("error") or {}
        raise JobEnded(f"job {job['job_id']} failed: {error.get('code')}: {error.get('message')}")
    if job["status"] == "canceled":
        raise JobEnded(f"job {job['job_id']} was canceled")


class JobEnded(Exception):
    """The job ended without output: exit code 1."""


def _print_output(s: Session, job: Job) -> None:
    output = job.get("output") or {}
    if "text" in output:
        s.print(output["text"])
    elif "image_url" in output:
        s.print(output["image_url"])
    elif "image_b64" in output:
        s.print(output["image_b64"])
    elif output:
        s.print(json.dumps(output, indent=2, ensure_ascii=False))


def _jobs_list(s: Session) -> None:
    with s.client() as api:
        if s.args.all:
            answer: Any = {"jobs": list(api.iter_jobs(s.args.limit)), "next_cursor": None}
        else:
            answer = api.list_jobs(s.args.limit, s.args.cursor)

    def human() -> None:
        rows = [
            [j["job_id"], j["task_type"], j["status"], str(j["cost"]), j["created_at"]]
            for j in answer["jobs"]
        ]
        if rows:
            _table(s.out, ["JOB_ID", "TASK", "STATUS", "COST", "CREATED"], rows)
        else:
            s.print("No jobs.")
        if answer["next_cursor"]:
            s.note(f"more: aijobs jobs list --cursor {answer['next_cursor']}")

    s.emit(answer, human)


def _jobs_get(s: Session) -> None:
    with s.client() as api:
        job = _follow(s, api, s.args.job_id) if s.args.wait else api.get_job(s.args.job_id)
    if s.args.wait:
        _show_final(s, job)
        return

    def human() -> None:
        for key in ("job_id", "task_type", "status", "cost", "created_at", "updated_at"):
            s.print(f"{key}: {job[key]}")
        if job.get("error"):
            error = job["error"] or {}
            s.print(f"error: {error.get('code')}: {error.get('message')}")
        if job.get("output"):
            s.print()
            _print_output(s, job)

    s.emit(job, human)


def _jobs_cancel(s: Session) -> None:
    with s.client() as api:
        job = api.cancel_job(s.args.job_id)
    s.emit(job, lambda: s.print(f"job {job['job_id']} {job['status']}; {job['cost']} credits refunded"))


def _teams_list(s: Session) -> None:
    with s.client() as api:
        answer = api.list_teams()

    def human() -> None:
        rows = [
            [t["team_id"], t["name"], t["role"], str(t["members"]), str(t["credits"])]
            for t in answer["teams"]
        ]
        if rows:
            _table(s.out, ["TEAM_ID", "NAME", "ROLE", "MEMBERS", "CREDITS"], rows, right={3, 4})
        else:
            s.print("No teams.")

    s.emit(answer, human)


def _teams_create(s: Session) -> None:
    with s.client() as api:
        team = api.create_team(s.args.name)
    s.emit(team, lambda: s.print(f"team {team['team_id']} {team['name']!r} created; you are its owner"))


def _usage(s: Session) -> None:
    to_date = s.args.to_date or datetime.now(UTC).date()
    from_date = s.args.from_date or to_date - timedelta(days=29)
    with s.client() as api:
        answer = api.usage(from_date, to_date)

    def human() -> None:
        rows = [
            [day["date"], task, str(n), str(day["credits"].get(task, 0))]
            for day in answer["days"]
            for task, n in day["jobs"].items()
        ]
        totals = answer["totals"]
        s.print(f"Usage {from_date} to {to_date}")
        if not rows:
            s.print("No jobs.")
            return
        rows.append(["total", "", str(totals["total_jobs"]), str(totals["total_credits"])])
        _table(s.out, ["DATE", "TASK", "JOBS", "CREDITS"], rows, right={2, 3}, rule_before_last=True)

    s.emit(answer, human)


def _health(s: Session) -> None:
    with s.client(login=False) as api:
        answer = api.health()

    def human() -> None:
        s.print(answer["status"])
        for name, state in answer.get("checks", {}).items():
            s.print(f"  {name}: {state}")

    s.emit(answer, human)


# -- output helpers ------------------------------------------------------------------------


def _table(
    out: TextIO,
    header: list[str],
    rows: Iterable[list[str]],
    *,
    right: set[int] | None = None,
    rule_before_last: bool = False,
) -> None:
    rows = list(rows)
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=False)]

    def line(cells: list[str]) -> str:
        parts = [
            str(c).rjust(w) if i in (right or set()) else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    print(line(header), file=out)
    for i, row in enumerate(rows):
        if rule_before_last and i == len(rows) - 1:
            print("  ".join("-" * w for w in widths), file=out)
        print(line(row), file=out)


class Progress:
    """The state of a job being waited on, on stderr: a line redrawn each second on a
    terminal, else a line per answer."""

    def __init__(self, err: TextIO, job_id: str) -> None:
        self.err = err
        self.job_id = job_id
        self.status = "queued"
        self.started = time.monotonic()
        self.live = err.isatty()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._ticker = threading.Thread(target=self._tick, daemon=True)

    def __enter__(self) -> Progress:
        if self.live:
            self._ticker.start()
        else:
            self._line()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self.live:
            self._ticker.join()
            with self._lock:
                self.err.write("\n")
                self.err.flush()

    def update(self, job: Job) -> None:
        self.status = job["status"]
        if not self.live:
            self._line()

    def _text(self) -> str:
        return f"job {self.job_id}: {self.status} ({time.monotonic() - self.started:.0f}s)"

    def _line(self) -> None:
        print(self._text(), file=self.err, flush=True)

    def _tick(self) -> None:
        while True:
            with self._lock:
                self.err.write("\r\033[K" + self._text())
                self.err.flush()
            if self._stop.wait(1.0):
                with self._lock:
                    self.err.write("\r\033[K" + self._text())
                return


# -- main ----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run one ``aijobs`` command; returns its exit code."""
    out = out or sys.stdout
    err = err or sys.stderr
    parser = _parser()
    args = parser.parse_args(argv)
    session = Session(args, out, err)
    try:
        args.run(session)
    except UsageError as exc:
        print(f"aijobs: {exc}", file=err)
        return 2
    except ValueError as exc:  # a local check of an argument (e.g. a wait out of range)
        print(f"aijobs: {exc}", file=err)
        return 2
    except JobEnded as exc:
        print(f"aijobs: {exc}", file=err)
        return 1
    except AijobsError as exc:
        hint = " (run `aijobs login USERNAME`)" if isinstance(exc, Unauthenticated) else ""
        print(f"aijobs: error: {exc}{hint}", file=err)
        if session.json:
            error = {"status": exc.status, "code": exc.code, "message": exc.message}
            json.dump({"error": error}, out, indent=2, ensure_ascii=False)
            out.write("\n")
        return 1
    except KeyboardInterrupt:
        print(file=err)
        return 130
    return 0
