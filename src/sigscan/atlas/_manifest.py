"""The atlas manifest ``atlas.json``: what the atlas holds, and the commit point of every change."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from ._location import Location

MANIFEST = "atlas.json"
GENE_ORDER = "gene_order.txt"
#: folder of the shards; a shard being written is ``shards/<name>.<writer token>.zarr.partial`` until renamed
SHARDS = "shards"
PARTIAL = ".partial"
#: finished blocks of an unfinished Atlas.build (kept until their shard is committed)
BUILD = ".build"
FORMAT = "sigscan-atlas"
FORMAT_VERSION = 1


@dataclass
class ShardEntry:
    """One dataset of the atlas."""

    name: str
    #: folder of the shard, relative to the atlas root
    path: str
    n_cells: int
    nnz: int
    #: SHA-256 of the shard's attributions (CSC data, indices, indptr) and cell names
    checksum: str
    provenance: dict[str, Any] = field(default_factory=dict)


@dataclass
class Manifest:
    """Content of ``atlas.json``."""

    gene_order_sha256: str
    n_genes: int
    model: str | None = None
    model_checksum: str | None = None
    method: str | None = None
    shards: list[ShardEntry] = field(default_factory=list)
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    def shard(self, name: str) -> ShardEntry:
        """The entry called ``name``."""
        for entry in self.shards:
            if entry.name == name:
                return entry
        raise KeyError(f"The atlas has no shard {name!r}; shards: {', '.join(e.name for e in self.shards) or 'none'}.")

    def names(self) -> list[str]:
        """Shard names in the order they were added."""
        return [entry.name for entry in self.shards]

    def to_json(self) -> bytes:
        """Serialised manifest."""
        return json.dumps(asdict(self), indent=1).encode()

    @classmethod
    def from_json(cls, content: bytes, where: str) -> Manifest:
        """Parse ``atlas.json`` read from ``where``."""
        try:
            raw = json.loads(content)
        except json.JSONDecodeError as error:
            raise ValueError(f"{where} is not valid JSON ({error}); the atlas manifest is damaged.") from error
        if raw.get("format") != FORMAT:
            raise ValueError(f"{where} is not a sigscan atlas manifest (format {raw.get('format')!r}).")
        if raw.get("format_version", 0) > FORMAT_VERSION:
            raise ValueError(
                f"{where} has format version {raw['format_version']}; this sigscan reads up to {FORMAT_VERSION}. "
                "Upgrade sigscan."
            )
        shards = [ShardEntry(**entry) for entry in raw.pop("shards", [])]
        return cls(**raw, shards=shards)


def read_manifest(location: Location) -> Manifest:
    """Read the manifest of the atlas at ``location``."""
    if not location.exists(MANIFEST):
        raise FileNotFoundError(
            f"{location.join(MANIFEST)} does not exist: {location} is not an atlas. Create one with "
            "ss.Atlas.create(path, gene_order=...) or `sigscan atlas build`."
        )
    return Manifest.from_json(location.read_bytes(MANIFEST), location.join(MANIFEST))


def write_manifest(location: Location, manifest: Manifest) -> None:
    """Replace the manifest atomically (the commit point of ``add``/``remove``)."""
    location.write_atomic(manifest.to_json(), MANIFEST)
