"""The default store: files under a folder (``$TILESERVER_HOME``), keys as relative paths."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from tileserver.storage.base import ObjectInfo, Store


def temp_path(target: Path) -> Path:
    """A hidden temporary name beside ``target`` (the same file system: renamed over it)."""
    return target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")


@contextmanager
def atomic_file(target: Path) -> Iterator[Path]:
    """Write a temporary file beside ``target``, renamed over it when the block ends
    without an exception (removed otherwise): ``target`` is never seen half written."""
    tmp = temp_path(target)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _info(key: str, path: Path) -> ObjectInfo:
    st = path.stat()
    return ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC),
                      f"{st.st_size}:{st.st_mtime_ns}")


class LocalStore(Store):
    """Objects as files under ``root``."""

    scheme = "file"
    name = "local disk"

    def __init__(self, root: Path):
        self.root = Path(root)
        self.url = str(self.root)

    def path(self, key: str) -> Path:
        """The file of ``key``."""
        return self.root / key if key else self.root

    def local_path(self, key: str) -> Path | None:
        return self.path(key)

    def href(self, key: str) -> str:
        return str(self.path(key))

    @contextmanager
    def writing(self, key: str) -> Iterator[Path]:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(target) as tmp:
            yield tmp

    def put_file(self, key: str, path: Path) -> None:
        target = self.path(key)
        if Path(path).resolve() == target.resolve():
            return  # written in place (a worker sharing this disk)
        with self.writing(key) as tmp:
            shutil.copyfile(path, tmp)

    def get(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def download(self, key: str, path: Path) -> None:
        source = self.path(key)
        if Path(path).resolve() != source.resolve():
            shutil.copyfile(source, path)

    def open(self, key: str, start: int = 0, end: int | None = None) -> IO[bytes]:
        fh = self.path(key).open("rb")
        fh.seek(start)
        return fh

    def info(self, key: str) -> ObjectInfo | None:
        path = self.path(key)
        try:
            return _info(key, path) if path.is_file() else None
        except OSError:
            return None

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        folder = self.path(prefix)
        if not folder.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames.sort()
            for name in sorted(filenames):
                full = Path(dirpath) / name
                key = full.relative_to(self.root).as_posix()
                try:
                    yield _info(key, full)
                except OSError:
                    continue  # removed meanwhile

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> None:
        shutil.rmtree(self.path(prefix), ignore_errors=True)

    def move_prefix(self, source: str, target: str) -> None:
        dest = self.path(target)
        shutil.rmtree(dest, ignore_errors=True)
        dest.parent.mkdir(parents=True, exist_ok=True)
        self.path(source).rename(dest)
