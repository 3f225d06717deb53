"""The plan's vocabulary: a step (a command described, not run), a section, the plan, and the
deploy's configuration."""

from __future__ import annotations

import os
import secrets
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from scripts.deployment.spec import ROOT, SERVICE_ACCOUNTS, WEB_DIR


@dataclass(frozen=True)
class Stdin:
    """Where a step's standard input comes from: an environment variable, or a fresh random key.
    The plan holds only this description; the value is read when the step runs, never printed."""

    env: str | None = None

    def render(self) -> str:
        if self.env is not None:
            return f'printf %s "${self.env}"'
        return "python3 -c 'import secrets; print(secrets.token_hex(32), end=\"\")'"

    def read(self) -> bytes:
        if self.env is None:
            # Hex, not urlsafe: it can never spell a word the production settings refuse
            # ("test", "dev", ...), which 1 in about 10,000 urlsafe keys does.
            return secrets.token_hex(32).encode()
        value = os.environ.get(self.env)
        if not value:
            raise DeployError(f"${self.env} is empty")
        return value.encode()


@dataclass(frozen=True)
class Step:
    """One command of the plan, described, not run.

    Plain: run ``argv``. With ``check``: run ``check`` first; if it succeeds the resource exists
    and ``update`` runs (or nothing); if it fails, ``argv`` creates it (or, with
    ``fail_message``, the deploy stops and says what is missing). ``shell`` is a bash line for
    the rare step an argv cannot express.
    """

    description: str
    argv: tuple[str, ...] = ()
    check: tuple[str, ...] | None = None
    update: tuple[str, ...] | None = None
    shell: str | None = None
    stdin: Stdin | None = None
    tolerate: tuple[str, ...] = ()
    """Error output that means the desired state is already there (e.g. an index exists)."""
    retry_on: tuple[str, ...] = ()
    """Error output worth retrying for a while (IAM's eventual consistency)."""
    fail_message: str | None = None
    needs: str | None = None
    """An optional tool: without it on PATH the step is skipped with a note."""
    optional: bool = False
    """A failure warns and the deploy goes on (defence in depth, not needed to serve)."""

    def render(self) -> str:
        """The step as one exact bash command line."""
        if self.shell is not None:
            return self.shell
        main = shlex.join(self.argv)
        if self.stdin is not None:
            main = f"{self.stdin.render()} | {main}"
        if self.check is None:
            return main
        check = f"{shlex.join(self.check)} >/dev/null 2>&1"
        if self.fail_message is not None:
            return f"{check} || {{ echo {shlex.quote(self.fail_message)} >&2; exit 1; }}"
        if self.update is not None:
            return f"if {check}; then {shlex.join(self.update)}; else {main}; fi"
        return f"{check} || {main}"


@dataclass
class Section:
    title: str
    steps: list[Step] = field(default_factory=list)
    note: str = ""


@dataclass
class Plan:
    sections: list[Section]

    def steps(self) -> Iterator[tuple[Section, Step]]:
        for section in self.sections:
            for step in section.steps:
                yield section, step

    def commands(self) -> list[str]:
        return [step.render() for _, step in self.steps()]


class DeployError(RuntimeError):
    """The deploy cannot go on; the message says why and what to do."""


@dataclass(frozen=True)
class Config:
    """Everything the plan depends on. Secret *values* are not here, only whether they were given."""

    project: str
    region: str
    firestore_location: str
    bundle_dir: Path
    ai_model: str = "gpt-4o-mini"
    ai_image_model: str = "gpt-image-1"
    ai_base_url: str | None = None
    ai_providers: str | None = None
    """``AI_PROVIDERS`` (JSON), the providers besides ``default``; their keys are one secret."""
    jwt_secret_given: bool = False
    ai_key_given: bool = False
    ai_provider_keys_given: bool = False
    firebase_api_key: str | None = None
    """The console's Firebase sign-in; without it the console offers password accounts only."""
    console_origins: tuple[str, ...] = ()
    """More origins serving the console (a custom domain), besides Hosting's own two."""
    web_dir: Path = WEB_DIR

    @property
    def hosting_origins(self) -> tuple[str, ...]:
        """Where Firebase Hosting serves the console (the default site is named after the
        project), then any custom domain: ``CORS_ORIGINS`` of the functions."""
        own = (f"https://{self.project}.web.app", f"https://{self.project}.firebaseapp.com")
        return tuple(dict.fromkeys(own + self.console_origins))

    def sa_email(self, key: str) -> str:
        return f"{SERVICE_ACCOUNTS[key].name}@{self.project}.iam.gserviceaccount.com"

    def member(self, key: str) -> str:
        return f"serviceAccount:{self.sa_email(key)}"

    @property
    def functions_base_url(self) -> str:
        """The ``cloudfunctions.net`` base: stable before the first deploy (unlike ``run.app``
        URLs), so it can be both where tasks are sent and the OIDC audience the app expects."""
        return f"https://{self.region}-{self.project}.cloudfunctions.net"

    def function_url(self, name: str) -> str:
        return f"{self.functions_base_url}/{name}"

    @property
    def images_bucket(self) -> str:
        """Bucket names are global: the project id makes this one unique."""
        return f"{self.project}-aijobs-images"

    def gcloud(self, *args: str) -> tuple[str, ...]:
        """A gcloud command pinned to the project (never the CLI's configured default) that
        never prompts."""
        return ("gcloud", *args, f"--project={self.project}", "--quiet")

    def source(self, name: str) -> str:
        path = self.bundle_dir / name
        return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
