"""One lock file per cache key, so that no two farms compute the same material at once.

The lock is an `fcntl.flock` on ``<cache>/<key[:2]>/<key>.lock``, held by the process that
computes the material (and inherited by its GPAW worker). The kernel drops it when its last
holder dies, so a killed farm leaves no lock to clean up by hand: a lock file whose owner is
gone is simply taken over. The file holds the owner's pid, host and start time, for messages.
On a shared file system the lock is only as good as its flock support (NFSv4 yes; Lustre needs
the ``flock`` mount option).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path


class KeyLock:
    """An exclusive, non-reentrant lock on `path`; `acquire` then `release` (or `with`)."""

    def __init__(self, path: str | Path, poll_s: float = 1.0) -> None:
        self.path = Path(path)
        self.poll_s = poll_s
        self._fd: int | None = None

    @property
    def fd(self) -> int | None:
        """The descriptor holding the lock while held (a child that inherits it holds it too)."""
        return self._fd

    def acquire(self, *, wait: bool) -> bool:
        """Take the lock; with `wait`, poll until its holder lets go. False if busy and not
        `wait`."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this KeyLock")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                if not wait:
                    return False
                time.sleep(self.poll_s)
                continue
            # The holder we waited for unlinks the file as it lets go: a lock on that old file
            # guards nothing, so it only counts if `fd` is still the file at `path`.
            if _same_file(fd, self.path):
                break
            os.close(fd)
        owner = {"pid": os.getpid(), "host": socket.gethostname(),
                 "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(owner).encode(), 0)
        self._fd = fd
        return True

    def release(self) -> None:
        """Let go (a no-op when not held); the file goes with it."""
        if self._fd is None:
            return
        # Unlink while still holding it, so nobody takes a lock on a file about to vanish.
        self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None

    def holder(self) -> str:
        """Who holds it, as "pid 123 on host since 2026-...", from the file ("" if unknown)."""
        try:
            owner = json.loads(self.path.read_text())
            return f"pid {owner['pid']} on {owner['host']} since {owner['since']}"
        except (OSError, ValueError, KeyError, TypeError):
            return ""  # not written yet, or let go meanwhile

    def __enter__(self) -> KeyLock:
        self.acquire(wait=True)
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (st.st_dev, st.st_ino)
