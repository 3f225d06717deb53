"""``/admin/...``: endpoints for admins only; any other account gets ``403 admin_only``.

- ``POST /admin/credits``: grant or remove credits, idempotent by ``grant_id``.
- ``GET /admin/users?limit=&cursor=``: accounts by username.
- ``GET /admin/users/{username}``: one account with its job counts.
- ``GET /admin/reports?limit=&cursor=``: stored weekly reports, newest first.
- ``GET /admin/reports/{week}``: one stored weekly report.
"""

import flask

from shared import auth, reports
from shared import credits as ledger
from shared.errors import NotFound
from shared.web import bearer_user, endpoint, page, parse_body, path_parts, respond


def _routes(parts: list[str]) -> tuple[str, ...]:
    # The routes are public (the OpenAPI document lists them), so a 405 may name a route's
    # method before authentication; which paths do not exist is told to admins only.
    match parts:
        case ["credits"]:
            return ("POST",)
        case ["users"] | ["users", _] | ["reports"] | ["reports", _]:
            return ("GET",)
    return ("GET", "POST")


@endpoint("GET", "POST", routes=_routes)
def admin(request: flask.Request) -> flask.Response:
    admin_id = bearer_user(request)
    auth.require_admin(admin_id)  # before anything is read or parsed
    match path_parts(request):
        case ["credits"]:
            return _grant(request, admin_id)
        case ["users"]:
            limit, cursor = page(request)
            users, next_cursor = auth.list_users(limit, cursor)
            return respond(auth.UserPage(users=users, next_cursor=next_cursor))
        case ["users", username]:
            return respond(auth.get_user_by_username(username))
        case ["reports"]:
            return respond(reports.list_weeks(*page(request)))
        case ["reports", week]:
            return respond(reports.get(week))
    raise NotFound("no such route", code="route_not_found")


def _grant(request: flask.Request, admin_id: str) -> flask.Response:
    """200 with the grant's result; a repeat of its ``grant_id`` gets the first one, marked."""
    result = ledger.grant(parse_body(request, ledger.GrantCreate), admin_id)
    return respond(result, 200, {"Idempotent-Replayed": "true"} if result.replayed else None)
