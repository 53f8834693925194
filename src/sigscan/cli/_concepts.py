"""``sigscan concepts IN --model KIND:DIR --n-concepts 64 --k 8 --gmt SETS --out DIR``."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from .._utils import write_anndata, written_aside
from ._common import MODEL_HELP, load_model, read_anndata

#: the files the command writes into ``--out``
ADATA_FILE = "concepts.h5ad"
GENES_FILE = "concept_genes.csv"
ENRICHMENT_FILE = "concept_enrichment.csv"
EXPLORER_FILE = "concept_explorer.html"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the sub-command."""
    parser = subparsers.add_parser(
        "concepts",
        help="discover sparse concepts in a model's embeddings, their genes and enriched gene sets",
        description="Train a Top-K sparse autoencoder on the model's cell embeddings of IN (ss.tl.concepts), find the "
        "genes that drive each concept (ss.tl.concept_genes) and, with --gmt, the gene sets enriched among them "
        f"(ss.tl.concept_enrichment). Writes {ADATA_FILE}, {GENES_FILE}, {ENRICHMENT_FILE} and the interactive "
        f"{EXPLORER_FILE} (ss.pl.concept_explorer, on IN's X_umap or a UMAP of the embeddings) into --out.",
    )
    parser.add_argument("input", metavar="IN", help="counts as .h5ad or .zarr")
    parser.add_argument("--model", required=True, help=MODEL_HELP)
    parser.add_argument("--out", required=True, help="output folder (created if needed; its files are replaced)")
    parser.add_argument("--n-concepts", type=int, default=64, help="dictionary size (default 64)")
    parser.add_argument("--k", type=int, default=8, help="active concepts per cell (default 8)")
    parser.add_argument("--gmt", default=None, help="gene sets: a GMT file, or a bundled collection such as hallmark")
    parser.add_argument("--enrichment", default="ora", choices=("ora", "prerank"), help="enrichment test")
    parser.add_argument("--method", default="counterfactual", choices=("counterfactual", "ig"), help="gene scores")
    parser.add_argument("--n-cells", type=int, default=100, help="cells explained per concept (default 100)")
    parser.add_argument("--n-top", type=int, default=50, help="top genes per concept (default 50)")
    parser.add_argument("--n-epochs", type=int, default=None, help="training epochs (default: automatic)")
    parser.add_argument("--batch-size", type=int, default=256, help="cells per training step (default 256)")
    parser.add_argument("--random-state", type=int, default=0)
    parser.add_argument("--layer", default=None, help="layer with raw counts (default X)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--gene-symbols", default=None, help="var column with gene symbols")
    parser.add_argument("--gene-ids", default=None, help="var column with Ensembl IDs")
    parser.add_argument("--groupby", default=None, help="obs column whose groups the explorer ranks per concept")
    parser.set_defaults(func=run)


def _gene_sets(spec: str) -> dict[str, list[str]]:
    from .. import datasets, read_gene_sets

    if os.path.exists(spec) or ":" in spec:
        return read_gene_sets(spec)
    try:
        return datasets.gene_sets(spec)
    except KeyError:
        raise FileNotFoundError(
            f"--gmt {spec}: no such file, and not a bundled collection (hallmark, hallmark_v7, tirosh_cell_cycle, "
            "panglaodb_immune)"
        ) from None


def _check(args: argparse.Namespace) -> None:
    if args.k < 1 or args.k >= args.n_concepts:
        raise ValueError(f"--k {args.k}: use 1 <= --k < --n-concepts ({args.n_concepts})")
    for flag, value in (("--n-cells", args.n_cells), ("--n-top", args.n_top), ("--batch-size", args.batch_size)):
        if value < 1:
            raise ValueError(f"{flag} {value}: use a positive number")
    if args.n_epochs is not None and args.n_epochs < 1:
        raise ValueError(f"--n-epochs {args.n_epochs}: use a positive number")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} is a file; pass a folder")


def _replace(path: Path, write: Any) -> None:
    """Write ``path`` aside with ``write(tmp)``, then rename it into place (:func:`~sigscan._utils.written_aside`)."""
    with written_aside(path) as tmp:
        write(tmp)


def run(args: argparse.Namespace) -> int:
    """Run the sub-command."""
    from ..pl import concept_explorer
    from ..tl import concept_enrichment, concept_genes, concepts

    _check(args)
    gene_sets = _gene_sets(args.gmt) if args.gmt is not None else None
    adata = read_anndata(args.input)
    if not hasattr(adata, "obsm") or hasattr(adata, "mod"):
        raise ValueError(f"IN {args.input}: pass an AnnData (.h5ad or .zarr), not a MuData")
    if args.groupby is not None and args.groupby not in adata.obs:
        raise ValueError(f"--groupby {args.groupby}: not a column of IN's obs; pass one of {list(adata.obs.columns)}")
    model = load_model(args.model)
    rep = f"X_{model.name}"
    if rep in adata.obsm:
        del adata.obsm[rep]  # the embeddings are recomputed with this model
    from ..pp import embeddings

    embeddings(
        adata,
        model,
        layer=args.layer,
        device=args.device,
        gene_symbols=args.gene_symbols,
        gene_ids=args.gene_ids,
        progress=False,
    )
    concepts(
        adata,
        use_rep=rep,
        n_concepts=args.n_concepts,
        k=args.k,
        n_epochs=args.n_epochs,
        batch_size=args.batch_size,
        random_state=args.random_state,
        device=args.device,
    )
    concept_genes(
        adata,
        model,
        method=args.method,
        n_cells=args.n_cells,
        n_top=args.n_top,
        layer=args.layer,
        device=args.device,
        gene_symbols=args.gene_symbols,
        gene_ids=args.gene_ids,
    )
    table = None
    if gene_sets is not None:
        table = concept_enrichment(adata, gene_sets, n_top=args.n_top, method=args.enrichment)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    genes = adata.uns["sigscan"]["concepts_genes"]
    _replace(out / GENES_FILE, lambda tmp: genes.to_csv(tmp, index=False))
    if table is not None:
        _replace(out / ENRICHMENT_FILE, lambda tmp: table.to_csv(tmp, index=False))
    if "X_umap" not in adata.obsm:  # the explorer draws the cells on a UMAP of the model's embeddings
        import scanpy as sc

        sc.pp.neighbors(adata, use_rep=rep, random_state=args.random_state)
        sc.tl.umap(adata, random_state=args.random_state)
    write_anndata(adata, out / ADATA_FILE)
    concept_explorer(adata, out / EXPLORER_FILE, groupby=args.groupby, gene_sets=gene_sets)
    record = adata.uns["sigscan"]["concepts"]
    print(
        f"{args.n_concepts} concepts (k={args.k}): variance explained {record['variance_explained']:.3f}, "
        f"dead {record['dead_fraction']:.1%}"
    )
    enrichment = f", {out / ENRICHMENT_FILE}" if table is not None else ""
    print(f"wrote {out / ADATA_FILE}, {out / GENES_FILE}{enrichment}, {out / EXPLORER_FILE}")
    return 0
