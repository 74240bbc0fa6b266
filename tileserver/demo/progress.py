"""Progress of writing the demo data: files and megabytes written and an estimate of the time
left, as a tqdm bar on a terminal and as plain lines elsewhere (a log, a pipe)."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import IO

_MB = 1024 * 1024


class Progress:
    """Receives the work of one run: :meth:`start` with the number of files and their total
    weight (pixels: the estimate of the time left is by weight, since files differ in size),
    :meth:`advance` once per written file, :meth:`finish` at the end. This base class
    reports nothing."""

    def start(self, files: int, weight: int) -> None:
        """The run begins: ``files`` files of ``weight`` pixels in all."""

    def advance(self, weight: int, nbytes: int) -> None:
        """One more file written: its pixels and its size on disk."""

    def finish(self) -> None:
        """The run ended (also after a failure)."""


class _Counts(Progress):
    """Counts and the time-left estimate shared by the reporters below (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.files = self.total_files = self.weight = self.total_weight = self.bytes = 0
        self.t0 = time.monotonic()

    def start(self, files: int, weight: int) -> None:
        with self._lock:
            self.total_files, self.total_weight = files, max(weight, 1)
            self.t0 = time.monotonic()

    def advance(self, weight: int, nbytes: int) -> None:
        with self._lock:
            self.files += 1
            self.weight += weight
            self.bytes += nbytes
            self.report()

    def seconds_left(self) -> float | None:
        """Elapsed time scaled by the weight still to write (``None`` before the first file)."""
        if not self.weight:
            return None
        elapsed = time.monotonic() - self.t0
        return elapsed * (self.total_weight - self.weight) / self.weight

    def summary(self) -> str:
        """``"12/111 files, 85 MB written"``."""
        return f"{self.files}/{self.total_files} files, {self.bytes / _MB:.0f} MB written"

    def report(self) -> None:
        """Called under the lock after every file."""


class LineProgress(_Counts):
    """Plain lines (``write(line)``) at most every ``every`` seconds, and the last one."""

    def __init__(self, write: Callable[[str], None], every: float = 5.0) -> None:
        super().__init__()
        self._write, self._every, self._last = write, every, 0.0

    def start(self, files: int, weight: int) -> None:
        """Open the report."""
        super().start(files, weight)
        self._last = time.monotonic()
        self._write(f"writing the demo data: {files} files (first start only)")

    def report(self) -> None:
        """Show the counts."""
        now = time.monotonic()
        if self.files < self.total_files and now - self._last < self._every:
            return
        self._last = now
        left = self.seconds_left()
        sure = self.weight >= self.total_weight / 10  # the first files say little
        tail = f", about {left:.0f} s left" if sure and left is not None and left >= 1 else ""
        self._write(f"demo data: {self.summary()}{tail}")


class BarProgress(_Counts):
    """A tqdm bar (on a terminal): weight as the bar, files and MB as its postfix."""

    def __init__(self, stream: IO[str]) -> None:
        super().__init__()
        self._stream = stream
        self._bar = None

    def start(self, files: int, weight: int) -> None:
        """Open the report."""
        from tqdm import tqdm

        super().start(files, weight)
        self._bar = tqdm(total=self.total_weight, file=self._stream, desc="demo data",
                         bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix} "
                                    "[{elapsed}<{remaining}]", postfix=self.summary())

    def report(self) -> None:
        """Show the counts."""
        if self._bar is not None:
            self._bar.n = self.weight
            self._bar.set_postfix_str(self.summary(), refresh=False)
            self._bar.refresh()

    def finish(self) -> None:
        """Close the bar."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def progress_for(stream: IO[str] | None = None) -> Progress:
    """A bar when ``stream`` (default stderr) is a terminal and tqdm is installed, else
    plain lines on it."""
    stream = sys.stderr if stream is None else stream
    if stream.isatty():
        try:
            import tqdm  # noqa: F401
        except ImportError:
            pass
        else:
            return BarProgress(stream)
    return LineProgress(lambda line: print(line, file=stream, flush=True))
