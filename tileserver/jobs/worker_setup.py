"""What every Dask worker of the batch jobs does when it starts (a worker plugin the batch
runner registers with the scheduler: workers that join later run it too)."""

from __future__ import annotations

from distributed import WorkerPlugin

from tileserver.storage import credentials


class WorkerSetup(WorkerPlugin):
    """Static AWS keys out of the worker's environment, in the worker's main thread
    (:func:`tileserver.storage.credentials.adopt`: rasterio would otherwise build a boto3
    session for each of its in-memory datasets)."""

    name = "tileserver-worker-setup"

    def setup(self, worker) -> None:
        """Run in the worker's event loop, its main thread, before its tasks."""
        credentials.adopt()
