"""User files: one folder per user under ``$TILESERVER_HOME/files/<user_id>/`` (no HTTP).

Every path a client gives goes through :meth:`UserFiles.resolve`, which refuses absolute
paths, ``..`` and ``.`` components, hidden names (they are reserved for upload temp
files), NUL and control characters, backslashes, characters outside a conservative set,
over-long names, and anything whose real path (symlinks followed) leaves the user's
folder. Uploads are streamed to a temporary file and become the target only once complete
and within the size limit (the store's rule, :meth:`tileserver.storage.Store.writing`), so
a failed or refused upload never damages what is already stored.

With an object store (``storage_url``) the files are objects under ``files/<user_id>/``
(:class:`ObjectUserFiles`, the same checks of every path); processes that read a user file
(zonal statistics' regions, UDF scripts) get a local copy (:func:`resolve_graph_path`).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tileserver.errors import Conflict, FileNotFound, LimitExceeded, TileserverError
from tileserver.settings import load_settings
from tileserver.storage import Store, atomic_file, join, store_for, store_options

#: Prefix of region paths in process graphs: ``/users/<user_id>/files/<path>``.
_GRAPH_PATH = re.compile(r"^/users/(?P<user>[^/]+)/files(?:/(?P<path>.*))?$")
#: One path component: letters (any script), digits and a few punctuation marks.
_COMPONENT = re.compile(r"^[\w\-.,+=@() ]+$")
MAX_COMPONENT_BYTES = 200
MAX_PATH_BYTES = 1024
MAX_DEPTH = 16
_CHUNK = 1024 * 1024
_TMP_PREFIX = ".upload-"


class InvalidPath(TileserverError):
    """A user file path that is not allowed (traversal, absolute, weird characters…)."""

    code = "FilePathInvalid"


@dataclass(frozen=True)
class FileInfo:
    """A stored file: its path relative to the user's folder, size and modification time."""

    path: str
    size: int
    modified: datetime

    def to_json(self) -> dict:
        """The openEO file entry (0.0.2 ``name``; ``path`` as in later versions)."""
        return {
            "name": self.path,
            "path": self.path,
            "size": self.size,
            "modified": self.modified.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }


def files_root(home: str | os.PathLike) -> Path:
    """Folder holding every user's folder: ``<home>/files``."""
    return Path(home) / "files"


def check_component(name: str, what: str = "name") -> str:
    """One path component, or :class:`InvalidPath` saying why it is refused."""
    if not name:
        raise InvalidPath(f"empty {what} (a doubled or trailing '/')")
    if "\x00" in name or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise InvalidPath(f"{what} {name!r} contains a NUL or control character")
    if name in (".", ".."):
        raise InvalidPath(f"{what} {name!r}: '.' and '..' are not allowed")
    if name.startswith("."):
        raise InvalidPath(f"{what} {name!r}: names starting with '.' are reserved")
    if len(name.encode("utf-8")) > MAX_COMPONENT_BYTES:
        raise InvalidPath(f"{what} is longer than {MAX_COMPONENT_BYTES} bytes")
    if not _COMPONENT.match(name) or name != name.strip():
        raise InvalidPath(
            f"{what} {name!r} has characters outside letters, digits, space and "
            "'-_.,+=@()' (or leading/trailing spaces)"
        )
    return name


def split_path(path: str) -> list[str]:
    """Components of a relative user path, each checked (raises :class:`InvalidPath`)."""
    if not isinstance(path, str):
        raise InvalidPath("a file path must be a string")
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise InvalidPath(f"path longer than {MAX_PATH_BYTES} bytes")
    if path.startswith("/") or path.startswith("~") or re.match(r"^[A-Za-z]:", path):
        raise InvalidPath(f"absolute path {path!r} not allowed; give a path relative to "
                          "your files folder")
    if "\\" in path:
        raise InvalidPath(f"path {path!r} contains a backslash; use '/'")
    parts = path.split("/")
    if parts and parts[-1] == "":
        parts = parts[:-1]  # a trailing slash names a folder
    if len(parts) > MAX_DEPTH:
        raise InvalidPath(f"path deeper than {MAX_DEPTH} folders")
    return [check_component(p, "path component") for p in parts]


def _inside(root: Path, target: Path) -> bool:
    try:
        target.relative_to(root)
    except ValueError:
        return False
    return True


class UserFiles:
    """The folder of one user, with safe resolution, listing, streamed upload and delete."""

    def __init__(self, root: str | os.PathLike, user_id: str, max_bytes: int):
        check_component(user_id, "user id")
        self.user_id = user_id
        self.base = Path(root) / user_id
        self.max_bytes = int(max_bytes)

    # -- paths ------------------------------------------------------------------------

    def resolve(self, path: str, *, must_exist: bool = False) -> Path:
        """Absolute path of ``path`` inside the user's folder (symlinks must stay inside).

        ``""`` is the folder itself. Raises :class:`InvalidPath` (400) for refused names and
        :class:`FileNotFound` (404) when ``must_exist`` and nothing is there.
        """
        parts = split_path(path) if path else []
        base = self.base.resolve()
        target = base.joinpath(*parts)
        real = Path(os.path.realpath(target))
        if not _inside(base, real):
            raise InvalidPath(f"path {path!r} leads outside your files folder")
        if must_exist and not (target.is_file() or target.is_dir()):
            raise FileNotFound(f"no file {path!r} in the files of user {self.user_id}")
        return target

    def relative(self, target: Path) -> str:
        """The user-facing path of an absolute ``target``."""
        return target.relative_to(self.base.resolve()).as_posix()

    # -- operations -------------------------------------------------------------------

    def list(self, path: str = "") -> list[FileInfo]:
        """Every regular file under ``path`` (recursively), sorted by path."""
        folder = self.resolve(path) if path else self.base
        if path and not folder.is_dir():
            raise FileNotFound(f"no folder {path!r} in the files of user {self.user_id}")
        if not folder.is_dir():
            return []
        base = self.base.resolve()
        out = []
        for dirpath, dirnames, filenames in os.walk(folder.resolve(), followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                full = Path(dirpath) / name
                if name.startswith(".") or full.is_symlink():
                    continue
                st = full.stat()
                out.append(FileInfo(full.relative_to(base).as_posix(), st.st_size,
                                    datetime.fromtimestamp(st.st_mtime, UTC)))
        return sorted(out, key=lambda f: f.path)

    def info(self, path: str) -> FileInfo:
        """Size and date of one file."""
        target = self.resolve(path, must_exist=True)
        st = target.stat()
        return FileInfo(self.relative(target.resolve()), st.st_size,
                        datetime.fromtimestamp(st.st_mtime, UTC))

    def open_file(self, path: str) -> Path:
        """The path of an existing regular file (404 for folders and missing files)."""
        target = self.resolve(path, must_exist=True)
        if not target.is_file():
            raise FileNotFound(f"{path!r} is a folder, not a file")
        return target

    def write(self, path: str, chunks: Iterable[bytes], declared_size: int | None = None
              ) -> tuple[FileInfo, bool]:
        """Store a file from a stream of byte chunks; returns ``(info, created)``.

        The bytes go to a temporary file next to the target, renamed over it when complete.
        More than ``max_bytes`` (declared or actually sent) raises :class:`LimitExceeded`
        (413) and leaves any previous version untouched.
        """
        if not path or path.endswith("/"):
            raise InvalidPath("a file path is needed, not a folder")
        if declared_size is not None and declared_size > self.max_bytes:
            raise self._too_large()
        target = self.resolve(path)
        if target.is_dir():
            raise Conflict(f"{path!r} is a folder")
        for parent in list(target.parents)[: len(split_path(path)) - 1]:
            if parent.exists() and not parent.is_dir():
                raise Conflict(f"{self.relative(parent)!r} is a file, not a folder")
        target.parent.mkdir(parents=True, exist_ok=True)
        # re-check after creating folders: a symlinked folder must not lead outside
        self.resolve(path)
        created = not target.exists()
        with atomic_file(target) as tmp:
            _copy(chunks, tmp, self.max_bytes, self._too_large)
            os.chmod(tmp, 0o644)
        return self.info(path), created

    def delete(self, path: str) -> None:
        """Remove a file, or a folder with everything in it."""
        if not path:
            raise InvalidPath("give the path of a file or folder to delete")
        target = self.resolve(path, must_exist=True)
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink()

    def _too_large(self) -> LimitExceeded:
        return LimitExceeded(
            f"file larger than the upload limit of {self.max_bytes} bytes"
        )


def _copy(chunks: Iterable[bytes], target: Path, limit: int, too_large) -> int:
    """Write ``chunks`` to ``target``; more than ``limit`` bytes raises ``too_large()``."""
    written = 0
    with open(target, "wb") as out:
        for chunk in chunks:
            written += len(chunk)
            if written > limit:
                raise too_large()
            out.write(chunk)
    return written


class ObjectUserFiles:
    """The files of one user as objects ``files/<user_id>/<path>`` of an object store
    (the interface of :class:`UserFiles`; folders are key prefixes)."""

    def __init__(self, store: Store, user_id: str, max_bytes: int):
        check_component(user_id, "user id")
        self.store = store
        self.user_id = user_id
        self.prefix = join(FILES, user_id)
        self.max_bytes = int(max_bytes)

    def key(self, path: str) -> str:
        """The object key of a user path (every component checked)."""
        return join(self.prefix, *(split_path(path) if path else []))

    def is_folder(self, path: str) -> bool:
        """Whether ``path`` names a folder (some object lies under it)."""
        if not path:
            return True
        key = self.key(path)
        return not self.store.exists(key) and next(iter(self.store.list(key)), None) \
            is not None

    def list(self, path: str = "") -> list[FileInfo]:
        """Every file under ``path`` (recursively), sorted by path."""
        key = self.key(path)
        out = [FileInfo(o.key[len(self.prefix) + 1:], o.size, o.modified)
               for o in self.store.list(key)]
        out = [f for f in out if not any(p.startswith(".") for p in f.path.split("/"))]
        if path and not out:
            raise FileNotFound(f"no folder {path!r} in the files of user {self.user_id}")
        return sorted(out, key=lambda f: f.path)

    def info(self, path: str) -> FileInfo:
        """Size and date of one file."""
        info = self.store.info(self.key(path)) if path else None
        if info is None:
            raise FileNotFound(f"no file {path!r} in the files of user {self.user_id}")
        return FileInfo(info.key[len(self.prefix) + 1:], info.size, info.modified)

    def write(self, path: str, chunks: Iterable[bytes], declared_size: int | None = None
              ) -> tuple[FileInfo, bool]:
        """Store a file from a stream of byte chunks; returns ``(info, created)`` (the same
        rules as :meth:`UserFiles.write`)."""
        if not path or path.endswith("/"):
            raise InvalidPath("a file path is needed, not a folder")
        if declared_size is not None and declared_size > self.max_bytes:
            raise self._too_large()
        parts = split_path(path)
        key = self.key(path)
        if self.is_folder(path):
            raise Conflict(f"{path!r} is a folder")
        for i in range(1, len(parts)):
            if self.store.exists(join(self.prefix, *parts[:i])):
                raise Conflict(f"{'/'.join(parts[:i])!r} is a file, not a folder")
        created = not self.store.exists(key)
        with self.store.writing(key) as tmp:
            _copy(chunks, tmp, self.max_bytes, self._too_large)
        return self.info(path), created

    def delete(self, path: str) -> None:
        """Remove a file, or a folder with everything in it."""
        if not path:
            raise InvalidPath("give the path of a file or folder to delete")
        key = self.key(path)
        if self.store.exists(key):
            self.store.delete(key)
        elif self.is_folder(path):
            self.store.delete_prefix(key)
        else:
            raise FileNotFound(f"no file {path!r} in the files of user {self.user_id}")

    def _too_large(self) -> LimitExceeded:
        return LimitExceeded(f"file larger than the upload limit of {self.max_bytes} bytes")


#: The folder of user files in the store.
FILES = "files"


def user_files(store: Store, user_id: str, max_bytes: int) -> UserFiles | ObjectUserFiles:
    """The files of ``user_id`` in ``store``: a folder of the server's disk, or objects."""
    local = store.local_path(FILES)
    if local is not None:
        return UserFiles(local, user_id, max_bytes)
    return ObjectUserFiles(store, user_id, max_bytes)


def iter_stream(stream, chunk_size: int = _CHUNK):
    """Byte chunks read from a file-like object."""
    while True:
        chunk = stream.read(chunk_size)
        if not chunk:
            return
        yield chunk


def parse_graph_path(value: str) -> tuple[str, str]:
    """``(user_id, relative path)`` of a graph's ``/users/<user>/files/<path>`` reference."""
    m = _GRAPH_PATH.match(value or "")
    if not m:
        raise InvalidPath(
            f"{value!r} is not a user file path; expected '/users/<user_id>/files/<path>' "
            "(a file, or a folder ending with '/')"
        )
    user, rel = m.group("user"), m.group("path") or ""
    check_component(user, "user id")
    if rel:
        split_path(rel)
    return user, rel


def resolve_graph_path(value: str, root: str | os.PathLike, user_id: str) -> Path:
    """The file or folder a graph names, for the *calling* user only.

    Another user's path is answered exactly like a missing file (404), so that nobody can
    probe someone else's files.
    """
    owner, rel = parse_graph_path(value)
    if owner != user_id:
        raise FileNotFound(f"no file or folder {value!r} among your files")
    if str(root).startswith("s3://"):
        return _local_copy(str(root), user_id, rel, value)
    files = UserFiles(root, user_id, 0)
    try:
        return files.resolve(rel, must_exist=True)
    except FileNotFound:
        raise FileNotFound(f"no file or folder {value!r} among your files") from None


def _copies(root: str) -> Path:
    """Where the local copies of the user files of the object store ``root`` are kept."""
    return Path(tempfile.gettempdir()) / "tileserver-files" / hashlib.sha256(
        root.encode()).hexdigest()[:16]


def user_root(root: str | os.PathLike, user_id: str) -> Path:
    """The folder of ``user_id``'s files as processes see it: under ``root`` on the disk,
    or the folder of the local copies of an object store's files (:func:`resolve_graph_path`)."""
    if str(root).startswith("s3://"):
        return _copies(str(root)) / user_id
    return Path(root) / user_id


def _local_copy(root: str, user_id: str, rel: str, value: str) -> Path:
    """A local copy of a user's file or folder kept in an object store (``root``: the
    ``s3://`` URL of the store's ``files`` folder), for processes that read files. A copy is
    downloaded again when its object changed; files deleted from a folder go from its copy."""
    base = root.rsplit("/", 1)[0]
    store = store_for(base, **store_options(load_settings()))
    files = ObjectUserFiles(store, user_id, 0)
    key = files.key(rel)
    info = store.info(key) if rel else None
    objects = [info] if info is not None else list(store.list(key))
    objects = [o for o in objects if not any(p.startswith(".") for p in o.key.split("/"))]
    if not objects:
        raise FileNotFound(f"no file or folder {value!r} among your files")
    folder = user_root(root, user_id)
    keep = set()
    for obj in objects:
        target = folder / obj.key[len(files.prefix) + 1:]
        stamp = target.with_name(f".{target.name}.version")
        keep |= {target, stamp}
        if not (target.exists() and stamp.exists() and stamp.read_text() == obj.version):
            target.parent.mkdir(parents=True, exist_ok=True)
            with atomic_file(target) as tmp:
                store.download(obj.key, tmp)
            stamp.write_text(obj.version)
    target = folder / rel if rel else folder
    if info is None and target.is_dir():  # a folder: what was deleted from the store goes
        for path in target.rglob("*"):
            if path.is_file() and path not in keep:
                path.unlink(missing_ok=True)
    return target


def eval_context(home: str | os.PathLike, user_id: str, store: Store | None = None) -> dict:
    """The evaluation context that lets processes read the calling user's files (in
    ``store`` when it is an object store)."""
    if store is not None and store.local_path(FILES) is None:
        return {"user_id": user_id, "files_root": store.href(FILES)}
    return {"user_id": user_id, "files_root": str(files_root(home))}
