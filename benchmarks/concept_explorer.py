"""Concept explorer at 100,000 cells: write time and file size; in headless Chromium the time to first draw and to
select a concept (recolour + redraw every cell). Needs chromium + chromedriver (`make browser`) and selenium.

    python benchmarks/concept_explorer.py
"""

import shutil
import tempfile
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scanpy  # noqa: F401  (imported before the timing: the explorer uses its palettes)
from scipy import sparse
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

import sigscan as ss

N_CELLS, N_CONCEPTS, K = 100_000, 64, 8


def main() -> None:
    rng = np.random.default_rng(1)
    adata = ad.AnnData(sparse.csr_matrix((N_CELLS, 10), dtype=np.float32))
    adata.obsm["X_umap"] = rng.normal(size=(N_CELLS, 2)).astype(np.float32)
    rows = np.repeat(np.arange(N_CELLS), K)
    cols = np.argsort(rng.random((N_CELLS, N_CONCEPTS)), axis=1)[:, :K].ravel()
    values = rng.gamma(2.0, 1.0, N_CELLS * K).astype(np.float32)
    adata.obsm["concepts"] = sparse.csr_matrix((values, (rows, cols)), shape=(N_CELLS, N_CONCEPTS))
    adata.obs["group"] = pd.Categorical(rng.integers(0, 10, N_CELLS).astype(str))

    start = time.perf_counter()
    path = ss.pl.concept_explorer(adata, Path(tempfile.mkdtemp()) / "explorer_100k.html", groupby="group")
    size = path.stat().st_size
    print(f"{N_CELLS:,} cells, {N_CONCEPTS} concepts, k={K}")
    print(f"write: {time.perf_counter() - start:.2f} s; file {size / 1e6:.2f} MB ({size / N_CELLS:.1f} bytes/cell)")

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or shutil.which("google-chrome")
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,900"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        start = time.perf_counter()
        driver.get(path.resolve().as_uri())
        while not driver.execute_script("return document.body.dataset.ready === 'true'"):
            time.sleep(0.02)
        print(f"open to first draw: {time.perf_counter() - start:.2f} s")
        median, worst = driver.execute_script(
            """const e = window.sigscanExplorer, t = [];
            for (let c = 1; c < 21; c++) { const s = performance.now(); e.selectConcept(c); e.redraw();
              t.push(performance.now() - s); }
            t.sort((a, b) => a - b); return [t[10], t[19]];"""
        )
        print(
            f"select a concept (recolour + redraw all cells): median {median:.1f} ms, max {worst:.1f} ms (20 concepts)"
        )
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
