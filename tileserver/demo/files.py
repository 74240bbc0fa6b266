"""Files of a demo directory: the lock that serialises writers, the completeness marker and
a pystac writer that writes every JSON file atomically."""

from __future__ import annotations

import contextlib
import json
import pathlib
from collections.abc import Iterator
from typing import Any

from tileserver.demo.products import _LOCK_NAME, GENERATOR_VERSION, MARKER_NAME
from tileserver.storage import atomic_file


def atomic_stac_io() -> Any:
    """A pystac ``StacIO`` that writes to a temporary name and renames."""
    from pystac.stac_io import DefaultStacIO

    class _AtomicStacIO(DefaultStacIO):
        def write_text_to_href(self, href: str, txt: str) -> None:
            path = pathlib.Path(href)
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_file(path) as tmp:
                tmp.write_text(txt, encoding="utf-8")

    return _AtomicStacIO()


def is_complete(root: pathlib.Path) -> bool:
    """Whether ``root`` holds a whole catalog of the current generator version."""
    try:
        marker = json.loads((root / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        isinstance(marker, dict)
        and marker.get("generator_version") == GENERATOR_VERSION
        and (root / "catalog.json").is_file()
    )


@contextlib.contextmanager
def dir_lock(root: pathlib.Path) -> Iterator[None]:
    """Hold the directory's lock file (other processes writing it wait)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        yield
        return
    with open(root / _LOCK_NAME, "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)

