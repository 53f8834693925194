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
# # An attribution atlas from several datasets, queried locally and on a Dask cluster
#
# Attributions are computed once per dataset and stored; afterwards any gene set can be scored over every stored
# cell in seconds, because scoring reads only the set's gene columns. {class}`sigscan.Atlas` is that store: a folder
# with a manifest (`atlas.json`) and one AnnData-zarr shard per dataset, all in one model's gene space. This tutorial
# builds an atlas from the two bundled datasets (PBMC3k and the Kang 2018 interferon-β subset), scores the interferon
# program over both, and runs the same query on a local Dask cluster.
#
# **Setting.** Under `CI=true` the scVI model trains for 5 epochs; otherwise 30. The first cell prints which setting
# produced the outputs below. The atlas is written to a temporary folder.

# %%
import os
import tempfile
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")
warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", module="lightning")  # Lightning's notes on its own settings
import logging

import numpy as np
import scvi

import sigscan as ss

CI = os.environ.get("CI", "").lower() == "true"
MAX_EPOCHS = 5 if CI else 30
scvi.settings.verbosity = "WARNING"
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
logging.getLogger("lightning.fabric").setLevel(logging.ERROR)
print(f"setting: {'CI' if CI else 'full'} ({MAX_EPOCHS} scVI epochs)")

# %% [markdown]
# ## One model for every dataset
#
# An atlas holds attributions of one model: its gene order is the atlas's column space, and the model's checksum is
# recorded so that a shard from another model is refused. We train one small scVI model on PBMC3k, on the genes the
# two datasets share (in practice: a foundation model such as SCimilarity, see {doc}`checkpoints`).

# %%
pbmc = ss.datasets.pbmc3k()
pbmc = pbmc[pbmc.obs["passed_tutorial_qc"].to_numpy()].copy()
kang = ss.datasets.kang_ifnb()
shared = [g for g in kang.var_names if g in set(pbmc.var_names)]
print(f"PBMC3k {pbmc.shape}, Kang {kang.shape}, {len(shared)} shared genes")

scvi.settings.seed = 0
train = pbmc[:, shared].copy()
scvi.model.SCVI.setup_anndata(train)
vae = scvi.model.SCVI(train, n_hidden=128, n_latent=10, n_layers=1)
vae.train(max_epochs=MAX_EPOCHS, batch_size=256, accelerator="cpu", enable_progress_bar=False)
model = ss.models.SCVI(vae)

# %% [markdown]
# ## Attributions per dataset
#
# Each dataset gets its attributions from the same model. Cell names are made unique across datasets, and both carry
# the columns we want to query by (`cell_type`, `sample`, `condition`).

# %%
pbmc.obs_names = "pbmc3k-" + pbmc.obs_names
pbmc.obs["sample"] = "pbmc3k"
pbmc.obs["condition"] = "ctrl"
kang.obs_names = "kang-" + kang.obs_names
for data in (pbmc, kang):
    ss.pp.attributions(data, model, method="ig", progress=False)

# %% [markdown]
# ## Build the atlas
#
# `Atlas.create` records the model; `Atlas.add` writes one shard per dataset. Each shard is written aside and renamed
# into place before the manifest is replaced, so an interrupted `add` leaves the previous atlas intact, and adding the
# same data again does nothing. The folder holds the manifest (`atlas.json`), the model's gene order with a sorted
# index of it for looking up gene sets, and the shards: AnnData zarr stores, each with a one-file copy of what a query
# reads besides the gene columns (column pointers, cell names, obs), so a fresh process's first query opens a few files
# per shard instead of a few dozen.

# %%
folder = os.path.join(tempfile.mkdtemp(), "pbmc-atlas")
atlas = ss.Atlas.create(folder, model=model)
atlas.add(pbmc, name="pbmc3k", obs_columns=["cell_type", "sample", "condition"])
atlas.add(kang, name="kang2018", obs_columns=["cell_type", "sample", "condition"])
atlas.add(kang, name="kang2018", obs_columns=["cell_type", "sample", "condition"])  # again: nothing to do
atlas

# %%
atlas.info()

# %%
sorted(f for f in os.listdir(folder) if not f.startswith(".")), sorted(os.listdir(os.path.join(folder, "shards")))

# %% [markdown]
# ## Query: score a gene set over every cell
#
# `Atlas.score` returns one row per cell with the requested obs columns and the score; it equals
# {func}`sigscan.tl.attribution_score` on the same data. `obs_filter` selects cells with a pandas query.

# %%
ifn = ss.datasets.gene_sets("hallmark")["HALLMARK_INTERFERON_ALPHA_RESPONSE"]
with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)  # set genes outside the model's gene order
    scores = atlas.score(ifn, columns=["cell_type", "sample", "condition"], key="ifn_alpha", progress=False)
scores.groupby(["sample", "condition"], observed=True)["ifn_alpha"].mean().round(3)

# %%
with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)
    monocytes = atlas.score(
        ifn, obs_filter="cell_type == 'CD14+ Monocytes'", columns=["sample"], key="ifn_alpha", progress=False
    )
monocytes.groupby("sample", observed=True)["ifn_alpha"].describe().round(3)

# %% [markdown]
# The atlas result is a plain DataFrame of cells, so the hits workflow of {doc}`interferon_kang` applies unchanged:

# %%
called = ss.tl.hits(scores, "ifn_alpha", percentile=90)
ss.tl.sample_hits(called, "ifn_alpha_hit", sample_key="sample", min_cells=25, min_samples=2)

# %% [markdown]
# ## The same code on a Dask cluster
#
# `backend=` decides where shards are scored: a thread pool (default), the current Dask scheduler (`"dask"`) or a
# `dask.distributed.Client`, one task per shard. Here a local cluster with two worker processes stands in for a real
# one; the call is the same, and so are the scores. (Install the extra with `pip install "sigscan[dask]"`.)

# %%
from dask.distributed import Client, LocalCluster

with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.ERROR
        ) as cluster,
        Client(cluster) as client,
    ):
        on_cluster = atlas.score(ifn, columns=["cell_type", "sample", "condition"], key="ifn_alpha", backend=client)
        print(client)
print(
    "identical to the local query:", np.array_equal(on_cluster["ifn_alpha"].to_numpy(), scores["ifn_alpha"].to_numpy())
)

# %% [markdown]
# The atlas folder can also live on object storage (`ss.Atlas("s3://bucket/atlas")`, any fsspec URL); with a
# cluster next to the data, only the scores travel.
#
# Reopening the atlas later needs only its path; `verify` re-reads every shard and checks its checksum.

# %%
reopened = ss.Atlas(folder)
reopened.verify(progress=False)
