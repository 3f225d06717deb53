"""``GET /catalog``: what is on sale: task types, their models with prices, the default, the options.

Public and unauthenticated (a pricing page reads it), the same for every caller, so caches
may keep it as long as an instance keeps the catalog (``CATALOG_CACHE_SECONDS``).
"""

import flask

from shared.catalog import public
from shared.settings import get_settings
from shared.web import endpoint, respond


@endpoint("GET")
def catalog(request: flask.Request) -> flask.Response:
    ttl = int(get_settings().catalog_cache_seconds)
    return respond(public(), headers={"Cache-Control": f"public, max-age={ttl}"})
