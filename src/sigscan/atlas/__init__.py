"""The attribution atlas: many datasets' attributions on disk, scored a gene set at a time."""

from ._atlas import Atlas
from ._shard import ShardError

__all__ = ["Atlas", "ShardError"]
