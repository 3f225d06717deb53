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
from shared.errors import MethodNotAllowed, NotFound
from shared.web import bearer_user, endpoint, page, parse_body, respond


@endpoint("GET", "POST")
def admin(request: flask.Request) -> flask.Response:
    admin_id = bearer_user(request)
    # Before routing and parsing: a non-admin learns nothing, not even which routes exist.
    auth.require_admin(admin_id)
    parts = [p for p in request.path.split("/") if p]
    match request.method, parts:
        case "POST", ["credits"]:
            return _grant(request, admin_id)
        case "GET", ["users"]:
            return _users(request)
        case "GET", ["users", username]:
            return respond(auth.get_user_by_username(username))
        case "GET", ["reports"]:
            limit, cursor = page(request)
            found, next_cursor = reports.list_weeks(limit, cursor)
            return respond({"reports": found, "next_cursor": next_cursor})
        case "GET", ["reports", week]:
            return respond(reports.get(week))
        case "GET", ["credits"]:
            raise MethodNotAllowed("use POST")
        case "POST", ["users"] | ["users", _] | ["reports"] | ["reports", _]:
            raise MethodNotAllowed("use GET")
    raise NotFound("no such route", code="route_not_found")


def _grant(request: flask.Request, admin_id: str) -> flask.Response:
    """200 with the grant's result; a repeat of its ``grant_id`` gets the first one, marked."""
    result = ledger.grant(parse_body(request, ledger.GrantCreate), admin_id)
    return respond(result, 200, {"Idempotent-Replayed": "true"} if result.replayed else None)


def _users(request: flask.Request) -> flask.Response:
    limit, cursor = page(request)
    users, next_cursor = auth.list_users(limit, cursor)
    return respond({"users": [u.model_dump(mode="json") for u in users], "next_cursor": next_cursor})
