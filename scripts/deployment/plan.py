"""Building the plan: one section per kind of resource, each a list of steps, nothing run."""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path

from scripts.deployment.bundle import check_function_table, function_names
from scripts.deployment.model import Config, DeployError, Plan, Section, Stdin, Step
from scripts.deployment.spec import (
    AI_KEY_ENV,
    AI_KEY_SECRET_NAME,
    AI_PROVIDER_KEYS_ENV,
    AI_PROVIDER_KEYS_SECRET_NAME,
    AI_TIMEOUT_SECONDS,
    ALREADY_EXISTS,
    APIS,
    CONSOLE_CONFIG,
    FUNCTIONS,
    IAM_NOT_YET_VISIBLE,
    IDENTITY_TOOLKIT_URL,
    JOB_MAX_ATTEMPTS,
    JOB_RETENTION_DAYS,
    JWT_SECRET_ENV,
    JWT_SECRET_NAME,
    QUEUE,
    ROOT,
    RUNTIME,
    SCHEDULED_JOBS,
    SECURE_TOKEN_URL,
    SERVICE_ACCOUNTS,
    TTL_COLLECTION_GROUPS,
    TTL_FIELD,
    WEBHOOK_MAX_ATTEMPTS,
    WEBHOOK_QUEUE,
    FunctionSpec,
    QueueSpec,
    ScheduledJob,
)


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
        # The web console's origins may read the API's answers (production allows none unset).
        "CORS_ORIGINS": ",".join(config.hosting_origins),
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


def console_config(config: Config) -> dict[str, object]:
    """The console's ``config.json`` in production (``scripts/dev`` serves its own)."""
    firebase = None
    if config.firebase_api_key:
        firebase = {
            "api_key": config.firebase_api_key,
            "identity_toolkit_url": IDENTITY_TOOLKIT_URL,
            "secure_token_url": SECURE_TOKEN_URL,
        }
    return {"api_base_url": config.functions_base_url, "firebase": firebase}


def hosting_section(config: Config) -> Section:
    path = config.web_dir / CONSOLE_CONFIG
    where = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
    text = json.dumps(console_config(config))  # one line: one command per line in --dry-run
    return Section(
        "Web console (Firebase Hosting)",
        [
            Step(
                f"The console's {CONSOLE_CONFIG}: the functions' URL"
                + (
                    " and Firebase sign-in"
                    if config.firebase_api_key
                    else " (no Firebase sign-in: no API key)"
                ),
                shell=f"printf '%s\\n' {shlex.quote(text)} > {shlex.quote(where)}",
            ),
            Step(
                "Deploy web/ to Firebase Hosting (" + ", ".join(config.hosting_origins[:2]) + ")",
                ("firebase", "deploy", "--only", "hosting", "--project", config.project, "--non-interactive"),
                needs="firebase",
                optional=True,
            ),
        ],
        "after the functions it calls; its origins are the functions' CORS_ORIGINS. Needs the project"
        " added to Firebase, as the rules do",
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
            hosting_section(config),
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
