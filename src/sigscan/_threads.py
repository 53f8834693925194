"""How many threads sigscan's numeric code may use, decided in one place, and applied to numba, torch and BLAS for a run.

The budget is the number of CPUs this process may really run on: its CPU affinity (``os.sched_getaffinity``) capped by
the cgroup CPU quota of its container (cgroup v2 ``cpu.max``, v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``), never
the machine's CPU count. A user's choice wins: ``NUMBA_NUM_THREADS`` or ``OMP_NUM_THREADS`` in the environment replace
the budget, and a thread count the user lowered in-process (``torch.set_num_threads``, ``numba.set_num_threads``) is
never raised. :func:`limit_threads` applies the budget for the duration of a ``with`` block and restores every
library's previous setting afterwards.

Why it matters: the fast path alternates numba parallel loops and torch operations. Each pool sized to more threads
than the process may run (a 64-core host seen from a 4-CPU container) makes every parallel region wait for
descheduled threads; on a busy machine that costs far more than the arithmetic. numba regions never call torch or BLAS
and torch operations never call numba, so the pools take turns and are never nested.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

#: how OpenMP runtimes that have not started yet should wait between parallel regions: sleep, not spin (GNU OpenMP
#: reads ``OMP_WAIT_POLICY``, Intel OpenMP ``KMP_BLOCKTIME``), unless the user chose otherwise
PASSIVE_WAITING = {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0"}

#: environment variables a user sets to choose the thread count, in order of precedence
THREAD_VARIABLES = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS")

_CGROUP_ROOT = Path("/sys/fs/cgroup")
_PROC_CGROUP = Path("/proc/self/cgroup")


def prefer_passive_waiting() -> list[str]:
    """Load torch's and numba's OpenMP runtimes with passive waiting, unless the user set a wait policy.

    Spinning workers of one pool (torch's after an operation, numba's after a loop) keep the CPUs busy while the
    other pool works, and on a shared machine they burn the time other processes' threads need (measured: IG on two
    busy cores ran 2.3x faster with passive waiting). A runtime reads the policy once, when it is loaded, so this runs
    when ``sigscan.models``, ``sigscan.pp`` or ``sigscan.tl`` is imported, before either is loaded; one loaded earlier
    (``import torch`` first) keeps its policy. The variables are set only while the runtimes load, then removed again, so child processes and
    libraries loaded later see the user's environment unchanged. Returns the variables it set.
    """
    chosen = [variable for variable in PASSIVE_WAITING if variable not in os.environ]
    for variable in chosen:
        os.environ[variable] = PASSIVE_WAITING[variable]
    try:
        import torch  # noqa: F401  - loads torch's OpenMP runtime (nothing to do if torch is already imported)

        try:
            from numba.np.ufunc import omppool  # noqa: F401  - numba's OpenMP threading layer (the default with it)
        except Exception:  # no OpenMP for numba (it uses TBB or its workqueue, which sleep when idle): never fatal
            pass
    finally:
        for variable in chosen:
            os.environ.pop(variable, None)
    return chosen


def affinity_cpus() -> int:
    """CPUs this process may be scheduled on (its affinity mask); numba's platform default where that is unknown."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    if hasattr(os, "process_cpu_count"):  # Python >= 3.13: honours affinity where the platform has one
        return max(1, os.process_cpu_count() or 1)
    import numba

    return max(1, int(numba.config.NUMBA_DEFAULT_NUM_THREADS))


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _own_cgroups(proc_cgroup: Path) -> dict[str, str]:
    """``/proc/self/cgroup`` as {controller: path}; the cgroup v2 entry (``0::/path``) is under ``""``."""
    paths: dict[str, str] = {}
    for line in (_read(proc_cgroup) or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        for controller in parts[1].split(",") if parts[1] else [""]:
            paths[controller] = parts[2]
    return paths


def _ancestry(mount: Path, path: str) -> list[Path]:
    """The cgroup folder of ``path`` under ``mount`` and its parents up to the mount (those that exist).

    In a container without its own cgroup namespace the host path is not visible inside: then only the mount root
    (the container's own cgroup) is read.
    """
    folders = []
    parts = [part for part in path.strip("/").split("/") if part and part != ".."]
    for depth in range(len(parts), -1, -1):
        folder = mount.joinpath(*parts[:depth])
        if folder.is_dir():
            folders.append(folder)
    return folders


def _quota_v2(folder: Path) -> float | None:
    text = _read(folder / "cpu.max")
    if not text:
        return None
    fields = text.split()
    if fields[0] == "max":
        return None
    try:
        quota, period = float(fields[0]), float(fields[1]) if len(fields) > 1 else 100_000.0
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _quota_v1(folder: Path) -> float | None:
    quota, period = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
    try:
        quota_us, period_us = float(quota or "-1"), float(period or "0")
    except ValueError:
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def cgroup_cpu_limit(root: Path = _CGROUP_ROOT, proc_cgroup: Path = _PROC_CGROUP) -> float | None:
    """CPUs the cgroup quota allows this process (e.g. ``1.5``), the tightest over its cgroup and their parents.

    ``None`` when there is no quota (or no cgroup file to read: not Linux).
    """
    own = _own_cgroups(proc_cgroup)
    limits = []
    for folder in _ancestry(root, own.get("", "/")):  # cgroup v2 (unified hierarchy mounted at the root)
        limits.append(_quota_v2(folder))
    v1_path = own.get("cpu", "/")
    for mount in ("cpu,cpuacct", "cpu", "cpuacct,cpu"):  # cgroup v1: the cpu controller's own mount
        if (root / mount).is_dir():
            limits.extend(_quota_v1(folder) for folder in _ancestry(root / mount, v1_path))
            break
    found = [limit for limit in limits if limit is not None]
    return min(found) if found else None


def available_cpus(root: Path = _CGROUP_ROOT, proc_cgroup: Path = _PROC_CGROUP) -> int:
    """CPUs this process may really use: its affinity, capped by the cgroup CPU quota (rounded up), at least 1."""
    n = affinity_cpus()
    quota = cgroup_cpu_limit(root, proc_cgroup)
    if quota is not None:
        n = min(n, max(1, math.ceil(quota - 1e-9)))
    return n


def user_thread_setting(environ: dict[str, str] | os._Environ | None = None) -> int | None:
    """The thread count the user chose in the environment (``NUMBA_NUM_THREADS``, then ``OMP_NUM_THREADS``)."""
    environ = os.environ if environ is None else environ
    for variable in THREAD_VARIABLES:
        value = environ.get(variable, "").split(",")[0].strip()  # OpenMP allows a per-level list: "4,2"
        if value.isdigit() and int(value) > 0:
            return int(value)
    return None


def thread_budget() -> int:
    """Threads a parallel region of sigscan may use: the user's environment setting, else :func:`available_cpus`."""
    user = user_thread_setting()
    return user if user is not None else available_cpus()


@contextmanager
def limit_threads(n: int | None = None, *, numba: bool = True, blas: bool = True) -> Iterator[int]:
    """Run the block with at most ``n`` (default :func:`thread_budget`) threads in numba, torch and BLAS.

    Thread counts the user lowered in-process are kept (never raised); every library's previous setting is restored
    on exit, errors included. ``numba=False`` leaves numba alone (and does not start its thread pool); ``blas=False``
    leaves the BLAS libraries numpy and scipy use alone. Yields the budget.
    """
    import torch

    n = max(1, int(n if n is not None else thread_budget()))
    with ExitStack() as stack:
        previous_torch = torch.get_num_threads()
        if previous_torch > n:
            torch.set_num_threads(n)
            stack.callback(torch.set_num_threads, previous_torch)
        if numba:
            import numba as nb

            previous_numba = nb.get_num_threads()  # per thread, like the setting it restores
            if previous_numba > n:
                nb.set_num_threads(n)
                stack.callback(nb.set_num_threads, previous_numba)
        if blas:
            _limit_blas(stack, n)
        yield n


def _limit_blas(stack: ExitStack, n: int) -> None:
    """Cap the BLAS pools numpy and scipy load (OpenBLAS, MKL, BLIS) at ``n`` threads, if threadpoolctl is present."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - a dependency of scikit-learn, always present with sigscan
        return
    blas = ThreadpoolController().select(user_api="blas")  # ~10 ms: finds libraries loaded since the last run too
    if any(info.get("num_threads", 0) > n for info in blas.info()):
        stack.enter_context(blas.limit(limits=n))
