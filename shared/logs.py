"""Structured logs: one JSON object per line, in the shape Cloud Logging parses.

Cloud Logging lifts ``severity``, ``message`` and ``logging.googleapis.com/trace``
out of a JSON line on stdout and keeps the other keys as the entry's payload, so
every record carries the request's ``function``, ``trace`` and, once known, its
``user_id`` and ``job_id`` (from context set per request by ``shared.web``).
The request line also carries what the request cost (``shared.metering``).
Only identifiers and counts are logged: never a body, a header, a password or a token.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

# Google's trace ids are 32 hex digits; anything else (non-ASCII letters included) is not one.
_TRACE_ID = re.compile(r"[0-9a-fA-F]{32}")
_context: ContextVar[dict[str, str] | None] = ContextVar("aijobs_log_context", default=None)


class CloudLoggingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        entry: dict[str, Any] = {
            "severity": record.levelname,
            "message": message,
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "logger": record.name,
            **(_context.get() or {}),
            # Figures of one record (the request line's meter), as google-cloud-logging names them.
            **getattr(record, "json_fields", {}),
        }
        return json.dumps(entry)


def setup() -> None:
    """Send every record through the JSON formatter (once per process)."""
    root = logging.getLogger()
    if any(isinstance(h.formatter, CloudLoggingFormatter) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(CloudLoggingFormatter())
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def start_request(function: str, trace_header: str | None, project: str) -> None:
    """Fresh context for one request; the trace id comes from Google's front end."""
    context = {"function": function}
    trace_id = (trace_header or "").split("/", 1)[0]
    if _TRACE_ID.fullmatch(trace_id):
        context["logging.googleapis.com/trace"] = f"projects/{project}/traces/{trace_id}"
    _context.set(context)


def bind(**fields: str) -> None:
    """Add identifiers (``user_id``, ``job_id``) to every later record of this request."""
    _context.set({**(_context.get() or {}), **fields})
