"""OGC API - Processes over openEO: the openEO 1.x processes (from their official
descriptions) as OGC process descriptions, and the execution of openEO process graphs
(Part 3 "openEO workflows", ``POST /ogcapi/processes/OpenEO/execution``).

Execution goes through the same use cases as openEO ``POST /result`` (the same bytes);
``response=collection`` stores the graph as a lazy job instead and redirects (303) to its
collection, whose tiles, maps and coverages then evaluate only what each request asks for
(Part 3 "collection output"). A single process (``/processes/{id}/execution`` with
``inputs``) runs as a one-node openEO graph.
"""

from __future__ import annotations

from flask import jsonify, redirect

from tileserver import params
from tileserver.errors import NotFound, ProcessGraphMissing, TileserverError
from tileserver.graph.specs import load_spec
from tileserver.jobs import usecases as jobs
from tileserver.processes import supported_v1
from tileserver.web.common import current_user, json_body, result_file, runtime
from tileserver.web.ogc.ogcapi.base import (
    JSON,
    REL,
    arg,
    bp,
    document,
    link,
    root,
    self_links,
)

#: The process that runs an openEO process graph (Part 3, ``/req/openeo-workflows``).
OPENEO = "OpenEO"
#: ``response`` values: synchronous results, or a collection / landing page (Part 3).
RESPONSES = ("document", "raw", "collection", "landingPage")


def _execute_link(pid: str) -> dict:
    return link(f"{root()}/processes/{pid}/execution", REL + "execute", JSON,
                f"Execute {pid}")


def _summary(pid: str, spec: dict) -> dict:
    return {
        "id": pid,
        "title": spec.get("summary") or pid,
        "description": (spec.get("description") or "")[:2000],
        "version": "1.0.0",
        "keywords": list(spec.get("categories") or []),
        "jobControlOptions": ["sync-execute"],
        "outputTransmission": ["value"],
        "links": [link(f"{root()}/processes/{pid}", "self", JSON, pid), _execute_link(pid)],
    }


def _openeo_spec() -> dict:
    return {
        "summary": "Execute an openEO process graph",
        "description": "Runs an openEO 1.x process graph (Part 3 openEO workflows). The "
                       "body is an openEO process {\"process_graph\": {...}} (or "
                       "{\"process\": {...}} as in openEO POST /result). Synchronously it "
                       "answers what POST /result answers; with response=collection it "
                       "stores the graph as a lazy job and redirects to its collection "
                       "(tiles, maps, coverages computed per request).",
        "categories": ["openeo", "workflow"],
        "parameters": [{"name": "process_graph", "description": "The openEO process graph "
                        "(flat, with one result node).", "schema": {"type": "object"}}],
        "returns": {"description": "The result of the graph's save_result (GeoTIFF by "
                    "default), or its JSON value.", "schema": {}},
    }


def _spec(pid: str) -> dict:
    if pid == OPENEO:
        return _openeo_spec()
    if pid not in supported_v1():
        raise NotFound(f"process {pid[:64]!r} does not exist", locator="processId")
    spec = load_spec(pid)
    if not spec:
        raise NotFound(f"process {pid[:64]!r} has no description", locator="processId")
    return spec


@bp.get("/ogcapi/processes")
def processes():
    """Every process: ``OpenEO`` (process graphs) and the openEO processes."""
    items = [_summary(OPENEO, _openeo_spec())]
    for pid in supported_v1():
        spec = load_spec(pid)
        if spec:
            items.append(_summary(pid, spec))
    doc = {"processes": items, "links": self_links(f"{root()}/processes", "Processes")}
    return document(doc, "processes.html", "Processes")


@bp.get("/ogcapi/processes/<process_id>")
def process(process_id: str):
    """An OGC process description of an openEO process (its parameters as inputs)."""
    pid = params.text(process_id, "processId", max_length=200)
    spec = _spec(pid)
    doc = _summary(pid, spec)
    doc["inputs"] = {
        p["name"]: {"title": p["name"], "description": p.get("description") or "",
                    "schema": p.get("schema") or {}, "minOccurs": 0 if p.get("optional")
                    else 1, "maxOccurs": 1}
        for p in spec.get("parameters") or [] if isinstance(p, dict) and "name" in p}
    returns = spec.get("returns") or {}
    doc["outputs"] = {"result": {"title": "result", "description": returns.get(
        "description") or "", "schema": returns.get("schema") or {}}}
    doc["links"] = [*self_links(f"{root()}/processes/{pid}", pid), _execute_link(pid)]
    return document(doc, "generic.html", doc["title"])


def _graph_of(pid: str, body: dict) -> dict:
    """The openEO process graph of an execution request."""
    if pid == OPENEO:
        process_ = body.get("process") if isinstance(body.get("process"), dict) else body
        graph = process_.get("process_graph")
        if graph is None and body and all(isinstance(n, dict) and "process_id" in n
                                          for n in body.values()):
            graph = body  # the flat graph itself
        if not isinstance(graph, dict) or not graph:
            raise ProcessGraphMissing("the body needs an openEO process: "
                                      "{\"process_graph\": {...}}", locator="process_graph")
        return graph
    _spec(pid)
    inputs = body.get("inputs", {})
    if not isinstance(inputs, dict):
        raise TileserverError("'inputs' must be an object", locator="inputs")
    arguments = {k: (v["value"] if isinstance(v, dict) and set(v) == {"value"} else v)
                 for k, v in inputs.items()}
    return {"node": {"process_id": pid, "arguments": arguments, "result": True}}


def _response_mode(body: dict) -> str:
    mode = arg("response")
    if mode is None and isinstance(body.get("response"), str):
        mode = params.text(body["response"], "response", max_length=40)
    mode = mode or "document"
    if mode not in RESPONSES:
        raise TileserverError(f"response={mode[:40]!r} is not supported; use "
                              f"{', '.join(RESPONSES)}", locator="response")
    return mode


@bp.post("/ogcapi/processes/<process_id>/execution")
def execute(process_id: str):
    """Run an openEO process graph: its result (as ``POST /result``), or a lazy job's
    collection (``response=collection``, 303 to it)."""
    pid = params.text(process_id, "processId", max_length=200)
    body = json_body()
    graph = _graph_of(pid, body)
    mode = _response_mode(body)
    rt, user = runtime(), current_user()
    if mode in ("collection", "landingPage"):
        parsed, output = jobs.parse(rt, graph, v1=True, user=user)
        if not parsed.is_raster:
            raise TileserverError("this graph computes a table, not a raster; it cannot "
                                  "be served as a collection (execute it synchronously)",
                                  locator="response")
        job = jobs.create_job(rt, user, parsed, output, **jobs.text_fields(body))
        target = f"{root()}/collections/{job['job_id']}" if mode == "collection" \
            else f"{root()}/"
        resp = redirect(target, code=303)
        resp.headers["OpenEO-Identifier"] = job["job_id"]
        return resp
    done, value = jobs.compute_value(rt, graph, user)
    if done:  # array processes only: their value as JSON, as POST /result answers
        return jsonify(value)
    parsed, output = jobs.parse(rt, graph, v1=True, user=user)
    return result_file(jobs.execute(rt, user, parsed, output), parsed.notes)
