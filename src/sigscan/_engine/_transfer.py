"""Host ↔ device copies of CSR batches that overlap compute: pinned buffers, a prefetch stream, asynchronous results.

On CUDA, :func:`prefetch` copies batch ``k + 1`` from pinned host buffers with ``non_blocking=True`` on a side stream
while batch ``k`` computes, and :class:`PendingValues` copies results back into pinned buffers the same way, so the
host prepares the next batch while the device works. On any other device the same code runs synchronously (plain
tensors, no streams, no events).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import numpy as np
import torch
from scipy import sparse

from ._torch_kernels import DeviceBatch, index_dtype

#: batches in flight at once: one computing, one copying to the device, one whose result is copied back
IN_FLIGHT = 3


class PinnedBuffers:
    """Reusable page-locked host buffers in ``IN_FLIGHT`` rotating slots (plain arrays off CUDA).

    Allocating pinned memory is slow, so each slot keeps one growing buffer per name; a slot is reused only after the
    copy that read or wrote it three batches earlier has been waited for.
    """

    def __init__(self, device: torch.device):
        self.pinned = device.type == "cuda"
        self._buffers: dict[tuple[int, str], torch.Tensor] = {}

    def __call__(self, slot: int, name: str, array: np.ndarray) -> torch.Tensor:
        """A host tensor holding ``array`` (a view of ``array`` itself off CUDA)."""
        source = torch.from_numpy(np.ascontiguousarray(array))
        if not self.pinned:
            return source
        buffer = self.empty(slot, name, source.numel(), source.dtype)
        buffer.copy_(source)
        return buffer

    def empty(self, slot: int, name: str, numel: int, dtype: torch.dtype) -> torch.Tensor:
        """An uninitialised host tensor of ``numel`` elements (pinned on CUDA)."""
        key = (slot % IN_FLIGHT, name)
        buffer = self._buffers.get(key)
        if buffer is None or buffer.dtype != dtype or buffer.numel() < numel:
            buffer = torch.empty(max(numel, 1), dtype=dtype, pin_memory=self.pinned)
            self._buffers[key] = buffer
        return buffer[:numel]


class Stager:
    """Copies CSR batches to the device, on a side stream on CUDA; one instance per run (it owns the buffers)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self.buffers = PinnedBuffers(device)
        self._slot = 0

    def stage(self, x: sparse.csr_matrix) -> DeviceBatch:
        """Start copying ``x`` (sorted first if needed) to the device; :meth:`DeviceBatch.wait` before using it."""
        if not x.has_sorted_indices:
            x = x.sorted_indices()
        slot, self._slot = self._slot, self._slot + 1
        dtype = index_dtype(x)
        host = [
            self.buffers(slot, "crow", x.indptr.astype(dtype, copy=False)),
            self.buffers(slot, "col", x.indices.astype(dtype, copy=False)),
            self.buffers(slot, "values", x.data.astype(np.float32, copy=False)),
        ]
        with torch.cuda.stream(self.stream) if self.stream is not None else contextlib.nullcontext():
            crow, col, values = (tensor.to(self.device, non_blocking=True) for tensor in host)
            ready = None
            if self.stream is not None:
                ready = torch.cuda.Event()
                ready.record(self.stream)
        return DeviceBatch(x, crow, col, values, ready)


def prefetch(
    batches: Iterable[tuple[int, int, sparse.csr_matrix]], device: torch.device
) -> Iterator[tuple[int, int, DeviceBatch]]:
    """Yield ``(start, stop, batch on the device)`` in order, copying batch ``k + 1`` before batch ``k`` is yielded.

    The copy of the next batch (and the host work that produces it: reading, aligning, preprocessing) is issued
    before the current batch is handed out, so on CUDA it overlaps the current batch's compute. Each yielded batch
    is ready to use on the current stream.
    """
    stager = Stager(device)
    ahead: tuple[int, int, DeviceBatch] | None = None
    for start, stop, x in batches:
        staged = (start, stop, stager.stage(x))
        if ahead is not None:
            yield ahead[0], ahead[1], ahead[2].wait()
        ahead = staged
    if ahead is not None:
        yield ahead[0], ahead[1], ahead[2].wait()


class PendingValues:
    """Attribution values of one batch on their way back to the host (``non_blocking`` into a pinned buffer).

    :meth:`result` waits for the copy and returns the CSR matrix with the batch's sparsity.
    """

    def __init__(self, batch: DeviceBatch, values: torch.Tensor, buffers: PinnedBuffers, slot: int):
        self.x = batch.x
        if values.device.type == "cuda":
            self._host = buffers.empty(slot, "result", values.numel(), values.dtype)
            self._host.copy_(values, non_blocking=True)
            self._done: torch.cuda.Event | None = torch.cuda.Event()
            self._done.record(torch.cuda.current_stream(values.device))
        else:
            self._host, self._done = values.to("cpu"), None

    def result(self) -> sparse.csr_matrix:
        """Signed attributions (CSR float32, the sparsity of the batch's ``x``)."""
        if self._done is not None:
            self._done.synchronize()
        values = self._host.numpy().astype(np.float32, copy=True)  # the pinned buffer is reused three batches on
        x = self.x
        return sparse.csr_matrix((values, x.indices.copy(), x.indptr.copy()), shape=x.shape)
