"""Writer coordination for an atlas folder: one OS lock around every manifest change, one liveness lock per writer.

Why an OS file lock and not a compare-and-swap on a versioned manifest: a POSIX ``rename`` replaces its target
unconditionally, so a compare-and-swap would need a conditional create (``link``/``O_EXCL`` on a versioned file name,
or an object store's conditional PUT), a retry loop, and a second mechanism to tell a running writer's shard folder
from a dead writer's one. ``fcntl.flock`` gives both with one primitive: the commit lock (``.lock``) serialises the
short read-modify-replace of ``atlas.json`` (shard bytes are written outside it, so writers still write in parallel),
and each writer holds a lock on its own file ``.writers/<token>.lock`` while it writes; the kernel releases it when the
process ends, even on SIGKILL, so "no one holds the lock" means "the writer is gone" on any host sharing the folder.

Network file systems: Linux maps ``flock`` to POSIX byte-range locks on NFS, so the atlas folder must be on a
lock-capable mount (NFSv4, or NFSv3 with ``lockd``; not ``-o nolock``, which makes every lock local to one host).
Lustre needs ``-o flock``. Object-store URLs (``s3://``, ``gs://``, ``memory://``) have no OS locks: there, writes are
serialised only within one process; write from one process at a time.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import uuid
from collections.abc import Iterator

from ._location import Location

#: commit lock file, in the atlas folder
LOCK = ".lock"
#: folder of the per-writer liveness lock files
WRITERS = ".writers"

_process_locks: dict[str, threading.Lock] = {}
_process_locks_guard = threading.Lock()
#: tokens of writers running in this process (the liveness record on object stores)
_live_tokens: set[str] = set()


def writer_token() -> str:
    """A token unique to one write: ``<pid>-<12 hex digits>``."""
    return f"{os.getpid()}-{uuid.uuid4().hex[:12]}"


def _process_lock(location: Location) -> threading.Lock:
    with _process_locks_guard:
        return _process_locks.setdefault(location.url, threading.Lock())


@contextlib.contextmanager
def atlas_lock(location: Location, *, read_only: bool = False) -> Iterator[None]:
    """Hold the atlas's commit lock (exclusive, blocking) for the ``with`` block.

    Locally an ``fcntl.flock`` on ``<atlas>/.lock`` (it excludes other processes and other threads: each call opens
    the file anew); on object stores a lock within this process only. With ``read_only``, an atlas whose lock file
    cannot be opened (a read-only mount, another user's folder) is read without the lock.
    """
    if not location.is_local:
        with _process_lock(location):
            yield
        return
    import fcntl

    try:
        fd = os.open(location.join(LOCK), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        if not read_only or error.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


class Writer:
    """A running write, visible to other processes as live until :meth:`close` (or the process's death).

    Use as a context manager; :attr:`token` names the writer's shard folder.
    """

    def __init__(self, location: Location):
        self.location = location
        self.token = writer_token()
        self._fd: int | None = None
        if location.is_local:
            import fcntl

            os.makedirs(location.join(WRITERS), exist_ok=True)
            # locked under a temporary name, then renamed: other processes never see the file unlocked (they would
            # take it for a dead writer's, delete it, and later sweep this writer's shard folder as an orphan)
            final = location.join(WRITERS, f"{self.token}.lock")
            self._fd = os.open(f"{final}.new", os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(f"{final}.new", final)
        _live_tokens.add(self.token)

    def close(self) -> None:
        """The write is over (committed or cleaned up): drop the liveness lock."""
        _live_tokens.discard(self.token)
        if self._fd is not None:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.location.join(WRITERS, f"{self.token}.lock"))
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def writer_is_live(location: Location, token: str) -> bool:
    """Whether the writer ``token`` still runs (locally: someone holds its lock file; a dead writer's file is removed).

    Call it under :func:`atlas_lock`. On object stores only this process's writers are known.
    """
    if token in _live_tokens:
        return True
    if not location.is_local:
        return False
    import fcntl

    path = location.join(WRITERS, f"{token}.lock")
    try:
        fd = os.open(path, os.O_RDWR)
    except (FileNotFoundError, IsADirectoryError):
        return False
    except OSError:  # not ours to open (read-only, another user's): assume it runs
        return True
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        with contextlib.suppress(OSError):
            os.remove(path)  # a dead writer's lock file
        return False
    finally:
        os.close(fd)


def dead_writer_files(location: Location) -> list[str]:
    """Lock files of writers that are gone (normally removed by the writer itself or by :func:`writer_is_live`)."""
    names = location.listdir(WRITERS)
    return [n for n in names if n.endswith(".lock") and not writer_is_live(location, n.removesuffix(".lock"))]
