"""Abuse limits, kept in Firestore so they hold across every function instance.

Documents (each with ``expires_at`` for Firestore's TTL policy):
- ``login_attempts/{username}``: ``{failures: [times of recent failed logins]}``.
  Keyed by the name as typed (normalised), whether or not an account has it, so the
  lock itself does not reveal which usernames exist.
- ``rate_windows/{user_id}-{minute}``: ``{count}`` of jobs submitted in that minute.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from google.cloud import firestore

from shared.db import client, commit_optimistically, now, put
from shared.errors import TooManyRequests
from shared.settings import get_settings


def _attempts(username: str) -> firestore.DocumentReference:
    return client().collection("login_attempts").document(username)


def _recent(failures: list[datetime], at: datetime) -> list[datetime]:
    window = timedelta(seconds=get_settings().login_window_seconds)
    return sorted(f for f in failures if f > at - window)


def check_login(username: str) -> None:
    """429 while ``username`` has too many recent failures, until the oldest of them ages out."""
    settings = get_settings()
    at = now()
    snapshot = _attempts(username).get()
    failures = _recent(snapshot.get("failures") or [], at) if snapshot.exists else []
    if len(failures) >= settings.login_max_failures:
        unlock = failures[-settings.login_max_failures] + timedelta(seconds=settings.login_window_seconds)
        raise TooManyRequests(
            "too many failed logins for this username; try again later",
            math.ceil((unlock - at).total_seconds()),
            code="too_many_login_attempts",
        )


def record_login_failure(username: str) -> None:
    settings = get_settings()
    ref = _attempts(username)

    def decide(batch: firestore.WriteBatch) -> None:
        at = now()
        snapshot = ref.get()
        failures = _recent(snapshot.get("failures") or [], at) if snapshot.exists else []
        kept = [*failures, at][-settings.login_max_failures :]
        window = timedelta(seconds=settings.login_window_seconds)
        put(batch, snapshot, {"failures": kept, "expires_at": at + window})

    commit_optimistically(decide)


def reset_login(username: str) -> None:
    """A successful login clears the failures."""
    _attempts(username).delete()


def take_submit_slot(user_id: str) -> None:
    """Count one submission in the user's current minute; 429 past the limit.

    ``Increment`` returns the new count in the commit's answer, so this costs one
    write and no read, and never contends with the charge's preconditions.
    """
    limit = get_settings().submit_rate_per_minute
    at = now()
    minute = int(at.timestamp() // 60)
    window_end = datetime.fromtimestamp((minute + 1) * 60, at.tzinfo)
    ref = client().collection("rate_windows").document(f"{user_id}-{minute}")
    result = ref.set(
        {"count": firestore.Increment(1), "expires_at": window_end + timedelta(hours=1)}, merge=True
    )
    if result.transform_results[0].integer_value > limit:
        raise TooManyRequests(
            f"more than {limit} jobs in a minute; slow down",
            math.ceil((window_end - at).total_seconds()),
            code="submit_rate_limited",
        )
