"""``POST /refresh``: exchange a refresh token for a new access token and the next refresh token."""

import flask

from shared import auth, sessions
from shared.web import endpoint, parse_body, respond


@endpoint("POST")
def refresh(request: flask.Request) -> flask.Response:
    body = parse_body(request, sessions.RefreshRequest)
    user_id, following = sessions.refresh(body.refresh_token)
    return respond(auth.session(user_id, following))
