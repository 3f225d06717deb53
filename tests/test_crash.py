"""Crash consistency: ``kill -9`` of the functions server in the middle of a burst of submits
and worker runs, then a restart and the sweeper. The books reconcile (``scripts/audit``)
and every job a client was told was accepted reaches a final state."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import requests
from conftest import TERMINAL, Api
from fake_openai import FakeOpenAI

from scripts.stack import Stack, port_in_use


def test_kill_9_mid_burst_then_restart_and_sweep(stack: Stack, fake_ai: FakeOpenAI, tmp_path: Path) -> None:
    from google.cloud.firestore import FieldFilter

    from scripts.audit import audit
    from shared.db import client, now

    env = {
        **stack.extra_env,
        "AI_TIMEOUT_SECONDS": "1",
        "LEASE_GRACE_SECONDS": "1",
        "STORAGE_TIMEOUT_SECONDS": "0.5",  # an image's upload must fit in the lease's grace
        "OUTBOX_DELAY_SECONDS": "1",
    }

    def start() -> Stack:
        # The same port each time: the queue's tasks name this server's worker URL.
        server = Stack(
            functions_port=port,
            firestore_port=stack.firestore_port,
            tasks_port=stack.tasks_port,
            ai_base_url=stack.ai_base_url,
            log_dir=tmp_path / f"run{len(runs)}",
            worker_secret=stack.worker_secret,
            extra_env=env,
        )
        server.start_functions(threads=16)
        runs.append(server)
        return server

    runs: list[Stack] = []
    port = Stack().functions_port
    victim = start()
    api = Api(victim.base_url)
    users = [api.signup()[0] for _ in range(4)]
    fake_ai.default_delay = 0.4  # worker runs are in flight when the process dies

    def submit(i: int) -> tuple[str, dict[str, Any] | None]:
        token = users[i % len(users)]
        headers = {"Idempotency-Key": f"crash-{i}"} if i % 2 else {}
        try:
            response = api.submit(token, input_data=f"crash burst {i}", headers=headers)
        except requests.RequestException:
            return token, None
        return token, response.json() if response.status_code == 202 else None

    try:
        with ThreadPoolExecutor(12) as pool:
            pending = [pool.submit(submit, i) for i in range(48)]
            time.sleep(0.7)
            for process in victim.processes:
                os.killpg(process.popen.pid, signal.SIGKILL)
                process.popen.wait()
            answers = [f.result() for f in pending]
        # gunicorn's worker dies a moment after its master; until then it holds the port.
        while port_in_use(port):
            time.sleep(0.05)
        accepted = [(token, body["job_id"]) for token, body in answers if body is not None]
        assert accepted, "nothing was accepted before the kill: the test did not test anything"
        assert len(accepted) < 48, "the kill came after the burst: the test did not test anything"

        survivor = start()
        again = Api(survivor.base_url)
        secret = {"X-Aijobs-Worker-Secret": stack.worker_secret}
        deadline = time.monotonic() + 90
        mine = client().collection("jobs").where(filter=FieldFilter("input_data", ">=", "crash burst "))
        mine = mine.where(filter=FieldFilter("input_data", "<", "crash burst~"))
        while True:
            unfinished = [d.id for d in mine.stream() if d.get("status") not in TERMINAL]
            if not unfinished:
                break
            assert time.monotonic() < deadline, f"jobs never finished after the crash: {unfinished}"
            # What Cloud Scheduler does every minute.
            requests.post(f"{survivor.base_url}/sweep_jobs", headers=secret, timeout=30)
            time.sleep(1.0)
        for token, job_id in accepted:
            assert again.call("GET", f"/jobs/{job_id}", token).json()["status"] in TERMINAL
        report = audit(client(), now=now(), grace=timedelta(seconds=5))
        assert not report.discrepancies, "\n".join(report.discrepancies)
        print(f"{len(accepted)} of 48 accepted before the kill; {report.summary()}")
    finally:
        fake_ai.default_delay = 0.0
        for server in runs:
            server.stop()
