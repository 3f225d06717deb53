"""The GitHub Actions workflow (.github/workflows/ci.yml) still runs what a developer runs, on
the Python and Java the project is built for, where the scripts look for their tools."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from scripts.stack import FIRESTORE_JAR

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"


@pytest.fixture(scope="module")
def workflow() -> dict[Any, Any]:
    loaded = yaml.safe_load(WORKFLOW.read_text())
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def job(workflow: dict[Any, Any]) -> dict[str, Any]:
    assert list(workflow["jobs"]) == ["test"]
    return dict(workflow["jobs"]["test"])


def steps_using(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in job["steps"] if str(s.get("uses", "")).split("@")[0] == action]


def position(job: dict[str, Any], step: dict[str, Any]) -> int:
    return [id(s) for s in job["steps"]].index(id(step))


def runs(job: dict[str, Any]) -> list[tuple[int, str]]:
    return [(i, s["run"]) for i, s in enumerate(job["steps"]) if "run" in s]


def test_runs_on_push_and_pull_request_on_a_hosted_runner_within_90_minutes(
    workflow: dict[Any, Any], job: dict[str, Any]
) -> None:
    # YAML 1.1 reads the key `on` as True.
    triggers = workflow["on"] if "on" in workflow else workflow[True]
    assert {"push", "pull_request"} <= set(triggers)
    assert job["runs-on"] == "ubuntu-latest"
    assert 0 < job["timeout-minutes"] <= 90


def test_runs_scripts_test_after_setting_everything_up(job: dict[str, Any]) -> None:
    # .ci/run is the CI entry point: it must still be exactly scripts/test.
    ci_run = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^exec scripts/test\b", ci_run, re.M), ci_run
    test_steps = [i for i, run in runs(job) if re.search(r"(^|\s)(\.ci/run|scripts/test)\b", run)]
    assert len(test_steps) == 1, runs(job)
    [tests] = test_steps
    for action in ("actions/checkout", "actions/setup-python", "actions/setup-java"):
        [step] = steps_using(job, action)
        assert position(job, step) < tests, action
    jar_step = next(i for i, run in runs(job) if "$FIRESTORE_JAR" in run)
    assert jar_step < tests


def test_python_is_the_projects(job: dict[str, Any]) -> None:
    [setup] = steps_using(job, "actions/setup-python")
    version = str(setup["with"]["python-version"])
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["tool"]["ruff"]["target-version"] == "py" + version.replace(".", "")
    assert pyproject["tool"]["mypy"]["python_version"] == version
    client = tomllib.loads((ROOT / "client" / "pyproject.toml").read_text())
    assert client["project"]["requires-python"] == f">={version}"
    # pip's cache is keyed on what decides the packages installed.
    assert setup["with"]["cache"] == "pip"
    keyed = setup["with"]["cache-dependency-path"].split()
    assert "requirements*.txt" in keyed and "client/pyproject.toml" in keyed


def test_java_for_the_firestore_emulator(workflow: dict[Any, Any], job: dict[str, Any]) -> None:
    [java] = steps_using(job, "actions/setup-java")
    assert int(str(java["with"]["java-version"]).split(".")[0]) >= 17
    assert java["with"]["distribution"] == "temurin"
    # The jar goes where scripts/stack.py looks for it.
    assert workflow["env"]["FIRESTORE_JAR"] == str(FIRESTORE_JAR)


def test_the_browser_tests_get_a_browser(job: dict[str, Any]) -> None:
    [chrome] = steps_using(job, "browser-actions/setup-chrome")
    wired = next(s for s in job["steps"] if "CHROMIUM=" in s.get("run", ""))
    assert chrome["id"] in wired["env"]["CHROME"]
    assert "GITHUB_ENV" in wired["run"]  # the browser tests launch $CHROMIUM


def test_the_llama_cpp_wheel_cache_is_keyed_on_its_build_lines(job: dict[str, Any]) -> None:
    """The key hashes the lines of scripts/_setup that pick the wheel; if those lines change
    shape, the grep would hash nothing and every build would share one stale key."""
    key_step = next(s for s in job["steps"] if s.get("id") == "llama")
    pattern = re.search(r"grep -E '([^']+)' scripts/_setup", key_step["run"])
    assert pattern, key_step["run"]
    found = subprocess.run(
        ["grep", "-E", pattern.group(1), "scripts/_setup"], cwd=ROOT, capture_output=True, text=True
    ).stdout.splitlines()
    assert len(found) == 2 and any("llama-cpp-python" in line for line in found), found
    [restore] = steps_using(job, "actions/cache/restore")
    [save] = steps_using(job, "actions/cache/save")
    setup = next(i for i, run in runs(job) if "scripts/_setup model" in run)
    # Saved right after the build, so a failing test run does not throw the 7-minute build away.
    assert position(job, restore) < setup < position(job, save)
    assert restore["with"] == save["with"]


def test_every_run_block_is_valid_bash(job: dict[str, Any]) -> None:
    for i, run in runs(job):
        script = re.sub(r"\$\{\{[^}]*\}\}", "X", run)  # expressions are filled in by Actions
        checked = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True)
        assert checked.returncode == 0, (job["steps"][i].get("name"), checked.stderr)
