"""``POST /signup``: create an account with its signup credits; answers a token."""

import flask

from shared import auth
from shared.web import endpoint, parse_body, respond


@endpoint("POST")
def signup(request: flask.Request) -> flask.Response:
    user, token = auth.signup(parse_body(request, auth.UserCredentials))
    body = {**token.model_dump(), "user": user.model_dump(include={"id", "username", "credits"})}
    return respond(body, 201)
