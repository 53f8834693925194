"""Loading the fast path's compiled kernels in the background, so that a fresh process's first call does not wait.

Even from numba's on-disk cache, the first call of a numba function in a process costs ~0.5-1 s: numba initialises
its compiler target, reads and links the cached machine code and starts its thread pool. :func:`start` (called when
``sigscan.models`` is imported) does that work in a daemon thread while the user reads data and loads a model: it runs
the fast path end to end on a three-gene model, so every kernel the engine calls is loaded with the very argument
types of a real run, whatever the kernels are. The engine calls :func:`wait` on entry, so a run never overlaps the
warm-up and its results never depend on it (the warm-up touches no user data, model or random state). A process that
forks, and a process that exits, waits for the warm-up first, so a child never inherits a half-held lock and the
interpreter never shuts down under native code.

numba's cache: ``cache=True`` kernels are cached next to their source when that folder is writable, and otherwise
(a read-only site-packages) in numba's user-wide cache folder (``~/.cache/numba``, or ``NUMBA_CACHE_DIR``); the first
process after an install compiles them (in this background thread) and later processes load them.

Loaders of published checkpoints also hand their model's own preparation (the weights' checksum and the fast path's
transposed first layer, ~0.2 s for SCimilarity) to :func:`run_in_background`; :func:`wait` waits for those too.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Callable

_lock = threading.Lock()
_thread: threading.Thread | None = None
_error: BaseException | None = None
#: model preparations started by :func:`run_in_background` and not yet known to be finished
_background: set[threading.Thread] = set()


def _tiny_model():
    """A three-gene Linear–BatchNorm–PReLU–Linear encoder with fixed weights, built without touching torch's RNG."""
    import torch
    from torch import nn

    from ..models import TorchEncoder

    first = nn.utils.skip_init(nn.Linear, 3, 4)  # skip_init: no random initialisation, so no global RNG draw
    last = nn.utils.skip_init(nn.Linear, 4, 2)
    with torch.no_grad():
        for layer in (first, last):
            values = torch.arange(layer.weight.numel(), dtype=torch.float32).reshape(layer.weight.shape)
            layer.weight.copy_(torch.sin(values))
            layer.bias.fill_(0.1)
    module = nn.Sequential(first, nn.BatchNorm1d(4), nn.PReLU(), last).eval().requires_grad_(False)
    return TorchEncoder(module, ["g0", "g1", "g2"], preprocess="none", name="warmup", min_gene_overlap=1)


def run() -> None:
    """Run the CPU fast path once per method on a small batch (loads or compiles every kernel it uses)."""
    import numpy as np
    import torch
    from scipy import sparse

    from . import make_engine
    from ._kernels import DENSE_MIN_CELLS

    model = _tiny_model()
    # enough cells for genes 0 and 2 to take the dense product and gene 1 (one cell) the sparse kernels
    counts = np.tile(np.array([[1.0, 0.0, 2.0]], dtype=np.float32), (DENSE_MIN_CELLS + 4, 1))
    counts[1, 1] = 3.0
    x = sparse.csr_matrix(counts)
    engine = make_engine(model, "fast", normalize=False, device=torch.device("cpu"))
    with torch.no_grad():
        for method, n_steps in (("ig", 2), ("ixg", 0), ("dl", 0)):
            engine(x, method=method, n_steps=n_steps)
    try:  # threadpoolctl's first look at the loaded libraries (~50 ms), which every engine run repeats (~10 ms)
        from threadpoolctl import ThreadpoolController

        ThreadpoolController()
    except ImportError:  # pragma: no cover - a dependency of scikit-learn
        pass


def _run_quietly() -> None:
    global _error
    try:
        run()
    except BaseException as error:  # pragma: no cover - a warm-up failure must never break the user's process
        _error = error  # the real run meets (and reports) the same problem, if it is one


def start() -> None:
    """Begin the warm-up in a daemon thread (once per process); no-op when numba's JIT is disabled."""
    global _thread
    if os.environ.get("NUMBA_DISABLE_JIT", "0") not in ("", "0"):
        return
    with _lock:
        if _thread is not None:
            return
        _thread = threading.Thread(target=_run_quietly, name="sigscan-engine-warmup", daemon=True)
        if not _registered_fork_hook:
            _register_fork_hook()
        _thread.start()


def run_in_background(func: Callable[[], object], *, name: str) -> threading.Thread:
    """Run ``func()`` in a daemon thread that :func:`wait` also waits for; return the thread.

    Its errors are dropped: the real call meets them again.
    """

    def quietly() -> None:
        try:
            func()
        except BaseException:  # pragma: no cover - preparation must never break the user's process
            pass

    thread = threading.Thread(target=quietly, name=name, daemon=True)
    with _lock:
        if not _registered_fork_hook:
            _register_fork_hook()
        _background.add(thread)
    thread.start()
    return thread


def wait() -> None:
    """Block until the warm-up and background preparations (if started) have finished.

    Never waits for the calling thread itself.
    """
    current = threading.current_thread()
    with _lock:
        threads = [_thread, *_background] if _thread is not None else list(_background)
    for thread in threads:
        if thread is not current:
            thread.join()
    with _lock:
        _background.difference_update(t for t in threads if not t.is_alive())


_registered_fork_hook = False


def _register_fork_hook() -> None:
    """Wait for the warm-up before a fork and before interpreter shutdown.

    A process that exits while the warm-up is inside numba's native code would abort (a C++ ``terminate``), and a
    forked child could inherit a lock the warm-up holds.
    """
    global _registered_fork_hook
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(before=wait)
    atexit.register(wait)
    _registered_fork_hook = True
