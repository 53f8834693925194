"""Real public datasets and gene sets shipped with sigscan (provenance: ``datasets/data/README.md``)."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import anndata as ad

from .._gene_sets import read_gmt

_GENE_SETS = {
    "hallmark": "h.all.v2025.symbols.gmt",
    "hallmark_v7": "h.all.v7.0.symbols.gmt",
    "tirosh_cell_cycle": "tirosh2016_cell_cycle.gmt",
    "panglaodb_immune": "panglaodb_immune_human.gmt",
    "human_tfs": "lambert2018_human_tfs_v1.01.txt",
}


def _data_path(name: str) -> Path:
    return Path(str(files("sigscan.datasets") / "data" / name))


def _read(name: str) -> ad.AnnData:
    adata = ad.read_h5ad(_data_path(name))
    adata.X = adata.X.astype("float32")
    return adata


def pbmc3k() -> ad.AnnData:
    """10x PBMC 3k: 2,700 cells × 32,738 genes, raw UMI counts (CSR float32) and scanpy-tutorial cell types.

    ``obs["cell_type"]`` holds the louvain labels of the scanpy tutorial (``"unknown"`` for the 62 cells its QC
    removed; ``obs["passed_tutorial_qc"]``), ``var["gene_ids"]`` the Ensembl IDs. CC BY 4.0 (10x Genomics).

    Examples
    --------
    >>> import sigscan as ss
    >>> ss.datasets.pbmc3k().shape
    (2700, 32738)
    """
    return _read("pbmc3k.h5ad")


def kang_ifnb() -> ad.AnnData:
    """Kang et al. 2018 IFN-β PBMC subset: 1,556 cells × 1,267 genes, 2 donors × ctrl/stim, raw counts.

    ``obs`` has ``condition``, ``donor``, ``sample`` and ``cell_type``; ``var["gene_ids"]`` the Ensembl IDs.

    Examples
    --------
    >>> import sigscan as ss
    >>> ss.datasets.kang_ifnb().obs["condition"].value_counts().to_dict()
    {'stim': 806, 'ctrl': 750}
    """
    return _read("kang_ifnb.h5ad")


def gene_sets(name: str) -> dict[str, list[str]]:
    """Bundled gene-set collections.

    Parameters
    ----------
    name
        ``"hallmark"`` (MSigDB Hallmark v2025 symbols), ``"hallmark_v7"`` (v7.0, older symbols that suit hg19 data),
        ``"tirosh_cell_cycle"`` (S and G2/M), ``"panglaodb_immune"`` (PanglaoDB human immune/blood markers) or
        ``"human_tfs"`` (one set, ``LAMBERT2018_HUMAN_TFS``: the 1,639 human transcription factors of Lambert et al.
        2018, *Cell* 172:650, Human TFs list v1.01).

    Returns
    -------
    Mapping of set name → genes.

    Examples
    --------
    >>> import sigscan as ss
    >>> sets = ss.datasets.gene_sets("tirosh_cell_cycle")
    >>> len(sets)
    2
    """
    if name not in _GENE_SETS:
        raise KeyError(f"Unknown gene-set collection {name!r}; available: {', '.join(_GENE_SETS)}.")
    path = _data_path("genesets/" + _GENE_SETS[name])
    if path.suffix == ".txt":  # a plain list, one gene per line
        text = path.read_text()
        return {"LAMBERT2018_HUMAN_TFS": list(dict.fromkeys(g.strip() for g in text.splitlines() if g.strip()))}
    return read_gmt(path)


#: PBMC3k cell types (``obs["cell_type"]`` of :func:`pbmc3k`) → PanglaoDB immune set names (:func:`gene_sets`
#: ``("panglaodb_immune")``). Both monocyte populations use the monocyte set.
_PBMC3K_PANGLAODB: dict[str, str] = {
    "CD4 T cells": "PANGLAODB_T_HELPER_CELLS",
    "CD14+ Monocytes": "PANGLAODB_MONOCYTES",
    "B cells": "PANGLAODB_B_CELLS",
    "CD8 T cells": "PANGLAODB_T_CYTOTOXIC_CELLS",
    "NK cells": "PANGLAODB_NK_CELLS",
    "FCGR3A+ Monocytes": "PANGLAODB_MONOCYTES",
    "Dendritic cells": "PANGLAODB_DENDRITIC_CELLS",
    "Megakaryocytes": "PANGLAODB_MEGAKARYOCYTES",
}


def pbmc3k_signatures() -> dict[str, str]:
    """PBMC3k cell type → PanglaoDB immune gene-set name: the labels of the SIGnature scorer comparison.

    Keys are the ``obs["cell_type"]`` labels of :func:`pbmc3k`; values name sets of
    :func:`gene_sets` ``("panglaodb_immune")`` (both monocyte populations use the monocyte set). Pass it to
    :func:`sigscan.tl.compare_scorers` with ``gmt=ss.datasets.gene_sets("panglaodb_immune")``.

    Examples
    --------
    >>> import sigscan as ss
    >>> ss.datasets.pbmc3k_signatures()["B cells"]
    'PANGLAODB_B_CELLS'
    """
    return dict(_PBMC3K_PANGLAODB)
