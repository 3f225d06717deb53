"""The weekly report against hand-computed weeks, its anomaly thresholds, and GET /usage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from conftest import STACK_SECRET, Api, internal
from fake_openai import FakeOpenAI, Status

from scripts.seed import Status as JobStatus
from scripts.seed import past_job
from scripts.stack import Stack

pytestmark = pytest.mark.usefixtures("stack")


def monday(week: str) -> datetime:
    from shared.reports import week_start

    return week_start(week)


def user(username: str, created: datetime, credits: int = 10) -> str:
    """A user document as signup writes it (profile, balance, grant), dated ``created``."""
    from shared import credits as wallet
    from shared.db import client

    user_id = f"report-{username}"
    batch = client().batch()
    profile = {"username": username, "password_hash": "x", "role": "user", "created_at": created}
    wallet.stage_open_account(batch, user_id, profile, credits, created)
    batch.commit()
    return user_id


def jobs(
    user_id: str, at: datetime, task_type: str, status: JobStatus, n: int = 1, seconds: float = 1.0
) -> None:
    """``n`` jobs submitted at ``at`` that reached ``status`` ``seconds`` later: charged, counted
    and (failed or canceled) refunded as the service records them."""
    for _ in range(n):
        past_job(user_id, task_type, at, status, seconds)


def run_report(stack: Stack, week: str | None = None, secret: str | None = STACK_SECRET) -> requests.Response:
    return internal(stack, "weekly_report", None if week is None else {"week": week}, secret)


def test_report_matches_a_hand_computed_week(stack: Stack) -> None:
    week = "2021-W10"
    start = monday(week)
    alice = user("rep_alice", start + timedelta(days=1))
    bob = user("rep_bob", start - timedelta(days=30))
    user("rep_carol", start + timedelta(days=6, hours=23))
    user("rep_dave", start + timedelta(days=7))  # next week: not a signup of this one
    tue, sun = start + timedelta(days=1, hours=9), start + timedelta(days=6, hours=23, minutes=59)
    jobs(alice, tue, "summarize", "completed", seconds=1.5)
    jobs(alice, tue, "summarize", "completed", seconds=3)
    jobs(alice, sun, "summarize", "completed", seconds=8)
    jobs(alice, tue, "translate", "failed")
    jobs(alice, tue, "chat", "canceled")
    jobs(bob, tue, "generate_text", "completed", seconds=0.05)
    jobs(bob, sun, "generate_text", "completed", seconds=40)
    jobs(bob, tue, "summarize", "failed")
    jobs(bob, start - timedelta(seconds=1), "summarize", "completed")  # the Sunday before
    jobs(bob, start + timedelta(weeks=1), "summarize", "completed")  # the Monday after

    response = run_report(stack, week)
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["week"] == week and report["start"] == "2021-03-08T00:00:00Z"
    assert report["end"] == "2021-03-15T00:00:00Z"
    assert report["jobs"] == {
        "submitted": 8,
        "completed": 5,
        "failed": 2,
        "canceled": 1,
        "by_task_type": {
            "chat": {"submitted": 1, "completed": 0, "failed": 0, "canceled": 1},
            "generate_text": {"submitted": 2, "completed": 2, "failed": 0, "canceled": 0},
            "summarize": {"submitted": 4, "completed": 3, "failed": 1, "canceled": 0},
            "translate": {"submitted": 1, "completed": 0, "failed": 1, "canceled": 0},
        },
    }
    # alice and carol signed up this week (10 each); bob's grant was a month before.
    assert report["credits"] == {"charged": 8, "refunded": 3, "granted": 20, "adjusted": 0}
    assert report["active_users"] == 2 and report["new_signups"] == 2
    assert report["top_users"] == [
        {"user_id": alice, "username": "rep_alice", "credits_spent": 3, "jobs": 5},
        {"user_id": bob, "username": "rep_bob", "credits_spent": 2, "jobs": 3},
    ]
    assert report["failure_rate"] == round(2 / 7, 4)
    # Latencies 0.05, 1.5, 3, 8, 40 s fall in buckets up to 0.1, 2, 5, 10, 50 s.
    assert report["completion_seconds"] == {"p50": 5, "p95": 50, "measured": 5}
    assert report["anomalies"] == []
    assert report["thresholds"] == {"ratio": 2.0, "min_jobs": 20, "baseline_weeks": 4}


def test_report_is_stored_and_reruns_are_idempotent(stack: Stack) -> None:
    from shared.db import client

    week = "2021-W20"
    jobs(user("rep_erin", monday(week)), monday(week) + timedelta(hours=5), "chat", "completed", n=3)
    first = run_report(stack, week).json()
    stored = client().collection("reports").document(week).get()
    assert stored.to_dict() == first
    again = run_report(stack, week).json()
    assert again == first
    assert client().collection("reports").document(week).get().to_dict() == first
    assert [d.id for d in client().collection("reports").stream()].count(week) == 1


# Each case, in a window of its own: job counts of the previous 4 weeks, then this week's.
THRESHOLDS = {
    "exactly 2x is not a spike": (2010, [10, 10, 10, 10], 20, False),
    "just over 2x is": (2011, [10, 10, 10, 10], 21, True),
    "below the minimum volume is not": (2012, [5, 5, 5, 5], 19, False),
    "at the minimum volume is": (2013, [5, 5, 5, 5], 20, True),
    "no history, at the minimum": (2014, [0, 0, 0, 0], 20, True),
    "no history, below the minimum": (2015, [0, 0, 0, 0], 19, False),
    "uneven history": (2016, [0, 0, 40, 0], 21, True),
}


@pytest.mark.parametrize("case", list(THRESHOLDS))
def test_anomaly_thresholds(stack: Stack, case: str) -> None:
    year, past, now_count, flagged = THRESHOLDS[case]
    week = f"{year}-W30"
    uid = user(f"rep_spiky_{year}", monday(week) - timedelta(weeks=10), credits=100)
    for back, count in zip(range(4, 0, -1), past, strict=True):
        jobs(
            uid, monday(week) - timedelta(weeks=back) + timedelta(hours=1), "summarize", "completed", n=count
        )
    jobs(uid, monday(week) + timedelta(hours=1), "summarize", "completed", n=now_count)
    anomalies = run_report(stack, week).json()["anomalies"]
    # One user is the whole service here, so both scopes see the same numbers.
    assert [a["scope"] for a in anomalies] == (["service", "user"] if flagged else [])
    if flagged:
        service, person = anomalies
        baseline = sum(past) / 4
        assert person["user_id"] == uid and service["user_id"] is None
        assert person["value"] == service["value"] == now_count and person["baseline"] == baseline
        assert person["ratio"] == (round(now_count / baseline, 2) if baseline else None)
        assert f"rep_spiky_{year}" in person["message"]


def test_report_requests_that_are_refused(stack: Stack) -> None:
    from shared.db import client

    before = {d.id for d in client().collection("reports").stream()}
    assert run_report(stack, "2021-W10", secret=None).status_code == 401
    assert run_report(stack, "2021-W10", secret="wrong").status_code == 403
    for week in ("2021-10", "2021-W54", "W10-2021", "2020-W53x"):
        response = run_report(stack, week)
        assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_request", week
    from shared.usage import week_of

    current = run_report(stack, week_of(datetime.now(UTC)))
    assert current.status_code == 422 and current.json()["error"]["code"] == "week_not_complete"
    assert {d.id for d in client().collection("reports").stream()} == before


def test_default_week_is_the_last_complete_one(stack: Stack) -> None:
    from shared.usage import week_of

    response = run_report(stack)  # no body at all, as Cloud Scheduler may send
    assert response.status_code == 200, response.text
    assert response.json()["week"] == week_of(datetime.now(UTC) - timedelta(weeks=1))


def test_counters_follow_the_real_flow(api: Api, fake_ai: FakeOpenAI) -> None:
    from google.cloud.firestore import FieldFilter

    from shared import usage
    from shared.db import client

    token, account = api.signup()
    fake_ai.script(Status(400))
    failed = api.submit(token, "translate", "hello", {"target_language": "German"}).json()["job_id"]
    assert api.wait(token, failed)["status"] == "failed"
    for _ in range(2):
        assert api.wait(token, api.submit(token).json()["job_id"])["status"] == "completed"

    today = datetime.now(UTC).date()
    week: dict[str, Any] = {}
    for shard in (
        usage.days(account["id"]).where(filter=FieldFilter("week", "==", usage.week_of(today))).stream()
    ):
        usage.add(week, shard.to_dict() or {})
    assert week["jobs_total"] == 3 and week["jobs"] == {"translate": 1, "summarize": 2}
    assert week["failed"] == {"translate": 1} and "canceled" not in week
    assert (week["charged"], week["refunded"], week["spent"], week["granted"]) == (3, 1, 2, 10)
    # Completions are counted from the jobs: each completed one carries its latency bucket.
    mine = client().collection("jobs").where(filter=FieldFilter("user_id", "==", account["id"])).stream()
    buckets = {d.get("status"): (d.to_dict() or {}).get("latency_bucket") for d in mine}
    assert buckets["completed"] is not None and buckets["failed"] is None

    response = api.call("GET", f"/usage?from={today}&to={today}", token)
    assert response.status_code == 200, response.text
    day = {
        "date": today.isoformat(),
        "jobs": {"summarize": 2, "translate": 1},
        "credits": {"summarize": 2, "translate": 0},
        "total_jobs": 3,
        "total_credits": 2,
    }
    assert response.json() == {
        "from": today.isoformat(),
        "to": today.isoformat(),
        "days": [day],
        "totals": {k: v for k, v in day.items() if k != "date"},
    }
    earlier = api.call(
        "GET", f"/usage?from={today - timedelta(days=30)}&to={today - timedelta(days=1)}", token
    )
    assert earlier.json()["days"] == [] and earlier.json()["totals"]["total_jobs"] == 0


@pytest.mark.parametrize(
    "query",
    [
        "",
        "from=2026-01-01",
        "from=2026-01-02&to=2026-01-01",
        "from=2025-01-01&to=2026-01-02",
        "from=yesterday&to=2026-01-01",
        "from=2026-01-01&to=2026-01-02&extra=1",
    ],
)
def test_usage_refuses_bad_ranges(api: Api, query: str) -> None:
    token, _ = api.signup()
    response = api.call("GET", f"/usage?{query}", token)
    assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_request", query


def test_usage_needs_a_token(api: Api) -> None:
    assert api.call("GET", "/usage?from=2026-01-01&to=2026-01-02").status_code == 401


def test_report_script_calls_it_like_the_scheduler(stack: Stack) -> None:
    import json
    import os
    import subprocess
    import sys

    from conftest import ROOT

    env = {**os.environ, "PORT": str(stack.functions_port), "WORKER_SECRET": stack.worker_secret}
    argv = [sys.executable, str(ROOT / "scripts" / "report.py"), "--week", "2019-W30"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["week"] == "2019-W30"
    bad = subprocess.run([*argv[:2], "--week", "nope"], env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "422" in bad.stderr
