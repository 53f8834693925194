"""A small synthetic count dataset with planted gene programs (decoupler ``ds.toy`` / scvi ``synthetic_iid`` idea)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse


def toy(
    n_cells: int = 300,
    n_genes: int = 200,
    n_groups: int = 3,
    program_size: int = 10,
    *,
    random_state: int = 0,
) -> ad.AnnData:
    """Negative-binomial counts where each group over-expresses its own program of genes.

    Parameters
    ----------
    n_cells, n_genes, n_groups, program_size
        Size of the data; group ``g`` over-expresses genes ``PROG{g}_0 …`` fourfold.
    random_state
        Seed of the random generator.

    Returns
    -------
    AnnData with CSR float32 counts, ``obs["group"]``, ``obs["sample"]`` and ``uns["programs"]`` (group → genes).

    Examples
    --------
    >>> import sigscan as ss
    >>> ss.datasets.toy(n_cells=30, n_genes=40).shape
    (30, 40)
    """
    if n_groups * program_size > n_genes:
        raise ValueError("n_groups * program_size must not exceed n_genes")
    rng = np.random.default_rng(random_state)
    names = [f"PROG{g}_{i}" for g in range(n_groups) for i in range(program_size)]
    names += [f"GENE{i}" for i in range(n_genes - len(names))]
    base = rng.gamma(0.6, 1.0, size=n_genes)
    group = rng.integers(0, n_groups, size=n_cells)
    means = np.tile(base, (n_cells, 1))
    for g in range(n_groups):
        means[np.ix_(group == g, np.arange(g * program_size, (g + 1) * program_size))] *= 4.0
    size = rng.lognormal(0.0, 0.3, size=(n_cells, 1))
    counts = rng.negative_binomial(2, 2 / (2 + means * size)).astype(np.float32)
    obs = pd.DataFrame(
        {
            "group": pd.Categorical([f"group{g}" for g in group]),
            "sample": pd.Categorical([f"sample{i}" for i in rng.integers(0, 6, size=n_cells)]),
        },
        index=[f"cell{i}" for i in range(n_cells)],
    )
    adata = ad.AnnData(sparse.csr_matrix(counts), obs=obs, var=pd.DataFrame(index=names))
    adata.uns["programs"] = {f"group{g}": names[g * program_size : (g + 1) * program_size] for g in range(n_groups)}
    return adata
