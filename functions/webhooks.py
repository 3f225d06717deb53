"""``/webhooks``: the user's webhook endpoints, signed per Standard Webhooks.

- ``POST /webhooks`` ``{url, events}``: 201, the endpoint with its ``secret`` (shown this once).
- ``GET /webhooks?limit=&cursor=``: the endpoints, newest first.
- ``GET /webhooks/{id}``, ``DELETE /webhooks/{id}`` (204).
- ``POST /webhooks/{id}/rotate``: a new secret, shown this once.
- ``GET /webhooks/{id}/deliveries?limit=&cursor=``: what was sent there, newest first.
"""

import flask

from shared import webhooks as hooks
from shared.errors import NotFound
from shared.web import bearer_user, endpoint, page, parse_body, path_parts, respond


def _routes(parts: list[str]) -> tuple[str, ...]:
    match parts:
        case []:
            return ("GET", "POST")
        case [_]:
            return ("GET", "DELETE")
        case [_, "rotate"]:
            return ("POST",)
        case [_, "deliveries"]:
            return ("GET",)
    raise NotFound("no such route", code="route_not_found")


@endpoint("GET", "POST", "DELETE", routes=_routes)
def webhooks(request: flask.Request) -> flask.Response:
    user_id = bearer_user(request)
    match request.method, path_parts(request):
        case "POST", []:
            return respond(hooks.create(user_id, parse_body(request, hooks.WebhookCreate)), 201)
        case "GET", []:
            return respond(hooks.list_for(user_id, *page(request)))
        case "GET", [webhook_id]:
            return respond(hooks.get(user_id, webhook_id))
        case "DELETE", [webhook_id]:
            hooks.delete(user_id, webhook_id)
            return flask.Response(status=204)
        case "POST", [webhook_id, "rotate"]:
            return respond(hooks.rotate(user_id, webhook_id))
        case "GET", [webhook_id, "deliveries"]:
            return respond(hooks.deliveries(user_id, webhook_id, *page(request)))
    raise AssertionError("unreachable: _routes knows every path")
