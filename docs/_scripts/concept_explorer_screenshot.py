"""Draw docs/_static/concept_explorer.png: the concept explorer on PBMC3k, from real concepts.

scVI (trained here on the 2,000 most variable genes; or, with --encoder pca, PCA as one Linear layer) → cell embeddings → a Top-K SAE (`ss.tl.concepts`) →
counterfactual gene scores (`ss.tl.concept_genes`) → PanglaoDB enrichment (`ss.tl.concept_enrichment`) → the explorer,
opened in headless Chromium (selenium) for the screenshot. Run from the repository root:

    python docs/_scripts/concept_explorer_screenshot.py [--out docs/_static/concept_explorer.png] [--html FILE]
"""

from __future__ import annotations

import argparse
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import scanpy as sc
import scvi

import sigscan as ss


def _scvi_model(adata):
    scvi.settings.seed = 0
    scvi.model.SCVI.setup_anndata(adata)
    trained = scvi.model.SCVI(adata, n_latent=16)
    trained.train(max_epochs=40, enable_progress_bar=False)
    return ss.models.SCVI(trained)


def _pca_model(adata, n_components: int = 30):
    """A linear encoder: PCA of log1p(CP10k) expression as one Linear layer (fast; the concept genes are exact)."""
    import torch

    scaled = adata.copy()
    sc.pp.normalize_total(scaled, target_sum=1e4)
    sc.pp.log1p(scaled)
    sc.pp.pca(scaled, n_comps=n_components, zero_center=True, random_state=0)
    components = scaled.varm["PCs"].T.astype(np.float32)  # components × genes
    mean = np.asarray(scaled.X.mean(axis=0)).ravel().astype(np.float32)
    layer = torch.nn.Linear(adata.n_vars, n_components)
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(components))
        layer.bias.copy_(torch.as_tensor(-components @ mean))
    encoder = torch.nn.Sequential(layer)
    return ss.models.TorchEncoder(encoder, list(adata.var_names), preprocess="log1p_cp10k", name="pca")


def build(html: Path, encoder: str = "scvi") -> Path:
    adata = ss.datasets.pbmc3k()
    adata = adata[adata.obs["passed_tutorial_qc"].astype(bool).to_numpy()].copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc.pp.highly_variable_genes(adata, flavor="seurat_v3", n_top_genes=2000, subset=True)
    model = _scvi_model(adata) if encoder == "scvi" else _pca_model(adata)
    ss.pp.embeddings(adata, model)
    ss.tl.concepts(adata, use_rep=f"X_{model.name}", n_concepts=32, k=4, random_state=0)
    sc.pp.neighbors(adata, use_rep=f"X_{model.name}", random_state=0)
    sc.tl.umap(adata, random_state=0)
    ss.tl.concept_genes(adata, model)
    sets = ss.datasets.gene_sets("panglaodb_immune")
    ss.tl.concept_enrichment(adata, sets)
    return ss.pl.concept_explorer(adata, html, groupby="cell_type", gene_sets=sets)


def screenshot(html: Path, out: Path) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or shutil.which("google-chrome")
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--window-size=1400,860",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        driver.get(html.resolve().as_uri())
        for _ in range(600):
            if driver.execute_script("return document.body.dataset.ready === 'true'"):
                break
            time.sleep(0.1)
        data = driver.execute_script("return window.sigscanExplorer.data")
        # show the concept with the highest mean activation in one of the large groups (>= 200 cells)
        means = np.asarray([[m or 0 for m in row] for row in data["groups"]["means"]])
        large = np.asarray(data["groups"]["counts"]) >= 200
        concept = int(np.argmax(means[:, large].max(axis=1)))
        driver.find_element(By.CSS_SELECTOR, f'#concept-list li[data-concept="{concept}"]').click()
        top = data["top_genes"][concept]
        gene = data["genes"][top["genes"][0]] if top and top["genes"] else None
        if gene:
            search = driver.find_element(By.ID, "search")
            search.send_keys(gene)
            time.sleep(0.5)
            driver.find_element(By.CSS_SELECTOR, f'#results .hit[data-gene="{gene}"]').click()
        time.sleep(0.5)
        out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(out))
    finally:
        driver.quit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/_static/concept_explorer.png"))
    parser.add_argument("--html", type=Path, default=Path("concept_explorer_pbmc3k.html"))
    parser.add_argument("--encoder", choices=("scvi", "pca"), default="scvi", help="scVI, or PCA as a linear encoder")
    args = parser.parse_args()
    html = build(args.html, args.encoder)
    print(f"wrote {html} ({html.stat().st_size / 1e6:.2f} MB)")
    screenshot(html, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
