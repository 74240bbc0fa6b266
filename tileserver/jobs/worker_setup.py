"""What every Dask worker of the batch jobs does when it starts (a worker plugin the batch
runner registers with the scheduler: workers that join later run it too)."""

from __future__ import annotations

import os

from distributed import WorkerPlugin

from tileserver import metrics
from tileserver.data import handles
from tileserver.storage import credentials


class WorkerSetup(WorkerPlugin):
    """Static AWS keys out of the worker's environment, in the worker's main thread
    (:func:`tileserver.storage.credentials.adopt`: rasterio would otherwise build a boto3
    session for each of its in-memory datasets), and the server's settings a worker process
    applies as the server's own processes do (:class:`tileserver.runtime.Runtime`): the
    ``dataset_handles`` bound of the pool of open datasets. The plugin carries the values
    (pickled to the scheduler and on to each worker), not the settings object."""

    name = "tileserver-worker-setup"

    def __init__(self, dataset_handles: int):
        self.dataset_handles = int(dataset_handles)

    def setup(self, worker) -> None:
        """Run in the worker's event loop, its main thread, before its tasks."""
        credentials.adopt()
        handles.configure(self.dataset_handles)

    def teardown(self, worker) -> None:
        """A worker that stops drops its live gauges from a multiprocess ``/metrics`` (its
        counters stay counted)."""
        metrics.process_exited(os.getpid())
