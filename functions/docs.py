"""``GET /docs``: the API's docs page; ``GET /docs/openapi.json``: its OpenAPI 3.1 document.

The page is Swagger UI from the pinned ``swagger-ui-py`` package, whose built files this
function serves itself (``/docs/assets/...``): the page asks no other host for anything.
"""

from __future__ import annotations

import functools
import html
import importlib.util
import json
from pathlib import Path
from typing import Any

import flask

from shared.errors import NotFound
from shared.settings import get_settings
from shared.web import endpoint, path_parts

# Only what the page loads: the package also ships Swagger Editor and source maps.
_ASSETS = {
    "swagger-ui.css": "text/css; charset=utf-8",
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
_CACHE_SECONDS = 86400


def _routes(parts: list[str]) -> tuple[str, ...]:
    match parts:
        case [] | ["openapi.json"]:
            return ("GET",)
        case ["assets", name] if name in _ASSETS:
            return ("GET",)
    raise NotFound("no such page", code="route_not_found")


@endpoint("GET", routes=_routes)
def docs(request: flask.Request) -> flask.Response:
    match path_parts(request):
        case ["openapi.json"]:
            return flask.Response(_document_json(), 200, mimetype="application/json")
        case ["assets", name]:
            response = flask.Response(_asset(name), 200, content_type=_ASSETS[name])
            response.headers["Cache-Control"] = f"public, max-age={_CACHE_SECONDS}"
            return response
    return flask.Response(_page(), 200, content_type="text/html; charset=utf-8")


@functools.cache
def _document() -> dict[str, Any]:
    # Imported on the first call, not at cold start: it loads every domain model.
    from shared.openapi import document

    return document(get_settings().functions_base_url)


@functools.cache
def _document_json() -> str:
    return json.dumps(_document(), indent=2)


@functools.cache
def _asset(name: str) -> bytes:
    # Located, not imported: the package's __init__ loads handlers this function does not use.
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("swagger-ui-py is not installed (requirements.txt)")
    return (Path(next(iter(spec.submodule_search_locations))) / "static" / name).read_bytes()


@functools.cache
def _page() -> str:
    base = html.escape(get_settings().function_url("docs"), quote=True)
    # The document is inlined, so the page needs no CORS and makes no request to render it.
    spec = json.dumps(_document()).replace("</", "<\\/")
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>aijobs API</title>
<link rel="icon" type="image/png" href="{base}/assets/favicon-32x32.png">
<link rel="stylesheet" href="{base}/assets/swagger-ui.css">
</head>
<body>
<main id="docs"></main>
<script id="openapi" type="application/json">{spec}</script>
<script src="{base}/assets/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({{
  spec: JSON.parse(document.getElementById("openapi").textContent),
  dom_id: "#docs",
  deepLinking: true,
  validatorUrl: null,
  tryItOutEnabled: false
}});
</script>
</body>
</html>
"""
