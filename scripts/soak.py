"""Run fault schedules (``tests/schedules.py``) for ``--minutes``, or replay one ``--seed``.

Starts its own Firestore emulator on a free port (with the catalog from
``emulator-export/``) behind a lossy gRPC proxy, runs schedules one after another,
checks each (the answers against the books, then ``scripts/audit``), and prints how
many schedules and operations ran and what was checked. Exits 1 at the first failure,
with its seed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from grpc_proxy import GrpcProxy  # noqa: E402
from schedules import SIM_ENV, Schedule  # noqa: E402

from scripts.stack import Stack  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=1.0, help="how long to run (default 1)")
    parser.add_argument("--seed", type=int, help="replay this one schedule")
    parser.add_argument("--steps", type=int, default=40, help="operations per schedule (default 40)")
    args = parser.parse_args()

    stack = Stack(log_dir=ROOT / ".run" / "soak")
    stack.start_firestore()
    try:
        with GrpcProxy(f"127.0.0.1:{stack.firestore_port}") as proxy:
            os.environ.update({**stack.env(), **SIM_ENV, "FIRESTORE_EMULATOR_HOST": proxy.address})
            return _run(args, proxy)
    finally:
        stack.stop()


def _run(args: argparse.Namespace, proxy: GrpcProxy) -> int:
    from scripts.audit import audit
    from shared.db import client, now

    seeds = [args.seed] if args.seed is not None else None
    deadline = time.monotonic() + args.minutes * 60
    started, schedules, operations, answers = time.monotonic(), 0, 0, 0
    seed = int(time.time())
    while (seeds and schedules < len(seeds)) or (not seeds and time.monotonic() < deadline):
        current = seeds[schedules] if seeds else seed + schedules
        schedule = Schedule(current, steps=args.steps, proxy=proxy)
        schedule.setup()
        schedule.run()
        schedule.drain()
        problems = schedule.check()
        report = audit(client(), now=now(), grace=timedelta(seconds=1))
        schedules += 1
        operations += sum(schedule.operations.values())
        answers += len(schedule.answers)
        print(schedule.summary(), flush=True)
        if problems or report.discrepancies:
            for line in [*problems, *report.discrepancies]:
                print(f"  {line}")
            print(f"FAILED: replay with scripts/soak --seed {current}")
            return 1
    print(
        f"soak: {schedules} schedules, {operations} operations in {time.monotonic() - started:.0f} s;"
        f" checked {answers} client answers against the books and audited after each: all consistent"
    )
    print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
