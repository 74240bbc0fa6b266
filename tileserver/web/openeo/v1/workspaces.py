"""Workspaces (openEO 1.3 Workspaces extension 0.1.0): providers, a user's workspaces and
their management (:mod:`tileserver.jobs.workspaces` has the use cases).

- ``GET /workspace_providers``: ``files`` (built in, no intents) and ``store`` (intent
  ``create``: a folder of this server's store; no ``register``: the server writes to no
  storage the user names);
- ``GET /workspaces``: the user's ``files`` and the workspaces they created;
  ``GET /workspaces/{id}`` the full metadata, its ``url`` the listing of its files;
- ``POST /workspaces`` (``intent: create``), ``PATCH`` (title, description) and
  ``DELETE /workspaces/{id}`` (the workspace and its data) for created workspaces;
- ``GET /workspaces/{id}/files[/{path}]`` (not in the extension): the listing of a created
  workspace and the download of its files, for its owner: what ``url`` and the ``alternate``
  hrefs of an exported job's STAC item point at.
"""

from __future__ import annotations

from flask import jsonify

from tileserver.data.userfiles import split_path
from tileserver.errors import FileNotFound
from tileserver.jobs import workspaces as ws
from tileserver.storage import join
from tileserver.web.common import created, current_user, external_url, json_body, runtime
from tileserver.web.objects import send_object
from tileserver.web.openeo.v002.files import own_files

_FILES_DESCRIPTION = ("Your files on this server: what you upload with `PUT /files/{path}` "
                      "and what process graphs read as `/users/{user_id}/files/{path}` "
                      "(`load_uploaded_files`, regions of `aggregate_spatial`).")


def providers():
    """The workspace providers: the user's files and folders of the server's store."""
    return jsonify({"providers": ws.providers()})


def _files_workspace(full: bool) -> dict:
    workspace = {"id": ws.FILES, "type": ws.FILES, "status": "ready", "title": "Your files",
                 "description": _FILES_DESCRIPTION}
    if full:
        entries = own_files().list()
        workspace.update(url=external_url(".list_files"), properties={
            "files": len(entries), "bytes": sum(e.size for e in entries)})
    return workspace


def list_workspaces():
    """The user's workspaces: their files, then those they created."""
    rows = runtime().store.list_workspaces(current_user())
    return jsonify({"workspaces": [_files_workspace(full=False)] + [
        ws.workspace_json(r) for r in rows], "links": []})


def create_workspace():
    """Create a workspace (201 with ``Location`` and ``OpenEO-Identifier``)."""
    row = ws.create(runtime(), current_user(), json_body())
    wid = row["workspace_id"]
    return created(None, ".get_workspace", wid, workspace_id=wid)


def _storage():
    return runtime().batch.storage


def get_workspace(workspace_id: str):
    """The full metadata of a workspace: its ``url`` and what it holds."""
    if workspace_id.lower() == ws.FILES:
        return jsonify(_files_workspace(full=True))
    user = current_user()
    row = runtime().store.get_workspace(user, workspace_id)
    objects = list(_storage().list(ws.prefix_of(user, workspace_id)))
    out = ws.workspace_json(row, full=True)
    out.update(url=external_url(".workspace_files", workspace_id=workspace_id),
               properties={"files": len(objects), "bytes": sum(o.size for o in objects)})
    return jsonify(out)


def patch_workspace(workspace_id: str):
    """Change the title and/or description (204)."""
    ws.rename(runtime(), current_user(), workspace_id, json_body())
    return "", 204


def delete_workspace(workspace_id: str):
    """Delete a created workspace and its data (204)."""
    ws.delete(runtime(), _storage(), current_user(), workspace_id)
    return "", 204


def _row(workspace_id: str) -> tuple[str, dict]:
    user = current_user()
    return ws.prefix_of(user, workspace_id), runtime().store.get_workspace(user, workspace_id)


def workspace_files(workspace_id: str):
    """The files of a created workspace (``path``, ``size``, ``modified``)."""
    prefix, _row_ = _row(workspace_id)
    entries = [{"path": o.key[len(prefix):].lstrip("/"), "size": o.size,
                "modified": o.modified.isoformat()} for o in _storage().list(prefix)]
    return jsonify({"files": entries, "links": []})


def workspace_file(workspace_id: str, path: str):
    """A file of a created workspace."""
    prefix, _row_ = _row(workspace_id)
    parts = split_path(path)
    if not parts:
        raise FileNotFound("no file ''")
    return send_object(_storage(), join(prefix, *parts), mimetype=_media_type(parts[-1]),
                       download_name=parts[-1])


#: The STAC extension of an asset's ``alternate`` locations.
ALTERNATE_ASSETS = "https://stac-extensions.github.io/alternate-assets/v1.2.0/schema.json"


def file_url(workspace_id: str, path: str) -> str:
    """Where a file of a created workspace downloads (for the job's STAC item)."""
    return external_url(".workspace_file", workspace_id=workspace_id, path=path)


def alternate(exported: dict, name: str, public: bool) -> dict:
    """The ``alternate`` location of a result file exported to a workspace (a presigned
    URL when clients reach the S3 store, else this server's download for the owner)."""
    path = join(exported["path"], name)
    signed = None
    if public:
        key = join(ws.prefix_of(current_user(), exported["workspace"]), path)
        signed = _storage().presigned_url(key, runtime().settings.storage_presign_seconds)
    return {"href": signed or file_url(exported["workspace"], path),
            "title": f"Copy in workspace {exported['workspace']} ({path})"}


def exported_link(exported: dict) -> dict:
    """The link from a job's results to the STAC item exported to a workspace."""
    return {"rel": "alternate", "type": "application/geo+json",
            "href": file_url(exported["workspace"], join(exported["path"], ws.ITEM)),
            "title": f"exported to workspace {exported['workspace']} (export_workspace)"}


def _media_type(name: str) -> str:
    if name.endswith(".json"):
        return "application/json"
    if name.endswith((".tif", ".tiff")):
        return "image/tiff; application=geotiff"
    if name.endswith(".nc"):
        return "application/x-netcdf"
    return "application/octet-stream"
