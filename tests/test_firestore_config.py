"""The deployed Firestore configuration: ``firestore.rules`` and ``firestore.indexes.json``.

Rules: every read and write goes through the functions (Admin SDK, which bypasses the
rules), so the rules deny every direct client request. A separate Firestore emulator is
started with ``--rules firestore.rules`` (the flag this emulator has, like
``firebase.json`` names the file for deploys); documents are seeded with the emulator's
admin bypass (``Authorization: Bearer owner``); then anonymous and signed-in clients try
every REST read and write on every collection the app uses, and must get 403. A control
test loads a permissive ruleset through the emulator's ``:securityRules`` endpoint and shows
the same requests succeed when the rules allow them, so the denials are the rules' doing.
(Started without ``--rules`` this emulator allows everything: the fixture checks the flag took.)

Indexes: the emulator never asks for an index, so the queries the service builds are
captured at run time (every ``RunQuery`` / ``RunAggregationQuery`` request the process's
client sends while the domain functions run) and each one's index need is derived from
Firestore's documented rules and looked up in ``firestore.indexes.json``.
"""

from __future__ import annotations

import ast
import base64
import contextlib
import json
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
import requests
from conftest import Api

from scripts.stack import PROJECT, Stack

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "firestore.rules"
INDEXES = ROOT / "firestore.indexes.json"
DATABASE = f"projects/{PROJECT}/databases/(default)"

# -- rules ----------------------------------------------------------------------------------------

OWNER_UID = "u-rules-owner"
# Every collection the app uses (paths with the owner's id where the data is per user), plus
# one nobody uses: the rules must not depend on a list of known names.
DOCUMENTS: list[tuple[str, str, dict[str, Any]]] = [
    ("users", OWNER_UID, {"username": "alice", "credits": 10, "role": "user"}),
    (f"users/{OWNER_UID}/ledger", "grant-signup", {"type": "grant", "amount": 10}),
    (f"users/{OWNER_UID}/usage_days", "2026-01-05-0", {"user_id": OWNER_UID, "day": "2026-01-05"}),
    ("usernames", "alice", {"user_id": OWNER_UID}),
    ("firebase_users", "f" * 64, {"uid": "firebase-uid-1", "user_id": OWNER_UID}),
    ("jobs", "job-rules-1", {"user_id": OWNER_UID, "status": "queued", "cost": 1}),
    ("idempotency", f"{OWNER_UID}-abc", {"user_id": OWNER_UID, "job_id": "job-rules-1"}),
    ("grants", "grant-1", {"user_id": OWNER_UID, "amount": 5}),
    ("reports", "2026-W01", {"week": "2026-W01"}),
    ("config", "catalog", {"task_types": {}}),
    ("login_attempts", "alice", {"user_id": OWNER_UID, "count": 1}),
    ("rate_windows", f"{OWNER_UID}-w1", {"user_id": OWNER_UID, "count": 1}),
    (f"users/{OWNER_UID}/webhooks", "hook-1", {"url": "https://example.com/h", "secret": "whsec_x"}),
    ("webhook_owners", OWNER_UID, {"count": 1}),
    ("webhook_deliveries", "msg_1", {"user_id": OWNER_UID, "status": "pending"}),
    ("conversations", "conv-1", {"user_id": OWNER_UID, "title": "t", "next_seq": 2}),
    ("conversations/conv-1/messages", "1", {"content": "hi", "status": "pending"}),
    ("conversation_owners", OWNER_UID, {"count": 1}),
    ("api_keys", "0" * 64, {"user_id": OWNER_UID, "key_id": "key-1"}),
    (f"users/{OWNER_UID}/api_keys", "key-1", {"name": "n", "prefix": "aij_live_abcd"}),
    ("api_key_owners", OWNER_UID, {"count": 1}),
    ("refresh_tokens", "1" * 64, {"user_id": OWNER_UID, "family_id": "family-1"}),
    ("refresh_families", "family-1", {"user_id": OWNER_UID, "current": "1" * 64}),
    ("made_up_collection", "doc-1", {"user_id": OWNER_UID}),
]

ALLOW_SIGNED_IN = """rules_version = '2';
service cloud.firestore {
  match /databases/{database}/documents {
    match /{document=**} {
      allow read, write: if request.auth != null
          && request.auth.token.firebase.sign_in_provider == 'password';
    }
  }
}
"""


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def client_token(uid: str, **claims: Any) -> str:
    """A Firebase ID token as the emulator accepts it: unsigned (``alg: none``, empty signature),
    in the shape of the SDKs' ``mockUserToken`` (firebase-js-sdk ``util/src/emulator.ts``)."""
    now = int(time.time())
    payload = {
        "iss": f"https://securetoken.google.com/{PROJECT}",
        "aud": PROJECT,
        "iat": now,
        "exp": now + 3600,
        "auth_time": now,
        "sub": uid,
        "user_id": uid,
        "firebase": {"sign_in_provider": "password", "identities": {}},
        **claims,
    }
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(payload)}."


IDENTITIES: dict[str, dict[str, str]] = {
    "anonymous": {},
    "signed-in owner": {"Authorization": f"Bearer {client_token(OWNER_UID)}"},
    "signed-in owner claiming admin": {
        "Authorization": f"Bearer {client_token(OWNER_UID, admin=True, role='admin')}"
    },
}
ADMIN_BYPASS = {"Authorization": "Bearer owner"}


def _value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"booleanValue": value}
    if isinstance(value, int):
        return {"integerValue": str(value)}
    if isinstance(value, dict):
        return {"mapValue": {"fields": _fields(value)}}
    return {"stringValue": str(value)}


def _fields(data: dict[str, Any]) -> dict[str, Any]:
    return {key: _value(value) for key, value in data.items()}


@dataclass
class Emulator:
    port: int
    stack: Stack

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def documents(self) -> str:
        return f"{self.base}/v1/{DATABASE}/documents"

    def load_rules(self, source: str) -> None:
        """Replace the ruleset through the emulator's own endpoint (what the Firebase CLI uses)."""
        body = {"rules": {"files": [{"name": "firestore.rules", "content": source}]}}
        url = f"{self.base}/emulator/v1/projects/{PROJECT}:securityRules"
        response = requests.put(url, json=body, timeout=30)
        assert response.status_code == 200, response.text

    def seed(self) -> None:
        for collection, doc_id, data in DOCUMENTS:
            url = f"{self.documents}/{collection}/{doc_id}"
            response = requests.patch(url, json={"fields": _fields(data)}, headers=ADMIN_BYPASS, timeout=30)
            assert response.status_code == 200, response.text

    def stored(self) -> dict[str, Any]:
        """Every seeded document as the admin sees it (what a refused write must leave alone)."""
        found: dict[str, Any] = {}
        for collection, doc_id, _ in DOCUMENTS:
            url = f"{self.documents}/{collection}/{doc_id}"
            response = requests.get(url, headers=ADMIN_BYPASS, timeout=30)
            assert response.status_code == 200, response.text
            body = response.json()
            found[f"{collection}/{doc_id}"] = (body["fields"], body["updateTime"])
        strays = requests.get(f"{self.documents}/made_up_collection", headers=ADMIN_BYPASS, timeout=30)
        found["made_up_collection/*"] = sorted(d["name"] for d in strays.json().get("documents", []))
        return found


@pytest.fixture(scope="module")
def rules_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """A Firestore emulator of its own, started as the stack starts it (with ``firestore.rules``)."""
    stack = Stack(import_dir=None, log_dir=tmp_path_factory.mktemp("rules-emulator"))
    stack.start_firestore()
    emulator = Emulator(stack.firestore_port, stack)
    try:
        emulator.seed()
        first = send(attempts(emulator, "users", OWNER_UID)[0], IDENTITIES["signed-in owner"])
        assert denied(first), f"firestore.rules was not loaded at start: {first.status_code} {first.text}"
        yield emulator
    finally:
        stack.stop()


@dataclass(frozen=True)
class Attempt:
    name: str
    method: str
    url: str
    body: dict[str, Any] | None = None


def attempts(emulator: Emulator, collection: str, doc_id: str) -> list[Attempt]:
    """Every REST read and write a client could try on one collection."""
    docs = emulator.documents
    parent_path, _, collection_id = collection.rpartition("/")
    parent = f"{docs}/{parent_path}" if parent_path else docs
    name = f"{DATABASE}/documents/{collection}/{doc_id}"
    owned = {
        "fieldFilter": {"field": {"fieldPath": "user_id"}, "op": "EQUAL", "value": {"stringValue": OWNER_UID}}
    }
    query = {"from": [{"collectionId": collection_id}], "where": owned}
    group_query = {"from": [{"collectionId": collection_id, "allDescendants": True}]}
    fields = {"fields": _fields({"user_id": OWNER_UID, "credits": 1_000_000, "role": "admin"})}
    return [
        Attempt("get", "GET", f"{docs}/{collection}/{doc_id}"),
        Attempt("list", "GET", f"{docs}/{collection}"),
        Attempt("runQuery", "POST", f"{parent}:runQuery", {"structuredQuery": query}),
        Attempt("runQuery (collection group)", "POST", f"{docs}:runQuery", {"structuredQuery": group_query}),
        Attempt(
            "runAggregationQuery",
            "POST",
            f"{parent}:runAggregationQuery",
            {
                "structuredAggregationQuery": {
                    "structuredQuery": query,
                    "aggregations": [{"alias": "n", "count": {}}],
                }
            },
        ),
        Attempt("batchGet", "POST", f"{docs}:batchGet", {"documents": [name]}),
        Attempt("create", "POST", f"{docs}/{collection}?documentId=client-made", fields),
        Attempt("create (server id)", "POST", f"{docs}/{collection}", fields),
        Attempt("patch", "PATCH", f"{docs}/{collection}/{doc_id}", fields),
        Attempt("delete", "DELETE", f"{docs}/{collection}/{doc_id}"),
        Attempt("commit", "POST", f"{docs}:commit", {"writes": [{"update": {"name": name, **fields}}]}),
    ]


def send(attempt: Attempt, headers: dict[str, str]) -> requests.Response:
    return requests.request(attempt.method, attempt.url, json=attempt.body, headers=headers, timeout=30)


def denied(response: requests.Response) -> bool:
    """403 PERMISSION_DENIED (streaming endpoints answer a JSON array holding the error)."""
    if response.status_code != 403:
        return False
    body = response.json()
    error = (body[0] if isinstance(body, list) else body).get("error", {})
    return bool(error.get("status") == "PERMISSION_DENIED")


def test_rules_deny_every_client_read_and_write(rules_emulator: Emulator) -> None:
    before = rules_emulator.stored()
    allowed = []
    for collection, doc_id, _ in DOCUMENTS:
        for attempt in attempts(rules_emulator, collection, doc_id):
            for who, headers in IDENTITIES.items():
                response = send(attempt, headers)
                if not denied(response):
                    allowed.append(
                        f"{who} {attempt.name} {collection}: {response.status_code} {response.text}"
                    )
    assert not allowed, "firestore.rules let a client through:\n" + "\n".join(allowed)
    assert rules_emulator.stored() == before, "a refused write changed a document"


def test_the_rules_are_enforced_and_tokens_are_recognised(rules_emulator: Emulator) -> None:
    """Control: under a ruleset that admits signed-in clients, every request of the matrix above
    succeeds for the signed-in owner and still fails anonymously. So the requests are well formed,
    the unsigned token is understood, and each 403 above is the rules' doing."""
    owner, anonymous = IDENTITIES["signed-in owner"], IDENTITIES["anonymous"]
    created: list[str] = []
    try:
        rules_emulator.load_rules(ALLOW_SIGNED_IN)
        for collection, doc_id in [("jobs", "job-rules-1"), (f"users/{OWNER_UID}/ledger", "grant-signup")]:
            for attempt in attempts(rules_emulator, collection, doc_id):
                assert denied(send(attempt, anonymous)), f"anonymous {attempt.name} {collection}"
                response = send(attempt, owner)
                assert response.status_code == 200, f"{attempt.name} {collection}: {response.text}"
                if attempt.name.startswith("create"):
                    created.append(response.json()["name"])
    finally:
        rules_emulator.load_rules(RULES.read_text())
        for name in created:
            url = f"{rules_emulator.base}/v1/{name}"
            requests.delete(url, headers=ADMIN_BYPASS, timeout=30)
        rules_emulator.seed()  # put back what the permitted writes changed
    for attempt in attempts(rules_emulator, "jobs", "job-rules-1"):
        assert denied(send(attempt, owner)), f"{attempt.name} after firestore.rules was loaded again"


def test_the_admin_sdk_is_not_bound_by_the_rules(
    rules_emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The functions' client (the Admin SDK's emulator credentials) still reads and writes."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import firestore

    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", f"127.0.0.1:{rules_emulator.port}")
    admin = firestore.Client(project=PROJECT, credentials=AnonymousCredentials())
    assert admin.collection("users").document(OWNER_UID).get().get("credits") == 10
    ref = admin.collection("made_up_collection").document("admin-write")
    ref.set({"ok": True})
    assert ref.get().get("ok") is True
    ref.delete()
    # ...and the rules really are the denying ones right now.
    assert denied(send(attempts(rules_emulator, "users", OWNER_UID)[0], IDENTITIES["signed-in owner"]))


# -- indexes --------------------------------------------------------------------------------------
#
# When a query needs which index (Firestore, Standard edition), from the docs:
# - firebase.google.com/docs/firestore/query-data/index-overview: single-field indexes are kept
#   automatically for every field, ascending, descending and array-contains, at COLLECTION scope
#   only; they serve equality filters and a range/inequality filter or order on one field.
#   Several equality filters are served by merging single-field indexes ("index merging").
#   Anything else (equality on some fields with a range or order on another, orders on two
#   fields) needs a composite index: the equality fields, then the range/order fields with their
#   directions; ``__name__`` is always implied last, with the direction of the last field.
#   A ``fieldOverrides`` entry replaces the automatic indexes of that field (exempting the rest).
# - .../query-data/queries#collection-group-query and index-overview "query scope": a collection
#   group query needs COLLECTION_GROUP-scope indexes, which are never automatic: a
#   ``fieldOverrides`` entry for single-field needs, ``queryScope: COLLECTION_GROUP`` composites.
# - .../query-data/multiple-range-fields: inequality fields not in orderBy are implicitly ordered
#   after the explicit orders, then ``__name__``.
# - .../query-data/aggregation-queries: an aggregation uses the index of the query under it.
#   sum()/average() read the aggregated field from the index ("SUM() and AVG() ... through index
#   scans ... a field must be indexed", cloud.google.com/blog/products/databases/
#   aggregate-with-sum-and-avg-in-firestore), so ``where(a == x).sum(b)`` needs a composite
#   (a, b); firebase-js-sdk's composite-index tests declare exactly such indexes for theirs.

EQUALITY = {"EQUAL", "IN", "IS_NULL", "IS_NAN"}
ARRAY = {"ARRAY_CONTAINS", "ARRAY_CONTAINS_ANY"}
INEQUALITY = {
    "LESS_THAN",
    "LESS_THAN_OR_EQUAL",
    "GREATER_THAN",
    "GREATER_THAN_OR_EQUAL",
    "NOT_EQUAL",
    "NOT_IN",
    "IS_NOT_NULL",
    "IS_NOT_NAN",
}
QUERY_BUILDERS = {"where", "order_by", "collection_group"}


@dataclass(frozen=True)
class Shape:
    """What of a query decides its index: source, filters, orders, aggregations."""

    collection: str
    scope: str  # COLLECTION or COLLECTION_GROUP
    filters: tuple[tuple[str, str], ...]
    orders: tuple[tuple[str, str], ...]
    aggregations: tuple[str, ...] = ()

    def __str__(self) -> str:
        where = " AND ".join(f"{f} {op}" for f, op in self.filters) or "-"
        order = ", ".join(f"{f} {d}" for f, d in self.orders) or "-"
        agg = f" {'+'.join(self.aggregations)}()" if self.aggregations else ""
        return f"{self.collection} [{self.scope}] where {where} order by {order}{agg}"


@dataclass(frozen=True)
class Need:
    kind: str  # none | merge (equality only) | single | composite
    collection: str
    scope: str
    equality: frozenset[str] = frozenset()
    arrays: frozenset[str] = frozenset()
    ordered: tuple[tuple[str, str], ...] = ()
    aggregated: frozenset[str] = frozenset()

    def __str__(self) -> str:
        if self.kind == "none":
            return "no index (document-name order)"
        if self.kind == "merge":
            return f"single-field {sorted(self.equality)} at {self.scope} scope (merged)"
        if self.kind == "single":
            (f, d), *_ = self.ordered or ((min(self.aggregated), "any"),)
            return f"single-field {f} {d} at {self.scope} scope"
        return f"composite {json.dumps(self.suggestion())}"

    def suggestion(self) -> dict[str, Any]:
        fields = [{"fieldPath": f, "order": "ASCENDING"} for f in sorted(self.equality)]
        fields += [{"fieldPath": f, "arrayConfig": "CONTAINS"} for f in sorted(self.arrays)]
        fields += [{"fieldPath": f, "order": d} for f, d in self.ordered]
        fields += [{"fieldPath": f, "order": "ASCENDING"} for f in sorted(self.aggregated)]
        return {"collectionGroup": self.collection, "queryScope": self.scope, "fields": fields}


def _field_ops(where: Any) -> list[tuple[str, str]]:
    from google.cloud.firestore_v1.types import StructuredQuery

    kind = where.WhichOneof("filter_type")
    if kind == "field_filter":
        op = StructuredQuery.FieldFilter.Operator(where.field_filter.op).name
        return [(where.field_filter.field.field_path, op)]
    if kind == "unary_filter":
        op = StructuredQuery.UnaryFilter.Operator(where.unary_filter.op).name
        return [(where.unary_filter.field.field_path, op)]
    if kind == "composite_filter":
        op = StructuredQuery.CompositeFilter.Operator(where.composite_filter.op).name
        assert op == "AND", f"{op} filters are not modelled here: teach the index test about them"
        return [pair for sub in where.composite_filter.filters for pair in _field_ops(sub)]
    return []


def shape_of(structured: Any, aggregations: Any = ()) -> Shape:
    from google.cloud.firestore_v1.types import StructuredAggregationQuery, StructuredQuery

    pb = StructuredQuery.pb(structured)
    (source,) = structured.from_
    orders = tuple((o.field.field_path, StructuredQuery.Direction(o.direction).name) for o in pb.order_by)
    aggs = []
    for agg in aggregations:
        raw = StructuredAggregationQuery.Aggregation.pb(agg)
        operator = raw.WhichOneof("operator")
        target = getattr(raw, operator).field.field_path if operator in ("sum", "avg") else ""
        aggs.append(f"{operator}:{target}" if target else operator)
    return Shape(
        collection=source.collection_id,
        scope="COLLECTION_GROUP" if source.all_descendants else "COLLECTION",
        filters=tuple(_field_ops(pb.where)) if pb.HasField("where") else (),
        orders=orders,
        aggregations=tuple(aggs),
    )


def need_of(shape: Shape) -> Need:
    equality, arrays, inequality = set(), set(), set()
    for name, op in shape.filters:
        if name == "__name__":
            continue  # the built-in document-name index
        if op in EQUALITY:
            equality.add(name)
        elif op in ARRAY:
            arrays.add(name)
        elif op in INEQUALITY:
            inequality.add(name)
        else:
            raise AssertionError(f"operator {op} is not modelled here: teach the index test about it")
    orders = list(shape.orders)
    tail = orders.pop() if orders and orders[-1][0] == "__name__" else None
    explicit = {name for name, _ in orders}
    last = orders[-1][1] if orders else "ASCENDING"
    orders += [(name, last) for name in sorted(inequality - explicit)]  # implicit orders
    last = orders[-1][1] if orders else "ASCENDING"
    if tail is not None and tail[1] != last:
        orders.append(tail)  # a __name__ order against the grain is a field of the index
    aggregated = frozenset(a.split(":", 1)[1] for a in shape.aggregations if ":" in a)
    where = (shape.collection, shape.scope)
    assert "__name__" not in {name for name, _ in orders[:-1]}, f"unmodelled order: {shape}"
    if orders == [("__name__", "DESCENDING")] and not (equality or arrays or aggregated):
        raise AssertionError(f"a lone descending __name__ order is not modelled here: {shape}")
    if not (equality or arrays or orders or aggregated):
        return Need("none", *where)
    if not (arrays or orders or aggregated):
        return Need("merge", *where, equality=frozenset(equality))
    if not (equality or arrays) and len(orders) + len(aggregated) == 1:
        return Need("single", *where, ordered=tuple(orders), aggregated=aggregated)
    return Need(
        "composite",
        *where,
        equality=frozenset(equality),
        arrays=frozenset(arrays),
        ordered=tuple(orders),
        aggregated=aggregated,
    )


def _index_fields(index: dict[str, Any]) -> list[tuple[str, str]]:
    """A composite's fields as (path, ASCENDING/DESCENDING/CONTAINS), the implied __name__ dropped."""
    fields = [(f["fieldPath"], f.get("order") or f.get("arrayConfig", "?")) for f in index["fields"]]
    if len(fields) > 1 and fields[-1][0] == "__name__" and fields[-1][1] == fields[-2][1]:
        fields.pop()
    return fields


def serves(index: dict[str, Any], need: Need) -> bool:
    """Whether a declared composite index serves ``need`` (composite, or equality-only exactly)."""
    if index["collectionGroup"] != need.collection or index.get("queryScope", "COLLECTION") != need.scope:
        return False
    fields = _index_fields(index)
    prefix = len(need.equality) + len(need.arrays)
    head, middle = fields[:prefix], fields[prefix : prefix + len(need.ordered)]
    rest = fields[prefix + len(need.ordered) :]
    return (
        {name for name, mode in head if mode != "CONTAINS"} == need.equality
        and {name for name, mode in head if mode == "CONTAINS"} == need.arrays
        and len(head) == prefix
        and tuple(middle) == need.ordered
        and {name for name, mode in rest if mode != "CONTAINS"} == need.aggregated
        and len(rest) == len(need.aggregated)
        and need.kind in ("composite", "merge")
    )


def single_field_entries(config: dict[str, Any], collection: str, name: str) -> list[dict[str, Any]] | None:
    """The override's index list for a field, or None if it keeps the automatic indexes."""
    for override in config.get("fieldOverrides", []):
        if override["collectionGroup"] == collection and override["fieldPath"] == name:
            return list(override.get("indexes", []))
    return None


def single_field_ok(config: dict[str, Any], need: Need, name: str, direction: str | None) -> bool:
    entries = single_field_entries(config, need.collection, name)
    if entries is None:
        return need.scope == "COLLECTION"  # automatic indexes are collection-scoped only
    return any(
        e.get("queryScope", "COLLECTION") == need.scope
        and "order" in e
        and (direction is None or e["order"] == direction)
        for e in entries
    )


def verdict(config: dict[str, Any], need: Need) -> bool:
    if need.kind == "none":
        return True
    if need.kind == "merge":
        merged = all(single_field_ok(config, need, name, None) for name in need.equality)
        return merged or any(serves(index, need) for index in config.get("indexes", []))
    if need.kind == "single":
        if need.ordered:
            ((name, direction),) = need.ordered
            return single_field_ok(config, need, name, direction)
        return single_field_ok(config, need, min(need.aggregated), None)
    return any(serves(index, need) for index in config.get("indexes", []))


def override_entry_used(override: dict[str, Any], entry: dict[str, Any], needs: list[Need]) -> bool:
    """Whether a COLLECTION_GROUP single-field entry is what some captured query needs (for an
    equality or a sum either direction serves; the ascending one is counted if declared)."""
    name, order = override["fieldPath"], entry.get("order")
    ascending = any(
        e.get("queryScope", "COLLECTION") == "COLLECTION_GROUP" and e.get("order") == "ASCENDING"
        for e in override.get("indexes", [])
    )
    any_direction_ok = order == "ASCENDING" or not ascending
    for need in needs:
        if need.scope != "COLLECTION_GROUP" or need.collection != override["collectionGroup"]:
            continue
        if need.kind == "merge" and name in need.equality and any_direction_ok:
            return True
        if need.kind == "single" and need.ordered == ((name, order),):
            return True
        if need.kind == "single" and not need.ordered and need.aggregated == {name} and any_direction_ok:
            return True
    return False


def shared_query_sites() -> set[str]:
    """Functions in shared/ whose source builds a query (``.where(``, ``.order_by(``,
    ``.collection_group(``), named as the stack frames name them."""
    sites = set()
    for path in sorted((ROOT / "shared").rglob("*.py")):  # packages too (credits/, webhooks/)
        tree = ast.parse(path.read_text(), filename=str(path))
        parts = path.relative_to(ROOT).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

        def visit(node: ast.AST, owner: str, in_function: bool, module: str = module) -> None:
            for child in ast.iter_child_nodes(node):
                inner, inner_in_function = owner, in_function
                if not in_function and isinstance(
                    child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
                ):
                    inner = f"{owner}.{child.name}" if owner else child.name  # nested: the outer one
                    inner_in_function = not isinstance(child, ast.ClassDef)
                if (
                    isinstance(child, ast.Call)
                    and isinstance(child.func, ast.Attribute)
                    and child.func.attr in QUERY_BUILDERS
                ):
                    sites.add(f"{module}.{owner or '<module>'}")
                visit(child, inner, inner_in_function)

        visit(tree, "", False)
    return sites


@dataclass
class Capture:
    """Every query the test process's Firestore client sends, with the shared/ functions on the
    stack when it was sent; only while ``active``."""

    active: bool = False
    seen: dict[Shape, set[str]] = field(default_factory=dict)

    def record(self, shape: Shape) -> None:
        if not self.active:
            return
        callers = set()
        frame: FrameType | None = sys._getframe(1)
        shared = str(ROOT / "shared")
        while frame is not None:
            if frame.f_code.co_filename.startswith(shared):
                qualname = frame.f_code.co_qualname.split(".<locals>.")[0]
                parts = Path(frame.f_code.co_filename).relative_to(ROOT).with_suffix("").parts
                module = parts[:-1] if parts[-1] == "__init__" else parts  # as shared_query_sites names it
                callers.add(".".join([*module, qualname]))
            frame = frame.f_back
        self.seen.setdefault(shape, set()).update(callers)

    @contextlib.contextmanager
    def on(self) -> Iterator[None]:
        self.active = True
        try:
            yield
        finally:
            self.active = False


def _request(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return kwargs["request"] if "request" in kwargs else args[0]


def _part(request: Any, name: str) -> Any:
    return request[name] if isinstance(request, dict) else getattr(request, name)


@pytest.fixture
def capture(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Capture:
    """Observe the RPCs of the service's client (``shared.db.client()``); the originals still run."""
    from shared.db import client

    api = client()._firestore_api
    found = Capture()
    run_query, run_aggregation_query = api.run_query, api.run_aggregation_query

    def observed_query(*args: Any, **kwargs: Any) -> Any:
        found.record(shape_of(_part(_request(args, kwargs), "structured_query")))
        return run_query(*args, **kwargs)

    def observed_aggregation(*args: Any, **kwargs: Any) -> Any:
        aggregation = _part(_request(args, kwargs), "structured_aggregation_query")
        found.record(shape_of(aggregation.structured_query, aggregation.aggregations))
        return run_aggregation_query(*args, **kwargs)

    monkeypatch.setattr(api, "run_query", observed_query)
    monkeypatch.setattr(api, "run_aggregation_query", observed_aggregation)
    return found


def exercise_every_query(api: Api, capture: Capture) -> None:
    """Data through the real functions, then every domain function that reads, in-process."""
    from shared import auth, catalog, conversations, credits, jobs, queue, reports, usage
    from shared.db import client
    from shared.settings import get_settings

    token, user = api.signup()
    _, other = api.signup()
    submitted = [api.submit(token).json()["job_id"] for _ in range(2)]
    for job_id in submitted:
        assert api.wait(token, job_id)["status"] == "completed"
    today = date.today()
    # A user busy enough in the report's week that it reads their previous weeks too.
    busy, monday = client().batch(), reports.week_start("2019-W12")
    for _ in range(get_settings().anomaly_min_jobs):
        usage.stage_submitted_unguarded(busy, "index-busy-user", "summarize", 1, monday, 0)
    busy.commit()

    with capture.on():
        _, cursor = jobs.list_for(user["id"], 1, None)
        assert cursor is not None
        jobs.list_for(user["id"], 1, cursor)
        for filters in (
            {"status": "queued"},
            {"task_type": "summarize"},
            {"tag": "t"},
            {"status": "queued", "task_type": "summarize"},
            {"status": "queued", "tag": "t"},
            {"task_type": "summarize", "tag": "t"},
            {"status": "queued", "task_type": "summarize", "tag": "t"},
        ):
            jobs.list_for(user["id"], 1, None, jobs.JobFilter.model_validate(filters))
        jobs.get(user["id"], submitted[0])
        jobs.sweep(lambda *_: None)
        _, cursor = credits.history(user["id"], 1, None)
        assert cursor is not None
        credits.history(user["id"], 1, cursor)
        usage.history(
            user["id"], usage.UsageQuery.model_validate({"from": today.isoformat(), "to": today.isoformat()})
        )
        reports.build("2019-W12")
        reports.list_weeks(5, None)
        reports.list_weeks(5, "2019-W12")
        _, cursor = auth.list_users(1, None)
        assert cursor is not None
        auth.list_users(1, cursor)
        auth.get_user_by_username(user["username"])
        auth.get_user(other["id"])
        catalog.task_types()
        from shared import batches

        found = batches.list_for(user["id"], 1, None)
        batches.list_for(user["id"], 1, found.next_cursor)
        batches._counts("no-such-batch")
        batches._unfinished("no-such-batch")
        pending = uuid.uuid4().hex  # a canceled batch whose jobs are all gone: settle still queries
        client().collection("batches").document(pending).set({"user_id": user["id"], "cancel_pending": True})
        batches.settle(pending)
        batches.sweep()
        for _ in range(2):
            conversations.create(user["id"], conversations.ConversationCreate())
        _, cursor = conversations.list_for(user["id"], 1, None)
        assert cursor is not None
        conversations.list_for(user["id"], 1, cursor)
        talk = conversations.create(user["id"], conversations.ConversationCreate()).conversation_id
        for content in ("Hi", "Again"):  # the second reads the history
            message = conversations.MessageCreate(content=content)
            conversations.post(user["id"], talk, message, None, queue.enqueue)
        conversations.get(user["id"], talk)
        from shared import webhooks

        create = webhooks.WebhookCreate(url="http://127.0.0.1:9/hook", events=["job.completed"])
        hook, _ = webhooks.create(user["id"], create), webhooks.create(user["id"], create)
        webhooks.list_for(user["id"], 1, webhooks.list_for(user["id"], 1, None).next_cursor)
        webhooks.deliveries(user["id"], hook.id, 1, None)
        webhooks.sweep(lambda *_: None)
        from shared import api_keys

        for name in ("one", "two"):
            api_keys.create(user["id"], api_keys.ApiKeyCreate(name=name))
        api_keys.list_for(user["id"], 1, api_keys.list_for(user["id"], 1, None).next_cursor)
        from shared import teams

        team = teams.create(user["id"], teams.TeamCreate(name="Indexed")).team_id
        teams.list_mine(user["id"])
        teams.members(user["id"], team)
        day = {"from": today.isoformat(), "to": today.isoformat()}
        teams.usage_history(user["id"], team, teams.TeamUsageQuery.model_validate(day))
        _, cursor = credits.history(credits.team(team), 1, None)
        teams.delete(user["id"], team)  # asks for the team's unfinished jobs and its members


def test_every_query_has_its_index_declared(api: Api, capture: Capture) -> None:
    exercise_every_query(api, capture)
    config = json.loads(INDEXES.read_text())
    rows, missing = [], []
    needs = []
    for shape, callers in sorted(capture.seen.items(), key=lambda item: str(item[0])):
        need = need_of(shape)
        needs.append(need)
        ok = verdict(config, need)
        rows.append(
            f"{'ok     ' if ok else 'MISSING'} {shape}\n        by {sorted(callers)}\n        -> {need}"
        )
        if not ok:
            missing.append(need)
    report = "\n".join(rows)
    print(report)
    assert capture.seen, "no query was captured"
    assert not missing, f"indexes missing from firestore.indexes.json:\n{report}"

    # Every function in shared/ that builds a query ran one here: a new query without
    # coverage fails this test instead of going unchecked.
    exercised = set().union(*capture.seen.values())
    unexercised = shared_query_sites() - exercised
    assert not unexercised, f"queries built in {sorted(unexercised)} are not exercised by this test"

    # Nothing stale: every composite serves a captured query, every COLLECTION_GROUP single-field
    # entry is needed by one. A composite that exactly covers an equality-only query counts as
    # serving it: merging would do, but Firestore uses the exact index when there is one.
    # COLLECTION-scope override entries only restate automatic indexes the override would
    # otherwise drop (an exemption is a write-cost decision, not a query's need): not judged.
    stale = [
        json.dumps(index)
        for index in config.get("indexes", [])
        if not any(serves(index, need) for need in needs)
    ]
    for override in config.get("fieldOverrides", []):
        for entry in override.get("indexes", []):
            if entry.get("queryScope", "COLLECTION") != "COLLECTION_GROUP":
                continue
            used = override_entry_used(override, entry, needs)
            if not used:
                stale.append(f"fieldOverride {override['collectionGroup']}.{override['fieldPath']} {entry}")
    assert not stale, "declared but no query needs it:\n" + "\n".join(stale) + f"\n{report}"
    for index in config.get("indexes", []):
        assert len([f for f in index["fields"] if f["fieldPath"] != "__name__"]) >= 2, (
            f"a composite index needs two fields or more (else it is a single-field one): {index}"
        )


def test_the_index_analysis_can_fail() -> None:
    """The analysis against known answers, so a green run above means something."""

    def need(
        *filters: tuple[str, str], orders: tuple[tuple[str, str], ...] = (), group: bool = False
    ) -> Need:
        scope = "COLLECTION_GROUP" if group else "COLLECTION"
        return need_of(Shape("jobs", scope, filters, orders))

    empty: dict[str, Any] = {"indexes": [], "fieldOverrides": []}
    assert verdict(empty, need(("user_id", "EQUAL"), ("status", "EQUAL")))  # merged
    assert verdict(empty, need(("day", "LESS_THAN"), orders=(("day", "ASCENDING"),)))
    assert not verdict(empty, need(("user_id", "EQUAL"), orders=(("created_at", "DESCENDING"),)))
    assert not verdict(empty, need(("status", "EQUAL"), ("updated_at", "LESS_THAN")))
    assert not verdict(empty, need(("week", "EQUAL"), group=True))
    summed = need_of(Shape("usage_days", "COLLECTION_GROUP", (("week", "EQUAL"),), (), ("sum:jobs_total",)))
    assert summed.kind == "composite" and not verdict(empty, summed)
    declared = {
        "indexes": [
            {
                "collectionGroup": "jobs",
                "queryScope": "COLLECTION",
                "fields": [
                    {"fieldPath": "user_id", "order": "ASCENDING"},
                    {"fieldPath": "created_at", "order": "DESCENDING"},
                    {"fieldPath": "__name__", "order": "DESCENDING"},
                ],
            }
        ],
        "fieldOverrides": [
            {"collectionGroup": "jobs", "fieldPath": "day", "indexes": [{"order": "DESCENDING"}]}
        ],
    }
    by_user = need(("user_id", "EQUAL"), orders=(("created_at", "DESCENDING"), ("__name__", "DESCENDING")))
    assert verdict(declared, by_user)
    assert not verdict(declared, need(("user_id", "EQUAL"), orders=(("created_at", "ASCENDING"),)))
    assert not verdict(declared, need(("day", "LESS_THAN")))  # the override dropped ascending
    entries = [{"order": order, "queryScope": "COLLECTION_GROUP"} for order in ("ASCENDING", "DESCENDING")]
    both: dict[str, Any] = {"collectionGroup": "jobs", "fieldPath": "week", "indexes": entries}
    week = need(("week", "EQUAL"), group=True)
    assert override_entry_used(both, entries[0], [week])
    assert not override_entry_used(both, entries[1], [week])  # one direction is enough
    assert not any(serves(index, week) for index in declared["indexes"])
