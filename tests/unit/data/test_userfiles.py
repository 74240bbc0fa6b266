"""User folders without HTTP: safe paths, streamed atomic writes, limits, listing, delete."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest

from tileserver.data.userfiles import (
    InvalidPath,
    UserFiles,
    parse_graph_path,
    resolve_graph_path,
    split_path,
)
from tileserver.errors import Conflict, FileNotFound, LimitExceeded

HOSTILE = [
    "../escape.txt",
    "a/../../escape.txt",
    "a/./b.txt",
    "..",
    "/etc/passwd",
    "~/x",
    "C:/windows/x",
    "a\\..\\b.txt",
    "a\x00b.txt",
    "a\nb.txt",
    "%2e%2e/escape.txt",
    ".hidden",
    "a//b.txt",
    "x" * 300,
    "/".join(["d"] * 40) + "/f.txt",
    "a/" * 600 + "f",
    " lead.txt",
    "what?.txt",
    "a*b.txt",
]


@pytest.fixture
def files(tmp_path):
    return UserFiles(tmp_path / "files", "me", max_bytes=1000)


def test_write_list_read_delete_roundtrip(files):
    before = datetime.now(UTC) - timedelta(seconds=2)
    info, created = files.write("fields.geojson", [b'{"type": ', b'"FeatureCollection"}'])
    assert created and info.size == len(b'{"type": "FeatureCollection"}')
    info2, created2 = files.write("sub/dir/deep.gpkg", [b"x" * 10])
    assert created2 and info2.path == "sub/dir/deep.gpkg"
    listing = files.list()
    assert [(f.path, f.size) for f in listing] == [("fields.geojson", 29),
                                                   ("sub/dir/deep.gpkg", 10)]
    assert all(before <= f.modified <= datetime.now(UTC) + timedelta(seconds=2)
               for f in listing)
    assert files.open_file("fields.geojson").read_bytes() == b'{"type": "FeatureCollection"}'
    assert [f.path for f in files.list("sub")] == ["sub/dir/deep.gpkg"]
    # replacing keeps one file and reports it as not created
    _, created3 = files.write("fields.geojson", [b"{}"])
    assert not created3 and files.open_file("fields.geojson").read_bytes() == b"{}"
    files.delete("sub")
    assert [f.path for f in files.list()] == ["fields.geojson"]
    files.delete("fields.geojson")
    assert files.list() == []
    with pytest.raises(FileNotFound):
        files.delete("fields.geojson")


def test_listing_json_has_name_size_and_date(files):
    files.write("a.json", [b"12345"])
    doc = files.list()[0].to_json()
    assert doc["name"] == doc["path"] == "a.json" and doc["size"] == 5
    assert datetime.strptime(doc["modified"], "%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize("path", HOSTILE)
def test_hostile_paths_are_refused_and_nothing_is_lost(files, tmp_path, path):
    files.write("keep.txt", [b"precious"])
    outside_before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(InvalidPath):
        files.write(path, [b"evil"])
    with pytest.raises(InvalidPath):
        files.resolve(path)
    with pytest.raises((InvalidPath, FileNotFound)):
        files.delete(path)
    assert files.open_file("keep.txt").read_bytes() == b"precious"
    assert [f.path for f in files.list()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == outside_before


def test_symlinks_leading_out_are_refused_and_not_listed(files, tmp_path):
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "key.txt").write_text("top secret")
    files.write("ok.txt", [b"ok"])
    os.symlink(secret, files.base / "link")
    os.symlink(secret / "key.txt", files.base / "key.txt")
    with pytest.raises(InvalidPath):
        files.resolve("link/key.txt")
    with pytest.raises(InvalidPath):
        files.open_file("key.txt")
    with pytest.raises(InvalidPath):
        files.write("link/new.txt", [b"evil"])
    assert not (secret / "new.txt").exists()
    assert [f.path for f in files.list()] == ["ok.txt"]
    assert (secret / "key.txt").read_text() == "top secret"


def test_upload_limit_keeps_previous_version_and_leaves_no_temp_file(files):
    files.write("data.bin", [b"v1"])
    with pytest.raises(LimitExceeded):
        files.write("data.bin", [b"x" * 600, b"y" * 600])
    with pytest.raises(LimitExceeded):
        files.write("data.bin", [b"small"], declared_size=5000)
    assert files.open_file("data.bin").read_bytes() == b"v1"
    assert sorted(os.listdir(files.base)) == ["data.bin"]  # no .upload-* left behind
    info, _ = files.write("data.bin", [b"z" * 1000])  # exactly the limit is fine
    assert info.size == 1000


def test_failed_stream_leaves_previous_version(files):
    files.write("data.bin", [b"v1"])

    def broken():
        yield b"partial"
        raise OSError("client went away")

    with pytest.raises(OSError):
        files.write("data.bin", broken())
    assert files.open_file("data.bin").read_bytes() == b"v1"
    assert sorted(os.listdir(files.base)) == ["data.bin"]


def test_files_and_folders_do_not_collide(files):
    files.write("a/b.txt", [b"1"])
    with pytest.raises(Conflict):
        files.write("a", [b"2"])  # a folder
    with pytest.raises(Conflict):
        files.write("a/b.txt/c.txt", [b"3"])  # a file used as a folder
    with pytest.raises(InvalidPath):
        files.write("a/", [b"4"])
    with pytest.raises(FileNotFound):
        files.open_file("a")
    assert files.open_file("a/b.txt").read_bytes() == b"1"


def test_bad_user_ids_are_refused(tmp_path):
    for user in ("..", "a/b", "", ".x", "a\x00"):
        with pytest.raises(InvalidPath):
            UserFiles(tmp_path, user, 10)


def test_split_path_accepts_ordinary_names():
    assert split_path("Äcker 2020/field-1_(v2).geojson") == ["Äcker 2020",
                                                             "field-1_(v2).geojson"]
    assert split_path("folder/") == ["folder"]


def test_graph_paths_resolve_for_the_calling_user_only(tmp_path):
    root = tmp_path / "files"
    UserFiles(root, "me", 100).write("r/fields.geojson", [b"{}"])
    UserFiles(root, "other", 100).write("theirs.geojson", [b"{}"])
    assert parse_graph_path("/users/me/files/") == ("me", "")
    assert parse_graph_path("/users/me/files") == ("me", "")
    assert resolve_graph_path("/users/me/files/r/fields.geojson", root, "me").is_file()
    assert resolve_graph_path("/users/me/files/", root, "me").is_dir()
    assert resolve_graph_path("/users/me/files/r/", root, "me").is_dir()
    with pytest.raises(FileNotFound) as other:
        resolve_graph_path("/users/other/files/theirs.geojson", root, "me")
    with pytest.raises(FileNotFound) as missing:
        resolve_graph_path("/users/me/files/nope.geojson", root, "me")
    assert "among your files" in other.value.message and "among your files" in \
        missing.value.message
    for bad in ("fields.geojson", "/users/me/fields.geojson", "/users/me/files/../x",
                "/users/../files/x", "/users/me/files/a\x00", ""):
        with pytest.raises(InvalidPath):
            parse_graph_path(bad)
