"""Where the ``aijobs`` command keeps its login: ``$XDG_CONFIG_HOME/aijobs/config.json``
(``~/.config/aijobs/config.json`` when ``XDG_CONFIG_HOME`` is unset or relative).

The file holds an access token, so it is readable by its owner only (mode 0600, in a 0700
directory) and written atomically: a temporary file created with that mode from the start,
then renamed over the old one, so no other user can ever read it, and a crash never leaves
it half-written.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

__all__ = ["config_dir", "config_path", "load", "remove", "save"]

FILE_MODE = 0o600
DIR_MODE = 0o700


def config_dir() -> Path:
    xdg = os.environ.get("XDG_CONFIG_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".config"
    return base / "aijobs"


def config_path() -> Path:
    return config_dir() / "config.json"


def load() -> dict[str, Any]:
    """The saved settings, ``{}`` when there are none (or the file is unreadable)."""
    try:
        data = json.loads(config_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save(data: dict[str, Any]) -> Path:
    """Write ``data`` atomically, readable by the owner only; returns the file's path."""
    path = config_path()
    path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)  # whatever the umask
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=2)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return path


def remove() -> bool:
    """Delete the saved settings; whether there were any."""
    try:
        config_path().unlink()
    except FileNotFoundError:
        return False
    return True
