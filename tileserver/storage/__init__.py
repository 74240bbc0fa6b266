"""Where everything that must outlive a process is kept: batch results (COGs, per-date and
NetCDF files, STAC items, the parts workers write), the progress of a job's last step and
user files.

One small interface, :class:`~tileserver.storage.base.Store`, with two backends:

- :class:`~tileserver.storage.local.LocalStore` (the default): files under
  ``$TILESERVER_HOME`` at the paths they always had (``results/<job_id>/…``,
  ``files/<user_id>/…``);
- :class:`~tileserver.storage.s3.S3Store`: any S3-compatible object store (AWS, MinIO, Ceph
  RGW) chosen by ``storage_url: s3://bucket/prefix`` (``TILESERVER_STORAGE_URL``); its
  endpoint and credentials come from the usual ``AWS_*`` variables (``AWS_ENDPOINT_URL``,
  ``AWS_ACCESS_KEY_ID``…), through boto3 for objects and GDAL's ``/vsis3/`` for rasters;
  static keys are taken out of the environment at start
  (:mod:`~tileserver.storage.credentials`: rasterio would be slow with them there).

Keys are relative ``/``-separated paths (``results/<job_id>/result.tif``). A store owns the
rule "a reader never sees half an object": :meth:`Store.writing` hands out a local temporary
file that becomes the object only once complete (a rename on disk, an upload, multipart for
big files, to S3).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from tileserver.storage.base import ObjectInfo, Store, join
from tileserver.storage.local import LocalStore, atomic_file

__all__ = ["LocalStore", "ObjectInfo", "Store", "atomic_file", "join", "open_store",
           "store_for", "store_options"]

_STORES: dict[tuple, Store] = {}
_LOCK = threading.Lock()


def store_for(url: str, **options: Any) -> Store:
    """The store of ``url`` in this process: ``s3://bucket/prefix``, or a local folder
    (a path or ``file://`` URL). ``options`` are the :class:`S3Store`'s (timeouts…)."""
    key = (url, tuple(sorted(options.items())))
    with _LOCK:
        store = _STORES.get(key)
        if store is None:
            if url.startswith("s3://"):
                from tileserver.storage.s3 import S3Store  # noqa: PLC0415 - boto3 on demand

                store = S3Store(url, **options)
            else:
                store = LocalStore(Path(url.removeprefix("file://")))
            _STORES[key] = store
        return store


def store_options(settings) -> dict[str, Any]:
    """The ``storage_*`` settings an :class:`S3Store` takes (picklable, for workers)."""
    return {"timeout": settings.storage_timeout, "retries": settings.storage_retries,
            "multipart_bytes": settings.storage_multipart_bytes}


def open_store(settings) -> Store:
    """The store of a process's settings: ``storage_url``, else ``$TILESERVER_HOME``."""
    if settings.storage_url:
        return store_for(settings.storage_url, **store_options(settings))
    return store_for(str(Path(settings.home).resolve()))
