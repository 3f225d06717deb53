"""``/api_keys``: the user's API keys. Managing keys needs a password session: a key is refused.

- ``POST /api_keys`` ``{name}``: 201, the key (shown this once) with its id and prefix.
- ``GET /api_keys?limit=&cursor=``: the live keys, newest first (never the keys themselves).
- ``DELETE /api_keys/{id}``: 204, revoked at once.
"""

import flask

from shared import api_keys as keys
from shared.errors import NotFound
from shared.web import bearer_user, endpoint, page, parse_body, path_parts, respond


def _routes(parts: list[str]) -> tuple[str, ...]:
    match parts:
        case []:
            return ("GET", "POST")
        case [_]:
            return ("DELETE",)
    raise NotFound("no such route", code="route_not_found")


@endpoint("GET", "POST", "DELETE", routes=_routes)
def api_keys(request: flask.Request) -> flask.Response:
    # A stolen key must not mint more keys or keep itself alive by revoking the owner's others.
    user_id = bearer_user(request, api_keys=False)
    match request.method, path_parts(request):
        case "POST", []:
            return respond(keys.create(user_id, parse_body(request, keys.ApiKeyCreate)), 201)
        case "GET", []:
            return respond(keys.list_for(user_id, *page(request)))
        case "DELETE", [key_id]:
            keys.delete(user_id, key_id)
            return flask.Response(status=204)
    raise AssertionError("unreachable: _routes knows every path")
