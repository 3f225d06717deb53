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

Standard library only: it runs before any virtualenv exists. The code is in
``scripts/deployment/`` by concern (``spec``: what is deployed; ``model``: steps, sections,
the plan and its configuration; ``bundle``; ``plan``: building it; ``runner``: rendering
and running it; ``cli``); this module is its entry point and names its public parts.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script, no virtualenv

from scripts.deployment.bundle import (
    build_bundles,
    check_function_table,
    function_names,
    pinned_requirements,
)
from scripts.deployment.cli import (
    config_from_args,
    main,
    parse_args,
)
from scripts.deployment.model import (
    Config,
    DeployError,
    Plan,
    Section,
    Stdin,
    Step,
)
from scripts.deployment.plan import (
    apis_section,
    build_plan,
    check_consistency,
    composite_index_step,
    deploy_function_argv,
    env_vars_flag,
    field_override_step,
    firestore_config_section,
    firestore_database_section,
    function_env,
    function_secrets,
    functions_section,
    images_section,
    invokers_section,
    load_index_config,
    queue_flags,
    queue_section,
    scheduler_flags,
    scheduler_section,
    secrets_section,
    service_accounts_section,
    ttl_groups,
)
from scripts.deployment.runner import (
    preflight,
    render_plan,
    run_plan,
    run_step,
)
from scripts.deployment.spec import (
    AI_KEY_ENV,
    AI_KEY_SECRET_NAME,
    AI_PROVIDER_KEYS_ENV,
    AI_PROVIDER_KEYS_SECRET_NAME,
    AI_TIMEOUT_SECONDS,
    ALREADY_EXISTS,
    APIS,
    BUNDLE_MARKER,
    DEFAULT_BUNDLE_DIR,
    DEV_JWT_SECRET,
    FUNCTIONS,
    IAM_NOT_YET_VISIBLE,
    JOB_MAX_ATTEMPTS,
    JOB_RETENTION_DAYS,
    JWT_SECRET_ENV,
    JWT_SECRET_NAME,
    QUEUE,
    QUEUE_NAME,
    ROOT,
    RUNTIME,
    SCHEDULED_JOBS,
    SERVICE_ACCOUNTS,
    TTL_COLLECTION_GROUPS,
    TTL_FIELD,
    WEBHOOK_MAX_ATTEMPTS,
    WEBHOOK_QUEUE,
    WEBHOOK_QUEUE_NAME,
    Caller,
    FunctionSpec,
    QueueSpec,
    ScheduledJob,
    ServiceAccount,
)

__all__ = [
    "AI_KEY_ENV",
    "AI_KEY_SECRET_NAME",
    "AI_PROVIDER_KEYS_ENV",
    "AI_PROVIDER_KEYS_SECRET_NAME",
    "AI_TIMEOUT_SECONDS",
    "ALREADY_EXISTS",
    "APIS",
    "BUNDLE_MARKER",
    "DEFAULT_BUNDLE_DIR",
    "DEV_JWT_SECRET",
    "FUNCTIONS",
    "IAM_NOT_YET_VISIBLE",
    "JOB_MAX_ATTEMPTS",
    "JOB_RETENTION_DAYS",
    "JWT_SECRET_ENV",
    "JWT_SECRET_NAME",
    "QUEUE",
    "QUEUE_NAME",
    "ROOT",
    "RUNTIME",
    "SCHEDULED_JOBS",
    "SERVICE_ACCOUNTS",
    "TTL_COLLECTION_GROUPS",
    "TTL_FIELD",
    "WEBHOOK_MAX_ATTEMPTS",
    "WEBHOOK_QUEUE",
    "WEBHOOK_QUEUE_NAME",
    "Caller",
    "Config",
    "DeployError",
    "FunctionSpec",
    "Plan",
    "QueueSpec",
    "ScheduledJob",
    "Section",
    "ServiceAccount",
    "Stdin",
    "Step",
    "apis_section",
    "build_bundles",
    "build_plan",
    "check_consistency",
    "check_function_table",
    "composite_index_step",
    "config_from_args",
    "deploy_function_argv",
    "env_vars_flag",
    "field_override_step",
    "firestore_config_section",
    "firestore_database_section",
    "function_env",
    "function_names",
    "function_secrets",
    "functions_section",
    "images_section",
    "invokers_section",
    "load_index_config",
    "main",
    "parse_args",
    "pinned_requirements",
    "preflight",
    "queue_flags",
    "queue_section",
    "render_plan",
    "run_plan",
    "run_step",
    "scheduler_flags",
    "scheduler_section",
    "secrets_section",
    "service_accounts_section",
    "ttl_groups",
]

if __name__ == "__main__":
    sys.exit(main())
