"""``POST /login``: exchange username and password for an access token."""

import flask

from shared import auth
from shared.web import endpoint, parse_body, respond


@endpoint("POST")
def login(request: flask.Request) -> flask.Response:
    return respond(auth.login(parse_body(request, auth.UserCredentials)))
