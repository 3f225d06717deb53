"""Make an admin or grant credits on the running dev stack (see ``scripts/grant``).

    scripts/grant --make-admin USERNAME
    scripts/grant USERNAME AMOUNT --reason TEXT [--grant-id ID]

It writes to the Firestore emulator of ``scripts/dev`` directly rather than calling
``/admin``: the first admin cannot be made through an API that needs an admin. A grant goes
through ``shared.credits.grant`` like ``POST /admin/credits`` (balance, ledger and usage in one
commit, idempotent by ``--grant-id``), recorded with ``admin_id`` ``cli``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from scripts.stack import PROJECT, ROOT, port_in_use

CLI_ADMIN_ID = "cli"


def _dev_firestore_port() -> int:
    """The Firestore emulator port ``scripts/dev`` uses (``firebase.json``)."""
    emulators = json.loads((ROOT / "firebase.json").read_text())["emulators"]
    return int(emulators["firestore"]["port"])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scripts/grant",
        description="Make an admin, or grant (negative: remove) credits, on the running dev stack.",
    )
    parser.add_argument("username", nargs="?", help="who gets the credits")
    parser.add_argument("amount", nargs="?", type=int, help="credits to add; negative removes")
    parser.add_argument("--make-admin", metavar="USERNAME", help="give USERNAME the admin role")
    parser.add_argument("--reason", help="why (1-200 characters; required for a grant)")
    parser.add_argument("--grant-id", help="makes a repeat harmless (default: a new random id)")
    parser.add_argument("--firestore-port", type=int, help="the emulator's port (default: firebase.json's)")
    return parser


def _check_usage(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.make_admin is not None:
        if args.username is not None or args.reason is not None or args.grant_id is not None:
            parser.error("--make-admin takes only a username")
    elif args.username is None or args.amount is None or args.reason is None:
        parser.error("give --make-admin USERNAME, or USERNAME AMOUNT --reason TEXT")


def _use_emulator(port: int) -> None:
    """Point ``shared`` at the emulator; must run before anything from ``shared`` is imported."""
    os.environ["APP_ENV"] = "local"
    os.environ["FIRESTORE_EMULATOR_HOST"] = f"127.0.0.1:{port}"
    os.environ["GOOGLE_CLOUD_PROJECT"] = PROJECT


def _make_admin(username: str) -> str:
    from shared import auth

    auth.set_role(username, "admin")
    return f"{username.lower()} is an admin"


def _grant(args: argparse.Namespace) -> str:
    from pydantic import ValidationError

    from shared import credits
    from shared.errors import InvalidRequest

    grant_id = args.grant_id or f"cli-{uuid.uuid4().hex}"
    body = {"username": args.username, "amount": args.amount, "reason": args.reason, "grant_id": grant_id}
    try:
        order = credits.GrantCreate.model_validate(body)
    except ValidationError as exc:
        problems = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_input=False)]
        raise InvalidRequest("; ".join(problems)) from None
    result = credits.grant(order, CLI_ADMIN_ID)
    note = " (a repeat of this grant id: nothing changed)" if result.replayed else ""
    return result.model_dump_json() + note


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 done, 1 refused or no emulator, 2 bad arguments (argparse)."""
    parser = _parser()
    args = parser.parse_args(argv)
    _check_usage(parser, args)
    port = args.firestore_port or _dev_firestore_port()
    if not port_in_use(port):
        print(f"no Firestore emulator on 127.0.0.1:{port}: start scripts/dev first", file=sys.stderr)
        return 1
    _use_emulator(port)
    from shared.errors import AppError

    try:
        print(_make_admin(args.make_admin) if args.make_admin is not None else _grant(args))
    except AppError as exc:
        print(f"refused: {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
