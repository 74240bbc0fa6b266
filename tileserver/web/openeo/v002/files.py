"""User files over HTTP: ``/users/<user_id>/files[/<path>]`` (list, upload, download, delete).

A user sees only their own folder: any other ``user_id`` answers 404, as if it did not
exist. Paths are checked by :mod:`tileserver.data.userfiles`. The openEO 1.x ``/files``
routes use the same store through :func:`own_files`, :func:`download` and :func:`upload`.
"""

from __future__ import annotations

from flask import Blueprint, jsonify, request, send_file

from tileserver.data.userfiles import ObjectUserFiles, UserFiles, iter_stream, user_files
from tileserver.errors import NotFound, TileserverError
from tileserver.web.apidoc import (
    ANY_ARRAY,
    ANY_OBJECT,
    FILE,
    FILE_BODY,
    NO_CONTENT,
    json_response,
    operation,
)
from tileserver.web.common import current_user, runtime
from tileserver.web.objects import send_object

bp = Blueprint("files", __name__)


class LengthRequired(TileserverError):
    """A body of unknown length that the WSGI server cannot delimit."""

    status = 411
    code = "LengthRequired"


def own_files() -> UserFiles | ObjectUserFiles:
    """The files of the authenticated user (in the store of batch results)."""
    rt = runtime()
    return user_files(rt.batch.storage, current_user(), rt.settings.max_upload_bytes)


def _files(user_id: str) -> UserFiles | ObjectUserFiles:
    if user_id != current_user():
        raise NotFound(f"user {user_id} does not exist")
    return own_files()


def download(files: UserFiles | ObjectUserFiles, path: str, listing):
    """The file's bytes, or ``listing(entries)`` for a folder."""
    if isinstance(files, ObjectUserFiles):  # streamed from the object store
        if files.is_folder(path):
            return listing(files.list(path))
        info = files.info(path)
        return send_object(files.store, files.key(path), mimetype="application/octet-stream",
                           download_name=info.path.rsplit("/", 1)[-1], as_attachment=True)
    target = files.resolve(path, must_exist=True)
    if target.is_dir():
        return listing(files.list(path))
    return send_file(target, mimetype="application/octet-stream", as_attachment=True,
                     download_name=target.name, max_age=0)


def upload(files: UserFiles | ObjectUserFiles, path: str):
    """Store the request body (streamed; folders are created as needed): ``(info, created)``."""
    if request.content_length is None and not request.environ.get("wsgi.input_terminated"):
        # werkzeug would hand us an empty stream: refuse rather than store an empty file
        raise LengthRequired("send a Content-Length header (or use a server that "
                             "supports chunked uploads)")
    return files.write(path, iter_stream(request.stream), request.content_length)


def _listing(entries):
    return jsonify([f.to_json() for f in entries])


@bp.get("/users/<user_id>/files")
@operation("The user's files", json_response(ANY_ARRAY), "Unauthorized", "NotFound")
def list_files(user_id: str):
    """All files of the user with sizes and modification dates."""
    return _listing(_files(user_id).list())


@bp.get("/users/<user_id>/files/<path:path>")
@operation("Download a user file", FILE, "Unauthorized", "NotFound")
def get_file(user_id: str, path: str):
    """The file's bytes (a folder path lists the files under it)."""
    return download(_files(user_id), path, _listing)


@bp.put("/users/<user_id>/files/<path:path>")
@operation("Upload a user file (the body is the file)", json_response(ANY_OBJECT),
           "BadRequest", "Unauthorized", "NotFound", "TooLarge", body=FILE_BODY)
def put_file(user_id: str, path: str):
    """Store the request body (streamed; folders are created as needed)."""
    info, created = upload(_files(user_id), path)
    resp = jsonify(info.to_json())
    resp.status_code = 201 if created else 200
    return resp


@bp.delete("/users/<user_id>/files/<path:path>")
@operation("Delete a user file", NO_CONTENT, "Unauthorized", "NotFound", status=204)
def delete_file(user_id: str, path: str):
    """Remove a file (or a folder and its content)."""
    _files(user_id).delete(path)
    return "", 204
