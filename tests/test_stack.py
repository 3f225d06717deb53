"""scripts/dev beside other stacks: PORT moves only the functions (the local model server, which
reads PORT and HOST itself, never sees them), every part on its own port, the scheduler's sweep
emulated, and SIGTERM leaves nothing running."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from scripts.dev import run_dir
from scripts.stack import MODEL_VENV, ROOT, free_port, port_in_use

FUNCTIONS = sorted(p.stem for p in (ROOT / "functions").glob("*.py") if not p.stem.startswith("_"))


def children(pid: int) -> list[int]:
    """Every descendant of ``pid``, from the parent ids in /proc."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError):  # gone meanwhile
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        frontier = [child for child, parent in parents.items() if parent in frontier]
        found += frontier
    return found


def environment(pid: int) -> dict[str, str]:
    pairs = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(p.decode(errors="replace").partition("=")[::2] for p in pairs if p)


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def swept(functions_log: Path) -> bool:
    """Whether the functions server logged a successful ``POST /sweep_jobs``."""
    for line in functions_log.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if entry.get("function") == "sweep_jobs" and entry.get("message", "").startswith("POST / -> 200"):
                return True
    return False


@pytest.fixture
def ports() -> Iterator[dict[str, int]]:
    names = ("PORT", "FIRESTORE_PORT", "TASKS_PORT", "MODEL_PORT", "AUTH_PORT")
    chosen = {name: free_port() for name in names}
    yield chosen
    shutil.rmtree(run_dir(chosen["PORT"]), ignore_errors=True)


def test_dev_runs_beside_others_with_port_set_everywhere(ports: dict[str, int], tmp_path: Path) -> None:
    assert (MODEL_VENV / "bin" / "python").exists(), "build the local model first: scripts/_setup model"
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/root"),
        **{name: str(port) for name, port in ports.items()},
        # Were these to reach the model server, it would bind there instead and never come up.
        "HOST": "192.0.2.1",
    }
    out = tmp_path / "dev.out"
    with out.open("wb") as sink:
        dev = subprocess.Popen(
            [str(ROOT / ".venv" / "bin" / "python"), "scripts/dev.py"],
            cwd=ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    started: list[int] = []
    try:
        deadline = time.monotonic() + 180
        while "aijobs is running" not in out.read_text(errors="replace"):
            assert dev.poll() is None, out.read_text(errors="replace")
            assert time.monotonic() < deadline, out.read_text(errors="replace")
            time.sleep(0.2)
        started = children(dev.pid)
        assert started
        for pid in started:
            leaked = {"PORT", "HOST"} & environment(pid).keys()
            assert not leaked, f"{leaked} reached {Path(f'/proc/{pid}/cmdline').read_bytes()[:120]!r}"

        base = f"http://127.0.0.1:{ports['PORT']}"
        health = requests.get(f"{base}/health", timeout=30)
        assert health.status_code == 200, health.text
        assert health.json()["checks"] == {"firestore": "ok", "queue": "ok", "ai": "ok", "catalog": "ok"}
        for name in FUNCTIONS:
            path = "docs/openapi.json" if name == "docs" else name
            response = requests.get(f"{base}/{path}", timeout=30)
            assert response.headers["Content-Type"].startswith("application/json"), name
            assert (response.json().get("error") or {}).get("code") != "unknown_function", name

        # The scheduler's stand-in swept once at start, with the stack's own secret.
        log = run_dir(ports["PORT"]) / "logs" / "functions.log"
        while not swept(log):
            assert time.monotonic() < deadline, log.read_text(errors="replace")[-2000:]
            time.sleep(0.2)

        # A second scripts/dev on the same ports says so and leaves the first alone.
        second = subprocess.run(
            [str(ROOT / ".venv" / "bin" / "python"), "scripts/dev.py"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 1 and "already running" in second.stdout, second.stdout + second.stderr
        assert requests.get(f"{base}/health", timeout=30).status_code == 200
    finally:
        os.kill(dev.pid, signal.SIGTERM)
        try:
            dev.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(dev.pid, signal.SIGKILL)
            raise
    assert dev.returncode == 0, out.read_text(errors="replace")
    assert [pid for pid in started if alive(pid)] == []
    assert [port for port in ports.values() if port_in_use(port)] == []
