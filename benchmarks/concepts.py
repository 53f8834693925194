"""Concept discovery on real data (issue 12): Top-K SAE on scVI embeddings, concept genes, enrichment, and speed.

- Kang 2018 IFN-β (bundled subset) with a small scVI model trained on it (the demo's model, cached after the first
  run): training time, variance explained, dead fraction, the concept that best separates stimulated from control
  cells (AUROC of its activation) and its top enriched Hallmark sets.
- PBMC3k (QC-passed cells, the demo's scVI model): the same figures, and per cell type the best concept (AUROC) and
  its top enriched PanglaoDB set.
- Speed of ``concept_genes`` per 1,000 cells on the Kang model: the counterfactual rank-one fast path against a plain
  loop (one forward pass of the full model per knock-out) and against one dense batch of knock-outs per cell, with
  the largest difference between them; IG's first-layer fast path against captum on the dense input.

    python benchmarks/concepts.py                  # everything
    python benchmarks/concepts.py --only kang      # one dataset (kang, pbmc3k or speed)
    python benchmarks/concepts.py --only speed --threads 1
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).parent))

import sigscan as ss
from sigscan._demo import _gene_space, train_demo_model
from sigscan._engine import ModelSettings
from sigscan.tl._concept_genes import _ConceptReadout, _Explainer

N_CONCEPTS, K = 64, 8


def _kang():
    adata = ss.datasets.kang_ifnb()
    model = train_demo_model(adata, list(adata.var_names), name="kang", max_epochs=40)
    return adata, model


def _pbmc3k():
    import scanpy as sc

    adata = ss.datasets.pbmc3k()
    adata = adata[adata.obs["passed_tutorial_qc"].to_numpy()].copy()
    sc.pp.filter_genes(adata, min_cells=3)
    genes = _gene_space(adata, ss.datasets.gene_sets("panglaodb_immune"))
    model = train_demo_model(adata, genes, name="pbmc3k", max_epochs=40)
    return adata, model


def _train(adata, model) -> float:
    ss.pp.embeddings(adata, model, device="cpu", progress=False)
    start = time.perf_counter()
    ss.tl.concepts(adata, use_rep=f"X_{model.name}", n_concepts=N_CONCEPTS, k=K, device="cpu")
    seconds = time.perf_counter() - start
    record = adata.uns["sigscan"]["concepts"]
    print(
        f"  SAE {N_CONCEPTS} concepts, k={K}, {record['params']['n_epochs']} epochs on {adata.n_obs} cells × "
        f"{adata.obsm[f'X_{model.name}'].shape[1]} dims: {seconds:.1f} s; variance explained "
        f"{record['variance_explained']:.3f}; dead concepts {record['dead_fraction']:.1%}"
    )
    return seconds


def _aurocs(adata, labels: np.ndarray) -> np.ndarray:
    activations = adata.obsm["concepts"].toarray()
    return np.array([roc_auc_score(labels, activations[:, c]) for c in range(activations.shape[1])])


def _top_sets(table, concept: int, n: int = 3) -> str:
    rows = table[table["concept"] == concept].head(n)
    return "; ".join(f"{r.gene_set} (overlap {r.overlap}, FDR {r.fdr:.1e})" for r in rows.itertuples())


def run_kang() -> None:
    print("Kang 2018 IFN-β subset, scVI")
    adata, model = _kang()
    _train(adata, model)
    stim = (adata.obs["condition"] == "stim").to_numpy()
    aurocs = _aurocs(adata, stim)
    best = int(np.argmax(aurocs))
    control = int(np.argmin(aurocs))
    print(
        f"  concept best separating stimulated from control: {best} (AUROC {aurocs[best]:.3f}); best control-side "
        f"concept: {control} (AUROC {1 - aurocs[control]:.3f} for control)"
    )
    cell_types = adata.obs["cell_type"].astype(str).to_numpy()
    activations = adata.obsm["concepts"].toarray()
    within = []
    for cell_type in sorted(set(cell_types)):
        cells = cell_types == cell_type
        if min(stim[cells].sum(), (~stim[cells]).sum()) < 20:
            continue
        scores = [roc_auc_score(stim[cells], activations[cells, c]) for c in range(activations.shape[1])]
        within.append((cell_type, int(np.argmax(scores)), max(scores)))
    shown = "; ".join(f"{t} {c} ({a:.3f})" for t, c, a in within)
    print(f"  within each cell type, best stimulated concept (AUROC): {shown}")
    within_concepts = sorted({c for _, c, _ in within})
    hallmark = ss.datasets.gene_sets("hallmark")
    for method in ("counterfactual", "ig"):
        start = time.perf_counter()
        explained = sorted({best, control, *within_concepts})
        ss.tl.concept_genes(adata, model, concepts=explained, method=method, n_cells=100, progress=False)
        seconds = time.perf_counter() - start
        genes = adata.uns["sigscan"]["concepts_genes"]
        top = genes[genes["concept"] == best]["gene"].head(10).tolist()
        ora = ss.tl.concept_enrichment(adata, hallmark, n_top=50)
        prerank = ss.tl.concept_enrichment(adata, hallmark, method="prerank")
        print(
            f"  {method} ({seconds:.1f} s for {len(explained)} concepts × 100 cells): top genes of concept {best}: "
            f"{', '.join(top)}"
        )
        print(f"    Hallmark ORA, concept {best}: {_top_sets(ora, best)}")
        print(f"    Hallmark prerank, concept {best}: {_top_sets(prerank, best)}")
        print(f"    Hallmark ORA, control concept {control}: {_top_sets(ora, control)}")
        for concept in within_concepts:
            print(f"    Hallmark ORA, within-type stimulated concept {concept}: {_top_sets(ora, concept, 2)}")


def run_pbmc3k() -> None:
    print("PBMC3k (QC-passed cells), scVI")
    adata, model = _pbmc3k()
    _train(adata, model)
    labels = adata.obs["cell_type"].astype(str).to_numpy()
    best = {}
    for cell_type in sorted(set(labels) - {"unknown"}):
        aurocs = _aurocs(adata, labels == cell_type)
        best[cell_type] = (int(np.argmax(aurocs)), float(aurocs.max()))
    concepts = sorted({c for c, _ in best.values()})
    start = time.perf_counter()
    ss.tl.concept_genes(adata, model, concepts=concepts, n_cells=100, progress=False)
    seconds = time.perf_counter() - start
    print(f"  counterfactual concept genes: {seconds:.1f} s for {len(concepts)} concepts × 100 cells")
    table = ss.tl.concept_enrichment(adata, ss.datasets.gene_sets("panglaodb_immune"), n_top=50)
    for cell_type, (concept, auroc) in best.items():
        print(f"  {cell_type:<18} concept {concept:>2} (AUROC {auroc:.3f}): {_top_sets(table, concept, 1)}")


def _plain_loop(model, readout, x, concept: int) -> np.ndarray:
    """One forward pass of the full model (dense input) per knock-out: the plain way."""
    dense = torch.as_tensor(x.toarray())
    out = []
    with torch.no_grad():
        for i in range(x.shape[0]):
            base = readout(model.embed(dense[i : i + 1], normalize=False))[0, concept]
            for j in x.indices[x.indptr[i] : x.indptr[i + 1]]:
                knocked = dense[i : i + 1].clone()
                knocked[0, j] = 0
                out.append(float(base - readout(model.embed(knocked, normalize=False))[0, concept]))
    return np.asarray(out)


def _dense_batches(model, readout, x, concept: int) -> np.ndarray:
    """All knock-outs of a cell as one dense batch through the full model."""
    dense = torch.as_tensor(x.toarray())
    out = []
    with torch.no_grad():
        for i in range(x.shape[0]):
            genes = x.indices[x.indptr[i] : x.indptr[i + 1]]
            batch = dense[i : i + 1].repeat(len(genes), 1)
            batch[torch.arange(len(genes)), torch.as_tensor(genes, dtype=torch.long)] = 0
            base = readout(model.embed(dense[i : i + 1], normalize=False))[0, concept]
            out.append((base - readout(model.embed(batch, normalize=False))[:, concept]).numpy())
    return np.concatenate(out)


def run_speed(n_fast: int = 300, n_slow: int = 10) -> None:
    print(f"concept_genes speed (Kang scVI, per 1,000 cells; torch threads {torch.get_num_threads()})")
    adata, model = _kang()
    ss.pp.embeddings(adata, model, device="cpu", progress=False)
    ss.tl.concepts(adata, use_rep="X_scvi", n_concepts=N_CONCEPTS, k=K, n_epochs=20, device="cpu")
    sae = ss.tl.ConceptModel.from_uns(adata)
    settings = ModelSettings.resolve(model, adata.var, device="cpu")
    x = settings.model_input(adata.X[:n_fast])
    readout = _ConceptReadout(sae.module(), sae.scale, model.l2_normalized)
    # a concept active in many of these cells, and cells where it is active (an inactive one would compare zeros)
    pre = sae.pre_activations(adata.obsm["X_scvi"][:n_fast])
    c = int(np.argmax((pre > 0).sum(axis=0)))
    active = np.flatnonzero(pre[:, c] > 0)
    concept = np.array([c])
    x_slow = x[active[:n_slow]]
    print(f"  concept {c}: active before top-k in {active.size} of {n_fast} cells")
    print(f"  {x.nnz / x.shape[0]:.0f} expressed model genes per cell; {model.n_genes} model genes")
    with settings.inference():
        fast = _Explainer(model, readout, settings.device, fast=True)
        general = _Explainer(model, readout, settings.device, fast=False)
        fast.knockouts(x_slow, concept)  # warm-up
        start = time.perf_counter()
        fast.knockouts(x, np.arange(N_CONCEPTS))
        t_fast = (time.perf_counter() - start) / x.shape[0] * 1000
        start = time.perf_counter()
        reference = _plain_loop(model, readout, x_slow, c)
        t_loop = (time.perf_counter() - start) / n_slow * 1000
        start = time.perf_counter()
        batched = _dense_batches(model, readout, x_slow, c)
        t_batched = (time.perf_counter() - start) / n_slow * 1000
        start = time.perf_counter()
        general.knockouts(x_slow, concept)
        t_general = (time.perf_counter() - start) / n_slow * 1000
        ours = fast.knockouts(x_slow, concept)[:, 0]
        print(f"  counterfactual, rank-one fast path (all {N_CONCEPTS} concepts at once): {t_fast:.1f} s")
        print(f"  largest |Δ| in the compared cells: {np.abs(reference).max():.3f}")
        print(
            f"  plain loop, one full forward per knock-out (one concept; {n_slow} cells): {t_loop:.1f} s "
            f"→ {t_loop / t_fast:.0f}× slower; max |difference| {np.abs(ours - reference).max():.2e}"
        )
        print(
            f"  one dense batch of knock-outs per cell ({n_slow} cells): {t_batched:.1f} s → "
            f"{t_batched / t_fast:.1f}× slower; max |difference| {np.abs(ours - batched).max():.2e}"
        )
        print(f"  sigscan's general path (sparse knock-out batches, any encoder; {n_slow} cells): {t_general:.1f} s")
        pairs = x[active[:40]]
        chosen = np.full(pairs.shape[0], c, dtype=np.int64)
        start = time.perf_counter()
        ig_fast = fast.integrated_gradients(pairs, chosen, 50)
        t_ig_fast = (time.perf_counter() - start) / pairs.shape[0] * 1000
        start = time.perf_counter()
        ig_captum = general.integrated_gradients(pairs, chosen, 50)
        t_ig_captum = (time.perf_counter() - start) / pairs.shape[0] * 1000
        print(
            f"  IG (50 steps, one concept per cell), first-layer fast path: {t_ig_fast:.1f} s; captum on the dense "
            f"input: {t_ig_captum:.1f} s → {t_ig_captum / t_ig_fast:.1f}×; max |difference| "
            f"{np.abs(ig_fast - ig_captum).max():.2e}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("kang", "pbmc3k", "speed"), default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    for name, run in (("kang", run_kang), ("pbmc3k", run_pbmc3k), ("speed", run_speed)):
        if args.only in (None, name):
            start = time.perf_counter()
            run()
            print(f"  ({name}: {time.perf_counter() - start:.0f} s in all)\n")


if __name__ == "__main__":
    main()
