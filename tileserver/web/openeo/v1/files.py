"""User files (``/files``): the same store as ``/users/{user_id}/files`` of the 0.0.2 API."""

from __future__ import annotations

from flask import jsonify

from tileserver.web.openeo.v002.files import download, own_files, upload
from tileserver.web.openeo.v1.serializers import file_json


def _listing(entries):
    return jsonify({"files": [file_json(f) for f in entries], "links": []})


def list_files():
    """All files of the user."""
    return _listing(own_files().list())


def get_file(path: str):
    """A file's bytes."""
    return download(own_files(), path, _listing)


def put_file(path: str):
    """Upload a file (200 with its description)."""
    info, _created = upload(own_files(), path)
    return jsonify(file_json(info))


def delete_file(path: str):
    """Delete a file."""
    own_files().delete(path)
    return "", 204
