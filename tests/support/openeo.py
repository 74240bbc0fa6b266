"""Helpers of the openEO 1.x tests: where the openEO reference files are.

``../shared/openeo`` beside the repository (CI lays it there), or ``TILESERVER_OPENEO_SHARED``
(for a checkout elsewhere, e.g. a git worktree).
"""

from __future__ import annotations

from pathlib import Path

from tests.support.hardening import BBOX
from tests.support.requirements import openeo_shared_dir, require

REPO = Path(__file__).resolve().parents[2]


def shared_openeo() -> Path:
    """The folder of the openEO reference files; skips the test (fails it under CI) when
    it is absent."""
    require("openeo-shared")
    return openeo_shared_dir()


def ndvi_reduce_graph(reducer: str = "min", fmt: str = "GTiff",
                      export: dict | None = None) -> dict:
    """A 1.x flat graph: NDVI of ``TEST`` over the small bbox of the hardening tests
    (:data:`tests.support.hardening.BBOX`) in May 2020, reduced over time by ``reducer``,
    saved as ``fmt``; with ``export``, the saved result goes on to ``export_workspace``
    with those arguments (and is the graph's result)."""
    extent = {"west": BBOX["left"], "east": BBOX["right"], "south": BBOX["bottom"],
              "north": BBOX["top"], "crs": "EPSG:32632"}
    graph = {
        "load": {"process_id": "load_collection", "arguments": {
            "id": "TEST", "spatial_extent": extent,
            "temporal_extent": ["2020-05-01", "2020-06-01"], "bands": ["B04", "B08"]}},
        "ndvi": {"process_id": "ndvi", "arguments": {"data": {"from_node": "load"}}},
        "reduce": {"process_id": "reduce_dimension", "arguments": {
            "data": {"from_node": "ndvi"}, "dimension": "t", "reducer": {"process_graph": {
                "r": {"process_id": reducer, "arguments": {"data": {"from_parameter": "data"}},
                      "result": True}}}}},
        "save": {"process_id": "save_result", "arguments": {
            "data": {"from_node": "reduce"}, "format": fmt}, "result": export is None},
    }
    if export is not None:
        graph["export"] = {"process_id": "export_workspace", "arguments": {
            "data": {"from_node": "save"}, **export}, "result": True}
    return graph
