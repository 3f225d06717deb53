"""Write the initial data into a fresh Firestore emulator and export it to ``emulator-export/``.

Seeds the task-type catalog, an admin and a demo user (credentials in the README), and
five weeks of history for a few users, with a spike in the last complete week, so the
weekly report has something to show. Every balance, ledger entry and counter is written
through ``shared.credits`` and ``shared.usage``, as the service itself would.
``scripts/dev`` and the tests start the emulator from the export.
"""

from __future__ import annotations

import os
import random
import shutil
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from scripts.stack import ROOT, Stack

EXPORT = ROOT / "emulator-export"
ADMIN = ("admin", "admin-password-1")
DEMO = ("demo", "demo-password-1")
REGULARS = ["ana", "ben", "chen", "dara", "eli"]
TASKS = ["summarize", "translate", "generate_text", "chat"]


def account(username: str, password: str) -> str:
    from shared import auth

    user, _ = auth.signup(auth.UserCredentials(username=username, password=password))
    return user.id


def top_up(username: str, amount: int) -> None:
    from shared import credits

    order = credits.GrantCreate(
        username=username, amount=amount, reason="seed data", grant_id=f"seed-{username}"
    )
    credits.grant(order, admin_id="seed")


Status = Literal["queued", "completed", "failed", "canceled"]


def past_job(user_id: str, task_type: str, at: datetime, status: Status, seconds: float = 1.0) -> str:
    """One job of 1 credit as the service would have recorded it, submitted at ``at`` and, unless
    still ``queued``, ended ``seconds`` later; returns its id."""
    from shared import credits, usage
    from shared.db import client

    db, job_id, done = client(), uuid.uuid4().hex, at + timedelta(seconds=seconds)
    queued, completed = status == "queued", status == "completed"
    batch = db.batch()
    shard = credits.stage_charge(batch, user_id, 1, job_id, at, credits.width(credits.balance(user_id)))
    usage.stage_submitted_unguarded(batch, user_id, task_type, 1, at, shard)
    text = "Seeded example input." if task_type != "chat" else [{"role": "user", "content": "Hello!"}]
    options = {"target_language": "French"} if task_type == "translate" else {}
    job = {
        "task_type": task_type,
        "input_data": text,
        "options": options,
        "user_id": user_id,
        "cost": 1,
        "status": status,
        "attempts": 0 if queued else 1,
        "lease_id": None,
        "lease_expires_at": None,
        "output": {"text": "Seeded example output."} if completed else None,
        "error": None if queued or completed else {"code": "ai_server_error", "message": "seeded failure"},
        "created_at": at,
        "updated_at": at if queued else done,
        "expires_at": at + timedelta(days=90),
        "shard": shard,
    }
    if completed:  # what the worker's finish records, so the report needs no counter write
        job |= {"completed_at": done, "latency_bucket": usage.latency_bucket(seconds)}
    batch.create(db.collection("jobs").document(job_id), job)
    batch.commit()
    if status in ("failed", "canceled"):  # a commit of its own, as the worker's finish is
        refund = db.batch()
        credits.stage_refund(refund, user_id, 1, job_id, done, shard)
        usage.stage_refunded(refund, user_id, task_type, status, 1, at, shard)
        refund.commit()
    return job_id


def history(users: dict[str, str], spiker: str) -> str:
    """Five weeks of steady use, then ``spiker`` jumps in the last complete week; returns that week."""
    from shared import reports, usage

    rng = random.Random(47)
    now = datetime.now(UTC)
    last = reports.last_complete_week(now)
    for back in range(5, 0, -1):
        start = reports.week_start(last) - timedelta(weeks=back - 1)
        plan = {name: rng.randint(2, 4) for name in REGULARS}
        if back == 1:
            plan[spiker] = 30
        for name, count in plan.items():
            for _ in range(count):
                at = start + timedelta(seconds=rng.randint(0, 7 * 86400 - 3600))
                status: Status = "failed" if rng.random() < 0.1 else "completed"
                past_job(users[name], rng.choice(TASKS), at, status, rng.uniform(1, 40))
    assert usage.week_of(reports.week_start(last)) == last
    return last


def main() -> None:
    stack = Stack(import_dir=None, log_dir=ROOT / ".run" / "seed-logs")
    stack.start_firestore()
    try:
        os.environ.update(stack.env())
        from shared import auth
        from shared.catalog import DEFAULT_CATALOG, catalog_ref

        catalog_ref().set(DEFAULT_CATALOG)
        account(*ADMIN)
        auth.set_role(ADMIN[0], "admin")
        users = {DEMO[0]: account(*DEMO)}
        for name in REGULARS:
            users[name] = account(name, f"{name}-password-1")
        for name in users:
            top_up(name, 50)
        spike_week = history(users, spiker=DEMO[0])
        shutil.rmtree(EXPORT, ignore_errors=True)
        stack.export(EXPORT)
        print(
            f"seeded: catalog, admin and demo users, 5 weeks of history (spike in {spike_week});"
            f" exported to {EXPORT.relative_to(ROOT)}/"
        )
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
