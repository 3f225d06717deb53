"""The files people expect: ``.env.example`` agrees with the settings, ``api.http`` covers the API."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
from pydantic import TypeAdapter

from shared.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
VARIABLE = re.compile(r"^# ([A-Z][A-Z0-9_]*)=(.*)$")  # ``.env.example``: commented out, set to the default
REQUEST = re.compile(r"^(GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) \{\{base\}\}/(\S*)$")


def _normalized(text: str) -> str:
    return " ".join(text.replace("``", "`").split())


def _env_example() -> dict[str, tuple[str, str]]:
    """Each variable's stated default and the comment block above it."""
    found: dict[str, tuple[str, str]] = {}
    comments: list[str] = []
    for line in (ROOT / ".env.example").read_text().splitlines():
        if match := VARIABLE.match(line):
            name, default = match.groups()
            assert name not in found, f"{name} appears twice"
            found[name] = (default, _normalized(" ".join(comments)))
            comments = []
        elif line.startswith("#"):
            comments.append(line.removeprefix("#"))
        else:
            assert not line.strip(), f"a line that is neither a comment nor blank: {line!r}"
            comments = []
    return found


def _field_docstrings() -> dict[str, str]:
    """The docstring under each field of ``Settings``, read from its source."""
    source = (ROOT / "shared" / "settings.py").read_text()
    (cls,) = (n for n in ast.parse(source).body if isinstance(n, ast.ClassDef) and n.name == "Settings")
    docs: dict[str, str] = {}
    for field, after in zip(cls.body, cls.body[1:], strict=False):
        if (
            isinstance(field, ast.AnnAssign)
            and isinstance(field.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[field.target.id] = after.value.value
    return docs


def _entry(name: str) -> tuple[str, str]:
    entries = _env_example()
    assert name.upper() in entries, f"{name.upper()} is missing from .env.example"
    return entries[name.upper()]


def test_env_example_names_every_setting() -> None:
    assert set(_env_example()) == {name.upper() for name in Settings.model_fields}


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_env_example_states_the_default(name: str) -> None:
    field = Settings.model_fields[name]
    stated, _ = _entry(name)
    if field.default is None:
        assert stated == "", f"{name.upper()} is unset by default: show it empty"
    else:
        assert TypeAdapter(field.annotation).validate_python(stated) == field.default


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_env_example_gives_the_meaning_from_the_docstring(name: str) -> None:
    docstring = _field_docstrings().get(name)
    assert docstring, f"Settings.{name} has no docstring"
    _, comment = _entry(name)
    assert _normalized(docstring) in comment, f"{name.upper()}'s comment is not its docstring"


def _requests() -> list[tuple[str, str, list[str], str]]:
    """Each request of ``api.http``: its request line, path, headers and body."""
    requests = []
    for block in re.split(r"^###.*$", (ROOT / "api.http").read_text(), flags=re.M)[1:]:
        lines = [line for line in block.splitlines() if not line.startswith(("#", "//", "@"))]
        while lines and not lines[0].strip():
            lines.pop(0)
        assert lines, f"a ### block without a request: {block!r}"
        request_line, *rest = lines
        match = REQUEST.match(request_line)
        assert match, f"not METHOD {{{{base}}}}/...: {request_line!r}"
        end = rest.index("") if "" in rest else len(rest)
        requests.append((request_line, match.group(2), rest[:end], "\n".join(rest[end:]).strip()))
    return requests


def test_api_http_calls_every_function() -> None:
    functions = {p.stem for p in (ROOT / "functions").glob("*.py") if not p.stem.startswith("_")}
    called = {re.split(r"[/?]", path)[0] for _, path, _, _ in _requests()}
    assert functions <= called, f"api.http never calls {sorted(functions - called)}"
    assert called <= functions, f"api.http calls unknown functions {sorted(called - functions)}"


def test_api_http_bodies_are_json() -> None:
    bodies = [(line, body) for line, _, _, body in _requests() if body]
    assert bodies
    for line, body in bodies:
        assert isinstance(json.loads(body), dict), line


def test_api_http_submits_each_task_type_once_and_one_idempotently() -> None:
    text = (ROOT / "api.http").read_text()
    submits = [body for line, _, _, body in _requests() if line == "POST {{base}}/submit_job"]
    task_types = sorted(json.loads(body)["task_type"] for body in submits)
    assert task_types == sorted(["summarize", "translate", "generate_text", "chat", "generate_image"])
    assert "\nIdempotency-Key: " in text


def test_api_http_sends_the_right_credentials() -> None:
    internal = {"worker", "weekly_report", "sweep_jobs", "deliver_webhook"}
    for line, path, headers, _ in _requests():
        function = re.split(r"[/?]", path)[0]
        if function in internal:
            assert "X-Aijobs-Worker-Secret: {{worker_secret}}" in headers, line
        elif function == "admin":
            assert "Authorization: Bearer {{admin_token}}" in headers, line
        elif function not in {"signup", "login", "refresh", "logout", "health", "docs", "catalog"}:
            assert "Authorization: Bearer {{token}}" in headers, line
