"""The worker plugin of the batch jobs on a real LocalCluster: the Dask worker processes
apply the server's ``dataset_handles`` setting, also a worker that joins later."""

from __future__ import annotations

import pytest

from tests.support.batch import batch_settings
from tileserver.data import handles
from tileserver.web.app import create_app

#: A ``dataset_handles`` none of the defaults has.
HANDLES = 7


def _capacity() -> int:
    """Run on a worker: its pool's bound of idle handles."""
    from tileserver.data import handles as worker_handles

    return worker_handles.datasets().max_idle


@pytest.fixture
def runner(tmp_path, small_catalog):
    """The batch runner of an app whose embedded LocalCluster has one worker process."""
    before = handles.datasets().max_idle  # the app configures this process's pool too
    settings = batch_settings(tmp_path / "home", [small_catalog], None,
                              dataset_handles=HANDLES, batch_workers=1,
                              batch_worker_memory="1GiB")
    app = create_app(settings)
    yield app.extensions["tileserver"].batch
    app.extensions["tileserver"].close()
    handles.configure(before)


def test_dask_workers_apply_dataset_handles(runner):
    assert HANDLES != handles.DEFAULT_MAX_IDLE
    client = runner.client
    # a task on a worker process (spawned: it starts with the module's default)
    assert client.submit(_capacity, pure=False).result(timeout=60) == HANDLES
    # a worker that joins later runs the plugin too
    runner._cluster.scale(2)
    client.wait_for_workers(2, timeout=60)
    assert list(client.run(_capacity).values()) == [HANDLES, HANDLES]
