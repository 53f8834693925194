"""Draw docs/_static/concept_explorer.png: the concept explorer on PBMC3k, from real concepts.

scVI (trained here on the 2,000 most variable genes) → its cell embeddings → a Top-K SAE (`ss.tl.concepts`) →
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


def build(html: Path) -> Path:
    adata = ss.datasets.pbmc3k()
    adata = adata[adata.obs["passed_tutorial_qc"].astype(bool).to_numpy()].copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc.pp.highly_variable_genes(adata, flavor="seurat_v3", n_top_genes=2000, subset=True)
    scvi.settings.seed = 0
    scvi.model.SCVI.setup_anndata(adata)
    trained = scvi.model.SCVI(adata, n_latent=16)
    trained.train(max_epochs=40, enable_progress_bar=False)
    model = ss.models.SCVI(trained)
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
        # show the concept most specific to one group (its best group's mean over its overall mean)
        means = np.asarray([[m or 0 for m in row] for row in data["groups"]["means"]])
        overall = np.asarray([m or 0 for m in data["stats"]["mean"]])
        specificity = means.max(axis=1) / np.where(overall > 0, overall, np.inf)
        concept = int(np.argmax(specificity))
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
    args = parser.parse_args()
    html = build(args.html)
    print(f"wrote {html} ({html.stat().st_size / 1e6:.2f} MB)")
    screenshot(html, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
