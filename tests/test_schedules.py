"""Seeded fault schedules (see ``schedules.py``): after each, the books reconcile and every
answer a client got is true. ``SCHEDULES`` (default 6) sets how many run; ``scripts/soak``
runs more."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta

import pytest
from grpc_proxy import GrpcProxy
from schedules import SIM_ENV, Schedule

from scripts.stack import Stack

COUNT = int(os.environ.get("SCHEDULES", "6"))
FIRST_SEED = int(os.environ.get("SCHEDULE_SEED", "1000"))


@pytest.fixture(scope="module")
def simulated(stack: Stack) -> Iterator[GrpcProxy]:
    """The test process's own service code, with the schedules' settings and a lossy proxy
    in front of the Firestore emulator."""
    from shared import db
    from shared.settings import get_settings

    with GrpcProxy(f"127.0.0.1:{stack.firestore_port}") as proxy:
        saved = {k: os.environ.get(k) for k in [*SIM_ENV, "FIRESTORE_EMULATOR_HOST"]}
        os.environ.update({**SIM_ENV, "FIRESTORE_EMULATOR_HOST": proxy.address})
        get_settings.cache_clear()
        db.client.cache_clear()
        try:
            yield proxy
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            get_settings.cache_clear()
            db.client.cache_clear()


@pytest.mark.parametrize("seed", range(FIRST_SEED, FIRST_SEED + COUNT))
def test_a_fault_schedule_keeps_the_books_and_the_answers_true(simulated: GrpcProxy, seed: int) -> None:
    from scripts.audit import audit
    from shared.db import client, now

    schedule = Schedule(seed, proxy=simulated)
    replay = f"replay: scripts/soak --seed {seed} (or SCHEDULE_SEED={seed} SCHEDULES=1 scripts/test)"
    schedule.setup()
    schedule.run()
    schedule.drain()
    print(schedule.summary())
    problems = schedule.check()
    assert not problems, "\n".join([schedule.summary(), *problems, replay])
    report = audit(client(), now=now(), grace=timedelta(seconds=1))
    assert not report.discrepancies, "\n".join([schedule.summary(), *report.discrepancies, replay])
