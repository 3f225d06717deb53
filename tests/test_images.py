"""Generated images in Cloud Storage: the worker stores them, the job keeps a path, the owner
downloads them; options per image model. On the real emulators (Firestore, Cloud Tasks,
the storage emulator) with the fake answering a real multi-MB PNG."""

from __future__ import annotations

import json
import os
import struct
import zlib
from collections.abc import Iterator
from typing import Any

import aijobs
import pytest
from conftest import Api, books, drain, footprint
from fake_openai import FakeOpenAI, Image, Status

from scripts.stack import Stack
from shared.db import client

FAKE_IMAGE_MODEL = "fake-image"


def png(width: int = 1100, height: int = 1000) -> bytes:
    """A valid RGB PNG of random pixels: it does not compress, so it is ~3 bytes a pixel."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + os.urandom(width * 3) for _ in range(height))  # filter 0 per row
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 1))
        + chunk(b"IEND", b"")
    )


BIG = png()
assert len(BIG) >= 3_000_000


def _catalog() -> dict[str, Any]:
    """The default catalog with its image model routed to the fake (the stack sets no
    AI_IMAGE_MODEL), and a second image model taking what GPT image models refuse."""
    from shared.catalog import DEFAULT_CATALOG

    image = DEFAULT_CATALOG["task_types"]["generate_image"]
    standard = {**image["models"]["standard"], "model": FAKE_IMAGE_MODEL}
    legacy = {
        "cost": 3,
        "provider": "default",
        "model": "fake-legacy",
        "options": {
            "size": {"type": "string", "enum": ["256x256", "1024x1024"]},
            "style": {"type": "string", "enum": ["natural", "vivid"]},
        },
    }
    models = {"standard": standard, "legacy": legacy}
    return {"task_types": {**DEFAULT_CATALOG["task_types"], "generate_image": {**image, "models": models}}}


@pytest.fixture
def images_on(stack: Stack) -> Iterator[None]:
    from shared.catalog import DEFAULT_CATALOG, catalog_ref

    catalog_ref().set(_catalog())
    try:
        yield
    finally:
        drain()
        catalog_ref().set(DEFAULT_CATALOG)


def _bucket() -> Any:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage  # type: ignore[attr-defined]

    endpoint = os.environ["STORAGE_EMULATOR_HOST"]
    storage_client = storage.Client(
        project="demo-aijobs", credentials=AnonymousCredentials(), client_options={"api_endpoint": endpoint}
    )
    return storage_client.bucket(os.environ["IMAGES_BUCKET"])


def _draw(api: Api, token: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
    response = api.submit(token, "generate_image", "a red fox in the snow", options or {})
    assert response.status_code == 202, response.text
    return api.wait(token, response.json()["job_id"])


def _doc_bytes(job_id: str) -> int:
    snapshot = client().collection("jobs").document(job_id).get()
    return len(json.dumps(snapshot.to_dict(), default=str).encode())


@pytest.mark.usefixtures("images_on")
@pytest.mark.parametrize("as_url", [False, True], ids=["base64", "url"])
def test_a_multi_mb_png_is_stored_and_only_its_owner_downloads_it(
    api: Api, fake_ai: FakeOpenAI, as_url: bool
) -> None:
    token, user = api.signup()
    other, _ = api.signup()
    fake_ai.script(Image(BIG, as_url=as_url))
    job = _draw(api, token, {"size": "1024x1536", "quality": "high"})
    assert job["status"] == "completed", job
    path = f"images/{user['id']}/{job['job_id']}.png"
    assert job["output"] == {"image": {"path": path, "content_type": "image/png", "bytes": len(BIG)}}
    sent = next(r for r in fake_ai.requests if r.path.endswith("/images/generations"))
    assert sent.body["model"] == FAKE_IMAGE_MODEL and sent.body["size"] == "1024x1536"
    assert "response_format" not in sent.body, "GPT image models refuse it: they always answer base64"
    assert _doc_bytes(job["job_id"]) < 5_000, "the job keeps a path, never the image"

    got = api.call("GET", f"/jobs/{job['job_id']}/image", token)
    assert got.status_code == 200 and got.headers["Content-Type"] == "image/png"
    assert got.headers["Cache-Control"] == "private, no-store"
    assert got.content == BIG, "byte for byte"
    with aijobs.Client(api.base_url, token=token) as mine:
        assert mine.get_image(job["job_id"]) == BIG
    theirs = api.call("GET", f"/jobs/{job['job_id']}/image", other)
    assert theirs.status_code == 404 and theirs.json()["error"]["code"] == "job_not_found"
    assert api.call("GET", f"/jobs/{job['job_id']}/image").status_code == 401
    assert _bucket().get_blob(path).content_type == "image/png"


def test_a_job_without_an_image_has_none_to_download(api: Api) -> None:
    token, _ = api.signup()
    response = api.submit(token)
    job = api.wait(token, response.json()["job_id"])
    assert job["status"] == "completed"
    got = api.call("GET", f"/jobs/{job['job_id']}/image", token)
    assert got.status_code == 404 and got.json()["error"]["code"] == "image_not_found"
    missing = api.call("GET", f"/jobs/{'0' * 32}/image", token)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "job_not_found"
    with aijobs.Client(api.base_url, token=token) as mine, pytest.raises(aijobs.ImageNotFound):
        mine.get_image(job["job_id"])


@pytest.mark.usefixtures("images_on")
def test_deleting_the_job_deletes_its_object(api: Api, fake_ai: FakeOpenAI) -> None:
    token, _ = api.signup()
    fake_ai.script(Image(BIG))
    job = _draw(api, token)
    path = job["output"]["image"]["path"]
    assert _bucket().get_blob(path) is not None
    assert api.call("DELETE", f"/jobs/{job['job_id']}", token).status_code == 204
    assert _bucket().get_blob(path) is None
    got = api.call("GET", f"/jobs/{job['job_id']}/image", token)
    assert got.status_code == 404 and got.json()["error"]["code"] == "image_not_found"
    # Again: nothing changes, and an object already gone is no error.
    assert api.call("DELETE", f"/jobs/{job['job_id']}", token).status_code == 204


@pytest.mark.usefixtures("images_on")
def test_a_retried_attempt_stores_one_object(api: Api, fake_ai: FakeOpenAI) -> None:
    token, user = api.signup()
    fake_ai.script(Status(500), Image(BIG))
    job = _draw(api, token)
    assert job["status"] == "completed", job
    stored = client().collection("jobs").document(job["job_id"]).get()
    assert stored.get("attempts") == 2
    names = [b.name for b in _bucket().list_blobs(prefix=f"images/{user['id']}/")]
    assert names == [f"images/{user['id']}/{job['job_id']}.png"]
    assert api.call("GET", f"/jobs/{job['job_id']}/image", token).content == BIG


@pytest.mark.usefixtures("images_on")
@pytest.mark.parametrize(
    ("options", "code"),
    [
        ({"style": "vivid"}, "invalid_option"),  # GPT image models take no style
        ({"size": "256x256"}, "invalid_option"),  # a retired DALL-E size
        ({"size": "512x512"}, "invalid_option"),
        ({"quality": "hd"}, "invalid_option"),
        ({"model": "legacy", "quality": "high"}, "invalid_option"),  # that model has no quality
    ],
)
def test_an_option_the_model_does_not_take_is_refused_uncharged(
    api: Api, options: dict[str, Any], code: str
) -> None:
    token, user = api.signup()
    before = footprint(user["id"])
    response = api.submit(token, "generate_image", "a cat", options)
    assert response.status_code == 422 and response.json()["error"]["code"] == code, response.text
    assert footprint(user["id"]) == before


@pytest.mark.usefixtures("images_on")
def test_each_image_model_lists_and_takes_its_own_options(api: Api, fake_ai: FakeOpenAI) -> None:
    listed = {t["task_type"]: t for t in api.call("GET", "/catalog").json()["task_types"]}
    models = {m["id"]: m for m in listed["generate_image"]["models"]}
    assert sorted(models["standard"]["options"]) == ["quality", "size"]
    assert models["standard"]["options"]["size"]["enum"] == ["auto", "1024x1024", "1536x1024", "1024x1536"]
    assert sorted(models["legacy"]["options"]) == ["size", "style"]
    token, user = api.signup()
    job = _draw(api, token, {"model": "legacy", "style": "vivid", "size": "256x256"})
    assert job["status"] == "completed" and job["output"]["image"]["content_type"] == "image/png"
    sent = [r for r in fake_ai.requests if r.path.endswith("/images/generations")][-1]
    assert sent.body["model"] == "fake-legacy" and sent.body["style"] == "vivid"
    assert books(user["id"])["balance"] is not None


@pytest.mark.usefixtures("images_on")
def test_an_answer_that_is_no_image_fails_the_job_refunded(api: Api, fake_ai: FakeOpenAI) -> None:
    token, user = api.signup()
    before = books(user["id"])["balance"]
    fake_ai.script(Image(b"<html>not a picture</html>"))
    job = _draw(api, token)
    assert job["status"] == "failed" and job["error"]["code"] == "ai_bad_output", job
    assert books(user["id"])["balance"] == before
    assert api.call("GET", f"/jobs/{job['job_id']}/image", token).status_code == 404


def test_no_function_loads_google_cloud_storage_at_its_cold_start() -> None:
    """Only the worker's image jobs, the image route and a job's delete import it, on first use."""
    import subprocess
    import sys

    from conftest import ROOT

    from scripts.deploy import function_names

    names = ", ".join(f"functions.{name}" for name in function_names())
    code = f"import sys, {names}; print('google.cloud.storage' in sys.modules)"
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "APP_ENV": "local"}
    env["FIRESTORE_EMULATOR_HOST"] = "127.0.0.1:1"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"
