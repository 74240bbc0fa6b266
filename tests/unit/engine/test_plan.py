"""The planner (tileserver.engine.plan): values read per data leaf (bands x dates under the
view), output, memory; the same figures as the reads the engine really does."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.support.hardening import BBOX, ndvi_graph
from tileserver.datacube.view import View
from tileserver.engine.plan import Plan
from tileserver.runtime import Runtime
from tileserver.settings import load_settings


@pytest.fixture
def engine(small_catalog, tmp_path):
    rt = Runtime(load_settings(home=str(tmp_path), catalog=str(small_catalog)))
    yield rt.engine
    rt.close()


def test_plan_counts_the_bands_and_dates_the_engine_reads(engine):
    graph = engine.parse(ndvi_graph())
    plan = engine.plan(graph)
    assert isinstance(plan, Plan)
    assert (plan.view.width, plan.view.height) == (256, 256)
    # B04 and B08, the days of May 2020 under the bbox (two items share 2020-05-11)
    assert plan.bands == 2 and plan.dates == 3
    assert plan.pixels_read == 256 * 256 * 2 * 3
    assert plan.out_dates == 1 and plan.reduced  # min_time
    cube = engine.evaluate(graph, plan.view, purpose="batch")
    assert cube.data.shape[-2:] == (256, 256)
    # the memory estimate covers the cube read and the result
    assert plan.memory_bytes > 256 * 256 * 2 * 3 * 4 + cube.data.nbytes


def test_plan_of_a_smaller_view_and_one_date(engine):
    graph = engine.parse(ndvi_graph(reduce=None))
    view = View("EPSG:32632", (BBOX["left"], BBOX["bottom"], BBOX["left"] + 640,
                               BBOX["bottom"] + 640), 64, 64)
    day = (datetime(2020, 5, 11, tzinfo=UTC), datetime(2020, 5, 12, tzinfo=UTC))
    plan = engine.plan(graph, view, day)
    assert plan.dates == 1 and plan.pixels_read == 64 * 64 * 2
    assert plan.out_dates == 1 and not plan.reduced
    whole = engine.plan(graph, view)
    assert whole.out_dates == 3 and whole.memory_bytes > plan.memory_bytes
    assert "smaller bbox" in whole.shrink_hint(1024) and "3 date(s)" in whole.shrink_hint(1)
