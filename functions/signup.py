"""``POST /signup``: create an account with its signup credits; answers a token."""

import flask

from shared import auth, limits
from shared.web import endpoint, parse_body, respond


@endpoint("POST")
def signup(request: flask.Request) -> flask.Response:
    credentials = parse_body(request, auth.UserCredentials)
    # Before the password hash and any write: a refused signup costs one counter increment.
    # Taken signups count too (409), so the limit also bounds probing for taken usernames.
    limits.take_signup_slot(limits.client_address(request))
    user, token = auth.signup(credentials)
    summary = auth.AccountSummary(id=user.id, username=user.username, credits=user.credits)
    return respond(auth.SignupPublic(**token.model_dump(), user=summary), 201)
