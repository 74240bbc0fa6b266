"""Workspaces (openEO 1.3 Workspaces extension 0.1.0) and ``export_workspace``: the use cases.

Two providers:

- ``files``: every user's own files (``/files``), built in: listed, never created, renamed
  or deleted through ``/workspaces``;
- ``store``: a folder of the server's own store (``$TILESERVER_HOME`` or its S3 bucket,
  ``storage_url``) per workspace, under ``workspaces/<user_id>/<workspace_id>/``, created by
  ``POST /workspaces`` with ``intent: create``. Nothing leaves the server: the ``register``
  intent (a bucket of the user's with their credentials, the server writing to a URL the
  user names) is not offered.

``export_workspace`` (the result node of a batch job's graph, around its ``save_result``)
copies the job's result files and its STAC item into the workspace once they are written:
into ``<job_id>/`` (kept apart from anything else), or with ``merge: "a/b"`` into
``a/b/<job_id>/`` with ``a/b/collection.json``, a STAC Collection of every item merged there,
rewritten on each export. Deleting a workspace deletes its data (the server created it);
the results of the jobs stay theirs.
"""

from __future__ import annotations

import json
from typing import Any

from tileserver.errors import WorkspaceLimitReached, WorkspaceUnsupported
from tileserver.jobs.store import iso
from tileserver.jobs.usecases import HasStore, optional_text
from tileserver.storage import Store, join

#: The built-in workspace (and provider) of every user: their files.
FILES = "files"
#: The provider of the workspaces users create: folders of the server's store.
STORE = "store"
#: Top folder of the workspaces in the server's store.
PREFIX = "workspaces"
#: The STAC Collection a ``merge`` folder gets.
COLLECTION = "collection.json"
ITEM = "item.json"


def providers() -> dict[str, dict]:
    """``GET /workspace_providers``: the two providers (names are case insensitive)."""
    return {
        FILES: {"title": "Your files on this server",
                "description": "Built in: every user has one, `files` (`/files`); it can be "
                               "neither created nor deleted here.",
                "parameters": {}, "links": []},
        STORE: {"title": "Server storage",
                "description": "A folder of this server's storage for your exported results "
                               "(`export_workspace` in a batch job). Create as many as the "
                               "server allows; deleting one deletes its data.",
                "intents": ["create"], "parameters": {}, "links": []},
    }


def prefix_of(user: str, workspace_id: str) -> str:
    """The folder of a created workspace in the server's store."""
    return join(PREFIX, user, workspace_id)


def create(rt: HasStore, user: str, body: dict) -> dict:
    """``POST /workspaces``: a new ``store`` workspace (its row)."""
    intent = body.get("intent")
    if intent == "register":
        raise WorkspaceUnsupported(
            "this server does not register external storage (intent 'register'): it writes "
            "only to its own store; create a workspace there with intent 'create'")
    if intent != "create":
        raise WorkspaceUnsupported(f"'intent' must be 'create' (got {str(intent)[:40]!r})")
    kind = body.get("type")
    if kind is not None and (not isinstance(kind, str) or kind.lower() != STORE):
        raise WorkspaceUnsupported(
            f"workspaces of type {str(kind)[:40]!r} cannot be created here; the provider "
            f"that can is {STORE!r} (GET /workspace_providers)")
    parameters = body.get("parameters")
    if parameters not in (None, {}):
        raise WorkspaceUnsupported(f"the {STORE!r} provider takes no parameters")
    limit = rt.settings.workspaces_per_user
    if len(rt.store.list_workspaces(user)) >= limit:
        raise WorkspaceLimitReached(
            f"you have {limit} workspace(s), the most this server allows "
            "(DELETE /workspaces/{workspace_id} one first)")
    return rt.store.create_workspace(user, STORE, title=optional_text(body, "title"),
                                     description=optional_text(body, "description"))


def rename(rt: HasStore, user: str, workspace_id: str, body: dict) -> None:
    """``PATCH /workspaces/{id}``: a new title and/or description."""
    if workspace_id.lower() == FILES:
        raise WorkspaceUnsupported(f"the {FILES!r} workspace is built in: it cannot be changed")
    fields = {k: optional_text(body, k) for k in ("title", "description") if k in body}
    rt.store.update_workspace(user, workspace_id, **fields)


def delete(rt: HasStore, store: Store, user: str, workspace_id: str) -> None:
    """``DELETE /workspaces/{id}``: forget the workspace and delete its data."""
    if workspace_id.lower() == FILES:
        raise WorkspaceUnsupported(f"the {FILES!r} workspace is built in: it cannot be "
                                   "deleted (DELETE /files/{path} deletes a file)")
    rt.store.delete_workspace(user, workspace_id)
    store.delete_prefix(prefix_of(user, workspace_id))


def export(rt: HasStore, store: Store, user: str, job_id: str, results: str,
           target: dict) -> dict[str, Any]:
    """Copy the job's result files (under the key ``results``) into the workspace of
    ``target`` (``Graph.export``); what the job's metadata keeps: workspace, folder, files."""
    workspace_id, merge = target["workspace"], target.get("merge")
    rt.store.get_workspace(user, workspace_id)  # deleted since the job was made: not found
    root = prefix_of(user, workspace_id)
    folder = join(merge or "", job_id)
    dest = join(root, folder)
    store.delete_prefix(dest)  # a rerun replaces the job's earlier export
    files = []
    for obj in store.list(results):
        name = obj.key[len(results):].lstrip("/")
        with store.writing(join(dest, name)) as tmp:
            store.download(obj.key, tmp)
        files.append(name)
    if merge:
        _write_collection(store, root, merge)
    return {"workspace": workspace_id, "path": folder, "merge": merge, "files": sorted(files)}


def _write_collection(store: Store, root: str, merge: str) -> None:
    """(Re)write ``<merge>/collection.json``: a STAC Collection of every item merged into
    the folder, their extents united."""
    base = join(root, merge)
    items = []
    for obj in store.list(base):
        rel = obj.key[len(base):].lstrip("/")
        if rel.count("/") == 1 and rel.endswith("/" + ITEM):
            try:
                items.append((rel, json.loads(store.get(obj.key))))
            except (OSError, ValueError):
                continue  # a broken item is left out, not fatal
    boxes = [i["bbox"] for _, i in items if isinstance(i.get("bbox"), list)]
    bbox = [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes),
            max(b[3] for b in boxes)] if boxes else [-180, -90, 180, 90]
    times = sorted(t for _, i in items for k in ("start_datetime", "datetime", "end_datetime")
                   if isinstance(t := (i.get("properties") or {}).get(k), str))
    collection = {
        "type": "Collection", "stac_version": "1.0.0", "id": merge.replace("/", "-"),
        "description": f"Batch job results merged into {merge!r} (export_workspace).",
        "license": "proprietary",
        "extent": {"spatial": {"bbox": [bbox]},
                   "temporal": {"interval": [[times[0], times[-1]] if times else [None, None]]}},
        "links": [{"rel": "item", "href": f"./{rel}", "type": "application/geo+json"}
                  for rel, _ in items],
    }
    store.put(join(base, COLLECTION), json.dumps(collection, indent=2).encode())


def workspace_json(row: dict, full: bool = False) -> dict:
    """A created workspace as ``GET /workspaces`` lists it (``full``: its whole metadata
    besides ``url`` and ``properties``, which the web layer adds)."""
    out = {"id": row["workspace_id"], "type": row["type"], "status": "ready"}
    out.update({k: row[k] for k in ("title", "description") if row.get(k) is not None})
    if full:
        out["created"] = iso(row.get("created"))
    return out
