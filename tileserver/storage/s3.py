"""An S3-compatible object store (AWS, MinIO, Ceph RGW; moto's server in the tests).

boto3 moves the objects: multipart uploads above ``multipart_bytes`` (s3transfer), bounded
timeouts and retries (so that an unreachable store fails fast, never hangs). GDAL reads the
rasters itself through ``/vsis3/`` (HTTP range reads, the header and block cache of remote
catalog files): :func:`gdal_config` gives it the same endpoint as boto3. The endpoint and
credentials are the usual ``AWS_*`` variables (``AWS_ENDPOINT_URL`` for a store other than
AWS, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``…) or any other source
boto3 and GDAL know (a shared credentials file, an instance role); static keys in the
environment are moved out of it at start (:mod:`tileserver.storage.credentials`).
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from tileserver.errors import StoreUnavailable
from tileserver.storage import credentials
from tileserver.storage.base import ObjectInfo, Store, join

#: GDAL variables set here (a variable the user set before wins).
_ours: set[str] = set()
_gdal_lock = threading.Lock()


def endpoint_url() -> str | None:
    """The S3 endpoint of the environment (boto3's own variables), ``None`` for AWS."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def gdal_config(endpoint: str | None) -> dict[str, str]:
    """GDAL's ``/vsis3/`` options for ``endpoint`` (a host other than AWS: path-style
    addressing, HTTP or HTTPS as the URL says)."""
    config = {}
    if endpoint:
        parts = urlsplit(endpoint)
        config.update(AWS_S3_ENDPOINT=parts.netloc + parts.path.rstrip("/"),
                      AWS_HTTPS="YES" if parts.scheme == "https" else "NO",
                      AWS_VIRTUAL_HOSTING="FALSE")
    if not (os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")):
        config["AWS_REGION"] = "us-east-1"
    return config


def configure_gdal(endpoint: str | None) -> None:
    """Point GDAL's ``/vsis3/`` at ``endpoint``, process-wide (environment variables: GDAL
    reads them in every thread); a variable the user set wins."""
    with _gdal_lock:
        for key, value in gdal_config(endpoint).items():
            if key not in os.environ or key in _ours:
                os.environ[key] = value
                _ours.add(key)


class S3Store(Store):
    """Objects under ``s3://bucket/prefix``."""

    scheme = "s3"

    def __init__(self, url: str, *, timeout: int, retries: int, multipart_bytes: int):
        import boto3  # noqa: PLC0415 - only a deployment on S3 needs it
        from boto3.s3.transfer import TransferConfig  # noqa: PLC0415
        from botocore.config import Config  # noqa: PLC0415

        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError(f"storage_url {url!r} is not s3://bucket[/prefix]")
        self.url = url
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/")
        self.name = f"s3://{self.bucket}"
        self.endpoint = endpoint_url()
        self.timeout = timeout
        config = Config(connect_timeout=timeout, read_timeout=timeout,
                        retries={"max_attempts": retries + 1, "mode": "standard"},
                        s3={"addressing_style": "path" if self.endpoint else "auto"},
                        max_pool_connections=32)
        credentials.adopt()  # when no runtime did (a command; the main thread only)
        self.client = boto3.session.Session(**credentials.boto3_keys()).client(
            "s3", endpoint_url=self.endpoint, config=config,
            region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
            or "us-east-1")
        self.transfer = TransferConfig(multipart_threshold=multipart_bytes,
                                       multipart_chunksize=max(5 * 1024 * 1024,
                                                               multipart_bytes // 4),
                                       use_threads=True, max_concurrency=4)
        configure_gdal(self.endpoint)

    # -- keys ---------------------------------------------------------------------------

    def key(self, key: str) -> str:
        """The object key in the bucket."""
        return join(self.prefix, key)

    def href(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.key(key)}"

    def local_path(self, key: str) -> Path | None:
        return None

    # -- errors ---------------------------------------------------------------------------

    @contextmanager
    def _errors(self, what: str, key: str = "") -> Iterator[None]:
        """boto3's errors as ``FileNotFoundError`` (a missing object) or
        :class:`StoreUnavailable` (naming the store, never its credentials)."""
        from boto3.exceptions import Boto3Error  # noqa: PLC0415
        from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

        try:
            yield
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("NoSuchKey", "404", "NotFound"):
                raise FileNotFoundError(f"no object {key!r} in {self.name}") from None
            raise StoreUnavailable(f"the object store {self.name} refused to {what}: "
                                   f"{code or exc}") from exc
        except Boto3Error as exc:  # a failed upload or download (s3transfer)
            reason = str(exc).rsplit(": ", 1)[-1]
            raise StoreUnavailable(f"the object store {self.name} failed to {what} "
                                   f"{key!r}: {reason}") from exc
        except BotoCoreError as exc:
            raise StoreUnavailable(f"the object store {self.name} cannot be reached "
                                   f"({what}): {type(exc).__name__}") from exc

    # -- writing ------------------------------------------------------------------------

    @contextmanager
    def writing(self, key: str) -> Iterator[Path]:
        fd, name = tempfile.mkstemp(prefix=".tileserver-", suffix="-" + Path(key).name)
        os.close(fd)
        tmp = Path(name)
        try:
            yield tmp
            self.put_file(key, tmp)
        finally:
            tmp.unlink(missing_ok=True)

    def put(self, key: str, data: bytes | bytearray | memoryview) -> None:
        with self._errors("store an object", key):
            self.client.put_object(Bucket=self.bucket, Key=self.key(key), Body=bytes(data))

    def put_file(self, key: str, path: Path) -> None:
        with self._errors("store an object", key):
            self.client.upload_file(str(path), self.bucket, self.key(key),
                                    Config=self.transfer)

    # -- reading ------------------------------------------------------------------------

    def get(self, key: str) -> bytes:
        with self._errors("read an object", key):
            return self.client.get_object(Bucket=self.bucket, Key=self.key(key))["Body"].read()

    def download(self, key: str, path: Path) -> None:
        with self._errors("read an object", key):
            self.client.download_file(self.bucket, self.key(key), str(path),
                                      Config=self.transfer)

    def open(self, key: str, start: int = 0, end: int | None = None) -> IO[bytes]:
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key(key)}
        if start or end is not None:
            args["Range"] = f"bytes={start}-{'' if end is None else end}"
        with self._errors("read an object", key):
            return self.client.get_object(**args)["Body"]

    def info(self, key: str) -> ObjectInfo | None:
        try:
            with self._errors("read an object", key):
                head = self.client.head_object(Bucket=self.bucket, Key=self.key(key))
        except FileNotFoundError:
            return None
        return ObjectInfo(key, int(head["ContentLength"]), head["LastModified"],
                          str(head.get("ETag", "")).strip('"'))

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        folder = self.key(prefix)
        folder = folder + "/" if folder else ""
        strip = len(self.prefix) + 1 if self.prefix else 0
        with self._errors("list objects", prefix):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=folder)
            for page in pages:
                for obj in page.get("Contents", []):
                    yield ObjectInfo(obj["Key"][strip:], int(obj["Size"]), obj["LastModified"],
                                     str(obj.get("ETag", "")).strip('"'))

    # -- removing and moving ----------------------------------------------------------------

    def delete(self, key: str) -> None:
        with self._errors("delete an object", key):
            self.client.delete_object(Bucket=self.bucket, Key=self.key(key))

    def delete_prefix(self, prefix: str) -> None:
        keys = [self.key(o.key) for o in self.list(prefix)]
        with self._errors("delete objects", prefix):
            for i in range(0, len(keys), 1000):
                self.client.delete_objects(Bucket=self.bucket, Delete={
                    "Objects": [{"Key": k} for k in keys[i:i + 1000]], "Quiet": True})

    def move_prefix(self, source: str, target: str) -> None:
        self.delete_prefix(target)
        moved = list(self.list(source))
        with self._errors("copy objects", source):
            for obj in moved:
                rel = obj.key[len(source.strip("/")) + 1:]
                self.client.copy({"Bucket": self.bucket, "Key": self.key(obj.key)},
                                 self.bucket, self.key(join(target, rel)),
                                 Config=self.transfer)
        self.delete_prefix(source)

    # -- for others to read -------------------------------------------------------------------

    def presigned_url(self, key: str, expires: int = 3600) -> str | None:
        with self._errors("sign a URL", key):
            return self.client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": self.key(key)},
                ExpiresIn=expires)
