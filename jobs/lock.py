"""One run at a time: an OS file lock that dies with its process.

`fcntl.flock` is released by the kernel when the holder exits, however it exits (kill -9
included), so a crashed run can never leave a stale lock that blocks the next night.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

EXIT_LOCKED = 75  # EX_TEMPFAIL: cron may simply try again later


class AlreadyRunning(RuntimeError):
    """Another run holds the lock."""


@contextmanager
def run_lock(lock_dir: Path, name: str = "ageseg") -> Iterator[Path]:
    lock_dir.mkdir(parents=True, exist_ok=True)
    path = lock_dir / f"{name}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise AlreadyRunning(f"another run holds {path} (pid {holder})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield path
    finally:
        os.close(fd)
