"""``/users/<user_id>/files`` through the Flask test client."""

from __future__ import annotations

import io

import pytest

HOSTILE_URLS = [
    "/users/me/files/%2e%2e/escape.txt",
    "/users/me/files/a/%2e%2e/%2e%2e/escape.txt",
    "/users/me/files/..%2fescape.txt",
    "/users/me/files/%252e%252e/escape.txt",
    "/users/me/files/a%00b.txt",
    "/users/me/files/.hidden",
    "/users/me/files/a%5c..%5cb.txt",
    "/users/me/files/" + "x" * 300,
    "/users/me/files/a//b.txt",
]


def _read(client, url):
    with client.get(url) as r:
        return r.status_code, r.data


def _put(client, path, data, **kw):
    return client.put(f"/users/me/files/{path}", data=data,
                      content_type="application/octet-stream", **kw)


def test_upload_list_download_delete(client):
    body = b'{"type": "FeatureCollection", "features": []}'
    r = _put(client, "fields.geojson", body)
    assert r.status_code == 201, r.json
    assert r.json["name"] == "fields.geojson" and r.json["size"] == len(body)
    r = _put(client, "2020/season/fields.gpkg", io.BytesIO(b"\x00" * 3000))
    assert r.status_code == 201 and r.json["path"] == "2020/season/fields.gpkg"
    r = _put(client, "fields.geojson", b"{}")
    assert r.status_code == 200 and r.json["size"] == 2  # replaced

    listing = client.get("/users/me/files").json
    assert [(f["name"], f["size"]) for f in listing] == [("2020/season/fields.gpkg", 3000),
                                                         ("fields.geojson", 2)]
    assert all(f["modified"].endswith("Z") for f in listing)

    with client.get("/users/me/files/fields.geojson") as r:
        assert r.status_code == 200 and r.data == b"{}"
        assert "attachment" in r.headers["Content-Disposition"]
    assert [f["name"] for f in client.get("/users/me/files/2020").json] == [
        "2020/season/fields.gpkg"]

    assert client.delete("/users/me/files/2020/season/fields.gpkg").status_code == 204
    assert client.delete("/users/me/files/2020").status_code == 204
    assert [f["name"] for f in client.get("/users/me/files").json] == ["fields.geojson"]
    r = client.get("/users/me/files/2020/season/fields.gpkg")
    assert r.status_code == 404 and r.json["code"] == "FileNotFound"
    assert client.delete("/users/me/files/nothing.txt").status_code == 404


def test_other_users_files_are_invisible(client):
    _put(client, "mine.txt", b"mine")
    for method, url in [("get", "/users/other/files"), ("get", "/users/other/files/mine.txt"),
                        ("put", "/users/other/files/x.txt"),
                        ("delete", "/users/other/files/mine.txt")]:
        r = getattr(client, method)(url, data=b"x")
        assert r.status_code == 404, (method, url)
        assert r.json["code"] == "NotFound"
    assert _read(client, "/users/me/files/mine.txt") == (200, b"mine")


@pytest.mark.parametrize("url", HOSTILE_URLS)
def test_hostile_paths_are_refused_and_nothing_is_lost(client, small_app, url):
    _put(client, "keep.txt", b"precious")
    home = small_app.extensions["tileserver"].settings.home
    before = sorted(p.relative_to(home).as_posix() for p in home.rglob("*"))
    for method in ("put", "get", "delete"):
        r = getattr(client, method)(url, data=b"evil")
        assert r.status_code in (400, 404), (method, url, r.status_code)
        assert r.is_json and r.json["code"] in ("FilePathInvalid", "NotFound", "FileNotFound")
    after = sorted(p.relative_to(home).as_posix() for p in home.rglob("*"))
    assert after == before
    assert _read(client, "/users/me/files/keep.txt") == (200, b"precious")


def test_traversal_attempt_gets_a_clear_400(client):
    r = client.put("/users/me/files/%2e%2e/%2e%2e/escape.txt", data=b"x")
    assert r.status_code == 400
    assert r.json["code"] == "FilePathInvalid" and "'..'" in r.json["message"]


def test_upload_over_the_limit_is_413_and_keeps_the_old_file(make_app, small_catalog):
    app = make_app([small_catalog], max_upload_bytes=1000)
    client = app.test_client()
    assert _put(client, "data.bin", b"v1").status_code == 201
    r = _put(client, "data.bin", b"x" * 1001)
    assert r.status_code == 413 and r.json["code"] == "PayloadTooLarge"
    assert "1000" in r.json["message"]
    # a chunked upload (no Content-Length) is cut at the limit too
    r = _put(client, "data.bin", io.BytesIO(b"y" * 5000),
             headers={"Transfer-Encoding": "chunked"},
             environ_overrides={"wsgi.input_terminated": True})
    assert r.status_code == 413
    r = _put(client, "small.bin", io.BytesIO(b"s" * 900), headers={"Transfer-Encoding": "chunked"},
             environ_overrides={"wsgi.input_terminated": True})
    assert r.status_code == 201 and r.json["size"] == 900
    # without a length and a server that delimits the body: refused, not stored empty
    r = _put(client, "data.bin", io.BytesIO(b"y" * 10), headers={"Transfer-Encoding": "chunked"})
    assert r.status_code == 411 and r.json["code"] == "LengthRequired"
    assert _read(client, "/users/me/files/data.bin") == (200, b"v1")
    home = app.extensions["tileserver"].settings.home
    assert sorted(p.name for p in (home / "files" / "me").iterdir()) == ["data.bin", "small.bin"]


def test_put_on_a_folder_is_a_conflict(client):
    _put(client, "dir/a.txt", b"a")
    r = _put(client, "dir", b"b")
    assert r.status_code == 409 and r.json["code"] == "Conflict"
