"""The OpenAPI document: generated from the models, committed, served, complete and valid."""

from __future__ import annotations

import json
from pathlib import Path

import requests
from conftest import Api, launch_chromium
from openapi_spec_validator import OpenAPIV31SpecValidator

from scripts import devserver
from scripts.openapi import COMMITTED, LOCAL_SERVER, generated
from scripts.stack import Stack
from shared.openapi import OPERATIONS, document
from shared.web import _INTERNAL

NOT_API = {"docs"}  # the docs page itself, not an operation


def test_the_committed_copy_is_what_the_code_generates() -> None:
    assert COMMITTED.read_text() == generated(), "openapi.json is out of date: run scripts/openapi"


def test_the_document_is_valid_openapi_3_1() -> None:
    spec = json.loads(COMMITTED.read_text())
    assert spec["openapi"] == "3.1.0"
    OpenAPIV31SpecValidator(spec).validate()


def test_every_public_function_is_in_the_document_and_no_internal_one() -> None:
    spec = document(LOCAL_SERVER)
    functions = {p.split("/")[1] for p in spec["paths"]}
    public = set(devserver.FUNCTIONS) - _INTERNAL - NOT_API
    assert functions == public


def test_every_operation_says_its_errors_and_how_to_authenticate() -> None:
    spec = document(LOCAL_SERVER)
    ids = [op.operation_id for op in OPERATIONS]
    assert len(ids) == len(set(ids))
    assert not any("`" in op.summary for op in OPERATIONS)  # summaries are plain text on the page
    for path, item in spec["paths"].items():
        for method, op in item.items():
            responses = op["responses"]
            assert {"413", "500", "503"} <= set(responses), (method, path)
            assert "Retry-After" in responses["503"]["headers"]
            secured = op["security"] == [{"bearer": []}]
            public = ("/signup", "/login", "/refresh", "/logout", "/health", "/catalog")
            assert secured or path in public, (method, path)
            assert not secured or "401" in responses, (method, path)
            for status, answer in responses.items():
                if status.startswith(("4", "5")) and path != "/health":
                    schema = answer["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorPublic"}, (method, path, status)
    submit = spec["paths"]["/submit_job"]["post"]
    assert [p["name"] for p in submit["parameters"]] == ["Idempotency-Key"]
    assert "Idempotent-Replayed" in submit["responses"]["202"]["headers"]
    assert spec["components"]["schemas"]["JobCreate"]["examples"]


def test_a_model_change_changes_the_document() -> None:
    # The document is the models': a field's bounds come from the same constants the code checks.
    from shared import jobs
    from shared.web import MAX_LIMIT

    spec = document(LOCAL_SERVER)
    wait = next(p for p in spec["paths"]["/jobs/{job_id}"]["get"]["parameters"] if p["name"] == "wait")
    assert wait["schema"]["maximum"] == jobs.MAX_WAIT_SECONDS
    limit = next(p for p in spec["paths"]["/jobs"]["get"]["parameters"] if p["name"] == "limit")
    assert limit["schema"]["maximum"] == MAX_LIMIT
    statuses = spec["components"]["schemas"]["JobPublic"]["properties"]["status"]["enum"]
    assert statuses == ["queued", "in_progress", "completed", "failed", "canceled"]


def test_served_with_the_server_url_from_the_settings(stack: Stack) -> None:
    response = requests.get(f"{stack.base_url}/docs/openapi.json", timeout=30)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    served = response.json()
    assert served["servers"] == [{"url": stack.base_url}]
    assert served == json.loads(json.dumps(document(stack.base_url)))


def test_docs_routes(stack: Stack) -> None:
    base = f"{stack.base_url}/docs"
    page = requests.get(base, timeout=30)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    css = requests.get(f"{base}/assets/swagger-ui.css", timeout=30)
    assert css.status_code == 200 and css.headers["Content-Type"].startswith("text/css")
    assert "max-age" in css.headers["Cache-Control"]
    for path in ("/assets/swagger-editor.js", "/assets/..%2F..%2Frequirements.txt", "/nope", "/assets/x/y"):
        missing = requests.get(base + path, timeout=30)
        assert missing.status_code == 404, path
        assert missing.json()["error"]["code"] == "route_not_found", path
    wrong = requests.post(f"{base}/openapi.json", json={}, timeout=30)
    assert wrong.status_code == 405 and wrong.headers["Allow"] == "GET"


def test_a_405_names_what_the_path_takes(api: Api) -> None:
    token, _ = api.signup()
    cases = {
        ("DELETE", "/jobs"): "GET",
        ("POST", "/jobs/abc"): "GET, PATCH, DELETE",
        ("GET", "/jobs/abc/cancel"): "POST",
        ("PUT", "/me"): "GET",
        ("GET", "/submit_job"): "POST",
        ("GET", "/admin/credits"): "POST",
        ("DELETE", "/admin/users/ada"): "GET",
    }
    for (method, path), allow in cases.items():
        response = api.call(method, path, token)
        assert response.status_code == 405, (method, path)
        assert response.headers["Allow"] == allow, (method, path)
        assert response.json()["error"]["code"] == "method_not_allowed"


# ---- the page in a real browser ----------------------------------------------------------------


def test_the_docs_page_renders_every_operation_from_our_host_only(stack: Stack, tmp_path: Path) -> None:
    from urllib.parse import urlsplit

    from playwright.sync_api import sync_playwright

    own = urlsplit(stack.base_url).netloc
    asked: list[str] = []
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page()
            page.on("request", lambda r: asked.append(r.url))
            page.goto(f"{stack.base_url}/docs", wait_until="networkidle")
            page.wait_for_selector(".opblock", timeout=15_000)
            text = page.inner_text("body")
            summaries = page.locator(".opblock-summary-path").all_inner_texts()
            page.screenshot(path=str(tmp_path / "docs.png"), full_page=False)
        finally:
            browser.close()
    rendered = {" ".join(s.split()).replace("\u200b", "") for s in summaries}
    for op in OPERATIONS:
        assert op.path in rendered, op.path
        assert op.summary in text, op.summary
    assert asked and all(urlsplit(u).netloc == own for u in asked if not u.startswith("data:")), asked
