"""Generated images: one Cloud Storage object per image job, owned by this module.

Object ``images/{user_id}/{job_id}.png`` in the ``IMAGES_BUCKET`` bucket, with the content type
the model's answer had. The path is fixed per job, so a retried attempt overwrites the same
object instead of adding one, and a delete can find it without the job's output. The job keeps
only ``Stored.output()`` (path, content type, size): a multi-MB image never nears Firestore's
1 MiB document limit. The bucket's lifecycle rule deletes objects ``JOB_RETENTION_DAYS`` old,
as the TTL policy does their jobs, and any orphan (an attempt whose final commit lost, a crash
between a delete's commit and its object delete) with them.

``google-cloud-storage`` is imported on first use, so only the worker, the image route and a
job's delete load it; the other functions' cold starts do not.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from shared.errors import NotFound, RetryableProviderError, Unavailable
from shared.settings import get_settings

CHUNK_BYTES = 1024 * 1024
"""How much of an object one read of a download fetches."""
# The image formats the models answer with, by their first bytes; anything else is not stored.
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)
CONTENT_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif")
"""Every content type an image is stored and served with."""


class StorageUnavailable(RetryableProviderError):
    """Cloud Storage did not take the image: the attempt is retried like a failed AI call."""

    code = "storage_unavailable"


@dataclass(frozen=True)
class Picture:
    """An image the model made, in memory until the worker stores it."""

    data: bytes
    content_type: str


def sniff(data: bytes) -> str | None:
    """The image type ``data`` starts as, or ``None`` when it is no image we store."""
    for magic, content_type in _SIGNATURES:
        if data.startswith(magic):
            return content_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def path_of(user_id: str, job_id: str) -> str:
    return f"images/{user_id}/{job_id}.png"


_lock = threading.Lock()
_client: Any = None


def _bucket() -> Any:
    global _client
    from google.cloud import storage  # type: ignore[attr-defined]  # untyped

    settings = get_settings()
    with _lock:
        if _client is None:
            if settings.storage_emulator_host:
                # The emulator takes no credentials; the SDK reads STORAGE_EMULATOR_HOST itself.
                from google.auth.credentials import AnonymousCredentials

                _client = storage.Client(
                    project=settings.google_cloud_project,
                    credentials=AnonymousCredentials(),
                    client_options={"api_endpoint": settings.storage_emulator_host},
                )
            else:
                _client = storage.Client(project=settings.google_cloud_project)
    return _client.bucket(settings.images_bucket)


def put(user_id: str, job_id: str, picture: Picture) -> dict[str, Any]:
    """Store the job's image (overwriting an earlier attempt's) and return what the job keeps."""
    from google.api_core import exceptions

    path = path_of(user_id, job_id)
    blob = _bucket().blob(path)
    try:
        blob.upload_from_string(
            picture.data, content_type=picture.content_type, timeout=get_settings().storage_timeout_seconds
        )
    except (exceptions.GoogleAPIError, OSError) as exc:
        raise StorageUnavailable(f"could not store the image ({type(exc).__name__})") from None
    return {"path": path, "content_type": picture.content_type, "bytes": len(picture.data)}


def open_chunks(path: str) -> tuple[int, Iterator[bytes]]:
    """The object's size and its bytes in ``CHUNK_BYTES`` pieces, read while they are sent (a
    20 MB image is never whole in memory); ``NotFound`` at once if the object is gone."""
    from google.api_core import exceptions

    timeout = get_settings().storage_timeout_seconds
    try:
        blob = _bucket().get_blob(path, timeout=timeout)
    except (exceptions.GoogleAPIError, OSError):
        raise Unavailable("the image store is unavailable; retry", code="storage_unavailable") from None
    if blob is None:
        raise NotFound("the job has no image", code="image_not_found")
    size = int(blob.size or 0)

    def pieces() -> Iterator[bytes]:
        for start in range(0, size, CHUNK_BYTES):
            end = min(start + CHUNK_BYTES, size) - 1
            # Pinned to the generation just read: a concurrent overwrite cannot splice two images.
            yield blob.download_as_bytes(
                start=start, end=end, timeout=timeout, if_generation_match=blob.generation
            )

    return size, pieces()


def delete(path: str) -> None:
    """Delete one object; one already gone is fine (a repeated delete, the lifecycle rule)."""
    from google.api_core import exceptions

    try:
        _bucket().blob(path).delete(timeout=get_settings().storage_timeout_seconds)
    except exceptions.NotFound:
        return
    except (exceptions.GoogleAPIError, OSError):
        # The job's content is already wiped: the lifecycle rule deletes the orphan later.
        raise Unavailable(
            "the image could not be deleted yet; retry the delete", code="storage_unavailable"
        ) from None
