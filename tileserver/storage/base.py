"""The :class:`Store` interface, what it says about an object, and which store a process
uses (:func:`open_store`, :func:`store_for`: one instance per URL and process)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object: its key, size, modification time and a version tag that changes
    whenever it is rewritten (size and mtime on disk, the ETag on S3)."""

    key: str
    size: int
    modified: datetime
    version: str


def join(*parts: str) -> str:
    """A key from parts (empty parts and doubled slashes dropped)."""
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


class Store(ABC):
    """Objects under ``/``-separated keys (see the package docstring)."""

    #: ``file`` or ``s3``.
    scheme: str = ""
    #: What a message calls this store: ``s3://bucket`` or ``local disk``.
    name: str = ""
    #: The URL a worker opens the same store with (:func:`store_for`).
    url: str = ""

    # -- writing ------------------------------------------------------------------------

    @abstractmethod
    @contextmanager
    def writing(self, key: str) -> Iterator[Path]:
        """A local temporary file to write; it becomes the object ``key`` when the block
        ends without an exception (atomically: a reader sees the old object or the new one,
        never a part). An exception discards it."""

    def put(self, key: str, data: bytes | bytearray | memoryview) -> None:
        """Store ``data`` as ``key`` (atomically)."""
        with self.writing(key) as tmp:
            tmp.write_bytes(data)

    @abstractmethod
    def put_file(self, key: str, path: Path) -> None:
        """Store the local file ``path`` as ``key`` (a multipart upload for big files); the
        file is left in place."""

    # -- reading ------------------------------------------------------------------------

    @abstractmethod
    def get(self, key: str) -> bytes:
        """The bytes of ``key`` (``FileNotFoundError`` when missing)."""

    @abstractmethod
    def download(self, key: str, path: Path) -> None:
        """Copy ``key`` to the local file ``path`` (``FileNotFoundError`` when missing)."""

    @abstractmethod
    def open(self, key: str, start: int = 0, end: int | None = None) -> IO[bytes]:
        """A stream of the bytes ``start`` to ``end`` (inclusive; ``None``: to the end) of
        ``key`` (``FileNotFoundError`` when missing)."""

    @abstractmethod
    def info(self, key: str) -> ObjectInfo | None:
        """The object ``key``, or ``None``."""

    def exists(self, key: str) -> bool:
        """Whether the object ``key`` exists."""
        return self.info(key) is not None

    @abstractmethod
    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object under the folder ``prefix`` (recursively, in key order)."""

    # -- removing and moving ----------------------------------------------------------------

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object ``key`` (nothing when missing)."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> None:
        """Remove every object under the folder ``prefix``."""

    @abstractmethod
    def move_prefix(self, source: str, target: str) -> None:
        """Replace the folder ``target`` by the folder ``source`` (a rename on disk; copies
        on the store's side, then deletes, on S3)."""

    # -- for others to read -------------------------------------------------------------------

    @abstractmethod
    def local_path(self, key: str) -> Path | None:
        """The file of ``key`` on this host's disk, when the store is a disk."""

    @abstractmethod
    def href(self, key: str) -> str:
        """What the data layer reads: a local path, or ``s3://bucket/key``."""

    def url_for_gdal(self, key: str) -> str:
        """The path GDAL opens: a local path, or ``/vsis3/bucket/key``."""
        href = self.href(key)
        return "/vsis3/" + href.removeprefix("s3://") if href.startswith("s3://") else href

    def presigned_url(self, key: str, expires: int = 3600) -> str | None:
        """A URL that downloads ``key`` without credentials for ``expires`` seconds, or
        ``None`` (a disk has none: the server streams the file)."""
        return None

    def size_of(self, prefix: str) -> int:
        """The bytes of every object under ``prefix``."""
        return sum(o.size for o in self.list(prefix))
