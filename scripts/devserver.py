"""Serve every function in ``functions/`` from one process, each at ``/<function>``.

Locally this stands in for the per-function URLs of Cloud Functions: the same
functions-framework app per target, with the function name stripped from the
path exactly as the platform does. Run with gunicorn: ``devserver:app``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import functions_framework

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS = sorted(p.stem for p in (ROOT / "functions").glob("*.py") if not p.stem.startswith("_"))
_JSON_404 = b'{"error": {"code": "unknown_function", "message": "no such function"}}'


def _apps() -> dict[str, Any]:
    return {
        name: functions_framework.create_app(name, str(ROOT / "functions" / f"{name}.py"))
        for name in FUNCTIONS
    }


class Dispatcher:
    def __init__(self, apps: dict[str, Any]) -> None:
        self._apps = apps

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "") or "/"
        name, _, rest = path.lstrip("/").partition("/")
        app = self._apps.get(name)
        if app is None:
            start_response("404 Not Found", [("Content-Type", "application/json")])
            return [_JSON_404]
        environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + "/" + name
        environ["PATH_INFO"] = "/" + rest
        return app(environ, start_response)


os.chdir(ROOT)
app = Dispatcher(_apps())
