"""Write ``openapi.json``: the document ``GET /docs/openapi.json`` serves, for the local stack."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

COMMITTED = ROOT / "openapi.json"
LOCAL_SERVER = "http://127.0.0.1:8080"
"""The server in the committed copy: the local stack's default address."""


def generated() -> str:
    from shared.openapi import document

    return json.dumps(document(LOCAL_SERVER), indent=2) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if openapi.json is not up to date")
    args = parser.parse_args()
    text = generated()
    if args.check:
        if COMMITTED.read_text() != text:
            print("openapi.json is out of date: run scripts/openapi and commit it", file=sys.stderr)
            return 1
        return 0
    COMMITTED.write_text(text)
    print(f"wrote {COMMITTED.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
