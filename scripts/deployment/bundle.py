"""The per-function bundles: ``main.py``, ``shared/`` and the pinned ``requirements.txt``."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from scripts.deployment.model import DeployError
from scripts.deployment.spec import BUNDLE_MARKER, FUNCTIONS, ROOT


def function_names(root: Path = ROOT) -> list[str]:
    """Every Cloud Function: one file per function in ``functions/``."""
    return sorted(p.stem for p in (root / "functions").glob("*.py") if not p.stem.startswith("_"))


def check_function_table(names: Sequence[str]) -> None:
    """Refuse to deploy a function without settings (or settings for a function that is gone)."""
    missing = sorted(set(names) - set(FUNCTIONS))
    extra = sorted(set(FUNCTIONS) - set(names))
    if missing or extra:
        raise DeployError(
            f"scripts/deploy.py FUNCTIONS does not match functions/: missing {missing}, unknown {extra}"
        )


def pinned_requirements(path: Path) -> str:
    """The runtime requirements, which must all be pinned (``==``) so every deploy builds the same."""
    text = path.read_text()
    for line in text.splitlines():
        requirement = line.split("#", 1)[0].strip()
        if requirement and "==" not in requirement:
            raise DeployError(f"{path.name}: {requirement!r} is not pinned with ==")
    return text


def build_bundles(out_dir: Path, root: Path = ROOT) -> dict[str, Path]:
    """Write one deployable source directory per function and return them by name.

    Cloud Functions builds each function from its own directory with ``main.py`` at the top and
    installs that directory's ``requirements.txt``; ``shared/`` travels along as a package.
    """
    names = function_names(root)
    check_function_table(names)
    requirements = pinned_requirements(root / "requirements.txt")
    if out_dir.exists():
        if any(out_dir.iterdir()) and not (out_dir / BUNDLE_MARKER).exists():
            raise DeployError(f"{out_dir} exists and is not a bundle directory: not deleting it")
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    (out_dir / BUNDLE_MARKER).write_text("built by scripts/deploy.py; deleted and rebuilt by it\n")
    bundles: dict[str, Path] = {}
    for name in names:
        target = out_dir / name
        target.mkdir()
        shutil.copy2(root / "functions" / f"{name}.py", target / "main.py")
        shutil.copytree(
            root / "shared", target / "shared", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
        (target / "requirements.txt").write_text(requirements)
        bundles[name] = target
    return bundles
