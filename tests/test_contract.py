"""The contract, enforced: schemathesis calls every public operation of the running stack.

Every check is on (``--checks all``); the few statuses a schema-valid request may still get,
and why, are in ``tests/schemathesis.toml``. The token is an admin's, so the admin operations
are exercised too, and so is every user operation (an admin is a user).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, Api

from scripts.stack import Stack
from shared.openapi import OPERATIONS

CONFIG = ROOT / "tests" / "schemathesis.toml"
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
EXAMPLES = os.environ.get("CONTRACT_EXAMPLES", "25")
"""Cases per operation and phase; the run takes about 15 s with the default."""


def test_every_operation_keeps_the_documented_contract(stack: Stack, api: Api, tmp_path: Path) -> None:
    from shared import auth

    token, user = api.signup()
    auth.set_role(user["username"], "admin")
    command = [
        str(SCHEMATHESIS),
        "--config-file",
        str(CONFIG),
        "run",
        str(ROOT / "openapi.json"),
        "--url",
        stack.base_url,
        "--header",
        f"Authorization: Bearer {token}",
        "--checks",
        "all",
        "--max-examples",
        EXAMPLES,
        # One worker: with several, hypothesis's lambda descriptions (ast.parse in threads) trip
        # a CPython 3.11 check ("AST constructor recursion depth mismatch") now and then.
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--no-color",
    ]
    # Its own directory: schemathesis keeps a database of examples and reports where it runs.
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    (tmp_path / "schemathesis.txt").write_text(run.stdout + run.stderr)
    found = [run.stdout.find(h) for h in ("= ERRORS =", "= FAILURES =") if h in run.stdout]
    summary = run.stdout[min(found) :][:12000] if found else run.stdout[-3000:]
    assert run.returncode == 0, summary
    assert f"Tested: {len(OPERATIONS)}" in run.stdout, summary  # every operation in the document
    assert " passed" in run.stdout and "failure" not in run.stdout.rsplit("SUMMARY", 1)[-1], summary
