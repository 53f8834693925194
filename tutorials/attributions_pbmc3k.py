# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Gene attributions of a foundation model on PBMC3k
#
# This tutorial computes SIGnature attributions for the bundled PBMC3k data with a small scVI model, checks the exact
# fast path against the captum reference, and scores immune signatures with the attributions.
#
# Absolute expression says how much of a transcript a cell has; an attribution says how much that gene moves the cell
# in the model's latent space. For each cell, the *summation head* `s(x') = Σ_k |f_k(x') f_k(x)|` of the model's
# embedding `f` is explained with Integrated Gradients from a zero baseline. Attributions are made absolute and scaled to
# 1,000 per cell; genes that are not expressed get exactly zero.

# %%
import matplotlib

matplotlib.use("Agg")
import numpy as np
import scanpy as sc
import scvi

import sigscan as ss

adata = ss.datasets.pbmc3k()
adata = adata[adata.obs["passed_tutorial_qc"].to_numpy()].copy()
adata

# %% [markdown]
# ## A small scVI model
#
# Any trained `scvi.model.SCVI` works (a CELLxGENE Census model folder too). Here we train one for a few epochs on
# highly variable genes; `ss.models.SCVI` wraps it. Its input is `log1p` of the counts, as the encoder sees them.

# %%
sc.pp.filter_genes(adata, min_cells=3)
hvg = sc.pp.highly_variable_genes(adata, flavor="seurat_v3", n_top_genes=2000, inplace=False)
train = adata[:, hvg["highly_variable"].to_numpy()].copy()
scvi.settings.seed = 0
scvi.model.SCVI.setup_anndata(train)
vae = scvi.model.SCVI(train, n_hidden=128, n_latent=10, n_layers=1)
vae.train(max_epochs=10, batch_size=256, accelerator="cpu", enable_progress_bar=False)
model = ss.models.SCVI(vae)
model

# %% [markdown]
# ## Attributions
#
# `ss.pp.attributions` aligns the data to the model's genes, validates that it holds raw counts, and writes a sparse
# layer, a `var` mask of the model's genes and provenance.

# %%
ss.pp.attributions(adata, model, method="ig", progress=False)
layer = adata.layers["attr_scvi_ig"]
print(type(layer).__name__, layer.dtype, f"{layer.nnz / adata.n_obs:.0f} non-zero genes per cell")
print("row sums:", np.unique(np.round(np.asarray(layer.sum(axis=1)).ravel())))
adata.uns["sigscan"]["attributions"]["attr_scvi_ig"]

# %% [markdown]
# The default *fast path* uses that scVI's first operation on genes is a Linear layer. It must equal the captum reference
# path on the dense input: we check on a few cells.

# %%
few = adata[:30].copy()
ss.pp.attributions(few, model, method="ig", key_added="fast", progress=False)
ss.pp.attributions(few, model, method="ig", key_added="captum", engine="captum", progress=False)
difference = np.abs(few.layers["fast"] - few.layers["captum"]).max()
print(f"max |fast - captum| on the 1000-scaled values: {difference:.2e}")
assert difference < 1e-3

# %% [markdown]
# ## Which genes drive each cell?
#
# The top-attributed genes of each cell type, averaged within the type.

# %%
for cell_type in ["B cells", "NK cells", "CD14+ Monocytes"]:
    mask = (adata.obs["cell_type"] == cell_type).to_numpy()
    mean = np.asarray(layer[mask].mean(axis=0)).ravel()
    top = adata.var_names[np.argsort(-mean)[:8]]
    print(f"{cell_type:16s}", ", ".join(top))

# %% [markdown]
# ## Signature scores
#
# A gene set's score is the mean attribution of its genes in each cell (genes outside the model count as zero and are
# reported once).

# %%
sets = ss.datasets.gene_sets("panglaodb_immune")
in_model = set(adata.var_names[adata.var["attr_scvi_ig_in_model"].to_numpy()])
for name in ["PANGLAODB_B_CELLS", "PANGLAODB_NK_CELLS", "PANGLAODB_MONOCYTES"]:
    genes = [g for g in sets[name] if g in in_model]
    ss.tl.attribution_score(adata, genes, key_added=name)
adata.obs.groupby("cell_type", observed=True)[["PANGLAODB_B_CELLS", "PANGLAODB_NK_CELLS", "PANGLAODB_MONOCYTES"]].mean()
