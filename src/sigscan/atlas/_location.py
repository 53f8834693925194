"""Where an atlas lives: a local folder or any fsspec URL, with the few file operations the atlas needs."""

from __future__ import annotations

import os
import posixpath
import uuid
from typing import Any

import numpy as np


class Location:
    """A folder on a local disk or behind an fsspec URL (``s3://``, ``gs://``, ``memory://``, …).

    Local folders use plain OS calls (``os.replace`` for atomic commits, ``os.pread`` for byte ranges); other URLs go
    through fsspec (one PUT per file, which object stores apply atomically).
    """

    def __init__(self, path: str | os.PathLike, storage_options: dict[str, Any] | None = None):
        text = os.fspath(path)
        self.storage_options = dict(storage_options or {})
        self.is_local = "://" not in text or text.startswith("file://")
        if self.is_local:
            self.root = os.path.abspath(text.removeprefix("file://"))
            self.fs = None
        else:
            import fsspec

            self.fs, self.root = fsspec.core.url_to_fs(text, **self.storage_options)
            self.protocol = text.split("://", 1)[0]
        self.url = self.root if self.is_local else f"{self.protocol}://{self.root.split('://', 1)[-1]}"

    def __repr__(self) -> str:
        return self.url

    def join(self, *parts: str) -> str:
        """Path (local) or URL (remote) of ``parts`` under the root."""
        if self.is_local:
            return os.path.join(self.root, *parts)
        return posixpath.join(self.url, *parts)

    def _fs_path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def exists(self, *parts: str) -> bool:
        """Whether ``parts`` exists."""
        if self.is_local:
            return os.path.exists(self.join(*parts))
        return self.fs.exists(self._fs_path(*parts))

    def makedirs(self, *parts: str) -> None:
        """Create a folder (and parents)."""
        if self.is_local:
            os.makedirs(self.join(*parts), exist_ok=True)
        else:
            self.fs.makedirs(self._fs_path(*parts), exist_ok=True)

    def read_bytes(self, *parts: str) -> bytes:
        """The whole content of a file."""
        if self.is_local:
            with open(self.join(*parts), "rb") as handle:
                return handle.read()
        return self.fs.cat_file(self._fs_path(*parts))

    def write_atomic(self, content: bytes, *parts: str) -> None:
        """Replace a file atomically: readers see the old or the new content, never a mix.

        Locally the content goes to ``<file>.<pid>-<token>.tmp`` (a name no other writer uses), is flushed to disk,
        and ``os.replace`` swaps it in; on failure the temporary file is removed. Object stores apply a single PUT
        atomically.
        """
        if self.is_local:
            target = self.join(*parts)
            tmp = f"{target}.{os.getpid()}-{unique_token()}.tmp"
            try:
                with open(tmp, "wb") as handle:
                    handle.write(content)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, target)
            except BaseException:
                if os.path.exists(tmp):
                    os.remove(tmp)
                raise
        else:
            self.fs.pipe_file(self._fs_path(*parts), content)

    def write_file(self, key: str, parts: list) -> None:
        """Write a file from byte buffers (no atomicity: used inside a shard folder that is not yet committed)."""
        if self.is_local:
            with open(self.join(key), "wb") as handle:
                for part in parts:
                    handle.write(part)
        else:
            self.fs.pipe_file(self._fs_path(key), b"".join(bytes(p) for p in parts))

    def rename(self, source: str, target: str) -> None:
        """Move a folder under the root (atomic locally)."""
        if self.is_local:
            os.rename(self.join(source), self.join(target))
        else:
            self.fs.mv(self._fs_path(source), self._fs_path(target), recursive=True)

    def remove_tree(self, *parts: str) -> None:
        """Delete a folder and everything in it (missing is fine)."""
        if self.is_local:
            import shutil

            shutil.rmtree(self.join(*parts), ignore_errors=True)
        elif self.fs.exists(self._fs_path(*parts)):
            self.fs.rm(self._fs_path(*parts), recursive=True)

    def listdir(self, *parts: str) -> list[str]:
        """Names in a folder (empty when it does not exist)."""
        if self.is_local:
            folder = self.join(*parts)
            return sorted(os.listdir(folder)) if os.path.isdir(folder) else []
        folder = self._fs_path(*parts)
        if not self.fs.exists(folder):
            return []
        return sorted(posixpath.basename(p.rstrip("/")) for p in self.fs.ls(folder, detail=False))

    def read_ranges(self, key: str, starts: np.ndarray, stops: np.ndarray, out: np.ndarray) -> None:
        """Read byte ranges ``[start, stop)`` of file ``key`` into consecutive parts of the byte buffer ``out``."""
        view = memoryview(out)
        if self.is_local:
            fd = os.open(self.join(key), os.O_RDONLY)
            try:
                position = 0
                for start, stop in zip(starts.tolist(), stops.tolist(), strict=True):
                    size = stop - start
                    got = os.preadv(fd, [view[position : position + size]], start)
                    if got != size:
                        raise OSError(f"{self.join(key)}: short read ({got} of {size} bytes at offset {start})")
                    position += size
            finally:
                os.close(fd)
            return
        path = self._fs_path(key)
        blobs = self.fs.cat_ranges([path] * len(starts), starts.tolist(), stops.tolist())
        position = 0
        for blob in blobs:
            if isinstance(blob, Exception):
                raise blob
            view[position : position + len(blob)] = blob
            position += len(blob)


def unique_token() -> str:
    """A short random token for shard folder names."""
    return uuid.uuid4().hex[:12]
