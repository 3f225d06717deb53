"""What is deployed: the functions, queues, schedules, service accounts, secrets and APIs,
and the limits they must respect together."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

ROOT = Path(__file__).resolve().parent.parent.parent
DEFAULT_BUNDLE_DIR = ROOT / "build" / "bundle"
WEB_DIR = ROOT / "web"
"""The web console, Firebase Hosting's ``public`` directory (``firebase.json``)."""
CONSOLE_CONFIG = "config.json"
"""Written into ``WEB_DIR`` by the deploy (git ignores it): where the console finds the API."""
FIREBASE_API_KEY_ENV = "AIJOBS_FIREBASE_API_KEY"
"""The Firebase project's Web API key, for the console's Firebase sign-in. Not a secret: it names
the project to Google's auth APIs and ships in every Firebase web page."""
IDENTITY_TOOLKIT_URL = "https://identitytoolkit.googleapis.com"
SECURE_TOKEN_URL = "https://securetoken.googleapis.com"
"""Google's Firebase Authentication REST hosts: the console's only calls beyond our own."""
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
    "firebasehosting.googleapis.com",  # the web console
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
    # Teams: a few reads and one commit per call, like the other user-facing reads and writes.
    "teams": _USER_API,
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
