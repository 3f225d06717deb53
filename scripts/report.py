"""Trigger ``weekly_report`` on the running dev stack as Cloud Scheduler would; print the report."""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from scripts.dev import run_dir  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--week", help="ISO week like 2026-W47 (default: the last complete week)")
    args = parser.parse_args()
    port = int(
        os.environ.get("PORT")
        or json.loads((ROOT / "firebase.json").read_text())["emulators"]["functions"]["port"]
    )
    secret_file = run_dir(port) / "internal-secret"
    secret = os.environ.get("WORKER_SECRET") or (
        secret_file.read_text().strip() if secret_file.exists() else ""
    )
    if not secret:
        print(f"scripts/dev is not running (no {secret_file}): start it first", file=sys.stderr)
        return 1
    body = json.dumps({"week": args.week} if args.week else {}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/weekly_report",
        data=body,
        headers={
            "Content-Type": "application/json",
            "X-Aijobs-Worker-Secret": secret,
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            print(json.dumps(json.load(response), indent=2))
            return 0
    except urllib.error.HTTPError as exc:
        print(f"{exc.code}: {exc.read().decode()}", file=sys.stderr)
    except OSError as exc:
        print(f"cannot reach the dev stack on port {port}: {exc}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
