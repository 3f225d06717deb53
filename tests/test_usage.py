"""Usage counters in day-shard documents: a hot account spreads them, a completion writes none,
the report counts completions and their times from the jobs, refunds count on the submit day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from conftest import Api, at_once, internal
from test_reports import jobs, monday, run_report, user

from scripts.seed import past_job
from scripts.stack import Stack

pytestmark = pytest.mark.usefixtures("stack")


def shards_of(user_id: str) -> dict[str, Any]:
    """Each of the user's counter documents, by id, with its last update time."""
    from shared import usage

    return {d.id: d.update_time for d in usage.days(user_id).stream()}


def summed(user_id: str, day: str) -> dict[str, Any]:
    from google.cloud.firestore import FieldFilter

    from shared import usage

    total: dict[str, Any] = {}
    for doc in usage.days(user_id).where(filter=FieldFilter("day", "==", day)).stream():
        usage.add(total, doc.to_dict() or {})
    return total


def test_a_hot_account_spreads_its_counters_and_totals_stay_exact(api: Api) -> None:
    from shared import credits, reports, usage

    token, account = api.signup()
    # Enough credits that the wallet (and so the counters) spreads over many shards.
    order = {"username": account["username"], "amount": 1270, "reason": "hot", "grant_id": "hot-usage"}
    credits.grant(credits.GrantCreate.model_validate(order), admin_id="test")
    answers = at_once(40, lambda _: api.submit(token))
    assert [a.status_code for a in answers] == [202] * 40, [a.text for a in answers if a.status_code != 202]
    for answer in answers:
        assert api.wait(token, answer.json()["job_id"])["status"] == "completed"

    today = datetime.now(UTC).date()
    days = [d for d in shards_of(account["id"]) if d.startswith(today.isoformat())]
    assert len(days) > 1, f"40 submits of a spread wallet all counted on {days}"
    day = summed(account["id"], today.isoformat())
    assert (day["jobs_total"], day["jobs"], day["credits"]) == (40, {"summarize": 40}, {"summarize": 40})
    assert (day["charged"], day["spent"], day["granted"]) == (40, 40, 1280)

    response = api.call("GET", f"/usage?from={today}&to={today}", token)
    assert response.status_code == 200, response.text
    assert response.json()["days"] == [
        {
            "date": today.isoformat(),
            "jobs": {"summarize": 40},
            "credits": {"summarize": 40},
            "total_jobs": 40,
            "total_credits": 40,
        }
    ]
    # The report sums the user's shards too: 40 jobs and no history is a spike of exactly 40.
    report = reports.build(usage.week_of(today))
    (mine,) = [a for a in report["anomalies"] if a["user_id"] == account["id"]]
    assert mine["value"] == 40 and mine["baseline"] == 0.0


def test_a_completed_job_writes_no_counter_when_it_finishes(
    api: Api, stack: Stack, paused_queue: None
) -> None:
    from shared.db import client

    token, account = api.signup()
    job_id = api.submit(token).json()["job_id"]
    before = shards_of(account["id"])
    assert before, "the submit counts the job"
    assert internal(stack, "worker", {"job_id": job_id}).json()["outcome"] == "completed"
    assert shards_of(account["id"]) == before
    job = client().collection("jobs").document(job_id).get()
    assert job.get("status") == "completed" and job.get("latency_bucket") is not None


def test_completed_counts_and_percentiles_come_from_the_jobs(stack: Stack) -> None:
    from shared import jobs as lifecycle

    week = "2022-W05"
    start = monday(week)
    uid = user("use_buckets", start - timedelta(weeks=1), credits=100)
    at = start + timedelta(days=2)
    for seconds, n in ((0.05, 2), (0.3, 3), (3, 4), (40, 1)):  # buckets up to 0.1, 0.5, 5, 50 s
        jobs(uid, at, "summarize", "completed", n=n, seconds=seconds)
    jobs(uid, at, "chat", "failed")
    jobs(uid, at, "chat", "canceled")
    waiting = past_job(uid, "summarize", at, "queued")
    try:
        report = run_report(stack, week).json()
    finally:
        lifecycle.cancel(uid, waiting)  # the books stay clean, and drained for the next test
    assert report["jobs"]["by_task_type"] == {
        "chat": {"submitted": 2, "completed": 0, "failed": 1, "canceled": 1},
        "summarize": {"submitted": 11, "completed": 10, "failed": 0, "canceled": 0},
    }
    # 10 completed: the 5th is in the 0.5 s bucket, the 10th in the 50 s one.
    assert report["completion_seconds"] == {"p50": 0.5, "p95": 50, "measured": 10}
    assert report["failure_rate"] == round(1 / 11, 4)
    again = run_report(stack, week).json()
    assert again["jobs"]["canceled"] == 2 and again["jobs"]["completed"] == 10


def test_refunds_count_on_the_day_the_job_was_submitted(stack: Stack) -> None:
    from shared import usage

    week = "2023-W07"
    sunday = monday(week) + timedelta(days=6, hours=23, minutes=59, seconds=59)
    uid = user("use_late", monday(week))
    jobs(uid, sunday, "summarize", "failed", seconds=5)  # refunded on Monday, next week
    jobs(uid, sunday, "translate", "canceled", seconds=5)
    jobs(uid, sunday, "summarize", "completed", seconds=5)
    query = usage.UsageQuery.model_validate({"from": sunday.date().isoformat(), "to": "2023-02-21"})
    assert usage.history(uid, query).model_dump(mode="json")["days"] == [
        {
            "date": sunday.date().isoformat(),
            "jobs": {"summarize": 2, "translate": 1},
            "credits": {"summarize": 1, "translate": 0},
            "total_jobs": 3,
            "total_credits": 1,
        }
    ]
    report = run_report(stack, week).json()
    assert report["jobs"] | {"by_task_type": None} == {
        "submitted": 3,
        "completed": 1,
        "failed": 1,
        "canceled": 1,
        "by_task_type": None,
    }
    assert report["credits"] == {"charged": 3, "refunded": 2, "granted": 10, "adjusted": 0}
    following = run_report(stack, "2023-W08").json()
    assert following["jobs"]["submitted"] == 0 and following["credits"]["refunded"] == 0
