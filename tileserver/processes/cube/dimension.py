"""Dimensions and labels: ``drop_dimension``, ``rename_labels``."""

from __future__ import annotations

import numpy as np

from tileserver.processes.cube.common import DATA_PARAM, TIME_DIMS, invalid_argument
from tileserver.processes.registry import Param, process


def _drop_meta(ctx, node):
    child = ctx.meta(node.args["data"])
    name = node.args.get("name")
    if name in TIME_DIMS:
        if child.reduced:
            raise invalid_argument(node, "name", "the data has no temporal dimension (it was "
                                   "reduced)", "DimensionNotAvailable")
        return child.but(reduced=True)
    if child.has_bands and name == child.band_dim:
        if len(child.bands) != 1:
            raise invalid_argument(
                node, "name", f"dimension {name!r} has {len(child.bands)} labels "
                f"({', '.join(child.bands)}); only a dimension with one label "
                "can be dropped", "DimensionLabelCountMismatch")
        return child.but(has_bands=False)
    if name in ("x", "y"):
        raise invalid_argument(node, "name", "the spatial dimensions cannot be dropped",
                               "DimensionLabelCountMismatch")
    raise invalid_argument(node, "name", f"no dimension {name!r}", "DimensionNotAvailable")


@process("drop_dimension", [DATA_PARAM, Param("name")], meta=_drop_meta)
def drop_dimension(ctx, node, query):
    """Drop a dimension that has one label: the single band, or the single date."""
    cube = ctx.eval(node.args["data"], query)
    if node.args["name"] not in TIME_DIMS:
        return cube
    if cube.times is not None and len(cube.times) > 1:
        raise invalid_argument(
            node, "name", f"the temporal dimension has {len(cube.times)} labels "
            "here; only a dimension with one label can be dropped (filter_temporal "
            "or reduce_dimension first)", "DimensionLabelCountMismatch")
    if cube.times is None:
        return cube
    return cube.with_data(cube.data if cube.data.shape[0] else np.full(
        (1,) + cube.data.shape[1:], np.nan, np.float32), times=None)  # one date, or none here


def _rename_meta(ctx, node):
    child = ctx.meta(node.args["data"])
    if node.args.get("dimension") != child.band_dim:
        raise invalid_argument(node, "dimension", f"only the {child.band_dim} dimension can be "
                               "renamed")
    target, source = node.args.get("target"), node.args.get("source") or []
    if isinstance(source, list):  # apply_dimension's labels 0, 1, … are numbers in openEO
        source = [str(v) if isinstance(v, int) and not isinstance(v, bool)
                  and str(v) in child.bands else v for v in source]
    if not isinstance(target, list) or not all(isinstance(t, str) for t in target):
        raise invalid_argument(node, "target", "expected a list of new band names")
    if not source:
        if len(target) != len(child.bands):
            raise invalid_argument(
                node, "target", f"{len(target)} names for {len(child.bands)} bands")
        mapping = dict(zip(child.bands, target, strict=True))
    else:
        if len(source) != len(target):
            raise invalid_argument(node, "source", "source and target must have the same length",
                                   "LabelMismatch")
        missing = [s for s in source if s not in child.bands]
        if missing:
            raise invalid_argument(node, "source", f"unknown bands {missing}", "LabelNotAvailable")
        mapping = dict(zip(source, target, strict=True))
    bands = tuple(mapping.get(b, b) for b in child.bands)
    if len(set(bands)) != len(bands):
        raise invalid_argument(node, "target", "the new band names are not unique", "LabelExists")
    return child.but(bands=bands)


@process("rename_labels", [DATA_PARAM, Param("dimension"), Param("target"),
                           Param("source", required=False)], meta=_rename_meta)
def rename_labels(ctx, node, query):
    """New band names (the reads below still use the old ones)."""
    old, new = ctx.meta(node.args["data"]).bands, ctx.meta(node).bands
    back = dict(zip(new, old, strict=True))
    wanted = None if query.bands is None else tuple(back[b] for b in query.bands if b in back)
    cube = ctx.eval(node.args["data"], query.with_bands(wanted))
    return cube.with_data(cube.data, bands=tuple(dict(zip(old, new, strict=True))[b]
                                                 for b in cube.bands))
