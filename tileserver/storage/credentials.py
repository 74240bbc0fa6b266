"""Static AWS keys of the environment, kept in the process but out of ``os.environ``.

rasterio (1.4.1 and later, rasterio/rasterio#3331) builds a new boto3 session in every
``rasterio.Env()`` made without one whenever ``AWS_ACCESS_KEY_ID`` and
``AWS_SECRET_ACCESS_KEY`` are environment variables, 10-30 ms each (botocore registering its
handlers). Its own code makes such an environment for every in-memory dataset, four per
``reproject`` of arrays: a lazy tile paid it on every warp, inside an outer environment or not.

:func:`adopt`, at process start (:class:`tileserver.runtime.Runtime`, each Dask worker through
the batch runner's worker plugin, :class:`~tileserver.storage.s3.S3Store`), takes the keys
(and ``AWS_SESSION_TOKEN``) out of ``os.environ`` and hands them on, unchanged:

- to GDAL as process-wide configuration options (``/vsis3/`` reads options and environment
  variables alike, every thread sees them);
- to boto3 as the explicit keys of the store's session (:func:`boto3_keys`);
- to the Dask workers the process starts itself (:func:`child_env`; the UDF sandbox gets a
  fixed environment and never sees them).

Keys from anywhere else (a shared credentials file, a profile, SSO, an instance or task role)
are not environment variables: nothing to do, rasterio does not look for them per
environment. Only the main thread adopts (GDAL options set in another thread would be that
thread's alone); elsewhere the variables stay where they are and everything works as before.
"""

from __future__ import annotations

import os
import threading

from rasterio._env import del_gdal_config  # rasterio.env imports it too, but does not export it
from rasterio.env import set_gdal_config

#: The variables moved: rasterio looks for the first two, the third belongs with them.
KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")

_adopted: dict[str, str] = {}
_lock = threading.Lock()


def in_environment() -> bool:
    """Whether static keys are environment variables (what makes rasterio slow)."""
    return "AWS_ACCESS_KEY_ID" in os.environ and "AWS_SECRET_ACCESS_KEY" in os.environ


def adopt() -> bool:
    """Move static AWS keys from the environment into GDAL's configuration and this module
    (newer keys in the environment replace adopted ones). Returns whether the process holds
    adopted keys now. Cheap when there is nothing to do; call it at process start."""
    with _lock:
        if not in_environment() or threading.current_thread() is not threading.main_thread():
            return bool(_adopted)
        found = {key: os.environ[key] for key in KEYS if key in os.environ}
        for key in KEYS:  # GDAL first: no moment without them
            if key in found:
                set_gdal_config(key, found[key], normalize=False)
            elif key in _adopted:
                del_gdal_config(key)
        _adopted.clear()
        _adopted.update(found)
        for key in found:
            del os.environ[key]
        return True


def boto3_keys() -> dict[str, str]:
    """The adopted keys as boto3 session arguments (empty: boto3 finds its own)."""
    return {key.lower(): value for key, value in _adopted.items()}


def child_env() -> dict[str, str]:
    """The adopted keys as the environment variables of a child process that needs them
    (a Dask worker started by this process: it adopts them in turn)."""
    return dict(_adopted)


def release() -> None:
    """Give adopted keys back to the environment and take them out of GDAL's configuration
    (the tests: a test's environment is what its fixtures made it)."""
    with _lock:
        if threading.current_thread() is not threading.main_thread():
            return
        for key, value in _adopted.items():
            del_gdal_config(key)
            os.environ.setdefault(key, value)
        _adopted.clear()
