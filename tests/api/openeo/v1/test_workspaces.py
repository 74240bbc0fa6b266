"""The openEO 1.3 Workspaces extension: the providers (the user's files, built in, and
folders of the server's store that users create), the management routes, per user, and
``export_workspace`` in batch jobs on a real LocalCluster: the job's result files copied to
the workspace, the STAC item saying where, the copy's values the job's result's."""

from __future__ import annotations

import json

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from tests.support.batch import batch_settings, read_result, status_is, wait_job
from tests.support.hardening import basic, users_file, with_users
from tests.support.openeo import ndvi_reduce_graph
from tileserver.web.app import create_app

V12, V13 = "/openeo/1.2", "/openeo/1.3"
WORKSPACES = "https://api.openeo.org/extensions/workspaces/0.1.0"
CREATE = {"intent": "create", "title": "exports"}


def ndvi_graph(export: dict | None = None) -> dict:
    """NDVI of ``TEST`` over a small bbox in May 2020, minimum over time, saved as GTiff
    (and exported when ``export`` gives the arguments of export_workspace)."""
    return ndvi_reduce_graph(export=export)


def job_body(export: dict | None = None) -> dict:
    return {"process": {"process_graph": ndvi_graph(export)}}


@pytest.fixture
def users(make_app, small_catalog, tmp_path_factory):
    app = with_users(make_app([small_catalog], workspaces_per_user=2),
                     users_file(tmp_path_factory))
    return app.test_client()


def make_workspace(c, headers, body=CREATE) -> str:
    resp = c.post(f"{V13}/workspaces", json=body, headers=headers)
    assert resp.status_code == 201, resp.json
    wid = resp.headers["OpenEO-Identifier"]
    assert resp.headers["Location"] == f"http://localhost{V13}/workspaces/{wid}"
    return wid


def test_providers_and_the_files_workspace_of_each_user(users):
    c, alice, bob = users, basic("alice"), basic("bob")
    providers = c.get(f"{V13}/workspace_providers").json["providers"]  # public
    assert sorted(providers) == ["files", "store"]
    assert "intents" not in providers["files"]
    assert providers["store"]["intents"] == ["create"]  # no "register": no foreign storage
    assert c.get(f"{V13}/workspaces").status_code == 401
    listed = c.get(f"{V13}/workspaces", headers=alice).json
    assert listed["links"] == []
    (workspace,) = listed["workspaces"]
    assert (workspace["id"], workspace["type"], workspace["status"]) == (
        "files", "files", "ready")
    assert "url" not in workspace  # the list keeps to scalars; the full metadata has it
    assert c.put(f"{V13}/files/a/b.txt", data=b"12345", headers=alice).status_code == 200
    assert c.put(f"{V13}/files/c.txt", data=b"xy", headers=alice).status_code == 200
    full = c.get(f"{V13}/workspaces/files", headers=alice).json
    assert full["url"] == "http://localhost/openeo/1.3/files"
    assert full["properties"] == {"files": 2, "bytes": 7}
    assert c.get(f"{V13}/workspaces/FILES", headers=alice).status_code == 200  # any case
    assert c.get(f"{V13}/workspaces/files", headers=bob).json["properties"] == {
        "files": 0, "bytes": 0}  # each user sees their own files only
    missing = c.get(f"{V13}/workspaces/bucket", headers=alice)
    assert missing.status_code == 404 and missing.json["code"] == "WorkspaceNotFound"
    # the built-in workspace is neither renamed nor deleted here
    for resp in (c.patch(f"{V13}/workspaces/files", json={"title": "x"}, headers=alice),
                 c.delete(f"{V13}/workspaces/files", headers=alice)):
        assert resp.status_code == 400 and resp.json["code"] == "WorkspaceUnsupported"
    assert c.get(f"{V13}/workspaces/files", headers=alice).json["properties"]["files"] == 2


def test_create_list_rename_delete_and_each_user_sees_their_own(users):
    c, alice, bob = users, basic("alice"), basic("bob")
    wid = make_workspace(c, alice, {**CREATE, "type": "STORE", "description": "d"})
    listed = c.get(f"{V13}/workspaces", headers=alice).json["workspaces"]
    assert [w["id"] for w in listed] == ["files", wid]
    assert listed[1] == {"id": wid, "type": "store", "status": "ready", "title": "exports",
                         "description": "d"}
    full = c.get(f"{V13}/workspaces/{wid}", headers=alice).json
    assert full["url"] == f"http://localhost{V13}/workspaces/{wid}/files"
    assert full["properties"] == {"files": 0, "bytes": 0} and full["created"]
    assert c.get(full["url"], headers=alice).json == {"files": [], "links": []}
    assert c.patch(f"{V13}/workspaces/{wid}", json={"title": "renamed"},
                   headers=alice).status_code == 204
    full = c.get(f"{V13}/workspaces/{wid}", headers=alice).json
    assert (full["title"], full["description"]) == ("renamed", "d")
    assert c.patch(f"{V13}/workspaces/{wid}", json={"title": 5},
                   headers=alice).status_code == 400
    # bob neither sees, lists, renames nor deletes alice's workspace
    assert [w["id"] for w in c.get(f"{V13}/workspaces", headers=bob).json["workspaces"]] == [
        "files"]
    for resp in (c.get(f"{V13}/workspaces/{wid}", headers=bob),
                 c.get(f"{V13}/workspaces/{wid}/files", headers=bob),
                 c.patch(f"{V13}/workspaces/{wid}", json={"title": "b"}, headers=bob),
                 c.delete(f"{V13}/workspaces/{wid}", headers=bob)):
        assert resp.status_code == 404 and resp.json["code"] == "WorkspaceNotFound"
    assert c.get(f"{V13}/workspaces/{wid}", headers=alice).json["title"] == "renamed"
    # what cannot be made is a clear 400
    for body, words in [
            ({"intent": "register", "type": "S3", "url": "https://bucket.example",
              "parameters": {"username": "u", "password": "p"}}, "does not register"),
            ({"intent": "create", "type": "S3"}, "cannot be created here"),
            ({"intent": "create", "parameters": {"endpoint": "http://169.254.169.254"}},
             "takes no parameters"),
            ({"title": "no intent"}, "'intent' must be 'create'")]:
        resp = c.post(f"{V13}/workspaces", json=body, headers=alice)
        assert resp.status_code == 400 and resp.json["code"] == "WorkspaceUnsupported", body
        assert words in resp.json["message"]
    # at most workspaces_per_user (2 here)
    second = make_workspace(c, alice)
    third = c.post(f"{V13}/workspaces", json=CREATE, headers=alice)
    assert third.status_code == 400 and third.json["code"] == "WorkspaceLimitReached"
    assert make_workspace(c, bob)  # bob's count is his own
    assert c.delete(f"{V13}/workspaces/{wid}", headers=alice).status_code == 204
    assert c.get(f"{V13}/workspaces/{wid}", headers=alice).status_code == 404
    assert c.delete(f"{V13}/workspaces/{wid}", headers=alice).status_code == 404
    assert [w["id"] for w in c.get(f"{V13}/workspaces", headers=alice).json[
        "workspaces"]] == ["files", second]


def test_the_extension_is_claimed_and_routed_in_1_3_only(users):
    c = users
    assert WORKSPACES in c.get(f"{V13}/").json["conformsTo"]
    assert WORKSPACES in c.get(f"{V13}/conformance").json["conformsTo"]
    assert not any("workspaces" in cls for cls in c.get(f"{V12}/").json["conformsTo"])
    endpoints = c.get(f"{V13}/").json["endpoints"]
    assert {"path": "/workspaces", "methods": ["GET", "POST"]} in endpoints
    assert {"path": "/workspaces/{workspace_id}",
            "methods": ["DELETE", "GET", "PATCH"]} in endpoints
    alice = basic("alice")
    for path in ("/workspaces", "/workspace_providers"):
        assert c.get(f"{V12}{path}", headers=alice).status_code == 404
    assert c.post(f"{V12}/workspaces", json=CREATE, headers=alice).status_code == 404


def test_export_to_an_unknown_or_foreign_workspace_is_refused_up_front(users):
    c, alice, bob = users, basic("alice"), basic("bob")
    bobs = make_workspace(c, bob)
    for workspace in ("nope", bobs):
        body = job_body({"workspace": workspace})
        resp = c.post(f"{V13}/jobs", json=body, headers=alice)
        assert resp.status_code == 404 and resp.json["code"] == "WorkspaceNotFound"
        errors = c.post(f"{V13}/validation", json=body["process"], headers=alice).json
        assert [e["code"] for e in errors["errors"]] == ["WorkspaceNotFound"]
    assert c.get(f"{V13}/jobs", headers=alice).json["jobs"] == []
    resp = c.post(f"{V13}/jobs", json=job_body({"workspace": "files"}), headers=alice)
    assert resp.status_code == 400 and resp.json["code"] == "WorkspaceUnsupported"
    # a job of alice's may not be changed to export to bob's workspace either
    job_id = c.post(f"{V13}/jobs", json=job_body(), headers=alice).headers[
        "OpenEO-Identifier"]
    resp = c.patch(f"{V13}/jobs/{job_id}", json=job_body({"workspace": bobs}), headers=alice)
    assert resp.status_code == 404 and resp.json["code"] == "WorkspaceNotFound"
    # bob's own jobs may; a synchronous request exports nothing: a clear 400
    assert c.post(f"{V13}/jobs", json=job_body({"workspace": bobs}),
                  headers=bob).status_code == 201
    resp = c.post(f"{V13}/result", json=job_body({"workspace": bobs}), headers=bob)
    assert resp.status_code == 400 and resp.json["code"] == "ExportNeedsBatchJob"
    bad = c.post(f"{V13}/jobs", json=job_body({"workspace": bobs, "merge": "../x"}),
                 headers=bob)
    assert bad.status_code == 400 and "argument 'merge'" in bad.json["message"]


# -- export_workspace in batch jobs ------------------------------------------------------


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=True,
                      memory_limit="1GiB", dashboard_address=":0") as cl:
        yield cl


@pytest.fixture
def batch(tmp_path, tmp_path_factory, cluster, small_catalog):
    settings = batch_settings(tmp_path / "home", [small_catalog], cluster.scheduler_address)
    app = with_users(create_app(settings), users_file(tmp_path_factory))
    app.config["TESTING"] = True
    yield app
    app.extensions["tileserver"].close()


def run(c, headers, body) -> tuple[str, dict]:
    """Create and run a 1.3 batch job; its id and STAC results."""
    resp = c.post(f"{V13}/jobs", json=body, headers=headers)
    assert resp.status_code == 201, resp.json
    job_id = resp.headers["OpenEO-Identifier"]
    assert c.post(f"{V13}/jobs/{job_id}/results", headers=headers).status_code == 202
    job = wait_job(_As(c, headers), job_id, status_is("finished", "error"), timeout=300)
    logs = c.get(f"{V13}/jobs/{job_id}/logs", headers=headers).json["logs"]
    assert job["status"] == "finished", logs
    return job_id, c.get(f"{V13}/jobs/{job_id}/results", headers=headers).json


class _As:
    """A test client that sends ``headers`` and prefixes 1.3 (for ``wait_job``)."""

    def __init__(self, client, headers):
        self.client, self.headers = client, headers

    def get(self, path, **kw):
        return self.client.get(f"{V13}{path}", headers=self.headers, **kw)


def download(c, headers, url: str):
    resp = c.get(url.removeprefix("http://localhost"), headers=headers)
    body = resp.data
    resp.close()
    return resp.status_code, body


def read_tif(body: bytes) -> np.ndarray:
    import rasterio

    with rasterio.MemoryFile(body) as mem, mem.open() as src:
        return src.read()


def test_batch_job_exports_its_results_to_the_workspace(batch):
    c, alice, bob = batch.test_client(), basic("alice"), basic("bob")
    wid = make_workspace(c, alice)
    job_id, item = run(c, alice, job_body({"workspace": wid}))
    logs = [e["message"] for e in c.get(f"{V13}/jobs/{job_id}/logs", headers=alice)
            .json["logs"]]
    assert any(f"to workspace {wid!r}, folder {job_id!r}" in m for m in logs), logs
    tifs = {k: a for k, a in item["assets"].items() if a["href"].split("?")[0].endswith(".tif")}
    assert tifs
    assert "https://stac-extensions.github.io/alternate-assets/v1.2.0/schema.json" in item[
        "stac_extensions"]
    (link,) = [x for x in item["links"] if x["rel"] == "alternate"]
    assert link["href"] == (f"http://localhost{V13}/workspaces/{wid}/files/{job_id}/item.json")
    status, body = download(c, alice, link["href"])
    exported_item = json.loads(body)
    assert status == 200 and set(exported_item["assets"]) == set(item["assets"])
    for name, asset in tifs.items():
        copy = asset["alternate"]["workspace"]["href"]
        assert copy.startswith(f"http://localhost{V13}/workspaces/{wid}/files/{job_id}/")
        original = read_result(c, asset["href"])[0]  # the job's own result (token URL)
        status, body = download(c, alice, copy)
        assert status == 200
        assert_array_equal(read_tif(body), original)  # NaN where NaN, values bit for bit
        assert np.isfinite(original).any()
        assert exported_item["assets"][name]["href"] == copy.rsplit("/", 1)[-1]  # relative
        assert download(c, bob, copy)[0] == 404  # alice's copy is hers
    full = c.get(f"{V13}/workspaces/{wid}", headers=alice).json
    files = {f["path"] for f in c.get(full["url"], headers=alice).json["files"]}
    assert files == {f"{job_id}/{a['href'].split('/')[-1]}" for a in exported_item[
        "assets"].values()} | {f"{job_id}/item.json"}
    assert full["properties"]["files"] == len(files)
    # merge: a second job lands next to the first's copy, in a STAC Collection of both
    second, _ = run(c, alice, job_body({"workspace": wid, "merge": "ndvi/2020"}))
    third, _ = run(c, alice, job_body({"workspace": wid, "merge": "ndvi/2020"}))
    status, body = download(c, alice, f"{V13}/workspaces/{wid}/files/ndvi/2020/collection.json")
    collection = json.loads(body)
    assert status == 200 and collection["type"] == "Collection"
    assert sorted(x["href"] for x in collection["links"] if x["rel"] == "item") == sorted(
        [f"./{second}/item.json", f"./{third}/item.json"])
    # the copy outlives the job; deleting the workspace deletes the copies
    assert c.delete(f"{V13}/jobs/{job_id}", headers=alice).status_code == 204
    assert download(c, alice, link["href"])[0] == 200
    assert c.delete(f"{V13}/workspaces/{wid}", headers=alice).status_code == 204
    assert download(c, alice, link["href"])[0] == 404
    storage = batch.extensions["tileserver"].batch.storage
    assert list(storage.list(f"workspaces/alice/{wid}")) == []


def test_export_to_a_workspace_deleted_before_the_job_ran_fails_the_job(batch):
    c, alice = batch.test_client(), basic("alice")
    wid = make_workspace(c, alice)
    job_id = c.post(f"{V13}/jobs", json=job_body({"workspace": wid}), headers=alice).headers[
        "OpenEO-Identifier"]
    assert c.delete(f"{V13}/workspaces/{wid}", headers=alice).status_code == 204
    assert c.post(f"{V13}/jobs/{job_id}/results", headers=alice).status_code == 202
    job = wait_job(_As(c, alice), job_id, status_is("finished", "error"), timeout=300)
    assert job["status"] == "error"
    logs = c.get(f"{V13}/jobs/{job_id}/logs", headers=alice).json["logs"]
    assert any(f"exporting to workspace {wid!r} failed" in e["message"] for e in logs), logs
