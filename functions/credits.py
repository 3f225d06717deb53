"""``GET /credits?limit=&cursor=``: the balance and the ledger, newest first."""

import flask

from shared import auth
from shared import credits as ledger
from shared.web import bearer_user, endpoint, page, respond


@endpoint("GET")
def credits(request: flask.Request) -> flask.Response:
    user_id = bearer_user(request)
    limit, cursor = page(request)
    entries, next_cursor = ledger.history(user_id, limit, cursor)
    balance = auth.get_user(user_id).credits
    return respond(ledger.LedgerPage(credits=balance, transactions=entries, next_cursor=next_cursor))
