"""Abuse limits, kept in Firestore so they hold across every function instance.

Each limit is one ``Increment`` on a counter document per key and clock window: the
commit's answer carries the new count, so taking a slot is one write, no read, and
atomic however many requests race for it. Documents (each with ``expires_at`` for
Firestore's TTL policy):
- ``login_attempts/{username}-{window}``: ``{count}`` of logins tried for that name in one
  ``LOGIN_WINDOW_SECONDS`` clock window. Keyed by the name as typed (normalised),
  whether or not an account has it, so the lock itself does not reveal which exist.
- submits per minute: counted in the day's usage documents (``shared.usage``), see
  ``submit_counter``.
- ``rate_windows/signup-{sha256(address)}-{hour}``: ``{count}`` of signups from one
  client address (see ``client_address``) in that clock hour.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from google.api_core import exceptions as gexc
from google.cloud import firestore

from shared import usage
from shared.db import Snapshot, client, now
from shared.errors import TooManyRequests
from shared.settings import get_settings

if TYPE_CHECKING:
    import flask


def _take(
    collection: str, key: str, seconds: int, limit: int, keep: timedelta, refusal: str, code: str
) -> tuple[firestore.DocumentReference, datetime]:
    """Count one use of ``key`` in the current ``seconds``-long clock window; 429 past ``limit``.

    Returns the counter and its update time right after this use; the document expires
    ``keep`` after its window ends.
    """
    at = now()
    index = int(at.timestamp() // seconds)
    end = datetime.fromtimestamp((index + 1) * seconds, at.tzinfo)
    ref = client().collection(collection).document(f"{key}-{index}")
    result = ref.set({"count": firestore.Increment(1), "expires_at": end + keep}, merge=True)
    if result.transform_results[0].integer_value > limit:
        raise TooManyRequests(refusal, math.ceil((end - at).total_seconds()), code=code)
    return ref, result.update_time


@dataclass(frozen=True)
class LoginSlot:
    """One of a username's ``LOGIN_MAX_FAILURES`` password checks in the current window."""

    ref: firestore.DocumentReference
    taken_at: datetime
    """The counter's update time right after this slot was taken."""


def take_login_slot(username: str) -> LoginSlot:
    """Take a password check for ``username`` before checking anything; 429 when none is left.

    Every attempt counts, the right password included, so however many arrive at once at
    most ``LOGIN_MAX_FAILURES`` are checked per clock window. The lock lasts until that
    window ends (``Retry-After``), when a fresh counter starts: at most twice the limit
    can land in a short span across a window boundary, never more per window.
    """
    settings = get_settings()
    ref, taken_at = _take(
        "login_attempts",
        username,
        settings.login_window_seconds,
        settings.login_max_failures,
        timedelta(0),
        "too many login attempts for this username; try again later",
        "too_many_login_attempts",
    )
    return LoginSlot(ref, taken_at)


def login_succeeded(slot: LoginSlot) -> None:
    """Reset the username's count, but only if no attempt has taken a slot since this one.

    The reset is a delete guarded by the counter's update time: a sequence of normal logins
    (failures, then a success) starts afresh, as if the success had been the first attempt,
    while a success inside a burst of guesses changes nothing, so the burst still gets at
    most ``LOGIN_MAX_FAILURES`` checks in all.
    """
    try:
        slot.ref.delete(option=client().write_option(last_update_time=slot.taken_at))
    except gexc.FailedPrecondition:
        pass  # someone else tried since: their attempts keep counting
    except gexc.GoogleAPIError:
        pass  # the password was right: the login stands, the count merely stays until the window ends


SUBMITS_PER_COUNTER = 60
"""A submit counter admits at most this many a minute: about one write a second."""


def submit_counter(user_id: str, shard: int, at: datetime) -> Snapshot:
    """The day-shard usage document that counts this submit, read; 429 past the limit.

    The per-minute limit is split over ``ceil(limit / 60)`` counters, each admitting its
    share; the counts live in the day's usage documents (``submits.{HHMM}``), which the
    charge's own commit writes anyway, guarded by this read: so the limit costs no write of
    its own, two submits cannot both take a counter's last place, no counter is written much
    more than once a second, and the shares add up to the limit exactly. The counter is the
    wallet shard's (mod the number of counters); a submit that finds it full tries one other.
    """
    limit = get_settings().submit_rate_per_minute
    parts = math.ceil(limit / SUBMITS_PER_COUNTER)
    first = shard % parts
    day = usage.day_of(at)
    for counter in [first] + ([(first + 1 + random.randrange(parts - 1)) % parts] if parts > 1 else []):
        seen = usage.day_ref(user_id, day, counter).get()
        share = limit // parts + (1 if counter < limit % parts else 0)
        if usage.submits_in_minute(seen, at) < share:
            return seen
    end = at.replace(second=0, microsecond=0) + timedelta(minutes=1)
    raise TooManyRequests(
        f"more than {limit} jobs in a minute; slow down",
        math.ceil((end - at).total_seconds()),
        code="submit_rate_limited",
    )


def take_signup_slot(address: str) -> None:
    """Count one signup from ``address`` (a ``client_address`` key) in this clock hour; 429 past
    ``SIGNUP_RATE_PER_HOUR``.

    The id holds a hash of the key: an IPv6 network contains ``/`` and ``:``, and the raw
    address need not be stored (the hash of an IPv4 address can be brute-forced, so this is
    tidiness, not anonymity).
    """
    limit = get_settings().signup_rate_per_hour
    digest = hashlib.sha256(address.encode()).hexdigest()[:32]
    refusal = f"more than {limit} signups from this address in an hour; try again later"
    _take("rate_windows", f"signup-{digest}", 3600, limit, timedelta(hours=1), refusal, "signup_rate_limited")


def client_address(request: flask.Request) -> str:
    """The client's address as Google's front end saw it, as a limit key.

    Cloud Functions (2nd gen) run on Cloud Run behind Google's front end, which appends the
    address it accepted the connection from to any ``X-Forwarded-For`` the client sent
    ("<unverified IPs>, <immediate client IP>, ...": only the entries Google adds are
    verified; https://cloud.google.com/load-balancing/docs/https#x-forwarded-for_header).
    Served on its own URL (no load balancer of ours), the right-most entry is that one hop,
    the only one a client cannot choose; everything left of it is whatever the client wrote.
    Behind an external Application Load Balancer the right-most entry would be the balancer's
    own address instead, and this must take the second from the right.

    Locally there is no front end and no header: the socket's peer (``remote_addr``). A value
    that is not an address falls back to it as well, rather than failing the request.
    IPv4-mapped IPv6 is the IPv4 address; other IPv6 clients are keyed by their /64, which
    one host usually holds whole, so rotating through it gains nothing.
    """
    forwarded = ",".join(request.headers.getlist("X-Forwarded-For"))
    for candidate in (forwarded.rsplit(",", 1)[-1], request.remote_addr or ""):
        try:
            address = ipaddress.ip_address(candidate.strip())
        except ValueError:
            continue
        if isinstance(address, ipaddress.IPv6Address):
            if address.ipv4_mapped is not None:
                return str(address.ipv4_mapped)
            return f"{ipaddress.IPv6Address(int(address) >> 64 << 64)}/64"
        return str(address)
    return "unknown"
