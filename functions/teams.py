"""``/teams``: teams sharing a credit pool, their members, money and usage.

- ``POST /teams`` ``{name}`` (201; the caller is its owner), ``GET /teams`` (the caller's).
- ``GET``, ``PATCH`` ``{name}``, ``DELETE`` (204) ``/teams/{team_id}``.
- ``GET /teams/{team_id}/members``, ``POST`` ``{username, role, daily_limit, monthly_limit}``.
- ``PATCH`` ``{role, daily_limit, monthly_limit}``, ``DELETE`` ``/teams/{team_id}/members/{username}``.
- ``POST /teams/{team_id}/credits`` ``{amount, transfer_id}``; ``GET`` (the ledger, paged).
- ``GET /teams/{team_id}/usage?from=&to=&group_by=member|task_type|day[&format=csv]``.
"""

import flask

from shared import credits
from shared import teams as team_store
from shared.errors import NotFound
from shared.web import bearer_user, endpoint, page, parse_body, path_parts, respond


def _routes(parts: list[str]) -> tuple[str, ...]:
    match parts:
        case []:
            return ("GET", "POST")
        case [_]:
            return ("GET", "PATCH", "DELETE")
        case [_, "members"] | [_, "credits"]:
            return ("GET", "POST")
        case [_, "members", _]:
            return ("PATCH", "DELETE")
        case [_, "usage"]:
            return ("GET",)
    raise NotFound("no such route", code="route_not_found")


@endpoint("GET", "POST", "PATCH", "DELETE", routes=_routes)
def teams(request: flask.Request) -> flask.Response:
    user_id = bearer_user(request)
    match request.method, path_parts(request):
        case "POST", []:
            return respond(team_store.create(user_id, parse_body(request, team_store.TeamCreate)), 201)
        case "GET", []:
            return respond(team_store.list_mine(user_id))
        case "GET", [team_id]:
            return respond(team_store.get(user_id, team_id))
        case "PATCH", [team_id]:
            return respond(team_store.update(user_id, team_id, parse_body(request, team_store.TeamUpdate)))
        case "DELETE", [team_id]:
            team_store.delete(user_id, team_id)
            return flask.Response(status=204)
        case "GET", [team_id, "members"]:
            return respond(team_store.members(user_id, team_id))
        case "POST", [team_id, "members"]:
            order = parse_body(request, team_store.MemberCreate)
            return respond(team_store.add_member(user_id, team_id, order), 201)
        case "PATCH", [team_id, "members", username]:
            changes = parse_body(request, team_store.MemberUpdate)
            return respond(team_store.update_member(user_id, team_id, username, changes))
        case "DELETE", [team_id, "members", username]:
            team_store.remove_member(user_id, team_id, username)
            return flask.Response(status=204)
        case "POST", [team_id, "credits"]:
            moved = team_store.transfer(user_id, team_id, parse_body(request, credits.TransferCreate))
            return respond(moved, 200, {"Idempotent-Replayed": "true"} if moved.replayed else None)
        case "GET", [team_id, "credits"]:
            return respond(team_store.ledger(user_id, team_id, *page(request)))
        case "GET", [team_id, "usage"]:
            return _usage(request, user_id, team_id)
    raise AssertionError("unreachable: _routes knows every path")


def _usage(request: flask.Request, user_id: str, team_id: str) -> flask.Response:
    query = team_store.TeamUsageQuery.model_validate(request.args.to_dict())
    report = team_store.usage_history(user_id, team_id, query)
    wants_csv = query.format == "csv" or (
        "format" not in request.args and request.accept_mimetypes.best == "text/csv"
    )
    if not wants_csv:
        return respond(report)
    name = f"team-{team_id}-usage-{query.from_}-{query.to}-by-{query.group_by}.csv"
    headers = {"Content-Disposition": f'attachment; filename="{name}"', "Vary": "Accept"}
    return flask.Response(team_store.team_usage.as_csv(report), 200, headers, mimetype="text/csv")
