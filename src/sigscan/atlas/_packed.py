"""One file holding a JSON description and named arrays, read with one open and one memory map.

The format of the shard query headers (:mod:`._header`) and of the atlas gene index (:mod:`._gene_index`): what a
query needs from many small files, packed so that a fresh process reads it at the cost of one file. Little-endian::

    magic (8 bytes)  uint64 n  <n bytes of JSON>  <zero padding to 8 bytes>  <arrays, each at an 8-byte aligned offset>

The JSON holds the caller's description, the file's total size (a truncated file is refused) and each array's
``[offset, dtype, length]``. Arrays are read as views of the memory map (local files) or of the bytes read (URLs), so
a reader touches only the pages it uses.
"""

from __future__ import annotations

import json
import mmap
import os
from typing import Any

import numpy as np

from ._location import Location


class PackedError(ValueError):
    """A packed file exists but is not readable (wrong kind, truncated, unreadable description)."""


def _aligned(n: int) -> int:
    return -(-n // 8) * 8


def pack(magic: bytes, meta: dict[str, Any], arrays: dict[str, np.ndarray], *, crc32: bool = False) -> np.ndarray:
    """The file's bytes (``uint8``): ``meta`` (JSON-able) and ``arrays`` (1-d, stored little-endian).

    ``crc32``: also record the CRC-32 of the arrays (checked by :meth:`Packed.damaged`).
    """
    arrays = {key: np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")) for key, a in arrays.items()}
    layout, offset = {}, 0
    for key, array in arrays.items():
        layout[key] = [offset, array.dtype.str, len(array)]
        offset = _aligned(offset + array.nbytes)
    if crc32:
        import zlib

        crc = 0
        for array in arrays.values():
            crc = zlib.crc32(bytes(_aligned(array.nbytes) - array.nbytes), zlib.crc32(array.view(np.uint8), crc))
        meta = {**meta, "crc32": crc}
    # the JSON holds the total size, which depends on the JSON's length: settle it (the size's digits may move it)
    size, start = 0, -1
    while True:
        text = json.dumps({**meta, "arrays": layout, "size": size}, separators=(",", ":")).encode()
        if _aligned(16 + len(text)) == start:
            break
        start = _aligned(16 + len(text))
        size = start + offset
    out = np.zeros(size, dtype=np.uint8)
    out[:8] = np.frombuffer(magic, np.uint8)
    out[8:16] = np.frombuffer(np.uint64(len(text)).astype("<u8").tobytes(), np.uint8)
    out[16 : 16 + len(text)] = np.frombuffer(text, np.uint8)
    for key, array in arrays.items():
        at = start + layout[key][0]
        out[at : at + array.nbytes] = array.view(np.uint8)
    return out


class Packed:
    """A packed file: ``meta`` (the description written) and :meth:`array`."""

    def __init__(self, buffer: Any, magic: bytes, where: str, what: str):
        self.where = where
        view = memoryview(buffer)
        if len(view) < 16 or bytes(view[:8]) != magic:
            raise PackedError(f"{where} is not a {what}")
        n = int(np.frombuffer(view[8:16], "<u8")[0])
        try:
            meta = json.loads(bytes(view[16 : 16 + n]))
        except ValueError as error:
            raise PackedError(f"{where}: unreadable description ({error})") from error
        if not isinstance(meta, dict) or meta.get("size") != len(view):
            raise PackedError(f"{where} holds {len(view)} bytes, its description says {meta.get('size')} (truncated?)")
        self._view, self._start = view, _aligned(16 + n)
        self._layout: dict[str, list] = meta.pop("arrays")
        self.meta: dict[str, Any] = meta

    @classmethod
    def read(cls, location: Location, magic: bytes, what: str, *parts: str) -> Packed | None:
        """The packed file at ``parts`` under ``location`` (``what`` names its kind in errors); ``None`` if absent."""
        where = location.join(*parts)
        try:
            if location.is_local:
                with open(where, "rb") as handle:
                    size = os.fstat(handle.fileno()).st_size
                    buffer: Any = mmap.mmap(handle.fileno(), size, access=mmap.ACCESS_READ) if size else b""
            else:
                buffer = location.read_bytes(*parts)
        except FileNotFoundError:
            return None
        return cls(buffer, magic, where, what)

    def array(self, key: str) -> np.ndarray:
        """Array ``key`` (a read-only view)."""
        offset, dtype, length = self._layout[key]
        end = self._start + offset + np.dtype(dtype).itemsize * length
        if end > len(self._view):
            raise PackedError(f"{self.where}: array {key!r} runs past the end of the file")
        return np.frombuffer(self._view, dtype=np.dtype(dtype), count=length, offset=self._start + offset)

    def damaged(self) -> bool:
        """Whether the arrays' CRC-32 differs from the one recorded by ``pack(..., crc32=True)``."""
        import zlib

        return zlib.crc32(self._view[self._start :]) != self.meta.get("crc32")
