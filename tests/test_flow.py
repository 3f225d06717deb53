"""The whole flow over HTTP: signup, login, me, credits, submit, the real queue runs the worker, poll."""

from __future__ import annotations

from datetime import datetime

from conftest import PASSWORD, Api, books
from fake_openai import FakeOpenAI, Reply


def test_signup_to_completed_job(api: Api, fake_ai: FakeOpenAI) -> None:
    token, user = api.signup("Flow.User-1")
    assert user["username"] == "flow.user-1" and user["credits"] == 10

    login = api.call("POST", "/login", json={"username": "FLOW.user-1", "password": PASSWORD})
    assert login.status_code == 200
    assert login.json()["token_type"] == "bearer" and login.json()["expires_in"] == 1800
    token = login.json()["access_token"]

    me = api.call("GET", "/me", token).json()
    assert me["id"] == user["id"] and me["credits"] == 10
    assert datetime.fromisoformat(me["created_at"]).utcoffset() is not None

    fake_ai.script(Reply("A short summary."))
    submitted = api.submit(token, "summarize", "A long text. " * 20, {"max_words": 50})
    assert submitted.status_code == 202, submitted.text
    accepted = submitted.json()
    assert accepted["status"] == "queued" and accepted["cost"] == 1 and accepted["credits"] == 9

    job = api.wait(token, accepted["job_id"])
    assert job["status"] == "completed"
    assert job["output"] == {"text": "A short summary."} and job["error"] is None
    assert job["task_type"] == "summarize" and job["cost"] == 1
    assert job["updated_at"] >= job["created_at"]
    # The worker sent the configured model and the job's text to the AI endpoint.
    request = fake_ai.requests[-1]
    assert request.body["model"] == "fake-model"
    assert "A long text." in request.body["messages"][-1]["content"]

    credits = api.call("GET", "/credits", token).json()
    assert credits["credits"] == 9
    assert [(t["type"], t["amount"], t["job_id"]) for t in credits["transactions"]] == [
        ("charge", -1, accepted["job_id"]),
        ("grant", 10, None),
    ]
    state = books(user["id"])
    assert state["balance"] == 9 and state["jobs"][accepted["job_id"]]["attempts"] == 1


def test_every_task_type_reaches_the_ai(api: Api, fake_ai: FakeOpenAI) -> None:
    token, _ = api.signup()
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}]
    cases = [
        ("translate", "Hello", {"target_language": "French"}),
        ("generate_text", "A haiku about queues", {"max_tokens": 40, "temperature": 0.5}),
        ("chat", chat, {"max_tokens": 30}),
    ]
    for task_type, input_data, options in cases:
        fake_ai.script(Reply(f"answer for {task_type}"))
        response = api.submit(token, task_type, input_data, options)
        assert response.status_code == 202, response.text
        job = api.wait(token, response.json()["job_id"])
        assert job["status"] == "completed" and job["output"] == {"text": f"answer for {task_type}"}
        sent = fake_ai.requests[-1].body
        if task_type == "chat":
            assert sent["messages"] == chat and sent["max_tokens"] == 30
        if task_type == "translate":
            assert "French" in sent["messages"][0]["content"]
        if task_type == "generate_text":
            assert sent["temperature"] == 0.5 and sent["max_tokens"] == 40


def test_jobs_list_newest_first_with_cursor(api: Api) -> None:
    token, _ = api.signup()
    ids = [api.submit(token, input_data=f"text {i}").json()["job_id"] for i in range(5)]
    first = api.call("GET", "/jobs?limit=2", token).json()
    assert [j["job_id"] for j in first["jobs"]] == ids[::-1][:2]
    second = api.call("GET", f"/jobs?limit=2&cursor={first['next_cursor']}", token).json()
    third = api.call("GET", f"/jobs?limit=2&cursor={second['next_cursor']}", token).json()
    listed = [j["job_id"] for page in (first, second, third) for j in page["jobs"]]
    assert listed == ids[::-1] and third["next_cursor"] is None


def test_credits_history_pages(api: Api) -> None:
    token, _ = api.signup()
    for i in range(3):
        assert api.submit(token, input_data=f"text {i}").status_code == 202
    first = api.call("GET", "/credits?limit=2", token).json()
    assert [t["type"] for t in first["transactions"]] == ["charge", "charge"] and first["next_cursor"]
    rest = api.call("GET", f"/credits?limit=2&cursor={first['next_cursor']}", token).json()
    assert [t["type"] for t in rest["transactions"]] == ["charge", "grant"] and rest["next_cursor"] is None
    assert rest["credits"] == 7


def test_health_names_what_is_down(api: Api, functions_server) -> None:  # type: ignore[no-untyped-def]
    healthy = api.call("GET", "/health")
    assert healthy.status_code == 200 and healthy.json()["status"] == "ok"
    broken = functions_server(AI_BASE_URL="http://127.0.0.1:9/v1")
    response = Api(broken).call("GET", "/health")
    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["ai"].startswith("down") and body["checks"]["firestore"] == "ok"
    assert body["error"]["code"] == "unhealthy" and "ai" in body["error"]["message"]


def test_catalog_is_imported_from_the_emulator_export(stack) -> None:  # type: ignore[no-untyped-def]
    from shared.catalog import DEFAULT_CATALOG, catalog_ref

    assert catalog_ref().get().to_dict() == DEFAULT_CATALOG
