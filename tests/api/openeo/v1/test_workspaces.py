"""The read-only part of the openEO 1.3 Workspaces extension: the one provider (the server's
file storage) and each user's one workspace (their files), per user; what is not offered
(creating, registering, changing, deleting workspaces) is not routed and not claimed."""

from __future__ import annotations

from tests.support.hardening import basic, users_file, with_users

V12, V13 = "/openeo/1.2", "/openeo/1.3"


def test_the_workspace_of_each_user_is_their_files(make_app, small_catalog, tmp_path_factory):
    app = with_users(make_app([small_catalog]), users_file(tmp_path_factory))
    c = app.test_client()
    alice, bob = basic("alice"), basic("bob")
    providers = c.get(f"{V13}/workspace_providers").json["providers"]  # public
    assert list(providers) == ["files"] and "intents" not in providers["files"]
    assert providers["files"]["parameters"] == {}
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
    assert c.get(full["url"], headers=alice).json["files"][0]["path"] == "a/b.txt"
    assert c.get(f"{V13}/workspaces/FILES", headers=alice).status_code == 200  # any case
    assert c.get(f"{V13}/workspaces/files", headers=bob).json["properties"] == {
        "files": 0, "bytes": 0}  # each user sees their own files only
    missing = c.get(f"{V13}/workspaces/bucket", headers=alice)
    assert missing.status_code == 404 and missing.json["code"] == "WorkspaceNotFound"


def test_what_is_not_offered_is_not_routed_nor_claimed(client):
    body = {"intent": "register", "type": "S3", "url": "https://bucket.example",
            "parameters": {}}
    assert client.post(f"{V13}/workspaces", json=body).status_code == 405
    assert client.patch(f"{V13}/workspaces/files", json={"title": "x"}).status_code == 405
    assert client.delete(f"{V13}/workspaces/files").status_code == 405
    endpoints = client.get(f"{V13}/").json["endpoints"]
    assert {"path": "/workspaces", "methods": ["GET"]} in endpoints
    assert {"path": "/workspaces/{workspace_id}", "methods": ["GET"]} in endpoints
    assert not any("workspaces" in cls for cls in client.get(f"{V13}/").json["conformsTo"])
    assert client.get(f"{V12}/workspaces").status_code == 404
    assert client.get(f"{V12}/workspace_providers").status_code == 404
