"""Run the whole local stack in the foreground until Ctrl-C (see ``scripts/dev``)."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import sys
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from scripts.stack import ROOT, ConsoleServer, Stack, StackError, console_config, free_port, port_in_use

WORKER_SECRET_HEADER = "X-Aijobs-Worker-Secret"  # = shared.internal_auth.WORKER_SECRET_HEADER
SWEEP_SECONDS = 60.0


def _ports() -> dict[str, int]:
    """``PORT`` moves the functions; the other parts have their own variables, so a second stack
    can run beside a developer's (the tests do)."""
    emulators = json.loads((ROOT / "firebase.json").read_text())["emulators"]
    return {
        "functions": int(os.environ.get("PORT", emulators["functions"]["port"])),
        "firestore": int(os.environ.get("FIRESTORE_PORT", emulators["firestore"]["port"])),
        "tasks": int(os.environ.get("TASKS_PORT", emulators["tasks"]["port"])),
        "auth": int(os.environ.get("AUTH_PORT", emulators["auth"]["port"])),
        "model": int(os.environ.get("MODEL_PORT", 8090)),
        "storage": int(os.environ.get("STORAGE_PORT", 9023)),
        # The web console: Firebase Hosting's emulator port (the static server stands in for it);
        # unset and taken (another stack's console), any free one: the banner prints it.
        "console": int(os.environ.get("CONSOLE_PORT") or (5000 if not port_in_use(5000) else free_port())),
    }


def run_dir(functions_port: int) -> Path:
    """Where one dev stack keeps its lock, logs and secret: ``.run/`` on the default port (where
    ``scripts/report`` looks), ``.run/port-<N>/`` on another, so stacks side by side share none."""
    default = json.loads((ROOT / "firebase.json").read_text())["emulators"]["functions"]["port"]
    return ROOT / ".run" if functions_port == int(default) else ROOT / ".run" / f"port-{functions_port}"


def _sweep_every(base: str, secret: str, stop: threading.Event) -> None:
    """Stand in for Cloud Scheduler's sweep job: POST /sweep_jobs as it would, now and every minute."""
    while True:
        request = urllib.request.Request(
            f"{base}/sweep_jobs", data=b"", method="POST", headers={WORKER_SECRET_HEADER: secret}
        )
        try:
            with urllib.request.urlopen(request, timeout=SWEEP_SECONDS) as response:
                moved = json.load(response)
            if any(moved.values()):
                print(f"sweep_jobs: {moved}", flush=True)
        except Exception as exc:  # whatever it was, the next minute tries again; the stack runs on
            if not stop.is_set():
                print(f"sweep_jobs failed: {exc}", file=sys.stderr, flush=True)
        if stop.wait(SWEEP_SECONDS):
            return


def main() -> int:
    ports = _ports()
    run = run_dir(ports["functions"])
    run.mkdir(parents=True, exist_ok=True)
    lock = (run / "dev.lock").open("a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        pid = lock.read().strip() or "?"
        print(f"scripts/dev is already running on port {ports['functions']} (pid {pid}); stop it first.")
        return 1
    lock.seek(0)
    lock.truncate()
    lock.write(str(os.getpid()))
    lock.flush()

    ai_base_url = os.environ.get("AI_BASE_URL") or None
    extra = {k: os.environ[k] for k in ("AI_API_KEY", "AI_MODEL", "AI_IMAGE_MODEL") if k in os.environ}
    stack = Stack(
        functions_port=ports["functions"],
        firestore_port=ports["firestore"],
        tasks_port=ports["tasks"],
        auth_port=ports["auth"],
        model_port=ports["model"],
        storage_port=ports["storage"],
        log_dir=run / "logs",
        ai_base_url=ai_base_url,
        extra_env=extra,
    )
    # Ctrl-C and SIGTERM both end up in the finally below, which stops every child by PID.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # Explicit, because a shell starts background jobs with SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    secret_file = run / "internal-secret"
    stop_sweeping = threading.Event()
    console: ConsoleServer | None = None
    try:
        print(
            "==> starting Firestore emulator, Cloud Tasks emulator, Firebase Auth emulator"
            + (", local model server" if ai_base_url is None else "")
            + ", functions, web console"
        )
        stack.start()
        # scripts/report calls the scheduled functions the way Cloud Scheduler would.
        secret_file.touch(mode=0o600)
        secret_file.write_text(stack.worker_secret)
        base = stack.base_url
        config = console_config(base, f"127.0.0.1:{stack.auth_port}")
        console = ConsoleServer(config, port=ports["console"]).start()
        print(
            f"""
aijobs is running (logs in {(run / "logs").relative_to(ROOT)}/):
  web console      {console.url}/   (web/, config.json generated for this stack)
  functions        {base}/<function>   ({", ".join(_function_names())})
  Firestore        127.0.0.1:{stack.firestore_port}  (emulator, data from emulator-export/)
  Cloud Tasks      127.0.0.1:{stack.tasks_port}  (emulator, queues {stack.queue}, {stack.webhook_queue})
  Firebase Auth    127.0.0.1:{stack.auth_port}  (emulator: its ID tokens are bearers too, see the README)
  Cloud Storage    127.0.0.1:{stack.storage_port}  (emulator, in memory: images last as long as it runs)
  AI endpoint      {stack.env()["AI_BASE_URL"]}
  API docs         {base}/docs  (OpenAPI 3.1: {base}/docs/openapi.json)

Try it:
  curl -s -X POST {base}/signup -H 'Content-Type: application/json' \\
       -d '{{"username": "alice", "password": "correct horse"}}'
  curl -s -X POST {base}/submit_job -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \\
       -d '{{"task_type": "summarize", "input_data": "Cloud Functions run code on demand."}}'

sweep_jobs runs every {SWEEP_SECONDS:.0f} s, as Cloud Scheduler would run it. Ctrl-C stops everything.""",
            flush=True,
        )
        sweeper = threading.Thread(target=_sweep_every, args=(base, stack.worker_secret, stop_sweeping))
        sweeper.daemon = True  # a sweep in flight must not hold up the exit
        sweeper.start()
        while True:
            for process in stack.processes:
                if process.popen.poll() is not None:
                    raise StackError(f"{process.name} stopped unexpectedly:\n{process.tail()}")
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\n==> stopping")
        return 0
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        stop_sweeping.set()
        if console is not None:
            console.stop()
        stack.stop()
        secret_file.unlink(missing_ok=True)


def _function_names() -> list[str]:
    return sorted(p.stem for p in (ROOT / "functions").glob("*.py") if not p.stem.startswith("_"))


if __name__ == "__main__":
    sys.exit(main())
