# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
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
# This tutorial computes SIGnature attributions for the bundled PBMC3k data with a small scVI model trained on it,
# checks the exact fast path against the captum reference, and compares a UMAP built from attributions with one built
# from expression.
#
# Absolute expression says how much of a transcript a cell has; an attribution says how much that gene moves the cell
# in the model's latent space. For each cell, the *summation head* $s(x') = \sum_k |f_k(x')\, f_k(x)|$ of the model's
# embedding $f$ is explained with Integrated Gradients from a zero baseline. Attributions are made absolute and scaled
# to 1,000 per cell; genes that are not expressed get exactly zero (see {doc}`../how-it-works`).
#
# **Setting.** Everything runs on a laptop CPU in about a minute. Under `CI=true` (how CI executes the tutorials) the
# scVI model trains for 5 epochs instead of 30; the outputs shown here come from the setting named in the first cell.

# %%
import os
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm's notice in a notebook without widgets
import matplotlib.pyplot as plt
import numpy as np
import scanpy as sc
import scvi

import sigscan as ss

CI = os.environ.get("CI", "").lower() == "true"
MAX_EPOCHS = 5 if CI else 30
warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", module="lightning")  # Lightning's notes on its own settings
scvi.settings.verbosity = "WARNING"  # keep Lightning's banners out of the notebook
print(f"setting: {'CI' if CI else 'full'} ({MAX_EPOCHS} scVI epochs)")

adata = ss.datasets.pbmc3k()
adata = adata[adata.obs["passed_tutorial_qc"].to_numpy()].copy()
adata

# %% [markdown]
# ## A small scVI model
#
# Any trained `scvi.model.SCVI` works (a CELLxGENE Census model folder too, see {doc}`checkpoints`). Here we train
# one on highly variable genes; {class}`sigscan.models.SCVI` wraps it. Its input is `log1p` of the counts, as the
# encoder sees them.

# %%
import logging

logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
logging.getLogger("lightning.fabric").setLevel(logging.ERROR)

sc.pp.filter_genes(adata, min_cells=3)
hvg = sc.pp.highly_variable_genes(adata, flavor="seurat_v3", n_top_genes=2000, inplace=False)
train = adata[:, hvg["highly_variable"].to_numpy()].copy()
scvi.settings.seed = 0
scvi.model.SCVI.setup_anndata(train)
vae = scvi.model.SCVI(train, n_hidden=128, n_latent=10, n_layers=1)
vae.train(max_epochs=MAX_EPOCHS, batch_size=256, accelerator="cpu", enable_progress_bar=False)
model = ss.models.SCVI(vae)
model

# %% [markdown]
# ## Attributions
#
# {func}`sigscan.pp.attributions` aligns the data to the model's genes, checks that it holds raw counts, and writes a
# sparse layer, a `var` mask of the model's genes and provenance.

# %%
ss.pp.attributions(adata, model, method="ig", progress=False)
layer = adata.layers["attr_scvi_ig"]
print(type(layer).__name__, layer.dtype, f"{layer.nnz / adata.n_obs:.0f} non-zero genes per cell")
print("row sums:", np.unique(np.round(np.asarray(layer.sum(axis=1)).ravel())))
adata.uns["sigscan"]["attributions"]["attr_scvi_ig"]

# %% [markdown]
# ## The fast path equals captum
#
# scVI's first operation on genes is a Linear layer, so sigscan uses its exact fast path: the first layer is applied
# once to the sparse input, only the rest of the network runs along the integration path, and gene gradients are
# evaluated only at expressed genes. `engine="captum"` forces the reference path (captum on the dense input); the two
# must agree, which we check on a few cells.

# %%
few = adata[:30].copy()
ss.pp.attributions(few, model, method="ig", key_added="fast", progress=False)
ss.pp.attributions(few, model, method="ig", key_added="captum", engine="captum", progress=False)
fast, reference = few.layers["fast"].toarray(), few.layers["captum"].toarray()
difference = np.abs(fast - reference).max()
pearson = min(np.corrcoef(a, b)[0, 1] for a, b in zip(fast, reference, strict=True))
print(f"max |fast - captum| on the 1000-scaled values: {difference:.2e}; lowest per-cell Pearson: {pearson:.6f}")
assert difference < 1e-3

# %% [markdown]
# ## Which genes drive each cell type?
#
# The top-attributed genes of each cell type, averaged within the type: marker genes come up without being asked
# for.

# %%
for cell_type in ["B cells", "NK cells", "CD14+ Monocytes", "Megakaryocytes"]:
    mask = (adata.obs["cell_type"] == cell_type).to_numpy()
    mean = np.asarray(layer[mask].mean(axis=0)).ravel()
    top = adata.var_names[np.argsort(-mean)[:8]]
    print(f"{cell_type:16s}", ", ".join(top))

# %% [markdown]
# ## Attribution UMAP versus expression UMAP
#
# The same recipe (log1p, PCA on the model's genes, neighbours, UMAP) applied once to normalised expression and once
# to the attribution layer. Attributions are already scaled per cell (1,000), so they are only log-transformed.

# %%
genes = adata.var["attr_scvi_ig_in_model"].to_numpy()
views = {}
for name in ["expression", "attribution"]:
    view = sc.AnnData(
        X=adata.layers["attr_scvi_ig"][:, genes] if name == "attribution" else adata.X[:, genes].astype(np.float32),
        obs=adata.obs[["cell_type"]].copy(),
    )
    if name == "expression":
        sc.pp.normalize_total(view, target_sum=1e4)
    sc.pp.log1p(view)
    sc.pp.pca(view, n_comps=30, random_state=0)
    sc.pp.neighbors(view, random_state=0)
    sc.tl.umap(view, random_state=0)
    views[name] = view

fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
for ax, (name, view) in zip(axes, views.items(), strict=True):
    sc.pl.umap(view, color="cell_type", ax=ax, show=False, title=f"{name} UMAP", frameon=False, legend_loc=None)
axes[1].legend(
    handles=[plt.Line2D([], [], marker="o", ls="", color=c) for c in views["expression"].uns["cell_type_colors"]],
    labels=list(views["expression"].obs["cell_type"].cat.categories),
    loc="center left",
    bbox_to_anchor=(1, 0.5),
    frameon=False,
)
plt.show()

# %% [markdown]
# Both separate the PBMC types. How well does each representation keep cells of a type together? The silhouette of
# the cell-type labels in each PCA space (higher is tighter, separated clusters):

# %%
from sklearn.metrics import silhouette_score

for name, view in views.items():
    print(f"{name:12s} silhouette: {silhouette_score(view.obsm['X_pca'], view.obs['cell_type']):.3f}")

# %% [markdown]
# ## Signature scores
#
# A gene set's score is the mean attribution of its genes in each cell (genes outside the model count as zero and are
# reported once). Each PanglaoDB signature should score highest in the cell type it marks.

# %%
sets = ss.datasets.gene_sets("panglaodb_immune")
shown = ["PANGLAODB_B_CELLS", "PANGLAODB_NK_CELLS", "PANGLAODB_MONOCYTES"]
with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)  # notices about set genes the model lacks
    for name in shown:
        ss.tl.attribution_score(adata, sets[name], key_added=name)
adata.obs.groupby("cell_type", observed=True)[shown].mean().round(2)

# %%
ss.pl.score_distributions(adata, shown, "cell_type")

# %% [markdown]
# Next: {doc}`compare_scorers` asks whether these attribution scores identify cell types better than the expression
# scorers you already use.
