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
# # Robustness: the paper's analyses on bundled data, read honestly
#
# The SIGnature paper argues that attributions are a better representation of a cell than its expression: less tied
# to sequencing depth, more stable when counts are thinned, and more specific. It tests that with five analyses, all
# in sigscan, each comparing attribution with expression and with a **shuffled-gene baseline** (the same analysis on
# random gene sets of the same size, the chance level):
#
# 1. {func}`sigscan.tl.qc_correlation`: does a marker-set score track QC metrics (depth, genes detected, % mito)?
# 2. {func}`sigscan.tl.rank_percentiles`: where do marker, ribosomal and mitochondrial genes rank within a cell?
# 3. {func}`sigscan.tl.downsampling_stability`: does a cell type's gene ranking survive thinned counts?
# 4. {func}`sigscan.tl.cell_cycle_contrast`: do G2/M cells stand out on the G2/M gene set?
# 5. {func}`sigscan.tl.factor_specificity`: does one NMF factor mark a cell type in every donor?
#
# The paper's numbers come from large foundation models (SCimilarity) trained on millions of cells. Here the model is
# a small scVI trained for a few epochs on the data itself, so **the point is the workflow and how to read it, not a
# verdict on attributions**: where attribution does not beat expression below, that is what this small model gives.
#
# **Setting.** Under `CI=true` the scVI models train for 5 epochs, the downsampling uses 2 fractions and the baselines
# 3 relabellings; otherwise 30 epochs, 5 fractions and 10 relabellings. The first cell prints which setting produced
# the outputs below.

# %%
import os
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")
warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", module="lightning")  # Lightning's notes on its own settings
warnings.filterwarnings("ignore", message="Sparse")  # torch's notes on its sparse tensors
import logging
import tempfile

import scanpy as sc
import scvi

import sigscan as ss

CI = os.environ.get("CI", "").lower() == "true"
MAX_EPOCHS, FRACTIONS, N_SHUFFLES = (5, (0.5, 0.8), 3) if CI else (30, (0.1, 0.25, 0.5, 0.75, 0.9), 10)
scvi.settings.verbosity = "WARNING"
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
logging.getLogger("lightning.fabric").setLevel(logging.ERROR)
print(f"setting: {'CI' if CI else 'full'} ({MAX_EPOCHS} scVI epochs, fractions {FRACTIONS}, {N_SHUFFLES} relabellings)")


def train_scvi(adata):
    """A small scVI model on ``adata``'s genes, wrapped for sigscan."""
    scvi.settings.seed = 0
    train = adata.copy()
    scvi.model.SCVI.setup_anndata(train)
    vae = scvi.model.SCVI(train, n_hidden=128, n_latent=10, n_layers=1)
    vae.train(max_epochs=MAX_EPOCHS, batch_size=256, accelerator="cpu", enable_progress_bar=False)
    return ss.models.SCVI(vae)


# %% [markdown]
# ## Data, model and attributions
#
# PBMC3k after the scanpy tutorial's QC, restricted to the highly variable genes plus the marker genes of its cell
# types, the ribosomal and mitochondrial genes and the Tirosh cell-cycle genes (so every analysis has its genes), and
# Integrated Gradients attributions of a small scVI model trained on it. The counts stay in `X`.

# %%
adata = ss.datasets.pbmc3k()
adata = adata[adata.obs["passed_tutorial_qc"].to_numpy()].copy()
sc.pp.filter_genes(adata, min_cells=3)
sets = ss.datasets.gene_sets("panglaodb_immune")
signatures = ss.datasets.pbmc3k_signatures()  # cell type -> PanglaoDB set
cell_cycle = ss.datasets.gene_sets("tirosh_cell_cycle")
g2m_genes, s_genes = cell_cycle["TIROSH2016_G2M_PHASE"], cell_cycle["TIROSH2016_S_PHASE"]
hvg = sc.pp.highly_variable_genes(adata, flavor="seurat_v3", n_top_genes=2000, inplace=False)["highly_variable"]
extra = {g for name in signatures.values() for g in sets[name]} | set(g2m_genes) | set(s_genes)
keep = hvg.to_numpy() | adata.var_names.isin(list(extra)) | adata.var_names.str.match(r"^(MT-|RP[LS])")
adata = adata[:, keep].copy()
model = train_scvi(adata)
ss.pp.attributions(adata, model, method="ig", progress=False)
adata

# %% [markdown]
# ## 1. Do scores track sequencing depth?
#
# For each cell type, its marker set is scored with attribution and with expression scorers, and the Spearman
# correlation with each cell's QC metrics is taken over the cells of that type. Small |Spearman| is good: the score
# follows biology, not depth.

# %%
with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)  # notices about set genes missing from the data
    qc = ss.tl.qc_correlation(
        adata,
        signatures,
        groupby="cell_type",
        gmt=sets,
        methods=["attribution", "mean", "ucell"],
        n_shuffles=N_SHUFFLES,
    )
qc.groupby(["qc", "method", "kind"], observed=True)["abs_spearman"].mean().unstack(["kind"]).round(2)

# %%
ss.pl.qc_correlation(adata, show=True)

# %% [markdown]
# ## 2. Where do gene families rank within a cell?
#
# Within each cell, values are turned into percentiles (100 = the cell's largest); per cell type, a family's value is
# the mean percentile of its genes where detected. A representation that foregrounds identity ranks marker genes high
# and housekeeping families (ribosomal, mitochondrial), which dominate raw counts, lower.

# %%
ranks = ss.tl.rank_percentiles(
    adata, ["markers", "ribosomal", "mitochondrial"], groupby="cell_type", n_shuffles=N_SHUFFLES
)
ranks.groupby(["family", "reads", "kind"], observed=True)["mean_percentile"].mean().unstack("kind").round(1)

# %%
ss.pl.rank_percentiles(adata, show=True)

# %% [markdown]
# ## 3. Is a cell type's gene ranking stable under thinned counts?
#
# The counts are thinned binomially (a fraction of them removed), attributions are recomputed, and each cell type's
# ranking of genes (by mean attribution, or by mean log-expression) is compared with the one of the full counts.

# %%
down = ss.tl.downsampling_stability(
    adata, model, fractions=FRACTIONS, groupby="cell_type", method="ig", n_shuffles=N_SHUFFLES, random_state=0
)
down.query("kind == 'ranking'").groupby(["fraction", "reads"])[["spearman", "top_overlap"]].mean().unstack(
    "reads"
).round(3)

# %%
ss.pl.downsampling_stability(adata, show=True)

# %% [markdown]
# ## 4. Do G2/M cells stand out?
#
# PBMC3k has no measured cell-cycle phase, so the phase here is scanpy's `score_genes_cell_cycle` call, made from the
# *expression* of the same Tirosh genes. That makes the expression contrast partly circular (the cells were picked
# for high expression of those genes): read the attribution contrast against the shuffled baseline, not against
# expression. With imaged or sorted phases (as in the paper's FUCCI data), the comparison would be fair.

# %%
present = adata.var_names.intersection
print(
    f"G2/M genes in the data: {len(present(g2m_genes))} of {len(g2m_genes)};",
    f"S genes: {len(present(s_genes))} of {len(s_genes)}",
)
lognorm = sc.pp.log1p(sc.pp.normalize_total(adata, inplace=False)["X"])
scored = sc.AnnData(lognorm, obs=adata.obs[[]], var=adata.var[[]])
sc.tl.score_genes_cell_cycle(scored, s_genes=list(present(s_genes)), g2m_genes=list(present(g2m_genes)), random_state=0)
adata.obs["phase"] = scored.obs["phase"]
print(adata.obs["phase"].value_counts().to_dict())
with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)  # notices about set genes missing from the data (counted above)
    cycle = ss.tl.cell_cycle_contrast(
        adata,
        phase_key="phase",
        g2m_genes=g2m_genes,
        s_genes=s_genes,
        methods=["attribution", "mean"],
        n_shuffles=N_SHUFFLES,
    )
cycle[["phase", "method", "kind", "log2fc", "log2fc_sd", "n_cells_phase", "n_genes"]].round(3)

# %%
ss.pl.cell_cycle_contrast(adata, show=True)

# %% [markdown]
# ## 5. Does one factor mark a cell type in every donor?
#
# This needs several donors, so it runs on the bundled Kang 2018 subset (two donors, control and stimulated) with a
# second small scVI model. NMF factorises attributions and expression; for B cells, the factor with the best worst
# case must mark B cells of each donor against the other cells of each donor (within and across donors), every
# one-sided Welch t-test passing a Bonferroni bound. A small grid of runs (factor numbers × seeds) gives a pass rate.

# %%
kang = ss.datasets.kang_ifnb()
kang_model = train_scvi(kang)
ss.pp.attributions(kang, kang_model, method="ig", progress=False)
grid = {"n_factors": [5, 10], "random_state": [0, 1]}
factors = ss.tl.factor_specificity(kang, "B cells", batch_key="donor", groupby="cell_type", grid=grid)
factors[["reads", "n_factors", "random_state", "factor", "min_t", "p_value", "worst_comparison", "passes"]].round(4)

# %%
ss.pl.factor_specificity(kang, show=True)

# %% [markdown]
# ## All at once: the robustness report
#
# {func}`sigscan.tl.robustness_report` runs the analyses that apply to one dataset and model and writes their tables,
# figures and one self-contained `report.html`. Here it reuses the attribution layer computed above and runs the two
# fastest analyses.

# %%
with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)
    page = ss.tl.robustness_report(
        adata,
        model,
        {t: sets[name] for t, name in signatures.items()},
        groupby="cell_type",
        out=tempfile.mkdtemp(),  # your own folder in practice
        analyses=["qc_correlation", "rank_percentiles"],
        attribution_layer="attr_scvi_ig",
        n_shuffles=N_SHUFFLES,
    )
print(page.name, sorted(p.name for p in page.parent.iterdir()))

# %% [markdown]
# ## Reading the numbers
#
# The numbers are those of the outputs above (the setting printed in the first cell: under `CI=true` a 5-epoch scVI
# model and 3 relabellings, so expect a few hundredths of noise). Analysis by analysis:
#
# 1. **QC correlation: no win for attribution with this model.** For the real marker sets, attribution and mean
#    expression track total counts and genes detected about equally (|Spearman| around 0.3); UCell tracks them more.
#    Where attribution differs is the baseline: random gene sets of attributions follow depth *less* than random sets
#    of expression, which is the paper's mechanism (attribution divides out part of the depth signal), but for the
#    marker sets themselves the effect does not show here.
# 2. **Ranks: the paper's direction, modestly.** Marker genes rank at the top in both representations (near the
#    78th percentile, far above the shuffled ~35–40); ribosomal and mitochondrial genes rank several points lower in
#    attribution than in expression. Attribution pushes housekeeping genes down a little; it does not reorder the cell.
# 3. **Downsampling: expression is more stable.** Thinning the counts by half or more changes a cell type's
#    attribution ranking more than its expression ranking, both in Spearman and in the overlap of the top genes. The
#    paper finds the opposite with SCimilarity; a small model trained for a few epochs on 2,600 cells re-reads thinned
#    cells less consistently. Both stay far above the shuffled baseline (Spearman 0), so neither ranking falls apart.
# 4. **Cell cycle: both carry the signal, attribution slightly more.** G2/M and S cells score about 3 to 4.5
#    times higher (log2 fold change 1.5–2.2) on their gene sets than other cells, in attribution and expression
#    alike, against about 0 for random sets. Because the phases were called from expression of these genes, this
#    only shows that the model keeps the cell-cycle signal; it cannot show that attribution beats expression.
# 5. **Factor specificity: both pass, expression more strongly.** In every run of the small grid one NMF factor marks
#    B cells in both donors, for attribution and expression; the worst-case t statistic is larger for expression.
#    B cells are an easy label; the test becomes informative for closely related types or many batches.
#
# In short: with a small model trained on the data itself, attribution matches expression on most analyses, ranks
# housekeeping genes a little lower, and is *less* stable under downsampling. The paper's advantages come from
# foundation models trained on tens of millions of cells; to test them, run this notebook with such a model (see
# {doc}`checkpoints`) and `ss.tl.robustness_report` on your own data, and read each number against its shuffled
# baseline first.
