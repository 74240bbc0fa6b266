"""The job lifecycle table (tileserver.jobs.lifecycle) and how both openEO dialects answer
from it: the same stored status, the 0.0.2 rules (409 on a refused transition) and the 1.x
ones (no effect where the 1.2 document says so)."""

from __future__ import annotations

import pytest

from tests.support.wmts import create_job, ndvi_graph
from tileserver.errors import Conflict, JobLocked
from tileserver.jobs import lifecycle
from tileserver.jobs.lifecycle import STATUSES, TRANSITIONS

V1 = "/openeo/1.2"


def test_the_table_is_closed_over_the_statuses():
    for transition in TRANSITIONS.values():
        assert set(transition.sources) <= set(STATUSES), transition
        assert transition.target is None or transition.target in STATUSES, transition
    assert set(lifecycle.V1_STATUS) == set(STATUSES)
    assert set(lifecycle.V1_STATUS.values()) == set(lifecycle.V1_STATUSES)
    for status in STATUSES:
        assert status in lifecycle.from_v1(lifecycle.to_v1(status))
    assert lifecycle.from_v1("created") == ("submitted", "paused")


def test_derived_sets():
    assert lifecycle.LOCKED == lifecycle.ACTIVE == ("queued", "running")
    assert lifecycle.CANCELABLE == ("queued", "running", "paused")
    assert lifecycle.V1_CANCELABLE == ("queued", "running")  # paused is "created" in 1.x
    assert lifecycle.V1_STARTABLE == lifecycle.QUEUEABLE
    assert "finished" not in lifecycle.QUEUEABLE and lifecycle.REVOKED == ("canceled",)
    # a graph change resets every status it may happen in, but a fresh job
    assert set(lifecycle.sources("reset")) == set(lifecycle.sources("patch")) - {"submitted"}


@pytest.mark.parametrize("action,status,error", [
    ("queue", "finished", Conflict), ("queue", "running", Conflict),
    ("pause", "submitted", Conflict), ("cancel", "error", Conflict),
    ("patch", "queued", JobLocked), ("patch", "running", JobLocked),
])
def test_refused_transitions_raise_with_the_status(action, status, error):
    job = {"job_id": "j1", "status": status}
    with pytest.raises(error) as info:
        lifecycle.require(action, job)
    assert status in info.value.message and info.value.status == 409


def test_results_token_only_of_a_finished_job():
    extra = {"results_token": "abc"}
    assert lifecycle.results_token({"status": "finished", "extra": extra}) == "abc"
    assert lifecycle.results_token({"status": "paused", "extra": extra}) is None
    assert lifecycle.results_token({"status": "finished", "extra": {}}) is None


def _set_status(client, job_id: str, status: str) -> None:
    assert client.application.extensions["tileserver"].store.update_job(job_id, status=status)


def test_a_paused_job_is_created_in_1x_and_its_cancel_has_no_effect_there(client):
    job_id = create_job(client, ndvi_graph(reduce="min_time"))
    _set_status(client, job_id, "paused")
    assert client.get(f"/jobs/{job_id}").json["status"] == "paused"
    job = client.get(f"{V1}/jobs/{job_id}").json
    assert job["status"] == "created" and "progress" not in job
    assert client.delete(f"{V1}/jobs/{job_id}/results").status_code == 204
    assert client.get(f"/jobs/{job_id}").json["status"] == "paused"
    # the 0.0.2 API cancels it
    resp = client.patch(f"/jobs/{job_id}/cancel")
    assert resp.status_code == 200 and resp.json["status"] == "canceled"
    assert client.get(f"{V1}/jobs/{job_id}").json["status"] == "canceled"
    assert client.patch(f"/jobs/{job_id}/cancel").status_code == 409


def test_a_locked_job_refuses_changes_in_both_dialects(client):
    job_id = create_job(client, ndvi_graph(reduce="min_time"))
    _set_status(client, job_id, "running")
    resp = client.patch(f"/jobs/{job_id}", json={"title": "t"})
    assert resp.status_code == 409 and "running" in resp.json["message"]
    resp = client.patch(f"{V1}/jobs/{job_id}", json={"title": "t"})
    assert resp.status_code == 400 and resp.json["code"] == "JobLocked"
    _set_status(client, job_id, "submitted")  # no driver: nothing to take over
    assert client.delete(f"/jobs/{job_id}").status_code == 204


def test_starting_a_finished_job_in_1x_has_no_effect(client):
    job_id = create_job(client, ndvi_graph(reduce="min_time"))
    _set_status(client, job_id, "finished")
    assert client.post(f"{V1}/jobs/{job_id}/results").status_code == 202
    assert client.get(f"/jobs/{job_id}").json["status"] == "finished"
    assert client.patch(f"/jobs/{job_id}/queue").status_code == 409
