"""A job's own content: titles and tags, filters on the list, and deleting what was said."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from conftest import PASSWORD, Api, at_once, books, footprint

from shared.db import client


def _job(api: Api, token: str, **kwargs: Any) -> str:
    response = api.submit(token, **kwargs)
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


def _done(api: Api, token: str, **kwargs: Any) -> str:
    job_id = _job(api, token, **kwargs)
    assert api.wait(token, job_id)["status"] == "completed"
    return job_id


def test_title_and_tags_are_set_cleared_and_kept_apart(api: Api) -> None:
    token, _ = api.signup()
    job_id = _done(api, token)
    patched = api.call(
        "PATCH", f"/jobs/{job_id}", token, json={"title": "  Q3 notes ", "tags": ["q3", "fin", "q3"]}
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["title"] == "Q3 notes" and patched.json()["tags"] == ["q3", "fin"]
    got = api.call("GET", f"/jobs/{job_id}", token).json()
    assert (got["title"], got["tags"], got["status"]) == ("Q3 notes", ["q3", "fin"], "completed")
    # A field left out stays; null clears the title, [] or null the tags.
    assert api.call("PATCH", f"/jobs/{job_id}", token, json={"tags": []}).json()["title"] == "Q3 notes"
    cleared = api.call("PATCH", f"/jobs/{job_id}", token, json={"title": None, "tags": None}).json()
    assert (cleared["title"], cleared["tags"]) == (None, [])


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"title": ""},
        {"title": "   "},
        {"title": "t" * 201},
        {"tags": ["UPPER"]},
        {"tags": ["has space"]},
        {"tags": ["-lead"]},
        {"tags": ["t" * 33]},
        {"tags": [f"t{i}" for i in range(11)]},
        {"tags": "q3"},
        {"tags": [3]},
        {"title": "x", "extra": 1},
        {"status": "completed"},
        {"cost": 0},
    ],
)
def test_a_bad_update_is_422_and_changes_nothing(api: Api, body: dict[str, Any]) -> None:
    token, _ = api.signup()
    job_id = _done(api, token)
    before = client().collection("jobs").document(job_id).get().to_dict()
    response = api.call("PATCH", f"/jobs/{job_id}", token, json=body)
    assert response.status_code == 422, (body, response.text)
    assert client().collection("jobs").document(job_id).get().to_dict() == before


def test_someone_elses_job_is_not_found(api: Api) -> None:
    owner, _ = api.signup()
    other, _ = api.signup()
    job_id = _done(api, owner)
    for method, body in (("PATCH", {"title": "mine"}), ("DELETE", None)):
        response = api.call(method, f"/jobs/{job_id}", other, json=body)
        assert response.status_code == 404 and response.json()["error"]["code"] == "job_not_found"
    assert api.call("GET", f"/jobs/{job_id}", owner).json()["title"] is None


def test_deleting_wipes_the_content_and_keeps_the_books(api: Api) -> None:
    token, user = api.signup()
    job_id = _done(api, token, input_data="A secret memo about the merger.")
    api.call("PATCH", f"/jobs/{job_id}", token, json={"title": "merger", "tags": ["secret"]})
    before = books(user["id"])
    response = api.call("DELETE", f"/jobs/{job_id}", token)
    assert response.status_code == 204 and response.content == b""
    got = api.call("GET", f"/jobs/{job_id}", token).json()
    assert got["deleted_at"] is not None
    assert (got["input_data"], got["output"], got["title"], got["tags"]) == (None, None, None, [])
    assert (got["status"], got["cost"], got["job_id"]) == ("completed", 1, job_id)
    stored = client().collection("jobs").document(job_id).get().to_dict() or {}
    assert "merger" not in str(stored) and "secret" not in str(stored)
    after = books(user["id"])
    assert (after["balance"], after["ledger"]) == (before["balance"], before["ledger"])
    kept = ("status", "cost", "created_at", "completed_at", "user_id", "shard", "task_type", "error")
    assert {k: after["jobs"][job_id].get(k) for k in kept} == {k: before["jobs"][job_id].get(k) for k in kept}
    # Again: nothing changes, still 204; the content cannot come back.
    assert api.call("DELETE", f"/jobs/{job_id}", token).status_code == 204
    again = api.call("PATCH", f"/jobs/{job_id}", token, json={"title": "back"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "job_deleted"
    listed = api.call("GET", "/jobs", token).json()["jobs"]
    assert [j["deleted_at"] is not None for j in listed if j["job_id"] == job_id] == [True]


def test_a_job_not_finished_cannot_be_deleted(api: Api, paused_queue: None) -> None:
    token, user = api.signup()
    job_id = _job(api, token)
    before = footprint(user["id"])
    response = api.call("DELETE", f"/jobs/{job_id}", token)
    assert response.status_code == 409 and response.json()["error"]["code"] == "job_not_finished"
    assert footprint(user["id"]) == before
    # A queued job can still be titled, and canceled, then deleted.
    assert api.call("PATCH", f"/jobs/{job_id}", token, json={"title": "later"}).status_code == 200
    assert api.call("POST", f"/jobs/{job_id}/cancel", token).status_code == 200
    assert api.call("DELETE", f"/jobs/{job_id}", token).status_code == 204


def test_deletes_and_updates_racing_leave_no_content(api: Api) -> None:
    token, _ = api.signup()
    job_id = _done(api, token)

    def attempt(i: int) -> int:
        if i % 2:
            return api.call("DELETE", f"/jobs/{job_id}", token).status_code
        return api.call("PATCH", f"/jobs/{job_id}", token, json={"title": f"t{i}"}).status_code

    statuses = at_once(16, attempt)
    assert set(statuses[1::2]) == {204}
    assert set(statuses[0::2]) <= {200, 409}
    got = api.call("GET", f"/jobs/{job_id}", token).json()
    assert got["deleted_at"] is not None and got["title"] is None


def test_the_list_filters_by_status_task_type_and_tag_with_pages(api: Api, paused_queue: None) -> None:
    token, _ = api.signup()
    summaries = [_job(api, token) for _ in range(3)]
    translation = _job(api, token, task_type="translate", options={"target_language": "French"})
    for job_id in summaries[:2]:
        assert api.call("PATCH", f"/jobs/{job_id}", token, json={"tags": ["blue"]}).status_code == 200
    assert api.call("POST", f"/jobs/{summaries[0]}/cancel", token).status_code == 200

    def ids(query: str) -> list[str]:
        found: list[str] = []
        cursor = ""
        while True:
            page = api.call("GET", f"/jobs?limit=1{query}{cursor}", token)
            assert page.status_code == 200, page.text
            body = page.json()
            found += [j["job_id"] for j in body["jobs"]]
            if body["next_cursor"] is None:
                return found
            cursor = f"&cursor={body['next_cursor']}"

    assert ids("&task_type=translate") == [translation]
    assert ids("&tag=blue") == summaries[1::-1]  # newest first
    assert ids("&status=canceled") == [summaries[0]]
    assert ids("&status=queued&task_type=summarize") == summaries[:0:-1]
    assert ids("&status=queued&tag=blue") == [summaries[1]]
    assert ids("&status=queued&task_type=summarize&tag=blue") == [summaries[1]]
    assert ids("&tag=red") == []
    for bad in ("status=done", "status=", "task_type=Summarize", "tag=a%20b", "tag=" + "t" * 33, "tag=²"):
        response = api.call("GET", f"/jobs?{bad}", token)
        assert response.status_code == 422, (bad, response.text)


def test_the_client_titles_filters_and_deletes(api: Api) -> None:
    import aijobs

    with aijobs.Client(api.base_url) as client_:
        client_.signup(f"c{uuid.uuid4().hex[:12]}", PASSWORD)
        job = client_.wait(client_.submit("summarize", "Some text to work on.")["job_id"], timeout=60)
        assert client_.update_job(job["job_id"], title="kept", tags=["x"])["title"] == "kept"
        assert [j["job_id"] for j in client_.list_jobs(tag="x", status="completed")["jobs"]] == [
            job["job_id"]
        ]
        client_.delete_job(job["job_id"])
        assert client_.get_job(job["job_id"])["deleted_at"] is not None
        with pytest.raises(aijobs.JobDeleted):
            client_.update_job(job["job_id"], title="again")
