"""The sharded wallet: thin balances, concurrency, refunds to emptied shards, shard counts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from conftest import Api, at_once, books, footprint


def shards(user_id: str) -> dict[str, int]:
    from shared.credits import wallet

    return {d.id: d.get("credits") for d in wallet.shards(user_id).stream()}


@pytest.fixture
def priced() -> Iterator[Any]:
    """Set the price of ``generate_text`` for one test."""
    from shared.catalog import DEFAULT_CATALOG, catalog_ref

    def set_price(cost: int) -> None:
        types = {**DEFAULT_CATALOG["task_types"], "generate_text": {"cost": cost, "options": {}}}
        catalog_ref().set({"task_types": types})

    yield set_price
    catalog_ref().set(DEFAULT_CATALOG)


def test_a_balance_is_spread_one_shard_per_20_credits(api: Api, functions_server: Any) -> None:
    _, small = api.signup()
    assert shards(small["id"]) == {"0": 10}  # a small account is one document, as before
    _, big = Api(functions_server(SIGNUP_CREDITS="5200")).signup()
    held = shards(big["id"])
    assert len(held) == 256 and sum(held.values()) == 5200 and set(held.values()) <= {20, 21}


def test_a_thin_balance_pays_for_a_job_dearer_than_any_shard(
    api: Api, functions_server: Any, priced: Any
) -> None:
    rich = Api(functions_server(SIGNUP_CREDITS="640"))  # 32 shards of 20
    token, user = rich.signup()
    priced(30)  # dearer than any shard holds
    codes = [rich.submit(token, "generate_text", f"write {i}").status_code for i in range(21)]
    assert codes == [202] * 21, codes
    assert books(user["id"])["balance"] == 10 and max(shards(user["id"]).values()) <= 20
    # 402 only when the whole account cannot pay, and it says what the account holds.
    priced(11)
    before = footprint(user["id"])
    refused = rich.submit(token, "generate_text", "write")
    assert refused.status_code == 402
    assert refused.json()["error"]["message"] == "this job costs 11 credits; the balance is 10"
    assert footprint(user["id"]) == before
    priced(10)
    assert rich.submit(token, "generate_text", "write").status_code == 202
    assert books(user["id"])["balance"] == 0 and set(shards(user["id"]).values()) == {0}
    for job_id in books(user["id"])["jobs"]:
        rich.wait(token, job_id)


def test_fifty_concurrent_charges_on_one_account_are_exact(api: Api, functions_server: Any) -> None:
    rich = Api(functions_server(SIGNUP_CREDITS="80"))
    token, user = rich.signup()
    responses = at_once(50, lambda i: rich.submit(token, input_data=f"rich {i}"))
    assert sorted(r.status_code for r in responses) == [202] * 50
    for response in responses:
        rich.wait(token, response.json()["job_id"])
    state = books(user["id"])
    assert state["balance"] == 30 and len(state["jobs"]) == 50


def test_a_grant_racing_charges_stays_exact(api: Api) -> None:
    from shared import auth

    admin_token, admin = api.signup()
    auth.set_role(admin["username"], "admin")
    token, user = api.signup()

    def act(i: int) -> Any:
        if i == 0:
            body = {
                "username": user["username"],
                "amount": 20,
                "reason": "race",
                "grant_id": f"race-{user['id']}",
            }
            return api.call("POST", "/admin/credits", admin_token, json=body)
        return api.submit(token, input_data=f"race {i}")

    responses = at_once(21, act)
    assert responses[0].status_code == 200, responses[0].text
    accepted = [r for r in responses[1:] if r.status_code == 202]
    refused = [r for r in responses[1:] if r.status_code == 402]
    assert len(accepted) + len(refused) == 20 and len(accepted) >= 10
    for response in accepted:
        api.wait(token, response.json()["job_id"])
    assert books(user["id"])["balance"] == 30 - len(accepted)


def test_refunds_land_even_on_emptied_shards(api: Api, paused_queue: None) -> None:
    token, user = api.signup()
    job_ids = [api.submit(token, input_data=f"refund {i}").json()["job_id"] for i in range(10)]
    assert books(user["id"])["balance"] == 0 and set(shards(user["id"]).values()) == {0}
    for job_id in job_ids:
        assert api.call("POST", f"/jobs/{job_id}/cancel", token).status_code == 200
    assert books(user["id"])["balance"] == 10 and min(shards(user["id"]).values()) >= 0


@pytest.mark.parametrize("count", ["2", "128"])
def test_the_shard_count_may_change_under_an_existing_account(
    api: Api, functions_server: Any, paused_queue: None, priced: Any, count: str
) -> None:
    token, user = Api(functions_server(SIGNUP_CREDITS="200")).signup()  # 10 shards of 20
    other = Api(functions_server(WALLET_SHARDS=count))
    priced(200)
    assert other.submit(token, "generate_text", "all of it").status_code == 202  # every shard found
    assert books(user["id"])["balance"] == 0
    (job_id,) = books(user["id"])["jobs"]
    assert other.call("POST", f"/jobs/{job_id}/cancel", token).status_code == 200
    assert books(user["id"])["balance"] == 200
