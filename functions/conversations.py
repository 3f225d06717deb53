"""``/conversations``: chat conversations whose history the server keeps.

``POST /conversations``, ``GET /conversations``, ``GET``/``DELETE /conversations/{id}``,
``POST /conversations/{id}/messages`` (``Idempotency-Key`` optional): a charged ``chat`` job.
"""

import flask

from shared import conversations as store
from shared import queue
from shared.errors import NotFound
from shared.web import bearer_user, endpoint, page, parse_body, path_parts, respond


def _routes(parts: list[str]) -> tuple[str, ...]:
    match parts:
        case []:
            return ("GET", "POST")
        case [_]:
            return ("GET", "DELETE")
        case [_, "messages"]:
            return ("POST",)
    raise NotFound("no such route", code="route_not_found")


@endpoint("GET", "POST", "DELETE", routes=_routes)
def conversations(request: flask.Request) -> flask.Response:
    user_id = bearer_user(request)
    match path_parts(request), request.method:
        case [], "POST":
            body = parse_body(request, store.ConversationCreate)  # {} for neither title nor system
            return respond(store.create(user_id, body), 201)
        case [], _:
            limit, cursor = page(request)
            found, next_cursor = store.list_for(user_id, limit, cursor)
            return respond(store.ConversationPage(conversations=found, next_cursor=next_cursor))
        case [conversation_id], "DELETE":
            store.delete(user_id, conversation_id)
            return flask.Response(status=204)
        case [conversation_id], _:
            return respond(store.get(user_id, conversation_id))
        case [conversation_id, _], _:
            message = parse_body(request, store.MessageCreate)
            key = request.headers.get("Idempotency-Key")
            accepted = store.post(user_id, conversation_id, message, key, queue.enqueue)
            headers = {"Idempotent-Replayed": "true"} if accepted.replayed else None
            return respond(accepted, 202, headers)
    raise AssertionError("unreachable: _routes knows every path")
