"""Workspaces (openEO 1.3 Workspaces extension 0.1.0): the read-only part this back-end
can answer truthfully.

The extension connects storage to a back-end: ``GET /workspace_providers`` lists the kinds
of storage, ``GET /workspaces`` a user's workspaces, and ``POST /workspaces`` creates one or
registers external storage (an S3 bucket with credentials…) that results are then exported
to (the ``export_workspace`` process). This server has one storage of its own per user: the
user's files (``/files``, read by process graphs as ``/users/<id>/files/...``). So:

- ``GET /workspace_providers`` lists that one provider, ``files``, without ``intents``
  (nothing can be created or registered);
- ``GET /workspaces`` lists the user's one workspace, ``files``, ready, its ``url`` the
  ``/files`` listing; ``GET /workspaces/files`` is its full metadata (file count and bytes);
- ``POST /workspaces``, ``PATCH`` and ``DELETE /workspaces/{id}`` are not routed (the
  capabilities' endpoint list says so, and they answer 405), and the extension's
  conformance class is not claimed: no external storage can be registered and there is no
  ``export_workspace`` process yet (results are downloaded from ``/jobs/{id}/results``).
"""

from __future__ import annotations

from flask import jsonify

from tileserver.errors import WorkspaceNotFound
from tileserver.web.common import external_url
from tileserver.web.openeo.v002.files import own_files

#: The one workspace (and provider) of every user: their files on this server.
FILES = "files"
_DESCRIPTION = ("Your files on this server: what you upload with `PUT /files/{path}` and "
                "what process graphs read as `/users/{user_id}/files/{path}` "
                "(`load_uploaded_files`, regions of `aggregate_spatial`).")


def providers():
    """The workspace providers: the server's own file storage."""
    return jsonify({"providers": {FILES: {
        "title": "Server file storage",
        "description": "One workspace per user on this server's disk (no external storage "
                       "can be registered, no further workspace created).",
        "parameters": {}, "links": []}}})


def _workspace(full: bool) -> dict:
    workspace = {"id": FILES, "type": FILES, "status": "ready", "title": "Your files",
                 "description": _DESCRIPTION}
    if full:
        entries = own_files().list()
        workspace.update(url=external_url(".list_files"), properties={
            "files": len(entries), "bytes": sum(e.size for e in entries)})
    return workspace


def list_workspaces():
    """The user's workspaces: their files."""
    return jsonify({"workspaces": [_workspace(full=False)], "links": []})


def get_workspace(workspace_id: str):
    """The full metadata of a workspace (only ``files`` exists)."""
    if workspace_id.lower() != FILES:
        raise WorkspaceNotFound(f"there is no workspace {workspace_id[:64]!r}; yours is "
                                f"{FILES!r} (GET /workspaces)")
    return jsonify(_workspace(full=True))
