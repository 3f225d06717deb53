"""Run the whole local stack in the foreground until Ctrl-C (see ``scripts/dev``)."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from scripts.stack import ROOT, Stack, StackError


def _ports() -> dict[str, int]:
    emulators = json.loads((ROOT / "firebase.json").read_text())["emulators"]
    return {
        "functions": int(os.environ.get("PORT", emulators["functions"]["port"])),
        "firestore": int(emulators["firestore"]["port"]),
        "tasks": int(emulators["tasks"]["port"]),
        "model": int(os.environ.get("MODEL_PORT", 8090)),
    }


def main() -> int:
    (ROOT / ".run").mkdir(exist_ok=True)
    lock = (ROOT / ".run" / "dev.lock").open("a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        print(f"scripts/dev is already running (pid {lock.read().strip() or '?'}); stop it first.")
        return 1
    lock.seek(0)
    lock.truncate()
    lock.write(str(os.getpid()))
    lock.flush()

    ai_base_url = os.environ.get("AI_BASE_URL") or None
    extra = {k: os.environ[k] for k in ("AI_API_KEY", "AI_MODEL", "AI_IMAGE_MODEL") if k in os.environ}
    ports = _ports()
    stack = Stack(
        functions_port=ports["functions"],
        firestore_port=ports["firestore"],
        tasks_port=ports["tasks"],
        model_port=ports["model"],
        ai_base_url=ai_base_url,
        extra_env=extra,
    )
    # Ctrl-C and SIGTERM both end up in the finally below, which stops every child by PID.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # Explicit, because a shell starts background jobs with SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    secret_file = ROOT / ".run" / "internal-secret"
    try:
        print(
            "==> starting Firestore emulator, Cloud Tasks emulator"
            + (", local model server" if ai_base_url is None else "")
            + ", functions"
        )
        stack.start()
        # scripts/report calls the scheduled functions the way Cloud Scheduler would.
        secret_file.touch(mode=0o600)
        secret_file.write_text(stack.worker_secret)
        base = stack.base_url
        print(
            f"""
aijobs is running (logs in .run/logs/):
  functions        {base}/<function>   ({", ".join(_function_names())})
  Firestore        127.0.0.1:{stack.firestore_port}  (emulator, data from emulator-export/)
  Cloud Tasks      127.0.0.1:{stack.tasks_port}  (emulator, queue {stack.queue})
  AI endpoint      {stack.env()["AI_BASE_URL"]}

Try it:
  curl -s -X POST {base}/signup -H 'Content-Type: application/json' \\
       -d '{{"username": "alice", "password": "correct horse"}}'
  curl -s -X POST {base}/submit_job -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \\
       -d '{{"task_type": "summarize", "input_data": "Cloud Functions run code on demand."}}'

Ctrl-C stops everything.""",
            flush=True,
        )
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
        stack.stop()
        secret_file.unlink(missing_ok=True)


def _function_names() -> list[str]:
    return sorted(p.stem for p in (ROOT / "functions").glob("*.py") if not p.stem.startswith("_"))


if __name__ == "__main__":
    sys.exit(main())
