"""Preprocessing: compute attribution layers."""

from .._threads import prefer_passive_waiting

prefer_passive_waiting()  # before torch and numba start their OpenMP thread pools (no-op once loaded)

from ._attributions import attributions  # noqa: E402
from ._diagnostics import completeness  # noqa: E402
from ._downsample import downsample_counts  # noqa: E402
from ._embeddings import embeddings  # noqa: E402

__all__ = ["attributions", "completeness", "downsample_counts", "embeddings"]
