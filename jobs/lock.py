"""One run at a time: an OS file lock that dies with its process.

`fcntl.flock` is released by the kernel when the holder exits, however it exits (kill -9
included), so a crashed run can never leave a stale lock that blocks the next night. The
file itself stays behind on purpose: its text (pid, start time, what runs) is only there to
tell an operator who holds the lock; whether it is held is decided by the kernel alone.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_OPEN_ATTEMPTS = 5  # a lock file deleted under us is reopened at most this often


class AlreadyRunning(RuntimeError):
    """Another run holds the lock."""


class LockError(OSError):
    """The lock folder or file cannot be created or opened (permissions, not a folder)."""


@contextmanager
def run_lock(lock_dir: Path, name: str = "ageseg", *, what: str = "") -> Iterator[Path]:
    """Hold `lock_dir/name.lock` for the duration of the block, or raise AlreadyRunning.

    `what` (e.g. "nightly 2026-11-28") is written into the file with the pid and start time,
    and shown to whoever finds the lock taken.
    """
    path = Path(lock_dir) / f"{name}.lock"
    fd = _acquire(path)
    try:
        note = f"pid {os.getpid()}, started {_now()}" + (f", {what}" if what else "")
        os.ftruncate(fd, 0)
        os.pwrite(fd, note.encode() + b"\n", 0)
        yield path
    finally:
        os.close(fd)  # releases the flock; the text stays for operators to read


def lock_holder(lock_dir: Path, name: str = "ageseg") -> str:
    """Who runs under this lock, as recorded on each `runs` row: host and lock file.

    The lock is a file lock on one machine, so a killed driver's rows can be told from those
    of runs under other locks (another machine, another --lock-dir) that may be alive."""
    return f"{socket.gethostname()}:{(Path(lock_dir) / f'{name}.lock').resolve()}"


def _acquire(path: Path) -> int:
    """Open and flock `path`; make sure the locked file is still the one at `path`.

    Without the inode check, an operator deleting the "stale" lock file while a run holds it
    would let the next run lock a new file under the same name, and two runs would overlap.
    """
    for _ in range(_OPEN_ATTEMPTS):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise LockError(exc.errno, f"cannot create lock {path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = read_holder(fd)
            os.close(fd)
            raise AlreadyRunning(f"another run holds {path} ({holder})") from None
        except BaseException:
            os.close(fd)
            raise
        if _same_file(fd, path):
            return fd
        os.close(fd)  # the file was deleted or replaced after we opened it: start again
    raise LockError(0, f"lock {path} keeps being replaced; is something deleting it?")


def read_holder(fd: int) -> str:
    """The holder's note. A holder that has just taken the lock may not have written it yet:
    the file is then empty or still names a run that died (the lock is held, so its holder
    is alive). Look again for up to a second before saying the holder is unknown."""
    text = ""
    for _ in range(20):
        text = os.pread(fd, 256, 0).decode(errors="replace").strip()
        if text and _alive(_note_pid(text)):
            return text
        time.sleep(0.05)
    return "pid unknown" + (f"; the file still names the exited run: {text}" if text else "")


def _note_pid(text: str) -> int | None:
    first = text.removeprefix("pid ").split(",", 1)[0].strip()
    return int(first) if first.isdigit() else None


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _same_file(fd: int, path: Path) -> bool:
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (on_disk.st_dev, on_disk.st_ino)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
