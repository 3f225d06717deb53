"""The jobs queue on Cloud Tasks: one HTTP task per job, POSTed to the worker (and
``create_task`` for other queues: webhook deliveries).

Locally the official client talks to gcloud-tasks-emulator over an insecure
gRPC channel and the task carries the shared worker secret; in production the
task carries an OIDC token for ``TASKS_SERVICE_ACCOUNT`` instead.

A task is named after its job (``job-<id>``, ``job-<id>-<generation>`` for the
sweeper's re-queues), so creating it again is safe: Cloud Tasks refuses a name it
has seen within about an hour (``AlreadyExists``, taken as success), and the
worker runs a job once however often it is delivered (the local emulator does
not deduplicate names). ``enqueue`` therefore tells two failures apart: the
queue *refused* the task (``NotQueued``: it surely does not exist), or the call
failed in a way that leaves it unknown (``Unavailable``: the reply may have been
lost after the task was created). Only the first may be answered "not charged".
"""

from __future__ import annotations

import contextlib
import json
from functools import cache

from google.api_core import exceptions as gexc
from google.cloud import tasks_v2
from google.protobuf import duration_pb2

from shared import metering
from shared.errors import NotQueued, Unavailable
from shared.internal_auth import WORKER_SECRET_HEADER
from shared.settings import get_settings

_CALL_TIMEOUT = 5.0
# Answers that mean the queue did not create the task: it judged the request and said no.
_REFUSALS = (
    gexc.InvalidArgument,
    gexc.NotFound,
    gexc.PermissionDenied,
    gexc.Unauthenticated,
    gexc.FailedPrecondition,
    gexc.ResourceExhausted,
    gexc.OutOfRange,
    gexc.MethodNotImplemented,
)


@cache
def _client() -> tasks_v2.CloudTasksClient:
    settings = get_settings()
    if settings.tasks_emulator_host:
        import grpc
        from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

        channel = grpc.insecure_channel(settings.tasks_emulator_host)
        return tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))
    return tasks_v2.CloudTasksClient()


def queue_path(queue: str | None = None) -> str:
    """The full name of ``queue`` (default: the jobs queue, ``TASKS_QUEUE``)."""
    settings = get_settings()
    return _client().queue_path(
        settings.google_cloud_project, settings.tasks_location, queue or settings.tasks_queue
    )


def enqueue(job_id: str, generation: int = 0) -> None:
    """Create the job's task; ``NotQueued`` if the queue refused it, ``Unavailable`` if the
    outcome is unknown (a timeout or a dropped connection: it may exist)."""
    settings = get_settings()
    create_task(
        settings.tasks_queue,
        f"job-{job_id}" + (f"-{generation}" if generation else ""),
        "worker",
        {"job_id": job_id},
        # The worker's own bound: the AI timeout plus time for its writes.
        int(settings.job_lease_seconds),
    )


def create_task(queue: str, name: str, function: str, body: dict[str, str], deadline_seconds: int) -> None:
    """POST ``body`` to the internal ``function`` through ``queue``, as task ``name``; raises
    like ``enqueue``. The task carries the caller's credentials the function checks."""
    settings = get_settings()
    url = settings.function_url(function)
    request: dict[str, object] = {
        "http_method": tasks_v2.HttpMethod.POST,
        "url": url,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(body).encode(),
    }
    if settings.worker_secret is not None:
        request["headers"] = {
            "Content-Type": "application/json",
            WORKER_SECRET_HEADER: settings.worker_secret.get_secret_value(),
        }
    else:
        request["oidc_token"] = {"service_account_email": settings.tasks_service_account, "audience": url}
    task = {
        "name": f"{queue_path(queue)}/tasks/{name}",
        "http_request": request,
        "dispatch_deadline": duration_pb2.Duration(seconds=deadline_seconds),
    }
    metering.count_tasks_call()  # billed whatever the answer
    try:
        _client().create_task(parent=queue_path(queue), task=tasks_v2.Task(task), timeout=_CALL_TIMEOUT)
    except gexc.AlreadyExists:
        return  # an earlier attempt of this very call got through
    except _REFUSALS as exc:
        raise NotQueued(f"the queue refused the task: {type(exc).__name__}") from exc
    except (gexc.GoogleAPIError, OSError) as exc:
        raise Unavailable(f"the queue did not answer: {type(exc).__name__}") from exc


def ping() -> None:
    """Reachability check for ``health``."""
    metering.count_tasks_call()
    try:
        _client().get_queue(name=queue_path(), timeout=3.0, retry=None)
    except (gexc.GoogleAPIError, OSError) as exc:
        raise Unavailable(f"the queue is unavailable: {type(exc).__name__}") from exc


def ensure_queue(queue: str | None = None) -> None:
    """Create the queue on the emulator (production queues are made by the deploy)."""
    location = _client().common_location_path(
        get_settings().google_cloud_project, get_settings().tasks_location
    )
    with contextlib.suppress(gexc.AlreadyExists):
        _client().create_queue(
            parent=location, queue=tasks_v2.Queue(name=queue_path(queue)), timeout=_CALL_TIMEOUT
        )
