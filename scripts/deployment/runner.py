"""Rendering the plan as a bash script (``--dry-run``) and running it with ``gcloud``."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import IO

from scripts.deployment.model import Config, DeployError, Plan, Stdin, Step
from scripts.deployment.spec import ROOT


def render_plan(plan: Plan, config: Config) -> str:
    """The plan as a bash script: comment headers, one numbered comment and command per step."""
    lines = [
        "#!/usr/bin/env bash",
        f"# aijobs deploy plan: project {config.project}, region {config.region}",
        "# (--dry-run: nothing below was run)",
        f"# Bundles: {config.source('')}/<function>/ (main.py, shared/, requirements.txt), built now.",
        "set -euo pipefail",
    ]
    number = 0
    for section in plan.sections:
        lines += ["", f"# ==== {section.title} ===="]
        if section.note:
            lines.append(f"# ({section.note})")
        for step in section.steps:
            number += 1
            remarks = []
            if step.tolerate:
                remarks.append("fine if it fails with: " + " / ".join(step.tolerate))
            if step.needs:
                remarks.append(f"skipped when {step.needs} is not on PATH")
            if step.optional:
                remarks.append("a failure only warns")
            lines.append(f"# [{number}] {step.description}" + (f" ({'; '.join(remarks)})" if remarks else ""))
            lines.append(step.render())
    return "\n".join(lines) + "\n"


def _run(argv: Sequence[str], stdin: bytes | None) -> tuple[int, str]:
    """Run a command, streaming its stderr to ours (gcloud's progress) while keeping a copy to
    recognise known errors. Secrets only ever travel on stdin."""
    process = subprocess.Popen(
        argv, cwd=ROOT, stdin=subprocess.PIPE if stdin is not None else None, stderr=subprocess.PIPE
    )
    if process.stdin is not None and stdin is not None:
        process.stdin.write(stdin)
        process.stdin.close()
    stream: IO[bytes] | None = process.stderr
    assert stream is not None
    collected = bytearray()
    while chunk := stream.read1(4096):  # type: ignore[attr-defined]
        collected += chunk
        sys.stderr.buffer.write(chunk)
        sys.stderr.buffer.flush()
    return process.wait(), collected.decode(errors="replace")


def _execute(argv: Sequence[str], step: Step, stdin: Stdin | None) -> None:
    attempts = 6 if step.retry_on else 1
    for attempt in range(1, attempts + 1):
        code, errors = _run(argv, stdin.read() if stdin is not None else None)
        if code == 0:
            return
        if any(marker in errors for marker in step.tolerate):
            print("    (already in place)")
            return
        if attempt < attempts and any(marker in errors for marker in step.retry_on):
            print(f"    (not visible to IAM yet; retrying in 10 s, attempt {attempt + 1}/{attempts})")
            time.sleep(10)
            continue
        raise DeployError(f"`{shlex.join(argv)}` exited with {code}")


def _succeeds(argv: Sequence[str]) -> bool:
    return (
        subprocess.run(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
    )


def run_step(step: Step) -> None:
    if step.needs and shutil.which(step.needs) is None:
        print(f"    skipped: {step.needs} is not on PATH (install it and re-run to apply this step)")
        return
    if step.shell is not None:
        _execute(("bash", "-c", "set -euo pipefail; " + step.shell), step, None)
        return
    if step.check is not None:
        if _succeeds(step.check):
            if step.update is not None:
                _execute(step.update, step, None)
            else:
                print("    (exists)")
            return
        if step.fail_message is not None:
            raise DeployError(step.fail_message)
    _execute(step.argv, step, step.stdin)


def run_plan(plan: Plan) -> int:
    steps = list(plan.steps())
    for number, (section, step) in enumerate(steps, 1):
        print(
            f"\n[{number}/{len(steps)}] {section.title}: {step.description}\n  $ {step.render()}", flush=True
        )
        try:
            run_step(step)
        except DeployError as exc:
            if step.optional:
                print(f"    warning: {exc}; continuing (this step is optional)")
                continue
            print(
                f"\ndeploy stopped at step {number} ({step.description}): {exc}\n"
                "Nothing after it ran. Fix the cause and run scripts/deploy again: steps already done are "
                "updated or skipped, not repeated as errors.",
                file=sys.stderr,
            )
            return 1
    print("\ndeploy complete.")
    return 0


def preflight(plan: Plan) -> None:
    """Tools the plan will need, checked before anything changes."""
    needed = {"gcloud"}
    if any(step.shell for _, step in plan.steps()):
        needed |= {"bash", "curl"}
    missing = sorted(tool for tool in needed if shutil.which(tool) is None)
    if missing:
        raise DeployError(f"not on PATH: {', '.join(missing)} (install the Google Cloud CLI and curl)")
