"""``GET /me``: the signed-in account and its balance."""

import flask

from shared import auth
from shared.web import bearer_user, endpoint, respond


@endpoint("GET")
def me(request: flask.Request) -> flask.Response:
    return respond(auth.get_user(bearer_user(request)))
