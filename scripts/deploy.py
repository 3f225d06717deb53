"""Deploy aijobs to Google Cloud with ``gcloud``: ``scripts/deploy --project P --region R [--dry-run]``.

The deploy is a *plan*: an ordered list of sections (APIs, service accounts,
Firestore database, secrets, queue, functions, invokers, scheduler, Firestore
indexes/TTL/rules), each a list of ``Step`` objects that only describe a
command. Building the plan runs nothing, so tests can check it, and
``--dry-run`` prints it as a bash script: the exact commands, never a secret.

Idempotent by construction: a second run updates instead of failing. Commands
that create-or-update by nature (``functions deploy``, ``services enable``,
IAM ``add-*-policy-binding``) run as they are; everything else is a
``describe || create`` pair (or ``describe`` then ``update`` else ``create``);
index creation tolerates "already exists".

Each function is deployed from its own bundle, ``build/bundle/<function>/``:
``main.py`` (a copy of ``functions/<function>.py``: Cloud Functions loads
``main.py``), ``shared/`` and the pinned ``requirements.txt``.
``tests/test_deploy.py`` installs a bundle's requirements into a fresh
virtualenv and serves requests from it, so a missing file or dependency fails
a test rather than a deploy.

Standard library only: it runs before any virtualenv exists.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BUNDLE_DIR = ROOT / "build" / "bundle"
BUNDLE_MARKER = ".aijobs-bundle"
"""Written into the bundle directory: only a directory carrying it is ever deleted and rebuilt."""

RUNTIME = "python311"
QUEUE_NAME = "aijobs-jobs"
WEBHOOK_QUEUE_NAME = "aijobs-webhooks"
WEBHOOK_MAX_ATTEMPTS = 8
"""Attempts per webhook delivery (``WEBHOOK_MAX_ATTEMPTS``); the webhooks queue's must exceed it."""
JWT_SECRET_NAME = "aijobs-jwt-secret"
AI_KEY_SECRET_NAME = "aijobs-ai-api-key"
JWT_SECRET_ENV = "AIJOBS_JWT_SECRET"
"""Set it to store (or rotate to) that JWT key; unset, a first deploy generates one."""
DEV_JWT_SECRET = "dev-only-jwt-secret-not-for-production-use"  # = shared.settings.DEV_JWT_SECRET
AI_KEY_ENV = "AIJOBS_AI_API_KEY"
"""Set it to store (or rotate to) that AI key; the first deploy needs it."""
AI_PROVIDER_KEYS_SECRET_NAME = "aijobs-ai-provider-keys"
AI_PROVIDER_KEYS_ENV = "AIJOBS_AI_PROVIDER_KEYS"
"""JSON ``{name: key}`` of the ``--ai-providers``: set it to store (or rotate to) those keys."""
AI_TIMEOUT_SECONDS = 60
"""Bound on one AI call; the worker's job lease and the task's dispatch deadline are this + 30 s."""
JOB_MAX_ATTEMPTS = 3
"""AI attempts per job; the queue's ``max_attempts`` must leave room above it."""
TTL_FIELD = "expires_at"
TTL_COLLECTION_GROUPS = (
    "jobs",
    "idempotency",
    "login_attempts",
    "rate_windows",
    "webhook_deliveries",
    "refresh_tokens",
    "refresh_families",
)
"""Collection groups whose documents carry ``expires_at`` and are deleted by Firestore TTL."""
APIS = (
    "cloudfunctions.googleapis.com",
    "run.googleapis.com",
    "cloudbuild.googleapis.com",
    "artifactregistry.googleapis.com",
    "cloudtasks.googleapis.com",
    "cloudscheduler.googleapis.com",
    "firestore.googleapis.com",
    "secretmanager.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "cloudresourcemanager.googleapis.com",  # gcloud projects add-iam-policy-binding
    # Firebase Authentication: the user look-up of each Firebase ID token (revocation check).
    "identitytoolkit.googleapis.com",
    "storage.googleapis.com",  # the images bucket
)
JOB_RETENTION_DAYS = 90
"""JOB_RETENTION_DAYS of the functions: the jobs' TTL, and the age at which the images bucket's
lifecycle rule deletes an object (so an orphaned image goes with its job)."""
ALREADY_EXISTS = ("ALREADY_EXISTS", "already exists")
IAM_NOT_YET_VISIBLE = ("does not exist", "NOT_FOUND", "not found")
"""A just-created service account takes seconds to be visible to IAM: bindings retry on these."""

Caller = Literal["public", "tasks", "scheduler"]


@dataclass(frozen=True)
class FunctionSpec:
    """How one function runs on Cloud Functions (2nd gen): its capacity and its cost ceiling."""

    memory: str
    """Memory limit per instance. signup/login hash with argon2id at 64 MiB per hash, so
    ``concurrency x 64 MiB`` plus the ~90 MiB an instance needs after imports must fit."""

    timeout_seconds: int
    """Request timeout. The worker's must exceed the task's dispatch deadline (AI timeout + 30 s)."""

    concurrency: int
    """Requests one instance serves at once (also its gunicorn ``THREADS``). Above 1 needs a
    whole vCPU (``cpu``); CPU-bound argon2 gains nothing from more than a few."""

    max_instances: int
    """Hard cap on instances: the ceiling on what a traffic spike (or abuse) can cost."""

    cpu: str | None = None
    """vCPUs; ``None`` lets Cloud Functions derive it from memory (fractional, concurrency 1 only)."""

    min_instances: int = 0
    """Warm instances kept even when idle; 0 scales to zero and costs nothing at rest."""

    caller: Caller = "public"
    """``public`` allows unauthenticated HTTP (the app checks its own bearer tokens); otherwise
    only that service account may invoke it (Cloud Run IAM), and the app re-checks its OIDC token."""

    def __post_init__(self) -> None:
        if self.concurrency > 1 and (self.cpu is None or float(self.cpu) < 1):
            raise ValueError("concurrency above 1 needs cpu >= 1 on Cloud Functions (2nd gen)")

    @property
    def public(self) -> bool:
        return self.caller == "public"


_USER_API = FunctionSpec(memory="256MiB", timeout_seconds=30, concurrency=40, cpu="1", max_instances=50)
_PASSWORD_HASHING = FunctionSpec(
    memory="512MiB", timeout_seconds=30, concurrency=4, cpu="1", max_instances=50
)

FUNCTIONS: dict[str, FunctionSpec] = {
    "signup": _PASSWORD_HASHING,
    "login": _PASSWORD_HASHING,
    # Refresh and logout: a few reads and one commit, no password hash: sized like the user API.
    "refresh": _USER_API,
    "logout": _USER_API,
    "me": _USER_API,
    "credits": _USER_API,
    "submit_job": _USER_API,
    "jobs": _USER_API,
    "batches": _USER_API,
    "usage": _USER_API,
    # History kept by the server: a post reads its conversation's exchanges, then submits like submit_job.
    "conversations": _USER_API,
    "admin": FunctionSpec(memory="256MiB", timeout_seconds=30, concurrency=40, cpu="1", max_instances=10),
    # Public and unauthenticated, and each call pings Firestore, the queue and the AI: kept small.
    "health": FunctionSpec(memory="256MiB", timeout_seconds=30, concurrency=40, cpu="1", max_instances=5),
    # Static but for the document built once per instance; the page's assets are cached a day.
    "docs": FunctionSpec(memory="256MiB", timeout_seconds=30, concurrency=40, cpu="1", max_instances=5),
    # Public and unauthenticated, one cached read per CATALOG_CACHE_SECONDS, answers cacheable.
    "catalog": FunctionSpec(memory="256MiB", timeout_seconds=30, concurrency=40, cpu="1", max_instances=10),
    "worker": FunctionSpec(
        memory="512MiB", timeout_seconds=120, concurrency=8, cpu="1", max_instances=20, caller="tasks"
    ),
    # The user's webhook endpoints: like the other user-facing reads and writes.
    "webhooks": _USER_API,
    # The user's API keys (password sessions only): like the other user-facing reads and writes.
    "api_keys": _USER_API,
    # One POST per call, bounded by WEBHOOK_TIMEOUT_SECONDS (5 s): I/O bound, so many at once.
    "deliver_webhook": FunctionSpec(
        memory="256MiB", timeout_seconds=60, concurrency=20, cpu="1", max_instances=10, caller="tasks"
    ),
    "weekly_report": FunctionSpec(
        memory="1GiB", timeout_seconds=540, concurrency=1, max_instances=1, caller="scheduler"
    ),
    "sweep_jobs": FunctionSpec(
        memory="256MiB", timeout_seconds=300, concurrency=1, max_instances=1, caller="scheduler"
    ),
}


@dataclass(frozen=True)
class QueueSpec:
    """The Cloud Tasks queue that delivers jobs to ``worker``."""

    name: str = QUEUE_NAME
    max_attempts: int = 5
    """Deliveries per task. Above ``JOB_MAX_ATTEMPTS`` so a ``409 job_in_progress`` (a duplicate
    delivery) does not use up a job's AI attempts; a task that runs out is caught by the sweeper."""
    min_backoff: str = "10s"
    max_backoff: str = "300s"
    max_doublings: int = 4
    """Retries after 10 s, 20 s, 40 s, 80 s: a flaky AI endpoint gets a few minutes to recover."""
    max_dispatches_per_second: int = 20
    """Rate cap on AI calls started: protects the AI provider's rate limit and the bill."""
    max_concurrent_dispatches: int = 50
    """Jobs in flight at once; at most worker ``concurrency x max_instances``."""


QUEUE = QueueSpec()
WEBHOOK_QUEUE = QueueSpec(
    name=WEBHOOK_QUEUE_NAME,
    # Above WEBHOOK_MAX_ATTEMPTS: deliver_webhook counts attempts itself and acknowledges the last.
    max_attempts=10,
    # 30 s doubling to an hour (shared.webhooks.RETRY_HORIZON is this plus a margin): the 8
    # attempts span about two hours.
    min_backoff="30s",
    max_backoff="3600s",
    max_doublings=7,
    max_dispatches_per_second=50,
    max_concurrent_dispatches=100,
)
"""Webhook deliveries' own queue: a slow or failing receiver never holds up jobs."""


@dataclass(frozen=True)
class ScheduledJob:
    """A Cloud Scheduler job POSTing to a private function with an OIDC token."""

    name: str
    function: str
    schedule: str
    body: str | None
    """JSON body, or ``None`` to send none."""
    retries: int
    """Scheduler retries of a failed run. The report is idempotent (it rewrites the same
    document), so it may retry; the sweeper runs again in a minute anyway."""


SCHEDULED_JOBS = (
    ScheduledJob("aijobs-weekly-report", "weekly_report", "0 6 * * 1", "{}", retries=3),
    # Every minute: the sweeper is also the outbox, and a charged job that never reached the queue
    # must start within 2 minutes (OUTBOX_DELAY_SECONDS, 60, plus at most one interval).
    ScheduledJob("aijobs-sweep-jobs", "sweep_jobs", "* * * * *", None, retries=0),
)


@dataclass(frozen=True)
class ServiceAccount:
    """A service account and the project-level roles it gets (narrower grants are per resource)."""

    name: str
    display_name: str
    project_roles: tuple[str, ...] = ()


SERVICE_ACCOUNTS: dict[str, ServiceAccount] = {
    # Runtime identity of every function. Secret access is granted per secret, the queue roles on
    # the queue only, and actAs on the tasks account only (to mint the tasks' OIDC tokens).
    # firebaseauth.viewer: verify_id_token(check_revoked=True) reads the token's Firebase user.
    "functions": ServiceAccount(
        "aijobs-functions",
        "aijobs functions runtime",
        ("roles/datastore.user", "roles/logging.logWriter", "roles/firebaseauth.viewer"),
    ),
    # Identity in the queues' OIDC tokens; may invoke `worker` and `deliver_webhook` and nothing else.
    "tasks": ServiceAccount("aijobs-tasks", "aijobs Cloud Tasks caller"),
    # Identity in Cloud Scheduler's OIDC tokens; may invoke `weekly_report` and `sweep_jobs`.
    "scheduler": ServiceAccount("aijobs-scheduler", "aijobs Cloud Scheduler caller"),
    # Builds the functions' images. Without it Cloud Build uses the Compute Engine default
    # account, which new projects no longer give the permissions a build needs.
    "build": ServiceAccount("aijobs-build", "aijobs function builds", ("roles/cloudbuild.builds.builder",)),
}


@dataclass(frozen=True)
class Stdin:
    """Where a step's standard input comes from: an environment variable, or a fresh random key.
    The plan holds only this description; the value is read when the step runs, never printed."""

    env: str | None = None

    def render(self) -> str:
        if self.env is not None:
            return f'printf %s "${self.env}"'
        return "python3 -c 'import secrets; print(secrets.token_hex(32), end=\"\")'"

    def read(self) -> bytes:
        if self.env is None:
            # Hex, not urlsafe: it can never spell a word the production settings refuse
            # ("test", "dev", ...), which 1 in about 10,000 urlsafe keys does.
            return secrets.token_hex(32).encode()
        value = os.environ.get(self.env)
        if not value:
            raise DeployError(f"${self.env} is empty")
        return value.encode()


@dataclass(frozen=True)
class Step:
    """One command of the plan, described, not run.

    Plain: run ``argv``. With ``check``: run ``check`` first; if it succeeds the resource exists
    and ``update`` runs (or nothing); if it fails, ``argv`` creates it (or, with
    ``fail_message``, the deploy stops and says what is missing). ``shell`` is a bash line for
    the rare step an argv cannot express.
    """

    description: str
    argv: tuple[str, ...] = ()
    check: tuple[str, ...] | None = None
    update: tuple[str, ...] | None = None
    shell: str | None = None
    stdin: Stdin | None = None
    tolerate: tuple[str, ...] = ()
    """Error output that means the desired state is already there (e.g. an index exists)."""
    retry_on: tuple[str, ...] = ()
    """Error output worth retrying for a while (IAM's eventual consistency)."""
    fail_message: str | None = None
    needs: str | None = None
    """An optional tool: without it on PATH the step is skipped with a note."""
    optional: bool = False
    """A failure warns and the deploy goes on (defence in depth, not needed to serve)."""

    def render(self) -> str:
        """The step as one exact bash command line."""
        if self.shell is not None:
            return self.shell
        main = shlex.join(self.argv)
        if self.stdin is not None:
            main = f"{self.stdin.render()} | {main}"
        if self.check is None:
            return main
        check = f"{shlex.join(self.check)} >/dev/null 2>&1"
        if self.fail_message is not None:
            return f"{check} || {{ echo {shlex.quote(self.fail_message)} >&2; exit 1; }}"
        if self.update is not None:
            return f"if {check}; then {shlex.join(self.update)}; else {main}; fi"
        return f"{check} || {main}"


@dataclass
class Section:
    title: str
    steps: list[Step] = field(default_factory=list)
    note: str = ""


@dataclass
class Plan:
    sections: list[Section]

    def steps(self) -> Iterator[tuple[Section, Step]]:
        for section in self.sections:
            for step in section.steps:
                yield section, step

    def commands(self) -> list[str]:
        return [step.render() for _, step in self.steps()]


class DeployError(RuntimeError):
    """The deploy cannot go on; the message says why and what to do."""


@dataclass(frozen=True)
class Config:
    """Everything the plan depends on. Secret *values* are not here, only whether they were given."""

    project: str
    region: str
    firestore_location: str
    bundle_dir: Path
    ai_model: str = "gpt-4o-mini"
    ai_image_model: str = "gpt-image-1"
    ai_base_url: str | None = None
    ai_providers: str | None = None
    """``AI_PROVIDERS`` (JSON), the providers besides ``default``; their keys are one secret."""
    jwt_secret_given: bool = False
    ai_key_given: bool = False
    ai_provider_keys_given: bool = False

    def sa_email(self, key: str) -> str:
        return f"{SERVICE_ACCOUNTS[key].name}@{self.project}.iam.gserviceaccount.com"

    def member(self, key: str) -> str:
        return f"serviceAccount:{self.sa_email(key)}"

    @property
    def functions_base_url(self) -> str:
        """The ``cloudfunctions.net`` base: stable before the first deploy (unlike ``run.app``
        URLs), so it can be both where tasks are sent and the OIDC audience the app expects."""
        return f"https://{self.region}-{self.project}.cloudfunctions.net"

    def function_url(self, name: str) -> str:
        return f"{self.functions_base_url}/{name}"

    @property
    def images_bucket(self) -> str:
        """Bucket names are global: the project id makes this one unique."""
        return f"{self.project}-aijobs-images"

    def gcloud(self, *args: str) -> tuple[str, ...]:
        """A gcloud command pinned to the project (never the CLI's configured default) that
        never prompts."""
        return ("gcloud", *args, f"--project={self.project}", "--quiet")

    def source(self, name: str) -> str:
        path = self.bundle_dir / name
        return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


# --------------------------------------------------------------------------- bundle


def function_names(root: Path = ROOT) -> list[str]:
    """Every Cloud Function: one file per function in ``functions/``."""
    return sorted(p.stem for p in (root / "functions").glob("*.py") if not p.stem.startswith("_"))


def check_function_table(names: Sequence[str]) -> None:
    """Refuse to deploy a function without settings (or settings for a function that is gone)."""
    missing = sorted(set(names) - set(FUNCTIONS))
    extra = sorted(set(FUNCTIONS) - set(names))
    if missing or extra:
        raise DeployError(
            f"scripts/deploy.py FUNCTIONS does not match functions/: missing {missing}, unknown {extra}"
        )


def pinned_requirements(path: Path) -> str:
    """The runtime requirements, which must all be pinned (``==``) so every deploy builds the same."""
    text = path.read_text()
    for line in text.splitlines():
        requirement = line.split("#", 1)[0].strip()
        if requirement and "==" not in requirement:
            raise DeployError(f"{path.name}: {requirement!r} is not pinned with ==")
    return text


def build_bundles(out_dir: Path, root: Path = ROOT) -> dict[str, Path]:
    """Write one deployable source directory per function and return them by name.

    Cloud Functions builds each function from its own directory with ``main.py`` at the top and
    installs that directory's ``requirements.txt``; ``shared/`` travels along as a package.
    """
    names = function_names(root)
    check_function_table(names)
    requirements = pinned_requirements(root / "requirements.txt")
    if out_dir.exists():
        if any(out_dir.iterdir()) and not (out_dir / BUNDLE_MARKER).exists():
            raise DeployError(f"{out_dir} exists and is not a bundle directory: not deleting it")
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    (out_dir / BUNDLE_MARKER).write_text("built by scripts/deploy.py; deleted and rebuilt by it\n")
    bundles: dict[str, Path] = {}
    for name in names:
        target = out_dir / name
        target.mkdir()
        shutil.copy2(root / "functions" / f"{name}.py", target / "main.py")
        shutil.copytree(
            root / "shared", target / "shared", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
        (target / "requirements.txt").write_text(requirements)
        bundles[name] = target
    return bundles


# --------------------------------------------------------------------------- plan


def apis_section(config: Config) -> Section:
    return Section(
        "APIs",
        [
            Step(
                "Enable the APIs the deploy and the functions use", config.gcloud("services", "enable", *APIS)
            )
        ],
        "idempotent: enabling an enabled API changes nothing. Firebase ID tokens also need, once, by"
        " hand in the Firebase console (no gcloud command does it): add this project to Firebase and"
        " enable a sign-in provider (Authentication > Sign-in method)",
    )


def service_accounts_section(config: Config) -> Section:
    steps: list[Step] = []
    for key, account in SERVICE_ACCOUNTS.items():
        steps.append(
            Step(
                f"Service account {account.name}",
                config.gcloud(
                    "iam",
                    "service-accounts",
                    "create",
                    account.name,
                    f"--display-name={account.display_name}",
                ),
                check=config.gcloud("iam", "service-accounts", "describe", config.sa_email(key)),
            )
        )
    for key, account in SERVICE_ACCOUNTS.items():
        for role in account.project_roles:
            steps.append(
                Step(
                    f"{role} for {account.name}",
                    config.gcloud(
                        "projects",
                        "add-iam-policy-binding",
                        config.project,
                        f"--member={config.member(key)}",
                        f"--role={role}",
                        "--condition=None",
                    ),
                    retry_on=IAM_NOT_YET_VISIBLE,
                )
            )
    steps.append(
        Step(
            "Let the functions mint task OIDC tokens as aijobs-tasks (actAs on that account only)",
            config.gcloud(
                "iam",
                "service-accounts",
                "add-iam-policy-binding",
                config.sa_email("tasks"),
                f"--member={config.member('functions')}",
                "--role=roles/iam.serviceAccountUser",
            ),
            retry_on=IAM_NOT_YET_VISIBLE,
        )
    )
    return Section("Service accounts and project roles", steps, "describe || create; bindings are idempotent")


def firestore_database_section(config: Config) -> Section:
    return Section(
        "Firestore database",
        [
            Step(
                "Firestore (default) database in Native mode",
                config.gcloud(
                    "firestore",
                    "databases",
                    "create",
                    f"--location={config.firestore_location}",
                    "--type=firestore-native",
                ),
                check=config.gcloud("firestore", "databases", "describe", "--database=(default)"),
            )
        ],
    )


def _secret_steps(config: Config, name: str, env: str, given: bool, generate: bool) -> list[Step]:
    add_version = config.gcloud("secrets", "versions", "add", name, "--data-file=-")
    latest = config.gcloud("secrets", "versions", "describe", "latest", f"--secret={name}")
    steps = [
        Step(
            f"Secret {name}",
            config.gcloud("secrets", "create", name, "--replication-policy=automatic"),
            check=config.gcloud("secrets", "describe", name),
        )
    ]
    if given:
        steps.append(Step(f"New version of {name} from ${env}", add_version, stdin=Stdin(env)))
    elif generate:
        steps.append(
            Step(
                f"First version of {name}: a random key, if it has none",
                add_version,
                check=latest,
                stdin=Stdin(),
            )
        )
    else:
        steps.append(
            Step(
                f"{name} must have a value",
                check=latest,
                fail_message=f"secret {name} has no version yet: set ${env} and run scripts/deploy again",
            )
        )
    steps.append(
        Step(
            f"Only the functions' account may read {name}",
            config.gcloud(
                "secrets",
                "add-iam-policy-binding",
                name,
                f"--member={config.member('functions')}",
                "--role=roles/secretmanager.secretAccessor",
                "--condition=None",
            ),
            retry_on=IAM_NOT_YET_VISIBLE,
        )
    )
    return steps


def secrets_section(config: Config) -> Section:
    steps = _secret_steps(config, JWT_SECRET_NAME, JWT_SECRET_ENV, config.jwt_secret_given, generate=True)
    steps += _secret_steps(config, AI_KEY_SECRET_NAME, AI_KEY_ENV, config.ai_key_given, generate=False)
    if config.ai_providers:
        keys = (AI_PROVIDER_KEYS_SECRET_NAME, AI_PROVIDER_KEYS_ENV, config.ai_provider_keys_given)
        steps += _secret_steps(config, *keys, generate=False)
    return Section(
        "Secrets (Secret Manager)",
        steps,
        f"values come from ${JWT_SECRET_ENV} / ${AI_KEY_ENV} on stdin and are never printed",
    )


def queue_flags(queue: QueueSpec) -> tuple[str, ...]:
    return (
        f"--max-attempts={queue.max_attempts}",
        f"--min-backoff={queue.min_backoff}",
        f"--max-backoff={queue.max_backoff}",
        f"--max-doublings={queue.max_doublings}",
        f"--max-dispatches-per-second={queue.max_dispatches_per_second}",
        f"--max-concurrent-dispatches={queue.max_concurrent_dispatches}",
    )


def queue_section(config: Config) -> Section:
    location = f"--location={config.region}"
    steps = []
    for queue in (QUEUE, WEBHOOK_QUEUE):
        steps.append(
            Step(
                f"Cloud Tasks queue {queue.name} with its retry policy and rate limits",
                config.gcloud("tasks", "queues", "create", queue.name, location, *queue_flags(queue)),
                check=config.gcloud("tasks", "queues", "describe", queue.name, location),
                update=config.gcloud("tasks", "queues", "update", queue.name, location, *queue_flags(queue)),
            )
        )
        # enqueuer to create tasks; viewer because `health` reads the jobs queue (get_queue).
        for role in ("roles/cloudtasks.enqueuer", "roles/cloudtasks.viewer"):
            steps.append(
                Step(
                    f"{role} for the functions, on {queue.name} only",
                    config.gcloud(
                        "tasks",
                        "queues",
                        "add-iam-policy-binding",
                        queue.name,
                        location,
                        f"--member={config.member('functions')}",
                        f"--role={role}",
                    ),
                    retry_on=IAM_NOT_YET_VISIBLE,
                )
            )
    return Section("Cloud Tasks queues", steps, "describe, then update or create with the same flags")


def images_section(config: Config) -> Section:
    """The generated images' bucket: private (uniform access, public access prevented), no
    soft delete (a deleted job's image is gone at once), objects deleted at job retention."""
    bucket = f"gs://{config.images_bucket}"
    settings = ("--uniform-bucket-level-access", "--public-access-prevention")
    create = ("--location=" + config.region, "--default-storage-class=STANDARD", "--soft-delete-duration=0")
    expire = {"action": {"type": "Delete"}, "condition": {"age": JOB_RETENTION_DAYS}}
    lifecycle = json.dumps({"rule": [expire]})
    update = shlex.join(config.gcloud("storage", "buckets", "update", bucket, "--lifecycle-file=/dev/stdin"))
    steps = [
        Step(
            f"Bucket {config.images_bucket}: private, uniform access, public access prevented",
            config.gcloud("storage", "buckets", "create", bucket, *create, *settings),
            check=config.gcloud("storage", "buckets", "describe", bucket),
            update=config.gcloud("storage", "buckets", "update", bucket, *settings, "--clear-soft-delete"),
        ),
        Step(
            f"Lifecycle rule: objects are deleted {JOB_RETENTION_DAYS} days old (JOB_RETENTION_DAYS)",
            shell=f"printf %s {shlex.quote(lifecycle)} | {update}",
        ),
        Step(
            f"roles/storage.objectAdmin for the functions, on {config.images_bucket} only",
            config.gcloud(
                "storage",
                "buckets",
                "add-iam-policy-binding",
                bucket,
                f"--member={config.member('functions')}",
                "--role=roles/storage.objectAdmin",
            ),
            retry_on=IAM_NOT_YET_VISIBLE,
        ),
    ]
    return Section("Images bucket (Cloud Storage)", steps, "describe, then update or create; rules replaced")


def function_env(config: Config, spec: FunctionSpec) -> dict[str, str]:
    """The environment every function runs with (``shared/settings.py`` validates it at start)."""
    env = {
        "APP_ENV": "production",
        "GOOGLE_CLOUD_PROJECT": config.project,
        "FUNCTIONS_BASE_URL": config.functions_base_url,
        "TASKS_LOCATION": config.region,
        "TASKS_QUEUE": QUEUE.name,
        "WEBHOOK_QUEUE": WEBHOOK_QUEUE.name,
        "WEBHOOK_MAX_ATTEMPTS": str(WEBHOOK_MAX_ATTEMPTS),
        "TASKS_SERVICE_ACCOUNT": config.sa_email("tasks"),
        "SCHEDULER_SERVICE_ACCOUNT": config.sa_email("scheduler"),
        "AI_MODEL": config.ai_model,
        "AI_IMAGE_MODEL": config.ai_image_model,
        "AI_TIMEOUT_SECONDS": str(AI_TIMEOUT_SECONDS),
        "JOB_MAX_ATTEMPTS": str(JOB_MAX_ATTEMPTS),
        "JOB_RETENTION_DAYS": str(JOB_RETENTION_DAYS),
        "IMAGES_BUCKET": config.images_bucket,
        # functions-framework's gunicorn threads: one per concurrent request.
        "THREADS": str(spec.concurrency),
    }
    if config.ai_base_url:
        env["AI_BASE_URL"] = config.ai_base_url
    if config.ai_providers:
        env["AI_PROVIDERS"] = config.ai_providers
    return env


def env_vars_flag(env: Mapping[str, str]) -> str:
    """``--set-env-vars``; a value with a comma switches gcloud's list delimiter (``^|^``)."""
    if any("," in value for value in env.values()):
        if any("|" in value for value in env.values()):
            raise DeployError("an environment value contains both ',' and '|'")
        return "--set-env-vars=^|^" + "|".join(f"{k}={v}" for k, v in env.items())
    return "--set-env-vars=" + ",".join(f"{k}={v}" for k, v in env.items())


def function_secrets(config: Config) -> dict[str, str]:
    """Each secret environment variable of the functions and the secret it comes from."""
    secrets = {"JWT_SECRET": JWT_SECRET_NAME, "AI_API_KEY": AI_KEY_SECRET_NAME}
    if config.ai_providers:
        secrets["AI_PROVIDER_KEYS"] = AI_PROVIDER_KEYS_SECRET_NAME
    return secrets


def deploy_function_argv(config: Config, name: str, spec: FunctionSpec) -> tuple[str, ...]:
    build_sa = f"projects/{config.project}/serviceAccounts/{config.sa_email('build')}"
    argv = [
        "functions",
        "deploy",
        name,
        "--gen2",
        f"--region={config.region}",
        f"--runtime={RUNTIME}",
        f"--source={config.source(name)}",
        f"--entry-point={name}",
        "--trigger-http",
        "--allow-unauthenticated" if spec.public else "--no-allow-unauthenticated",
        f"--service-account={config.sa_email('functions')}",
        f"--build-service-account={build_sa}",
        f"--memory={spec.memory}",
    ]
    if spec.cpu is not None:
        argv.append(f"--cpu={spec.cpu}")
    argv += [
        f"--timeout={spec.timeout_seconds}s",
        f"--concurrency={spec.concurrency}",
        f"--min-instances={spec.min_instances}",
        f"--max-instances={spec.max_instances}",
        env_vars_flag(function_env(config, spec)),
        "--set-secrets="
        + ",".join(f"{env}={secret}:latest" for env, secret in function_secrets(config).items()),
    ]
    return config.gcloud(*argv)


def functions_section(config: Config, names: Sequence[str]) -> Section:
    steps = []
    for name in names:
        spec = FUNCTIONS[name]
        access = "public" if spec.public else f"private, invoked by aijobs-{spec.caller}"
        steps.append(Step(f"Function {name} ({access})", deploy_function_argv(config, name, spec)))
    return Section(
        "Cloud Functions (2nd gen)",
        steps,
        "`functions deploy` creates or updates; secrets are read at instance start (`:latest`)",
    )


def invokers_section(config: Config, names: Sequence[str]) -> Section:
    steps = []
    for name in names:
        spec = FUNCTIONS[name]
        if spec.public:
            continue
        # Binds roles/run.invoker on the function's own Cloud Run service (gcloud looks up its name).
        steps.append(
            Step(
                f"Only aijobs-{spec.caller} may invoke {name}",
                config.gcloud(
                    "functions",
                    "add-invoker-policy-binding",
                    name,
                    f"--region={config.region}",
                    f"--member={config.member(spec.caller)}",
                ),
                retry_on=IAM_NOT_YET_VISIBLE,
            )
        )
    return Section("Invokers of the private functions", steps, "idempotent IAM bindings")


def scheduler_flags(config: Config, job: ScheduledJob, creating: bool) -> tuple[str, ...]:
    url = config.function_url(job.function)
    flags = [
        f"--location={config.region}",
        f"--schedule={job.schedule}",
        "--time-zone=UTC",
        "--http-method=POST",
        f"--uri={url}",
    ]
    if job.body is not None:
        header = "--headers" if creating else "--update-headers"
        flags += [f"{header}=Content-Type=application/json", f"--message-body={job.body}"]
    flags += [
        f"--oidc-service-account-email={config.sa_email('scheduler')}",
        f"--oidc-token-audience={url}",
        f"--attempt-deadline={FUNCTIONS[job.function].timeout_seconds}s",
        f"--max-retry-attempts={job.retries}",
    ]
    if job.retries:
        flags.append("--min-backoff=60s")
    return tuple(flags)


def scheduler_section(config: Config) -> Section:
    steps = []
    for job in SCHEDULED_JOBS:
        steps.append(
            Step(
                f"Scheduler job {job.name} ({job.schedule} UTC) -> {job.function}",
                config.gcloud(
                    "scheduler", "jobs", "create", "http", job.name, *scheduler_flags(config, job, True)
                ),
                check=config.gcloud("scheduler", "jobs", "describe", job.name, f"--location={config.region}"),
                update=config.gcloud(
                    "scheduler", "jobs", "update", "http", job.name, *scheduler_flags(config, job, False)
                ),
            )
        )
    return Section("Cloud Scheduler jobs (OIDC)", steps, "describe, then update or create")


def _entries(value: object, what: str) -> list[dict[str, object]]:
    """A list of JSON objects, or a clear error about ``firestore.indexes.json``."""
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise DeployError(f"firestore.indexes.json: {what} must be a list of objects")
    return value


def load_index_config(path: Path) -> dict[str, list[dict[str, object]]]:
    """The firebase-tools index file, the one source of the deployed indexes."""
    data = json.loads(path.read_text())
    return {
        "indexes": _entries(data.get("indexes", []), "indexes"),
        "fieldOverrides": _entries(data.get("fieldOverrides", []), "fieldOverrides"),
    }


def _scope_flag(scope: object) -> str:
    return "collection-group" if scope == "COLLECTION_GROUP" else "collection"


def composite_index_step(config: Config, index: Mapping[str, object]) -> Step:
    fields = _entries(index.get("fields"), "an index's fields")
    configs = []
    for spec in fields:
        if "order" in spec:
            configs.append(
                f"--field-config=field-path={spec['fieldPath']},order={str(spec['order']).lower()}"
            )
        else:
            configs.append(
                f"--field-config=field-path={spec['fieldPath']},array-config={str(spec['arrayConfig']).lower()}"
            )
    paths = ", ".join(str(spec["fieldPath"]) for spec in fields)
    return Step(
        f"Composite index {index['collectionGroup']} ({paths})",
        config.gcloud(
            "firestore",
            "indexes",
            "composite",
            "create",
            f"--collection-group={index['collectionGroup']}",
            f"--query-scope={_scope_flag(index.get('queryScope'))}",
            *configs,
            "--async",
        ),
        tolerate=ALREADY_EXISTS,
    )


def field_override_step(config: Config, override: Mapping[str, object]) -> Step:
    """A single-field index override. ``gcloud firestore indexes fields update --index`` can only
    express collection-scoped indexes (it forces ``queryScope=COLLECTION``), so an override with a
    collection-group index goes to the Firestore Admin REST API, as firebase-tools does."""
    group, path = str(override["collectionGroup"]), str(override["fieldPath"])
    indexes = _entries(override.get("indexes", []), "an override's indexes")
    if all(index.get("queryScope", "COLLECTION") == "COLLECTION" for index in indexes):
        flags = [
            f"--index=order={str(i['order']).lower()}"
            if "order" in i
            else f"--index=array-config={str(i['arrayConfig']).lower()}"
            for i in indexes
        ] or ["--disable-indexes"]
        return Step(
            f"Single-field indexes of {group}.{path}",
            config.gcloud(
                "firestore",
                "indexes",
                "fields",
                "update",
                path,
                f"--collection-group={group}",
                *flags,
                "--async",
            ),
        )
    body = {
        "indexConfig": {
            "indexes": [
                {
                    "queryScope": index.get("queryScope", "COLLECTION"),
                    "fields": [
                        {"fieldPath": path, **{k: index[k] for k in ("order", "arrayConfig") if k in index}}
                    ],
                }
                for index in indexes
            ]
        }
    }
    url = (
        f"https://firestore.googleapis.com/v1/projects/{config.project}/databases/(default)"
        f"/collectionGroups/{group}/fields/{path}?updateMask=indexConfig"
    )
    shell = " ".join(
        [
            "curl --silent --show-error --fail-with-body -X PATCH",
            '-H "Authorization: Bearer $(gcloud auth print-access-token)"',
            f"-H {shlex.quote('x-goog-user-project: ' + config.project)}",
            "-H 'Content-Type: application/json'",
            f"--data {shlex.quote(json.dumps(body, separators=(',', ':')))}",
            shlex.quote(url),
        ]
    )
    return Step(f"Single-field indexes of {group}.{path} (collection-group scope, REST API)", shell=shell)


def ttl_groups(index_config: Mapping[str, list[dict[str, object]]]) -> list[tuple[str, str]]:
    """``(collection group, field)`` pairs with a TTL policy: ours plus any ``"ttl": true`` override."""
    pairs = [(group, TTL_FIELD) for group in TTL_COLLECTION_GROUPS]
    for override in index_config["fieldOverrides"]:
        pair = (str(override["collectionGroup"]), str(override["fieldPath"]))
        if override.get("ttl") and pair not in pairs:
            pairs.append(pair)
    return pairs


def firestore_config_section(config: Config, index_file: Path = ROOT / "firestore.indexes.json") -> Section:
    index_config = load_index_config(index_file)
    steps = [composite_index_step(config, index) for index in index_config["indexes"]]
    # As in firebase-tools, an override's "indexes" is the field's whole index config ([] = none).
    steps += [field_override_step(config, o) for o in index_config["fieldOverrides"] if "indexes" in o]
    for group, path in ttl_groups(index_config):
        steps.append(
            Step(
                f"TTL policy: Firestore deletes {group} documents after their {path}",
                config.gcloud(
                    "firestore",
                    "fields",
                    "ttls",
                    "update",
                    path,
                    f"--collection-group={group}",
                    "--enable-ttl",
                    "--async",
                ),
                tolerate=ALREADY_EXISTS,
            )
        )
    steps.append(
        Step(
            "Security rules from firestore.rules (no client access; the functions use IAM)",
            (
                "firebase",
                "deploy",
                "--only",
                "firestore:rules",
                "--project",
                config.project,
                "--non-interactive",
            ),
            needs="firebase",
            optional=True,
        )
    )
    return Section(
        "Firestore indexes, TTL policies and rules",
        steps,
        "from firestore.indexes.json; index builds and TTL policies finish in the background (--async)",
    )


def build_plan(config: Config, names: Sequence[str] | None = None) -> Plan:
    """Every step, in dependency order: accounts before the bindings that name them, secrets and
    the queue before the functions that use them, functions before their invoker bindings and the
    scheduler jobs that call them."""
    names = list(names if names is not None else function_names())
    check_function_table(names)
    check_consistency()
    return Plan(
        [
            apis_section(config),
            service_accounts_section(config),
            firestore_database_section(config),
            secrets_section(config),
            queue_section(config),
            images_section(config),
            functions_section(config, names),
            invokers_section(config, names),
            scheduler_section(config),
            firestore_config_section(config),
        ]
    )


def check_consistency() -> None:
    """Settings that only work together: fail the plan, not production."""
    worker = FUNCTIONS["worker"]
    dispatch_deadline = AI_TIMEOUT_SECONDS + 30
    problems = []
    if worker.timeout_seconds <= dispatch_deadline:
        problems.append(
            f"worker timeout {worker.timeout_seconds}s <= task dispatch deadline {dispatch_deadline}s"
        )
    if QUEUE.max_attempts <= JOB_MAX_ATTEMPTS:
        problems.append("queue max_attempts must exceed JOB_MAX_ATTEMPTS")
    if QUEUE.max_concurrent_dispatches > worker.concurrency * worker.max_instances:
        problems.append("queue max_concurrent_dispatches exceeds what the worker can serve")
    deliverer = FUNCTIONS["deliver_webhook"]
    if WEBHOOK_QUEUE.max_attempts <= WEBHOOK_MAX_ATTEMPTS:
        problems.append("webhooks queue max_attempts must exceed WEBHOOK_MAX_ATTEMPTS")
    if WEBHOOK_QUEUE.max_concurrent_dispatches > deliverer.concurrency * deliverer.max_instances:
        problems.append("webhooks queue max_concurrent_dispatches exceeds what deliver_webhook can serve")
    for job in SCHEDULED_JOBS:
        if FUNCTIONS[job.function].caller != "scheduler":
            problems.append(f"{job.function} is scheduled but not private to the scheduler")
    if problems:
        raise DeployError("inconsistent deploy settings: " + "; ".join(problems))


# --------------------------------------------------------------------------- output and run


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


# --------------------------------------------------------------------------- CLI

_PROJECT_ID = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_REGION = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/deploy",
        description="Deploy aijobs to Google Cloud (idempotent). Try --dry-run first.",
    )
    parser.add_argument("--project", required=True, help="Google Cloud project id")
    parser.add_argument("--region", required=True, help="region of the functions, queue and scheduler jobs")
    parser.add_argument("--dry-run", action="store_true", help="print the exact commands, run nothing")
    parser.add_argument(
        "--firestore-location", help="Firestore location if the database is new (default: region)"
    )
    parser.add_argument("--ai-model", default=os.environ.get("AIJOBS_AI_MODEL", "gpt-4o-mini"))
    parser.add_argument("--ai-image-model", default=os.environ.get("AIJOBS_AI_IMAGE_MODEL", "gpt-image-1"))
    parser.add_argument(
        "--ai-base-url",
        default=os.environ.get("AIJOBS_AI_BASE_URL") or None,
        help="OpenAI-compatible endpoint (https); default api.openai.com",
    )
    parser.add_argument(
        "--ai-providers",
        default=os.environ.get("AIJOBS_AI_PROVIDERS") or None,
        help='more providers, JSON {name: {"base_url", ...}} (AI_PROVIDERS); keys: $' + AI_PROVIDER_KEYS_ENV,
    )
    parser.add_argument("--bundle-dir", type=Path, default=DEFAULT_BUNDLE_DIR, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace, environ: Mapping[str, str]) -> Config:
    if not _PROJECT_ID.match(args.project):
        raise DeployError(f"--project {args.project!r} is not a project id")
    if not _REGION.match(args.region):
        raise DeployError(f"--region {args.region!r} is not a region (e.g. europe-west1)")
    if args.ai_base_url and not str(args.ai_base_url).startswith("https://"):
        raise DeployError("--ai-base-url must be an https:// URL")
    if args.ai_providers is not None:
        _check_providers(args.ai_providers)
    jwt = environ.get(JWT_SECRET_ENV, "")
    if jwt and len(jwt) < 32:
        raise DeployError(f"${JWT_SECRET_ENV} must be at least 32 characters (production refuses shorter)")
    if jwt == DEV_JWT_SECRET:
        raise DeployError(f"${JWT_SECRET_ENV} is the local stack's key, which production refuses")
    return Config(
        project=args.project,
        region=args.region,
        firestore_location=args.firestore_location or args.region,
        bundle_dir=Path(args.bundle_dir).resolve(),
        ai_model=args.ai_model,
        ai_image_model=args.ai_image_model,
        ai_base_url=args.ai_base_url,
        jwt_secret_given=bool(jwt),
        ai_providers=args.ai_providers,
        ai_key_given=bool(environ.get(AI_KEY_ENV)),
        ai_provider_keys_given=bool(environ.get(AI_PROVIDER_KEYS_ENV)),
    )


def _check_providers(text: str) -> None:
    """What the plan can see of ``--ai-providers`` (the functions validate the rest at start)."""
    try:
        providers = json.loads(text)
    except ValueError:
        raise DeployError("--ai-providers is not JSON") from None
    if not isinstance(providers, dict) or not providers:
        raise DeployError('--ai-providers must be a JSON object {name: {"base_url": ...}}')
    for name, spec in providers.items():
        url = spec.get("base_url") if isinstance(spec, dict) else None
        if not isinstance(url, str) or not url.startswith("https://"):
            raise DeployError(f"--ai-providers: {name[:40]!r} needs an https:// base_url")
    if "|" in text:
        raise DeployError("--ai-providers may not contain '|' (gcloud's list delimiter here)")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = config_from_args(args, os.environ)
        build_bundles(config.bundle_dir)
        plan = build_plan(config)
        if args.dry_run:
            sys.stdout.write(render_plan(plan, config))
            return 0
        preflight(plan)
        print(f"Bundles built in {config.source('')}/; deploying to {config.project} ({config.region}).")
        return run_plan(plan)
    except DeployError as exc:
        print(f"deploy: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
