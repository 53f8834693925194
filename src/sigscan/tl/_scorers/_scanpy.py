"""scanpy's ``score_genes`` (Tirosh et al. 2016 / Seurat's AddModuleScore), called as is."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ._data import ScoringData


def scanpy_score(
    data: ScoringData,
    gene_sets: Sequence[np.ndarray],
    *,
    ctrl_size: int = 50,
    n_bins: int = 25,
    random_state: int = 0,
) -> np.ndarray:
    """Scores from :func:`scanpy.tl.score_genes` itself, cells × sets.

    scanpy reads the whole matrix: the stored one when it is in memory and already log-normalised (no copy), else a
    normalised CSR copy assembled chunk by chunk.
    """
    import anndata as ad
    import scanpy as sc

    matrix = data.matrix
    if data.normalize or getattr(data.adata, "isbacked", False) or matrix is None:
        matrix = data.to_memory()
    view = ad.AnnData(
        X=matrix,
        obs=pd.DataFrame(index=data.adata.obs_names.copy()),
        var=pd.DataFrame(index=data.adata.var_names.copy()),
    )
    scores = np.zeros((data.shape[0], len(gene_sets)), dtype=np.float64)
    names = view.var_names
    for k, columns in enumerate(gene_sets):
        sc.tl.score_genes(
            view,
            list(names[np.asarray(columns)]),
            ctrl_size=ctrl_size,
            n_bins=n_bins,
            random_state=random_state,
            score_name="_sigscan_score",
            use_raw=False,
        )
        scores[:, k] = view.obs["_sigscan_score"].to_numpy(dtype=np.float64)
    return scores
