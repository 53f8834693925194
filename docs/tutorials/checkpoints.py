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
# # Loading published checkpoints: SCimilarity, scVI (Census), scGPT, scFoundation and SSL-scTab
#
# sigscan reads each foundation model from the files its authors publish, with its own module definitions (no
# dependency on the original packages). The real checkpoints are large downloads, so this tutorial writes a *small*
# checkpoint of each architecture in the published format, loads it the way you would load the real one, and
# computes attributions on PBMC3k cells. To use a real model, replace the folder with the downloaded one: nothing
# else changes.
#
# The small models have random weights: their attributions show that loading, gene matching and attribution work,
# not biology.
#
# **Setting.** The same under `CI=true` and otherwise: 40 PBMC3k cells, models with a few small layers.

# %%
import tempfile
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")
warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", module="lightning")  # Lightning's notes on its own settings
import logging
from pathlib import Path

import numpy as np
import scanpy as sc
import scvi

import sigscan as ss

scvi.settings.verbosity = "WARNING"
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
logging.getLogger("lightning.fabric").setLevel(logging.ERROR)

adata = ss.datasets.pbmc3k()
adata = adata[adata.obs["passed_tutorial_qc"].to_numpy()].copy()
sc.pp.filter_genes(adata, min_cells=3)
hvg = sc.pp.highly_variable_genes(adata, flavor="seurat_v3", n_top_genes=1000, inplace=False)["highly_variable"]
genes = list(adata.var_names[hvg.to_numpy()])  # the small models' gene order
cells = adata[:40].copy()
root = Path(tempfile.mkdtemp())


def files(folder):
    """The files of a checkpoint folder and their sizes."""
    return {p.name: f"{p.stat().st_size / 1e6:.2f} MB" for p in sorted(Path(folder).iterdir())}


def summary(data, key):
    """What the attribution layer holds."""
    layer = data.layers[key]
    return f"{key}: {layer.nnz / data.n_obs:.0f} non-zero genes per cell, rows sum to {layer.sum(axis=1).mean():.0f}"


# %% [markdown]
# ## SCimilarity
#
# Published as a model folder: `encoder.ckpt` (`{"state_dict": …}`), `gene_order.tsv` and `layer_sizes.json`
# (other files in the download are optional). Input: counts aligned to the gene order, normalised to 10,000 per cell
# over those genes, `log1p`. The encoder is an MLP whose output is L2-normalised.

# %%
small = ss.models.SCimilarity.random(genes, hidden_dim=(64, 64), latent_dim=16, random_state=0)
folder = small.save(root / "scimilarity")
files(folder)

# %%
model = ss.models.SCimilarity(folder)  # the real one: ss.models.SCimilarity("path/to/model_v1.1")
ss.pp.attributions(cells, model, method="ig", progress=False)
summary(cells, "attr_scimilarity_ig")

# %% [markdown]
# Point-gradient methods (`ixg`, `dl`) on an L2-normalised encoder explain the embedding before normalisation
# (`head="prenorm"`, the default there); the provenance records it. See {doc}`../how-it-works` for why.

# %%
ss.pp.attributions(cells, model, method="ixg", progress=False)
cells.uns["sigscan"]["attributions"]["attr_scimilarity_ixg"]["head"]

# %% [markdown]
# ## scVI, CELLxGENE Census style
#
# A saved `scvi.model.SCVI` folder (`model.pt`). The Census scVI models use Ensembl gene IDs and were trained with
# batch covariates that the encoder does not see (`encode_covariates=False`); we write one the same way. The data's
# gene symbols are matched to the model's Ensembl IDs through `adata.var["gene_ids"]` automatically.

# %%
census_like = adata[:300, genes].copy()
census_like.var_names = census_like.var["gene_ids"].to_numpy()
census_like.obs["dataset_id"] = np.repeat(["a", "b"], 150)
scvi.settings.seed = 0
scvi.model.SCVI.setup_anndata(census_like, batch_key="dataset_id")
vae = scvi.model.SCVI(census_like, n_hidden=32, n_latent=8, n_layers=1, encode_covariates=False)
vae.train(max_epochs=1, batch_size=128, accelerator="cpu", enable_progress_bar=False)
vae.save(str(root / "census_scvi"), save_anndata=False)
files(root / "census_scvi")

# %%
model = ss.models.SCVI(root / "census_scvi")  # the real one: the folder of a Census scVI model
print(model.gene_order[:3].tolist(), "…")
ss.pp.attributions(cells, model, method="ig", progress=False)
summary(cells, "attr_scvi_ig")

# %% [markdown]
# ## scGPT
#
# The checkpoint folder (e.g. `scGPT_human`): `args.json`, `best_model.pt`, `vocab.json`. Expression is binned per
# cell (51 bins, deterministic), `<cls>` first; the embedding is the transformer output at `<cls>`, and attributions
# are taken with respect to the binned values.

# %%
small = ss.models.ScGPT.random(genes, embsize=32, nheads=2, d_hid=32, nlayers=2, random_state=0)
folder = small.save(root / "scgpt")
files(folder)

# %%
model = ss.models.ScGPT(folder)  # the real one: ss.models.ScGPT("path/to/scGPT_human")
ss.pp.attributions(cells, model, method="ig", n_steps=16, progress=False)
summary(cells, "attr_scgpt_ig")

# %% [markdown]
# ## scFoundation
#
# The published layout: `models.ckpt` (keyed by model version, e.g. `cell`) and the gene index
# `OS_scRNA_gene_index.19264.tsv`. sigscan feeds every expressed gene plus the two total-count tokens, and attributes
# the expressed genes' values with the total-count tokens fixed.

# %%
small = ss.models.ScFoundation.random(
    genes, hidden_dim=32, depth=2, heads=2, decoder_hidden_dim=16, decoder_heads=2, random_state=0
)
folder = small.save(root / "scfoundation")
files(folder)

# %%
model = ss.models.ScFoundation(folder)  # the real one: the folder holding models.ckpt and the gene index
ss.pp.attributions(cells, model, method="ig", n_steps=16, progress=False)
summary(cells, "attr_scfoundation_ig")

# %% [markdown]
# ## SSL-scTab
#
# Lightning checkpoints of the self-supervised scTab models (masked auto-encoder, BYOL, Barlow Twins) or fine-tuned
# classifiers, and scTab's `var.parquet` for the genes. sigscan reads the checkpoint without running pickled code.

# %%
small = ss.models.ScTabSSL.random(genes, units=(64, 32, 16), random_state=0)
folder = small.save(root / "sctab")
files(folder)

# %%
model = ss.models.ScTabSSL(folder)  # the real one: ss.models.ScTabSSL("path/to/checkpoint_folder", var="var.parquet")
ss.pp.attributions(cells, model, method="ig", progress=False)
summary(cells, "attr_sctab_ig")

# %% [markdown]
# ## Any torch encoder
#
# A model without a wrapper: {class}`sigscan.models.TorchEncoder` takes a `torch.nn.Module`, its gene order and the
# preprocessing its input expects.

# %%
import torch

encoder = torch.nn.Sequential(torch.nn.Linear(len(genes), 32), torch.nn.ReLU(), torch.nn.Linear(32, 8))
model = ss.models.TorchEncoder(encoder, genes, preprocess="log1p_cp10k", name="mlp")
ss.pp.attributions(cells, model, method="ig", progress=False)
summary(cells, "attr_mlp_ig")

# %% [markdown]
# Every call recorded its model, weights checksum and settings:

# %%
{key: (p["model"], p["method"], p.get("head")) for key, p in cells.uns["sigscan"]["attributions"].items()}
