"""The task types on sale: their cost and allowed options, kept in Firestore.

Document ``config/catalog``: ``{"task_types": {name: {"cost": int, "options":
{option: spec}}}}`` where a spec is ``{"type": "integer"|"number"|"string",
"min", "max", "enum", "required"}``. Operators change prices and options there
without a deploy; ``DEFAULT_CATALOG`` is what ``scripts/seed`` writes and what
applies while the document is missing.
"""

from __future__ import annotations

import copy
import threading
import time
from typing import Any

from shared.db import client
from shared.errors import InvalidRequest
from shared.settings import get_settings

TEXT_TASKS = ("summarize", "translate", "generate_text")
LANGUAGES = [
    "Arabic",
    "Chinese",
    "Dutch",
    "English",
    "French",
    "German",
    "Hindi",
    "Italian",
    "Japanese",
    "Korean",
    "Polish",
    "Portuguese",
    "Russian",
    "Spanish",
    "Swedish",
    "Turkish",
]
_GENERATION = {
    "max_tokens": {"type": "integer", "min": 1, "max": 2048},
    "temperature": {"type": "number", "min": 0, "max": 2},
}
DEFAULT_CATALOG: dict[str, Any] = {
    "task_types": {
        "summarize": {"cost": 1, "options": {"max_words": {"type": "integer", "min": 10, "max": 1000}}},
        "translate": {
            "cost": 1,
            "options": {
                "target_language": {"type": "string", "enum": LANGUAGES, "required": True},
                "source_language": {"type": "string", "enum": LANGUAGES},
            },
        },
        "generate_text": {"cost": 1, "options": _GENERATION},
        "chat": {"cost": 1, "options": _GENERATION},
        "generate_image": {
            "cost": 1,
            "options": {
                "size": {"type": "string", "enum": ["256x256", "512x512", "1024x1024"]},
                "style": {"type": "string", "enum": ["natural", "vivid"]},
            },
        },
    }
}

_lock = threading.Lock()
_cached: tuple[float, dict[str, Any]] | None = None


def catalog_ref() -> Any:
    return client().collection("config").document("catalog")


def task_types() -> dict[str, Any]:
    """The configured task types, cached per instance for ``CATALOG_CACHE_SECONDS``."""
    global _cached
    ttl = get_settings().catalog_cache_seconds
    with _lock:
        if _cached is not None and time.monotonic() - _cached[0] < ttl:
            return _cached[1]
    snapshot = catalog_ref().get()
    data = snapshot.to_dict() if snapshot.exists else None
    types: dict[str, Any] = (data or copy.deepcopy(DEFAULT_CATALOG))["task_types"]
    with _lock:
        _cached = (time.monotonic(), types)
    return types


def _check_option(name: str, value: Any, spec: dict[str, Any]) -> None:
    kind = spec.get("type", "string")
    ok = {
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, int | float) and not isinstance(value, bool),
        "string": isinstance(value, str),
    }.get(kind, False)
    if not ok:
        raise InvalidRequest(f"option {name!r} must be a {kind}", code="invalid_option")
    if "enum" in spec and value not in spec["enum"]:
        allowed = ", ".join(map(str, spec["enum"]))
        raise InvalidRequest(f"option {name!r} must be one of: {allowed}", code="invalid_option")
    if ("min" in spec and value < spec["min"]) or ("max" in spec and value > spec["max"]):
        raise InvalidRequest(
            f"option {name!r} must be between {spec.get('min')} and {spec.get('max')}",
            code="invalid_option",
        )


def price(task_type: str, options: dict[str, Any]) -> int:
    """The cost of a job after checking its options against the catalog."""
    types = task_types()
    if task_type not in types:
        known = ", ".join(sorted(types))
        # The client's value is not echoed (it may be 60 KB long); the known ones are named.
        raise InvalidRequest(f"unknown task_type; known: {known}", code="unknown_task_type")
    spec = types[task_type]
    allowed: dict[str, Any] = spec.get("options", {})
    for name, value in options.items():
        if name not in allowed:
            names = ", ".join(sorted(allowed)) or "none"
            raise InvalidRequest(f"unknown option for {task_type}; allowed: {names}", code="invalid_option")
        _check_option(name, value, allowed[name])
    for name, option in allowed.items():
        if option.get("required") and name not in options:
            raise InvalidRequest(f"option {name!r} is required for {task_type}", code="invalid_option")
    return int(spec.get("cost", 1))
