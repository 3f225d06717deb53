"""The command line: arguments to a configuration, then a plan rendered or run."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from scripts.deployment.bundle import build_bundles
from scripts.deployment.model import Config, DeployError
from scripts.deployment.plan import build_plan
from scripts.deployment.runner import preflight, render_plan, run_plan
from scripts.deployment.spec import (
    AI_KEY_ENV,
    AI_PROVIDER_KEYS_ENV,
    DEFAULT_BUNDLE_DIR,
    DEV_JWT_SECRET,
    FIREBASE_API_KEY_ENV,
    JWT_SECRET_ENV,
    WEB_DIR,
)

_PROJECT_ID = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_REGION = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")
_HTTPS_ORIGIN = re.compile(r"^https://[a-z0-9.-]+(:[0-9]{1,5})?$")  # as the settings check CORS_ORIGINS
_WEB_API_KEY = re.compile(r"^[A-Za-z0-9_-]{10,100}$")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/deploy",
        description="Deploy aijobs to Google Cloud (idempotent). Try --dry-run first.",
    )
    parser.add_argument("--project", required=True, help="Google Cloud project id")
    parser.add_argument("--region", required=True, help="region of the functions, queue and scheduler jobs")
    parser.add_argument("--dry-run", action="store_true", help="print the exact commands, run nothing")
    parser.add_argument(
        "--firestore-location", help="Firestore location if the database is new (default: region)"
    )
    parser.add_argument("--ai-model", default=os.environ.get("AIJOBS_AI_MODEL", "gpt-4o-mini"))
    parser.add_argument("--ai-image-model", default=os.environ.get("AIJOBS_AI_IMAGE_MODEL", "gpt-image-1"))
    parser.add_argument(
        "--ai-base-url",
        default=os.environ.get("AIJOBS_AI_BASE_URL") or None,
        help="OpenAI-compatible endpoint (https); default api.openai.com",
    )
    parser.add_argument(
        "--ai-providers",
        default=os.environ.get("AIJOBS_AI_PROVIDERS") or None,
        help='more providers, JSON {name: {"base_url", ...}} (AI_PROVIDERS); keys: $' + AI_PROVIDER_KEYS_ENV,
    )
    parser.add_argument(
        "--firebase-api-key",
        default=os.environ.get(FIREBASE_API_KEY_ENV) or None,
        help="the Firebase Web API key, for the web console's email sign-in (or $"
        + FIREBASE_API_KEY_ENV
        + ")",
    )
    parser.add_argument(
        "--console-origin",
        action="append",
        default=[],
        help="another https origin serving the console (a custom domain); repeatable",
    )
    parser.add_argument("--bundle-dir", type=Path, default=DEFAULT_BUNDLE_DIR, help=argparse.SUPPRESS)
    parser.add_argument("--web-dir", type=Path, default=WEB_DIR, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace, environ: Mapping[str, str]) -> Config:
    if not _PROJECT_ID.match(args.project):
        raise DeployError(f"--project {args.project!r} is not a project id")
    if not _REGION.match(args.region):
        raise DeployError(f"--region {args.region!r} is not a region (e.g. europe-west1)")
    if args.ai_base_url and not str(args.ai_base_url).startswith("https://"):
        raise DeployError("--ai-base-url must be an https:// URL")
    if args.ai_providers is not None:
        _check_providers(args.ai_providers)
    for origin in args.console_origin:
        if not _HTTPS_ORIGIN.match(origin):
            raise DeployError(f"--console-origin {origin[:60]!r} is not https://host[:port] in lower case")
    if args.firebase_api_key is not None and not _WEB_API_KEY.match(args.firebase_api_key):
        raise DeployError("--firebase-api-key does not look like a Firebase Web API key")
    jwt = environ.get(JWT_SECRET_ENV, "")
    if jwt and len(jwt) < 32:
        raise DeployError(f"${JWT_SECRET_ENV} must be at least 32 characters (production refuses shorter)")
    if jwt == DEV_JWT_SECRET:
        raise DeployError(f"${JWT_SECRET_ENV} is the local stack's key, which production refuses")
    return Config(
        project=args.project,
        region=args.region,
        firestore_location=args.firestore_location or args.region,
        bundle_dir=Path(args.bundle_dir).resolve(),
        ai_model=args.ai_model,
        ai_image_model=args.ai_image_model,
        ai_base_url=args.ai_base_url,
        jwt_secret_given=bool(jwt),
        ai_providers=args.ai_providers,
        ai_key_given=bool(environ.get(AI_KEY_ENV)),
        ai_provider_keys_given=bool(environ.get(AI_PROVIDER_KEYS_ENV)),
        firebase_api_key=args.firebase_api_key,
        console_origins=tuple(args.console_origin),
        web_dir=Path(args.web_dir).resolve(),
    )


def _check_providers(text: str) -> None:
    """What the plan can see of ``--ai-providers`` (the functions validate the rest at start)."""
    try:
        providers = json.loads(text)
    except ValueError:
        raise DeployError("--ai-providers is not JSON") from None
    if not isinstance(providers, dict) or not providers:
        raise DeployError('--ai-providers must be a JSON object {name: {"base_url": ...}}')
    for name, spec in providers.items():
        url = spec.get("base_url") if isinstance(spec, dict) else None
        if not isinstance(url, str) or not url.startswith("https://"):
            raise DeployError(f"--ai-providers: {name[:40]!r} needs an https:// base_url")
    if "|" in text:
        raise DeployError("--ai-providers may not contain '|' (gcloud's list delimiter here)")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = config_from_args(args, os.environ)
        build_bundles(config.bundle_dir)
        plan = build_plan(config)
        if args.dry_run:
            sys.stdout.write(render_plan(plan, config))
            return 0
        preflight(plan)
        print(f"Bundles built in {config.source('')}/; deploying to {config.project} ({config.region}).")
        return run_plan(plan)
    except DeployError as exc:
        print(f"deploy: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
