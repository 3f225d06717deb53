"""``GET /usage?from=YYYY-MM-DD&to=YYYY-MM-DD``: the user's jobs and credits per task type and day."""

import flask

from shared import usage as counters
from shared.web import bearer_user, endpoint, respond


@endpoint("GET")
def usage(request: flask.Request) -> flask.Response:
    user_id = bearer_user(request)
    query = counters.UsageQuery.model_validate(request.args.to_dict())
    return respond(counters.history(user_id, query))
