"""``scripts/deploy``: the bundles run on their own, and the plan is the deploy we mean.

The bundle tests install one bundle's pinned requirements into a fresh virtualenv (nothing
from the repo or from ``.venv`` importable), import every entry point from its own bundle, and
serve real requests through functions-framework against the test stack's emulators: a file
missing from the bundle or a dependency missing from ``requirements.txt`` fails here, not in
Cloud Build. The plan tests read ``--dry-run`` output; the run tests execute the plan against
a fake ``gcloud`` first on PATH, which records its calls (no Google Cloud is ever contacted).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from scripts import deploy
from scripts.stack import Process, Stack, free_port, port_in_use

ROOT = Path(__file__).resolve().parent.parent
PROJECT, REGION = "demo-p", "europe-west1"
BASE_URL = f"https://{REGION}-{PROJECT}.cloudfunctions.net"
PRIVATE = {
    "worker": "aijobs-tasks",
    "deliver_webhook": "aijobs-tasks",
    "weekly_report": "aijobs-scheduler",
    "sweep_jobs": "aijobs-scheduler",
}
JWT_SENTINEL = "jwt-sentinel-" + uuid.uuid4().hex  # 45 characters: long enough to be accepted
AI_SENTINEL = "sk-sentinel-" + uuid.uuid4().hex


# --------------------------------------------------------------------------- the bundles


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return deploy.build_bundles(tmp_path_factory.mktemp("deploy") / "bundle")


@pytest.fixture(scope="module")
def bundle_venv(bundles: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv holding only what the bundles' requirements.txt installs.

    Every bundle ships the same file, so one install serves all twelve. No pip inside it:
    this project's pip installs into it (``--python``), which keeps the set-up to seconds."""
    files = {name: (path / "requirements.txt").read_text() for name, path in bundles.items()}
    assert len(set(files.values())) == 1, "bundles must share one requirements.txt"
    venv = tmp_path_factory.mktemp("bundle-venv") / "venv"
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    install = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install"]
    # pip byte-compiles once here, so the twelve imports below need not each compile the SDKs.
    install += ["--quiet", "--disable-pip-version-check"]
    result = subprocess.run(
        [*install, "-r", str(bundles["health"] / "requirements.txt")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    print(f"bundle virtualenv ready in {time.monotonic() - started:.1f}s")
    return venv


def clean_env(venv: Path, home: Path, **extra: str) -> dict[str, str]:
    """No PYTHONPATH, no inherited settings: only what a Cloud Functions instance would have."""
    return {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8", **extra}


_IMPORT_CHECK = """
import importlib, json, os, sys
repo, venv, bundles = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
assert sys.prefix == venv, sys.prefix
imported = {}
for name, bundle in bundles.items():
    # Each bundle afresh: forget the previous one's main and shared, put this one first on the
    # path (as functions-framework does with the source's directory).
    for module in [m for m in sys.modules if m == "main" or m == "shared" or m.startswith("shared.")]:
        del sys.modules[module]
    sys.path.insert(0, bundle)
    main = importlib.import_module("main")
    assert callable(getattr(main, name, None)), f"{bundle}/main.py has no callable {name}"
    import shared
    assert os.path.dirname(shared.__file__) == os.path.join(bundle, "shared"), shared.__file__
    sys.path.remove(bundle)
    imported[name] = sorted(m for m in sys.modules if "." not in m)
files = [getattr(m, "__file__", None) or "" for m in list(sys.modules.values())]
leaks = sorted({f for f in files if f.startswith(repo)})
assert not leaks, f"modules loaded from the repository: {leaks[:5]}"
print(json.dumps(imported))
"""


def test_bundle_layout(bundles: dict[str, Path]) -> None:
    assert sorted(bundles) == deploy.function_names()
    for name, path in bundles.items():
        assert (path / "main.py").read_text() == (ROOT / "functions" / f"{name}.py").read_text()
        assert (path / "requirements.txt").read_text() == (ROOT / "requirements.txt").read_text()
        shared = {str(p.relative_to(path / "shared")) for p in (path / "shared").rglob("*") if p.is_file()}
        source = {str(p.relative_to(ROOT / "shared")) for p in (ROOT / "shared").rglob("*.py")}
        assert shared == source, "shared/ copied whole, packages included, no caches"


def test_every_entry_point_imports_from_its_bundle_alone(
    bundles: dict[str, Path], bundle_venv: Path, tmp_path: Path
) -> None:
    env = clean_env(bundle_venv, tmp_path, APP_ENV="local", FIRESTORE_EMULATOR_HOST="127.0.0.1:9")
    paths = json.dumps({name: str(path) for name, path in bundles.items()})
    result = subprocess.run(
        # -I: isolated (no cwd, no PYTHON* variables, no user site); -B: leave the bundles clean.
        [
            str(bundle_venv / "bin" / "python"),
            "-I",
            "-B",
            "-c",
            _IMPORT_CHECK,
            str(ROOT),
            str(bundle_venv),
            paths,
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    imported = json.loads(result.stdout)
    assert sorted(imported) == sorted(bundles)
    assert all("shared" in modules for modules in imported.values())


def _serve(name: str, bundle: Path, venv: Path, env: dict[str, str], logs: Path) -> tuple[Process, str]:
    """functions-framework from the bundle directory, as the Python runtime starts it."""
    port = free_port()
    argv = [str(venv / "bin" / "functions-framework"), "--target", name, "--source", "main.py"]
    argv += ["--host", "127.0.0.1", "--port", str(port)]
    log = logs / f"{name}.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(
            argv, cwd=bundle, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    process = Process(name, popen, log)
    deadline = time.monotonic() + 60
    while not port_in_use(port):
        if popen.poll() is not None or time.monotonic() > deadline:
            process.stop()
            pytest.fail(f"{name} did not start from its bundle:\n{process.tail()}")
        time.sleep(0.1)
    return process, f"http://127.0.0.1:{port}/"


@pytest.fixture
def served(
    bundles: dict[str, Path], bundle_venv: Path, stack: Stack, tmp_path: Path
) -> Iterator[dict[str, str]]:
    env = clean_env(bundle_venv, tmp_path, **stack.env())
    started = [_serve(name, bundles[name], bundle_venv, env, tmp_path) for name in ("signup", "me")]
    try:
        yield {process.name: url for process, url in started}
    finally:
        for process, _ in started:
            process.stop()  # by its PID (its own process group), never by name


def test_bundles_serve_requests_through_functions_framework(served: dict[str, str]) -> None:
    anonymous = requests.get(served["me"], timeout=30)
    assert anonymous.status_code == 401, anonymous.text
    assert anonymous.json()["error"]["code"] == "unauthenticated"
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")

    username = f"b{uuid.uuid4().hex[:12]}"
    created = requests.post(
        served["signup"], json={"username": username, "password": "pass-word-123"}, timeout=30
    )
    assert created.status_code == 201, created.text
    token = created.json()["access_token"]

    me = requests.get(served["me"], headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert me.status_code == 200, me.text
    assert me.json()["username"] == username


# --------------------------------------------------------------------------- the plan


def dry_run(tmp_path: Path, **env: str) -> str:
    argv = [sys.executable, "scripts/deploy.py", "--project", PROJECT, "--region", REGION, "--dry-run"]
    argv += ["--bundle-dir", str(tmp_path / "bundle")]
    result = subprocess.run(
        argv, cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert not result.stderr
    return result.stdout


def commands(script: str) -> list[str]:
    return [line for line in script.splitlines() if line and not line.startswith(("#", "set "))]


def env_vars(argv: list[str]) -> dict[str, str]:
    """A ``functions deploy``'s ``--set-env-vars``, in either delimiter (``^|^`` when a value has a comma)."""
    env = next(a for a in argv if a.startswith("--set-env-vars=")).removeprefix("--set-env-vars=")
    pairs = env.removeprefix("^|^").split("|") if env.startswith("^|^") else env.split(",")
    return dict(pair.split("=", 1) for pair in pairs)


def deploy_line(lines: list[str], name: str) -> str:
    found = [line for line in lines if line.startswith(f"gcloud functions deploy {name} ")]
    assert len(found) == 1, name
    return found[0]


@pytest.fixture(scope="module")
def script(tmp_path_factory: pytest.TempPathFactory) -> str:
    return dry_run(
        tmp_path_factory.mktemp("dry-run"), AIJOBS_JWT_SECRET=JWT_SENTINEL, AIJOBS_AI_API_KEY=AI_SENTINEL
    )


def test_dry_run_is_a_valid_bash_script_without_secret_values(script: str) -> None:
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
    assert JWT_SENTINEL not in script
    assert AI_SENTINEL not in script
    lines = commands(script)
    assert (
        'printf %s "$AIJOBS_JWT_SECRET" | gcloud secrets versions add aijobs-jwt-secret --data-file=-'
        in script
    )
    assert (
        'printf %s "$AIJOBS_AI_API_KEY" | gcloud secrets versions add aijobs-ai-api-key --data-file=-'
        in script
    )
    assert all(f"--project={PROJECT}" in line for line in lines if line.startswith("gcloud"))


def test_dry_run_deploys_every_function_gen2_with_its_access(script: str) -> None:
    lines = commands(script)
    for name in deploy.function_names():
        line = deploy_line(lines, name)
        argv = shlex.split(line)
        assert "--gen2" in argv and "--trigger-http" in argv
        assert any(a.startswith("--source=") and a.endswith(f"/bundle/{name}") for a in argv)
        assert f"--entry-point={name}" in argv and "--runtime=python311" in argv
        assert "--set-secrets=JWT_SECRET=aijobs-jwt-secret:latest,AI_API_KEY=aijobs-ai-api-key:latest" in argv
        assert f"--service-account=aijobs-functions@{PROJECT}.iam.gserviceaccount.com" in argv
        settings = env_vars(argv)
        assert settings["APP_ENV"] == "production" and settings["FUNCTIONS_BASE_URL"] == BASE_URL
        assert settings["TASKS_SERVICE_ACCOUNT"] == f"aijobs-tasks@{PROJECT}.iam.gserviceaccount.com"
        assert settings["SCHEDULER_SERVICE_ACCOUNT"] == f"aijobs-scheduler@{PROJECT}.iam.gserviceaccount.com"
        assert "WORKER_SECRET" not in settings and "FIRESTORE_EMULATOR_HOST" not in settings
        spec = deploy.FUNCTIONS[name]
        assert f"--memory={spec.memory}" in argv and f"--max-instances={spec.max_instances}" in argv
        assert f"--concurrency={spec.concurrency}" in argv and "--min-instances=0" in argv
        if name in PRIVATE:
            assert "--no-allow-unauthenticated" in argv and "--allow-unauthenticated" not in argv
            binding = [
                line
                for line in lines
                if line.startswith(f"gcloud functions add-invoker-policy-binding {name} ")
            ]
            assert len(binding) == 1 and f"--member=serviceAccount:{PRIVATE[name]}@" in binding[0]
        else:
            assert "--allow-unauthenticated" in argv and "--no-allow-unauthenticated" not in argv
            assert f"add-invoker-policy-binding {name} " not in script
    # A worker call must outlive the task's dispatch deadline (AI timeout + 30 s lease margin).
    assert "--timeout=120s" in shlex.split(deploy_line(lines, "worker"))


def test_dry_run_queue_scheduler_and_firestore(script: str) -> None:
    lines = commands(script)
    queue = next(line for line in lines if "gcloud tasks queues create aijobs-jobs" in line)
    for flag in ("--max-attempts=5", "--min-backoff=10s", "--max-backoff=300s", "--max-doublings=4"):
        assert flag in queue
    assert "--max-dispatches-per-second=20" in queue and "--max-concurrent-dispatches=50" in queue
    assert "gcloud tasks queues update aijobs-jobs" in queue, "a second run updates the queue"

    for job, function in (("aijobs-weekly-report", "weekly_report"), ("aijobs-sweep-jobs", "sweep_jobs")):
        line = next(line for line in lines if f"scheduler jobs describe {job} " in line)
        assert f"scheduler jobs create http {job} " in line and f"scheduler jobs update http {job} " in line
        assert (
            line.count(f"--oidc-service-account-email=aijobs-scheduler@{PROJECT}.iam.gserviceaccount.com")
            == 2
        )
        assert line.count(f"--oidc-token-audience={BASE_URL}/{function}") == 2
        assert line.count(f"--uri={BASE_URL}/{function}") == 2

    for group in ("jobs", "idempotency", "login_attempts", "rate_windows"):
        assert (
            f"gcloud firestore fields ttls update expires_at --collection-group={group} --enable-ttl"
            in script
        )

    index_file = json.loads((ROOT / "firestore.indexes.json").read_text())
    for index in index_file["indexes"]:
        configs = " ".join(
            f"--field-config=field-path={f['fieldPath']},"
            + (f"order={f['order'].lower()}" if "order" in f else f"array-config={f['arrayConfig'].lower()}")
            for f in index["fields"]
        )
        scope = "collection-group" if index["queryScope"] == "COLLECTION_GROUP" else "collection"
        expected = (
            f"gcloud firestore indexes composite create --collection-group={index['collectionGroup']} "
            f"--query-scope={scope} {configs} --async"
        )
        assert any(line.startswith(expected) for line in lines), expected
    for override in index_file.get("fieldOverrides", []):
        path = f"collectionGroups/{override['collectionGroup']}/fields/{override['fieldPath']}"
        assert path in script or f"fields update {override['fieldPath']} " in script


def test_readme_schedule_snippet_matches_the_plan(script: str) -> None:
    """The README's hand-written Cloud Scheduler commands must stay what the deploy creates."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"Schedule it.*?```sh\n(.*?)```", readme, re.S)
    assert block is not None
    text = block.group(1).replace("\\\n", " ")
    for name, value in (("$FUNCTIONS_BASE_URL", BASE_URL), ("$REGION", REGION), ("$PROJECT", PROJECT)):
        text = text.replace(name, value)
    lines = commands(script)
    for readme_command in filter(None, (line.strip() for line in text.splitlines())):
        documented = shlex.split(readme_command)
        job = documented[5]
        planned = next(line for line in lines if f"scheduler jobs describe {job} " in line)
        create = shlex.split(planned.split("; else ", 1)[1].removesuffix("; fi"))
        assert set(documented) <= set(create), set(documented) - set(create)


def test_plan_order_and_consistency() -> None:
    config = deploy.Config(PROJECT, REGION, REGION, ROOT / "build" / "bundle")
    plan = deploy.build_plan(config)
    titles = [section.title for section in plan.sections]
    order = [
        "APIs",
        "Service accounts",
        "Secrets",
        "Cloud Tasks queue",
        "Cloud Functions",
        "Invokers",
        "Scheduler",
    ]
    positions = [next(i for i, t in enumerate(titles) if key.lower() in t.lower()) for key in order]
    assert positions == sorted(positions), titles
    assert "Firestore database" in titles[titles.index("Secrets (Secret Manager)") - 1]
    rendered = plan.commands()
    assert len(rendered) == len(set(rendered)), "no step twice"
    # Least privilege: no project-wide role beyond these, and no owner/editor anywhere.
    project_roles = {r for a in deploy.SERVICE_ACCOUNTS.values() for r in a.project_roles}
    assert project_roles == {
        "roles/datastore.user",
        "roles/logging.logWriter",
        "roles/cloudbuild.builds.builder",
        "roles/firebaseauth.viewer",  # Firebase ID tokens' revocation check reads the user
    }
    assert not any(role in " ".join(rendered) for role in ("roles/owner", "roles/editor"))
    with pytest.raises(ValueError):
        deploy.FunctionSpec(memory="256MiB", timeout_seconds=30, concurrency=8, max_instances=1)


def test_plan_without_secret_values_generates_jwt_and_requires_ai_key() -> None:
    config = deploy.Config(PROJECT, REGION, REGION, ROOT / "build" / "bundle")
    steps = {step.description: step for _, step in deploy.build_plan(config).steps()}
    jwt = steps["First version of aijobs-jwt-secret: a random key, if it has none"]
    assert jwt.check is not None and jwt.stdin == deploy.Stdin()
    assert len(jwt.stdin.read()) == 64
    ai = steps["aijobs-ai-api-key must have a value"]
    assert ai.fail_message is not None and "AIJOBS_AI_API_KEY" in ai.fail_message


def test_deployed_environment_passes_production_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a deployed instance sees (env vars + the two secrets) must satisfy production's checks."""
    from shared.settings import Settings

    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)  # e.g. the test stack's WORKER_SECRET
    config = deploy.Config(PROJECT, REGION, REGION, ROOT / "build" / "bundle")
    env = deploy.function_env(config, deploy.FUNCTIONS["worker"])
    assert set(env) - {"THREADS"} <= {name.upper() for name in Settings.model_fields}, "no typos"
    secrets = {"JWT_SECRET": deploy.Stdin().read().decode(), "AI_API_KEY": AI_SENTINEL}
    for key, value in {**env, **secrets}.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.app_env == "production" and not settings.is_local
    assert settings.worker_url == f"{BASE_URL}/worker"
    assert (
        settings.job_lease_seconds
        == deploy.AI_TIMEOUT_SECONDS + 30
        < deploy.FUNCTIONS["worker"].timeout_seconds
    )
    assert settings.job_max_attempts < deploy.QUEUE.max_attempts


def test_config_refuses_unusable_inputs() -> None:
    from shared.settings import DEV_JWT_SECRET

    assert deploy.DEV_JWT_SECRET == DEV_JWT_SECRET
    good = ["--project", PROJECT, "--region", REGION]
    refused: list[tuple[list[str], dict[str, str]]] = [
        (["--project", "Bad_Project", "--region", REGION], {}),
        (["--project", PROJECT, "--region", "europe"], {}),
        ([*good, "--ai-base-url", "http://127.0.0.1:8090/v1"], {}),
        (good, {"AIJOBS_JWT_SECRET": "too-short"}),
        (good, {"AIJOBS_JWT_SECRET": DEV_JWT_SECRET}),
    ]
    for argv, environ in refused:
        with pytest.raises(deploy.DeployError):
            deploy.config_from_args(deploy.parse_args(argv), environ)
    config = deploy.config_from_args(deploy.parse_args(good), {"AIJOBS_AI_API_KEY": "k"})
    assert config.ai_key_given and not config.jwt_secret_given and config.firestore_location == REGION


def test_field_overrides_and_env_escaping(tmp_path: Path) -> None:
    config = deploy.Config(PROJECT, REGION, REGION, tmp_path)
    scoped = deploy.field_override_step(
        config,
        {
            "collectionGroup": "c",
            "fieldPath": "f",
            "indexes": [{"order": "ASCENDING", "queryScope": "COLLECTION"}],
        },
    )
    assert scoped.argv[:6] == ("gcloud", "firestore", "indexes", "fields", "update", "f")
    assert "--index=order=ascending" in scoped.argv
    grouped = deploy.field_override_step(
        config,
        {
            "collectionGroup": "c",
            "fieldPath": "f",
            "indexes": [{"order": "ASCENDING", "queryScope": "COLLECTION_GROUP"}],
        },
    )
    assert grouped.shell is not None and "collectionGroups/c/fields/f?updateMask=indexConfig" in grouped.shell
    assert deploy.ttl_groups(
        {"indexes": [], "fieldOverrides": [{"collectionGroup": "x", "fieldPath": "t", "ttl": True}]}
    )[-1] == ("x", "t")
    assert deploy.env_vars_flag({"A": "1,2", "B": "3"}) == "--set-env-vars=^|^A=1,2|B=3"


# --------------------------------------------------------------------------- running it (fake gcloud)

_FAKE_GCLOUD = r"""#!/bin/bash
# Stands in for gcloud: records each call; "describe" succeeds once $FAKE_STATE/exists exists.
printf '%s\n' "gcloud $*" >> "$FAKE_LOG"
args=" $* "
if [[ "$args" == *" auth print-access-token "* ]]; then echo fake-token; exit 0; fi
if [[ -n "${FAKE_FAIL:-}" && "$args" == *"$FAKE_FAIL"* ]]; then
  echo "ERROR: PERMISSION_DENIED" >&2; exit 1
fi
if [[ "$args" == *" describe "* ]]; then
  [[ -e "$FAKE_STATE/exists" ]] && exit 0
  echo "ERROR: NOT_FOUND" >&2; exit 1
fi
if [[ "$args" == *" versions add "* ]]; then cat > "$FAKE_STATE/secret-$4"; exit 0; fi
# Read what is piped in, as gcloud does: a writer whose reader left dies of SIGPIPE (exit 141).
if [[ "$args" == *"/dev/stdin"* ]]; then cat > /dev/null; fi
if [[ -e "$FAKE_STATE/exists" && "$args" == *" composite create "* ]]; then
  echo "ERROR: (gcloud.firestore.indexes.composite.create) ALREADY_EXISTS: index already exists" >&2; exit 1
fi
exit 0
"""
_FAKE_TOOL = '#!/bin/bash\nprintf \'%s\\n\' "$(basename "$0") $*" >> "$FAKE_LOG"\n'


@pytest.fixture
def fake_cloud(tmp_path: Path) -> dict[str, Any]:
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir()
    state.mkdir()
    for name, text in (("gcloud", _FAKE_GCLOUD), ("curl", _FAKE_TOOL), ("firebase", _FAKE_TOOL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "FAKE_LOG": str(tmp_path / "calls.log"),
        "FAKE_STATE": str(state),
    }
    # The real gcloud must be unreachable: the fake shadows it.
    assert shutil.which("gcloud", path=env["PATH"]) == str(bin_dir / "gcloud")
    (tmp_path / "web").mkdir()
    return {
        "env": env,
        "state": state,
        "log": tmp_path / "calls.log",
        "bundle": tmp_path / "bundle",
        "web": tmp_path / "web",
    }


def run_deploy(
    fake: dict[str, Any], *args: str, **env: str
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    fake["log"].unlink(missing_ok=True)
    argv = [sys.executable, "scripts/deploy.py", "--project", PROJECT, "--region", REGION, *args]
    # The console's config.json goes to a directory of the test's own, not into web/.
    argv += ["--bundle-dir", str(fake["bundle"]), "--web-dir", str(fake["web"])]
    result = subprocess.run(
        argv, cwd=ROOT, env={**fake["env"], **env}, capture_output=True, text=True, timeout=120
    )
    calls = fake["log"].read_text().splitlines() if fake["log"].exists() else []
    return result, calls


def test_first_run_creates_and_second_run_updates(fake_cloud: dict[str, Any]) -> None:
    first, calls = run_deploy(fake_cloud, AIJOBS_AI_API_KEY=AI_SENTINEL)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert AI_SENTINEL not in first.stdout + first.stderr + "\n".join(calls)
    state = fake_cloud["state"]
    assert (state / "secret-aijobs-ai-api-key").read_text() == AI_SENTINEL
    assert len((state / "secret-aijobs-jwt-secret").read_text()) == 64, "a generated 48-byte key"
    created = [c for c in calls if " create " in c and "composite" not in c]
    for expected in (
        "service-accounts create aijobs-functions",
        "secrets create aijobs-jwt-secret",
        "tasks queues create aijobs-jobs",
        "scheduler jobs create http aijobs-sweep-jobs",
        "firestore databases create",
    ):
        assert any(expected in c for c in created), expected
    assert sum(c.startswith("gcloud functions deploy ") for c in calls) == len(deploy.FUNCTIONS)
    assert any(c.startswith("firebase deploy --only firestore:rules") for c in calls)
    assert any(c.startswith("curl ") for c in calls), "collection-group field override via REST"

    (state / "exists").touch()  # everything now exists: describes succeed, indexes exist
    second, calls = run_deploy(fake_cloud)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert not [c for c in calls if " create " in c and "composite" not in c], "nothing created twice"
    assert not [c for c in calls if "versions add" in c], "no new secret versions without new values"
    assert any("tasks queues update aijobs-jobs" in c for c in calls)
    assert sum("scheduler jobs update http" in c for c in calls) == 2
    assert "(already in place)" in second.stdout  # composite indexes: ALREADY_EXISTS tolerated
    assert sum(c.startswith("gcloud functions deploy ") for c in calls) == len(deploy.FUNCTIONS)


def test_stops_at_the_first_unexpected_failure(fake_cloud: dict[str, Any]) -> None:
    result, calls = run_deploy(
        fake_cloud, AIJOBS_AI_API_KEY=AI_SENTINEL, FAKE_FAIL="functions deploy me --gen2"
    )
    assert result.returncode == 1
    assert "deploy stopped at step" in result.stderr and "Function me" in result.stderr
    assert calls[-1].startswith("gcloud functions deploy me "), "nothing ran after the failure"


def test_first_deploy_without_an_ai_key_stops_before_the_functions(fake_cloud: dict[str, Any]) -> None:
    result, calls = run_deploy(fake_cloud)
    assert result.returncode == 1
    assert "set $AIJOBS_AI_API_KEY" in result.stderr
    assert not any(c.startswith("gcloud functions deploy") for c in calls)


def test_dry_run_enables_what_firebase_auth_needs(script: str) -> None:
    """Firebase ID tokens: the Identity Toolkit API, the runtime's right to read Firebase users
    (the revocation check), and a note on what only the Firebase console can do."""
    lines = commands(script)
    enable = next(line for line in lines if "gcloud services enable" in line)
    assert "identitytoolkit.googleapis.com" in enable.split()
    binding = next(line for line in lines if "--role=roles/firebaseauth.viewer" in line)
    assert f"--member=serviceAccount:aijobs-functions@{PROJECT}.iam.gserviceaccount.com" in binding
    assert "add this project to Firebase" in script and "sign-in provider" in script


def test_dry_run_makes_a_private_images_bucket_with_job_retention(script: str) -> None:
    """Generated images: a private bucket whose lifecycle rule matches the jobs' TTL, and the
    functions' account may manage its objects, on that bucket only."""
    lines = commands(script)
    bucket = f"gs://{PROJECT}-aijobs-images"
    made = next(line for line in lines if f"gcloud storage buckets describe {bucket} " in line)
    for flag in ("--uniform-bucket-level-access", "--public-access-prevention", f"--location={REGION}"):
        assert flag in made, flag
    assert f"gcloud storage buckets update {bucket} " in made, "a second run updates the bucket"
    assert "--soft-delete-duration=0" in made, "a deleted job's image is gone at once"
    rule = next(line for line in lines if "--lifecycle-file=/dev/stdin" in line)
    assert json.loads(shlex.split(rule)[2]) == {
        "rule": [{"action": {"type": "Delete"}, "condition": {"age": deploy.JOB_RETENTION_DAYS}}]
    }
    binding = next(line for line in lines if "--role=roles/storage.objectAdmin" in line)
    assert binding.startswith(f"gcloud storage buckets add-iam-policy-binding {bucket} ")
    assert f"--member=serviceAccount:aijobs-functions@{PROJECT}.iam.gserviceaccount.com" in binding
    assert not [line for line in lines if "projects add-iam-policy-binding" in line and "storage" in line]
    worker = deploy_line(lines, "worker")
    assert f"IMAGES_BUCKET={PROJECT}-aijobs-images" in worker
    assert f"JOB_RETENTION_DAYS={deploy.JOB_RETENTION_DAYS}" in worker
    assert "storage.googleapis.com" in next(line for line in lines if "gcloud services enable" in line)


# --------------------------------------------------------------------------- the web console


def test_dry_run_deploys_the_console_last_and_lets_its_origins_call_the_api(tmp_path: Path) -> None:
    """Hosting after the functions it calls, its config.json naming them, and its two Hosting
    origins (plus a custom domain) in every function's CORS_ORIGINS."""
    script = dry_run(
        tmp_path,
        AIJOBS_AI_API_KEY=AI_SENTINEL,
        AIJOBS_FIREBASE_API_KEY="AIzaSy-demo-web-key",
    )
    lines = commands(script)
    assert lines[-1] == f"firebase deploy --only hosting --project {PROJECT} --non-interactive"
    written = lines[-2]
    assert written.startswith("printf '%s\\n' ") and written.endswith(" > web/config.json")
    assert json.loads(shlex.split(written)[2]) == {
        "api_base_url": BASE_URL,
        "firebase": {
            "api_key": "AIzaSy-demo-web-key",
            "identity_toolkit_url": "https://identitytoolkit.googleapis.com",
            "secure_token_url": "https://securetoken.googleapis.com",
        },
    }
    assert lines.index(written) > lines.index(deploy_line(lines, "worker"))
    for name in deploy.function_names():
        settings = env_vars(shlex.split(deploy_line(lines, name)))
        assert settings["CORS_ORIGINS"] == f"https://{PROJECT}.web.app,https://{PROJECT}.firebaseapp.com"
    assert "firebasehosting.googleapis.com" in next(
        line for line in lines if "gcloud services enable" in line
    )

    config = deploy.config_from_args(
        deploy.parse_args(
            ["--project", PROJECT, "--region", REGION, "--console-origin", "https://ai.example.com"]
        ),
        {},
    )
    assert config.hosting_origins[-1] == "https://ai.example.com"
    assert deploy.function_env(config, deploy.FUNCTIONS["jobs"])["CORS_ORIGINS"].endswith(
        ",https://ai.example.com"
    )
    from scripts.deployment.plan import console_config

    assert console_config(config) == {"api_base_url": BASE_URL, "firebase": None}, "no key, no Firebase"


def test_console_options_are_checked() -> None:
    good = ["--project", PROJECT, "--region", REGION]
    for extra in (
        ["--console-origin", "http://ai.example.com"],
        ["--console-origin", "https://ai.example.com/console"],
        ["--console-origin", "https://AI.example.com"],
        ["--firebase-api-key", "not a key"],
    ):
        with pytest.raises(deploy.DeployError):
            deploy.config_from_args(deploy.parse_args([*good, *extra]), {})


def test_a_run_writes_the_console_config_and_deploys_hosting(fake_cloud: dict[str, Any]) -> None:
    result, calls = run_deploy(
        fake_cloud, "--firebase-api-key", "AIzaSy-demo-web-key", AIJOBS_AI_API_KEY=AI_SENTINEL
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert calls[-1] == f"firebase deploy --only hosting --project {PROJECT} --non-interactive"
    written = json.loads((fake_cloud["web"] / "config.json").read_text())
    assert written["api_base_url"] == BASE_URL and written["firebase"]["api_key"] == "AIzaSy-demo-web-key"
    assert (
        not (ROOT / "web" / "config.json").exists()
        or "AIzaSy-demo-web-key" not in (ROOT / "web" / "config.json").read_text()
    ), "the test wrote into the work tree"


def test_firebase_json_serves_web_with_the_consoles_policy() -> None:
    """Hosting serves web/ under the same Content-Security-Policy as the dev server, except that
    connect-src names Google's hosts of the functions and of Firebase sign-in instead of ports."""
    from scripts.stack import console_config, content_security_policy

    hosting = json.loads((ROOT / "firebase.json").read_text())["hosting"]
    assert hosting["public"] == "web" and (ROOT / hosting["public"] / "index.html").exists()
    headers = {h["key"]: h["value"] for rule in hosting["headers"] for h in rule["headers"]}

    def directives(policy: str) -> dict[str, str]:
        return dict(part.split(" ", 1) for part in policy.split("; "))

    production = directives(headers["Content-Security-Policy"])
    local = directives(content_security_policy(console_config("http://127.0.0.1:1", "127.0.0.1:2")))
    assert {k: v for k, v in production.items() if k != "connect-src"} == {
        k: v for k, v in local.items() if k != "connect-src"
    }
    assert production["connect-src"].split() == [
        "'self'",
        "https://*.cloudfunctions.net",
        "https://identitytoolkit.googleapis.com",
        "https://securetoken.googleapis.com",
    ]
    assert headers["X-Content-Type-Options"] == "nosniff"
