"""``POST /weekly_report`` ``{"week"?}``: compute, store and return a week's usage report.

Called by Cloud Scheduler every Monday; ``scripts/report`` calls it the same way.
"""

import flask

from shared import reports
from shared.internal_auth import verify_internal_caller
from shared.settings import get_settings
from shared.web import endpoint, parse_body, respond


@endpoint("POST")
def weekly_report(request: flask.Request) -> flask.Response:
    verify_internal_caller(request.headers, "weekly_report", get_settings().scheduler_service_account)
    # Cloud Scheduler may send no body at all: that means the default week.
    body = parse_body(request, reports.ReportRequest, empty=reports.ReportRequest())
    return respond(reports.run(body.week))
