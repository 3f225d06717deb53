"""scripts/audit: books made through the real API reconcile; each kind of damage, seeded into a
throwaway emulator of its own (the suite's stays clean), is reported as exactly its one line."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import Api, internal
from fake_openai import FakeOpenAI, Status
from google.cloud import firestore
from google.cloud.firestore import FieldFilter

from scripts.audit import AuditSettings, audit, emulator_client, synthesize
from scripts.stack import PROJECT, ROOT, Stack, free_port
from shared.usage import day_of, latency_bucket, week_of

SETTINGS = AuditSettings(job_retention_days=90, queued_timeout_seconds=3600)
GRACE = timedelta(seconds=1)


# -- books made through the HTTP API, in the suite's own emulator ---------------------------------


def audit_suite_emulator() -> list[str]:
    from shared.db import client

    return audit(client(), now=datetime.now(UTC), grace=GRACE).discrepancies


def test_jobs_run_through_the_api_reconcile(api: Api, fake_ai: FakeOpenAI) -> None:
    token, _ = api.signup()
    done = [api.submit(token, task_type=t).json()["job_id"] for t in ("summarize", "generate_text")]
    assert [api.wait(token, job_id)["status"] for job_id in done] == ["completed", "completed"]
    fake_ai.script(Status(400))  # permanent: failed and refunded at once
    failed = api.submit(token).json()["job_id"]
    assert api.wait(token, failed)["status"] == "failed"
    assert audit_suite_emulator() == []


def test_cancels_replays_and_grants_through_the_api_reconcile(
    api: Api, stack: Stack, paused_queue: None
) -> None:
    from shared import auth

    token, user = api.signup()
    canceled = api.submit(token, headers={"Idempotency-Key": "audit-1"}).json()["job_id"]
    replay = api.submit(token, headers={"Idempotency-Key": "audit-1"})
    assert replay.json()["job_id"] == canceled
    assert api.call("POST", f"/jobs/{canceled}/cancel", token).status_code == 200
    delivered = api.submit(token).json()["job_id"]
    assert internal(stack, "worker", {"job_id": delivered}).json()["outcome"] == "completed"
    admin_token, admin = api.signup()
    auth.set_role(admin["username"], "admin")
    for amount, grant_id in ((7, "audit-plus"), (-2, "audit-minus")):
        order = {"username": user["username"], "amount": amount, "reason": "audit", "grant_id": grant_id}
        assert api.call("POST", "/admin/credits", admin_token, json=order).status_code == 200
    assert audit_suite_emulator() == []


# -- damage seeded into a throwaway emulator ------------------------------------------------------


@pytest.fixture(scope="module")
def throwaway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    emulator = Stack(import_dir=None, log_dir=tmp_path_factory.mktemp("audit-emulator"))
    emulator.start_firestore()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def db(throwaway: Stack) -> firestore.Client:
    """The throwaway emulator, emptied and filled with small, consistent synthetic books."""
    host = f"127.0.0.1:{throwaway.firestore_port}"
    url = f"http://{host}/emulator/v1/projects/{PROJECT}/databases/(default)/documents"
    requests.delete(url, timeout=30).raise_for_status()
    client = emulator_client(host)
    synthesize(client, users=3, jobs_per_user=10, now=datetime.now(UTC))
    assert found(client) == [], "the synthetic books should reconcile before they are damaged"
    return client


def found(client: firestore.Client) -> list[str]:
    return audit(client, now=datetime.now(UTC), settings=SETTINGS, grace=GRACE).discrepancies


def job(client: firestore.Client, status: str) -> tuple[str, dict[str, Any]]:
    (doc,) = client.collection("jobs").where(filter=FieldFilter("status", "==", status)).limit(1).get()
    return doc.id, doc.to_dict() or {}


def user(client: firestore.Client, user_id: str) -> Any:
    return client.collection("users").document(user_id)


def other_user(client: firestore.Client, user_id: str) -> str:
    return next(d.id for d in client.collection("users").stream() if d.id != user_id)


def shard(client: firestore.Client, user_id: str) -> Any:
    """A wallet shard of the user that holds credits."""
    return next(
        d.reference for d in user(client, user_id).collection("wallet").stream() if d.get("credits") > 0
    )


def balance(client: firestore.Client, user_id: str) -> int:
    return sum(d.get("credits") for d in user(client, user_id).collection("wallet").stream())


def spend(client: firestore.Client, user_id: str, credits: int) -> None:
    """Move the balance with the ledger, so only the damage under test is left to report."""
    if credits < 0:  # credits back: any shard will hold them
        user(client, user_id).collection("wallet").document("0").update(
            {"credits": firestore.Increment(-credits)}
        )
    for _ in range(credits):
        shard(client, user_id).update({"credits": firestore.Increment(-1)})


def test_balance_off_its_ledger(db: firestore.Client) -> None:
    user_id = job(db, "completed")[1]["user_id"]
    credits = balance(db, user_id)
    shard(db, user_id).update({"credits": firestore.Increment(3)})
    assert found(db) == [f"user {user_id}: credits {credits + 3}, but the ledger sums to {credits}"]


def test_negative_balance(db: firestore.Client) -> None:
    # An old adjustment (its week is past the horizon), so nothing but the sign is wrong.
    user(db, "broke").set({"username": "broke"})
    user(db, "broke").collection("wallet").document("0").set({"credits": -1})
    entry = {
        "type": "adjustment",
        "amount": -1,
        "job_id": None,
        "created_at": datetime(2020, 1, 6, tzinfo=UTC),
    }
    user(db, "broke").collection("ledger").document("grant-signup").set(entry)
    assert found(db) == ["user broke: wallet shard 0 holds -1, not a count of credits"]


def test_job_not_charged(db: firestore.Client) -> None:
    job_id, data = job(db, "completed")
    user(db, data["user_id"]).collection("ledger").document(f"charge-{job_id}").delete()
    spend(db, data["user_id"], -data["cost"])
    assert found(db) == [f"job {job_id} (user {data['user_id']}): not charged (no ledger/charge-{job_id})"]


def test_job_charged_the_wrong_amount(db: firestore.Client) -> None:
    job_id, data = job(db, "queued")
    user(db, data["user_id"]).collection("ledger").document(f"charge-{job_id}").update(
        {"amount": -data["cost"] - 1}
    )
    spend(db, data["user_id"], 1)
    assert found(db) == [
        f"job {job_id} (user {data['user_id']}): charged {data['cost'] + 1}, but it costs {data['cost']}"
    ]


def test_failed_job_not_refunded(db: firestore.Client) -> None:
    job_id, data = job(db, "failed")
    user(db, data["user_id"]).collection("ledger").document(f"refund-{job_id}").delete()
    spend(db, data["user_id"], data["cost"])
    assert found(db) == [
        f"job {job_id} (user {data['user_id']}): failed but not refunded (no ledger/refund-{job_id})"
    ]


def test_completed_job_refunded(db: firestore.Client) -> None:
    job_id, data = job(db, "completed")
    refund = {"type": "refund", "amount": data["cost"], "job_id": job_id, "created_at": data["updated_at"]}
    user(db, data["user_id"]).collection("ledger").document(f"refund-{job_id}").set(refund)
    spend(db, data["user_id"], -data["cost"])
    assert found(db) == [
        f"job {job_id} (user {data['user_id']}): completed but refunded (ledger/refund-{job_id})"
    ]


def test_charge_on_another_users_ledger(db: firestore.Client) -> None:
    job_id, data = job(db, "canceled")
    other = other_user(db, data["user_id"])
    charge = {"type": "charge", "amount": -data["cost"], "job_id": job_id, "created_at": data["created_at"]}
    user(db, other).collection("ledger").document(f"charge-{job_id}").set(charge)
    spend(db, other, data["cost"])
    assert found(db) == [
        f"user {other} ledger/charge-{job_id}: job {job_id} belongs to user {data['user_id']}"
    ]


def test_charge_without_its_job_unless_ttl_took_it(db: firestore.Client) -> None:
    user_id = job(db, "completed")[1]["user_id"]
    ledger = user(db, user_id).collection("ledger")
    recent, old = "a" * 32, "b" * 32
    for job_id, at in ((recent, datetime.now(UTC)), (old, datetime.now(UTC) - timedelta(days=91))):
        ledger.document(f"charge-{job_id}").set(
            {"type": "charge", "amount": -1, "job_id": job_id, "created_at": at}
        )
    spend(db, user_id, 2)
    assert found(db) == [f"user {user_id} ledger/charge-{recent}: job {recent} does not exist"]


def test_entry_type_not_its_id(db: firestore.Client) -> None:
    job_id, data = job(db, "completed")
    user(db, data["user_id"]).collection("ledger").document(f"charge-{job_id}").update({"type": "refund"})
    assert found(db) == [
        f"user {data['user_id']} ledger/charge-{job_id}: type 'refund' does not match its id"
    ]


def day_shards(client: firestore.Client, user_id: str, at: datetime) -> list[Any]:
    days = user(client, user_id).collection("usage_days")
    return [d for d in days.where(filter=FieldFilter("day", "==", day_of(at))).stream()]


def test_day_counter_off_its_jobs(db: firestore.Client) -> None:
    _, data = job(db, "completed")
    shards = day_shards(db, data["user_id"], data["created_at"])
    charged = sum(d.get("charged") or 0 for d in shards)
    shards[-1].reference.update({"charged": firestore.Increment(1)})
    # Days past the retention horizon are not checked: TTL may have taken their jobs.
    old = datetime.now(UTC) - timedelta(days=120)
    user(db, data["user_id"]).collection("usage_days").document(f"{day_of(old)}-0").set(
        {"user_id": data["user_id"], "day": day_of(old), "week": week_of(old), "charged": 99}
    )
    where = f"user {data['user_id']} usage_days/{day_of(data['created_at'])}-*"
    assert found(db) == [f"{where}: charged is {charged + 1}, expected {charged}"]


def test_day_counter_missing(db: firestore.Client) -> None:
    _, data = job(db, "completed")
    counts: dict[str, dict[str, int]] = {"credits": {}, "jobs": {}}
    for shard in day_shards(db, data["user_id"], data["created_at"]):
        for field in counts:
            for task_type, n in (shard.get(field) or {}).items():
                counts[field][task_type] = counts[field].get(task_type, 0) + n
        shard.reference.delete()
    expected = sorted(
        f"{field}.{task_type} is 0, expected {n}"
        for field in ("credits", "jobs")
        for task_type, n in counts[field].items()
        if n
    )
    where = f"user {data['user_id']} usage_days/{day_of(data['created_at'])}-* (missing)"
    assert [line.split(": ", 1)[0] for line in found(db)] == [where]
    assert set(expected) <= set(found(db)[0].split(": ", 1)[1].split("; "))


def test_day_shard_with_the_wrong_keys(db: firestore.Client) -> None:
    _, data = job(db, "completed")
    shard = day_shards(db, data["user_id"], data["created_at"])[0]
    shard.reference.update({"week": "2001-W01"})
    copy = user(db, data["user_id"]).collection("usage_days").document("yesterday-1")
    copy.set({"user_id": data["user_id"]})
    right = week_of(data["created_at"])
    assert sorted(found(db)) == sorted(
        [
            f"user {data['user_id']} usage_days/yesterday-1: not a day shard id (YYYY-MM-DD-N)",
            f"user {data['user_id']} usage_days/{shard.id}: week is '2001-W01', expected '{right}'",
        ]
    )


def test_completed_job_in_the_wrong_latency_bucket(db: firestore.Client) -> None:
    job_id, data = job(db, "completed")
    db.collection("jobs").document(job_id).update({"completed_at": data["created_at"] + timedelta(hours=5)})
    bucket = latency_bucket(5 * 3600)
    assert found(db) == [
        f"job {job_id} (user {data['user_id']}): latency_bucket {data['latency_bucket']!r},"
        f" expected {bucket!r}"
    ]


def test_job_queued_past_the_timeout(db: firestore.Client) -> None:
    job_id, data = job(db, "queued")
    since = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=3600 + 60)
    db.collection("jobs").document(job_id).update({"updated_at": since})
    stamp = since.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert found(db) == [
        f"job {job_id} (user {data['user_id']}): queued since {stamp}, past QUEUED_TIMEOUT_SECONDS"
    ]


def test_job_running_past_its_lease(db: firestore.Client) -> None:
    job_id, data = job(db, "in_progress")
    expired = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    db.collection("jobs").document(job_id).update({"lease_expires_at": expired})
    stamp = expired.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert found(db) == [
        f"job {job_id} (user {data['user_id']}): in_progress, but its lease expired at {stamp}"
    ]
    # Within the grace (the sweeper's interval) it is not stuck yet.
    assert audit(db, now=datetime.now(UTC), settings=SETTINGS, grace=timedelta(minutes=5)).discrepancies == []


def test_idempotency_record_of_a_missing_or_foreign_job(db: firestore.Client) -> None:
    (record,) = db.collection("idempotency").limit(1).get()
    owner = record.get("user_id")
    other = other_user(db, owner)
    (second,) = db.collection("idempotency").where(filter=FieldFilter("user_id", "==", other)).limit(1).get()
    record.reference.update({"user_id": other})
    second.reference.update({"job_id": "0" * 32})
    assert sorted(found(db)) == sorted(
        [
            f"idempotency/{record.id} (user {other}): job {record.get('job_id')} belongs to user {owner}",
            f"idempotency/{second.id} (user {other}): job {'0' * 32} does not exist",
        ]
    )


def test_grant_record_off_its_ledger_entry(db: firestore.Client) -> None:
    (record,) = db.collection("grants").where(filter=FieldFilter("type", "==", "grant")).limit(1).get()
    record.reference.update({"amount": record.get("amount") + 1})
    user_id = record.get("user_id")
    db.collection("grants").document("c" * 64).set({"user_id": user_id, "amount": 5})
    assert sorted(found(db)) == sorted(
        [
            f"grants/{'c' * 64} (user {user_id}): no ledger/grant-{'c' * 64}",
            f"grants/{record.id} (user {user_id}): amount {record.get('amount') + 1}, the ledger says"
            f" {record.get('amount')}",
        ]
    )


# -- the command line -----------------------------------------------------------------------------


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "audit.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
    )


def test_cli_exit_status_and_output(db: firestore.Client, throwaway: Stack) -> None:
    host = f"127.0.0.1:{throwaway.firestore_port}"
    clean = run_cli("--emulator", host, "--grace", "1")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    (summary,) = clean.stdout.splitlines()
    assert summary.startswith("audit: 3 users, ") and " checked: 0 discrepancies (" in summary

    user_id = job(db, "completed")[1]["user_id"]
    shard(db, user_id).update({"credits": firestore.Increment(1)})
    env = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), "FIRESTORE_EMULATOR_HOST": host}
    damaged = run_cli(env=env)  # no flag: the emulator FIRESTORE_EMULATOR_HOST names
    assert damaged.returncode == 1, damaged.stdout + damaged.stderr
    line, summary = damaged.stdout.splitlines()
    assert line.startswith(f"user {user_id}: credits ") and ", but the ledger sums to " in line
    assert summary.startswith("audit: 3 users, ") and " checked: 1 discrepancies (" in summary

    nothing = run_cli("--emulator", f"127.0.0.1:{free_port()}")
    assert nothing.returncode == 2 and nothing.stdout.startswith("audit: no Firestore emulator at 127.0.0.1:")
