"""``POST /logout``: revoke the refresh token's sign-in (its whole family); idempotent."""

import flask

from shared import sessions
from shared.web import endpoint, parse_body


@endpoint("POST")
def logout(request: flask.Request) -> flask.Response:
    sessions.logout(parse_body(request, sessions.RefreshRequest).refresh_token)
    return flask.Response(status=204)
