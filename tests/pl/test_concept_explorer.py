"""ss.pl.concept_explorer: the HTML payload (self-contained, decodes to the data) and the page in headless Chromium."""

from __future__ import annotations

import html.parser
import shutil
import time

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import sigscan as ss
from sigscan.pl._concept_explorer import decode_payload, read_payload

NASTY = "</script><script>window.__pwned = 1</script> & <b>"


def concepts_adata(n_cells=600, n_concepts=12, k=3, n_genes=80, *, seed=0, tables=True, groups=True):
    """Cells in 4 clusters; concept c is active in cluster c % 4 (so best groups are known); planted gene scores."""
    rng = np.random.default_rng(seed)
    adata = ad.AnnData(sparse.csr_matrix((n_cells, n_genes), dtype=np.float32))
    adata.var_names = [f"GENE{i}" for i in range(n_genes)]
    cluster = rng.integers(0, 4, n_cells)
    names = np.array(["B cells", "T cells", NASTY, "NK cells"])
    if groups:
        adata.obs["cell_type"] = pd.Categorical(names[cluster])
    centres = np.array([[0, 0], [10, 0], [0, 10], [10, 10]], dtype=float)
    adata.obsm["X_umap"] = (centres[cluster] + rng.normal(size=(n_cells, 2))).astype(np.float32)
    rows, cols, vals = [], [], []
    for i in range(n_cells):
        own = [c for c in range(n_concepts) if c % 4 == cluster[i]]
        chosen = rng.choice(own, size=min(k, len(own)), replace=False)
        rows += [i] * len(chosen)
        cols += list(chosen)
        vals += list(rng.gamma(2.0, 1.0, len(chosen)))
    adata.obsm["concepts"] = sparse.csr_matrix(
        (np.asarray(vals, np.float32), (rows, cols)), shape=(n_cells, n_concepts)
    )
    scores = rng.normal(size=(n_genes, n_concepts)).astype(np.float32)
    for c in range(n_concepts):
        scores[c, c] = 10.0  # GENE{c} is concept c's top gene
    adata.varm["concepts_genes"] = scores
    adata.uns["sigscan"] = {"concepts": {"params": {"n_concepts": n_concepts, "k": k}, "dead_fraction": 0.0}}
    if tables:
        tidy = []
        for c in range(n_concepts):
            order = np.argsort(-scores[:, c], kind="stable")[:20]
            for rank, g in enumerate(order, start=1):
                tidy.append((c, f"GENE{g}", float(scores[g, c]), 0.5, rank))
        adata.uns["sigscan"]["concepts_genes"] = pd.DataFrame(
            tidy, columns=["concept", "gene", "score", "frac_cells", "rank"]
        )
        enrichment = []
        for c in range(n_concepts):
            for s in range(15):
                enrichment.append(
                    (c, f"SET_{c}_{s}", 3, 40, 10.0 ** -(s % 7), 10.0 ** -(s % 7) * 2, "ora", f"GENE{c};GENE1")
                )
        adata.uns["sigscan"]["concepts_enrichment"] = pd.DataFrame(
            enrichment, columns=["concept", "gene_set", "overlap", "set_size", "p", "fdr", "method", "genes"]
        )
    return adata


# ---------------------------------------------------------------------------------------------------- payload


class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.tags = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self.links += [value for name, value in attrs if name in {"src", "href"} and value]


def test_page_is_self_contained(tmp_path):
    adata = concepts_adata()
    path = ss.pl.concept_explorer(adata, tmp_path / "sub" / "explorer.html", groupby="cell_type")
    text = path.read_text(encoding="utf-8")
    parser = _Links()
    parser.feed(text)
    assert all(not link.lower().startswith(("http:", "https:", "//")) for link in parser.links), parser.links
    assert "http://" not in text and "https://" not in text
    scripts = [attrs for tag, attrs in parser.tags if tag == "script"]
    assert scripts and all("src" not in attrs for attrs in scripts)
    assert not [attrs for tag, attrs in parser.tags if tag == "link" and attrs.get("rel") == "stylesheet"]
    # the group name with </script> is escaped inside the JSON and comes back unchanged
    assert text.count("</script>") == 2
    assert NASTY in read_payload(path)["groups"]["names"]
    assert [p.name for p in path.parent.iterdir()] == ["explorer.html"]  # no temporary file left behind


def test_payload_decodes_to_the_data(tmp_path):
    adata = concepts_adata()
    path = ss.pl.concept_explorer(adata, tmp_path / "e.html", groupby="cell_type")
    payload = read_payload(path)
    arrays = decode_payload(payload)
    n, n_concepts = adata.obsm["concepts"].shape
    assert payload["n_cells"] == payload["n_obs"] == n and payload["n_concepts"] == n_concepts

    coords = arrays["coords"].reshape(n, 2).astype(np.float64)
    x0, x1, y0, y1 = payload["range"]
    decoded = np.column_stack([x0 + coords[:, 0] / 65535 * (x1 - x0), y0 + coords[:, 1] / 65535 * (y1 - y0)])
    umap = adata.obsm["X_umap"].astype(np.float64)
    assert np.abs(decoded - umap).max() <= max(x1 - x0, y1 - y0) / 65535

    truth = adata.obsm["concepts"].tocsc()
    ptr, deltas, values = arrays["act_indptr"], arrays["act_cells"], arrays["act_values"]
    assert ptr.tolist() == truth.indptr.tolist()
    scale = np.asarray(payload["stats"]["scale"])
    for c in range(n_concepts):
        cells = np.cumsum(deltas[ptr[c] : ptr[c + 1]].astype(np.int64))
        assert cells.tolist() == sorted(truth.indices[truth.indptr[c] : truth.indptr[c + 1]].tolist())
        exact = truth[:, c].toarray().ravel()[cells]
        got = values[ptr[c] : ptr[c + 1]] / 255 * scale[c]
        assert values[ptr[c] : ptr[c + 1]].min() >= 1  # active cells never look inactive
        np.testing.assert_allclose(got, np.minimum(exact, scale[c]), atol=scale[c] / 255)

    stats = payload["stats"]
    assert stats["n_active"] == np.bincount(adata.obsm["concepts"].indices, minlength=n_concepts).tolist()
    dense = truth.toarray()
    np.testing.assert_allclose(stats["max"], dense.max(axis=0), rtol=1e-3)
    np.testing.assert_allclose(stats["mean"], dense.mean(axis=0), rtol=1e-3)

    groups = payload["groups"]
    assert arrays["group_codes"].tolist() == adata.obs["cell_type"].cat.codes.tolist()
    brute = pd.DataFrame(dense).groupby(adata.obs["cell_type"].to_numpy(), observed=True).mean()
    for g, name in enumerate(groups["names"]):
        np.testing.assert_allclose([row[g] for row in groups["means"]], brute.loc[name].to_numpy(), rtol=1e-3)
    # concept c is only active in cluster c % 4: its best group is that cluster
    cluster_of_name = {"B cells": 0, "T cells": 1, NASTY: 2, "NK cells": 3}
    for c in range(n_concepts):
        best = groups["names"][int(np.argmax(groups["means"][c]))]
        assert cluster_of_name[best] == c % 4

    # top genes from the tidy table (its ranks), enrichment sorted by FDR and capped
    for c in range(n_concepts):
        top = payload["top_genes"][c]
        assert payload["genes"][top["genes"][0]] == f"GENE{c}"
        assert len(top["genes"]) == 20 and top["frac"][0] == 0.5
        hits = payload["enrichment"][c]
        assert len(hits) == 10 and [h["fdr"] for h in hits] == sorted(h["fdr"] for h in hits)
        assert hits[0]["genes"] == [f"GENE{c}", "GENE1"]
    assert payload["summary"][:4] == [
        ["cells", n, True],
        ["concepts", n_concepts, True],
        ["k", 3, True],
        ["dead_fraction", 0.0, True],
    ]


def test_optional_parts_missing_and_varm_only(tmp_path):
    adata = concepts_adata(tables=False, groups=False)
    payload = read_payload(ss.pl.concept_explorer(adata, tmp_path / "e.html"))
    assert payload["groups"] is None and payload["enrichment"] is None and payload["gene_sets"] is None
    for c, top in enumerate(payload["top_genes"]):  # from varm: largest scores first
        assert payload["genes"][top["genes"][0]] == f"GENE{c}" and len(top["genes"]) == 50
        assert top["scores"] == sorted(top["scores"], reverse=True)
    del adata.varm["concepts_genes"]
    payload = read_payload(ss.pl.concept_explorer(adata, tmp_path / "e.html"))
    assert payload["top_genes"] is None and payload["genes"] == []


def test_gene_sets_and_max_cells(tmp_path):
    adata = concepts_adata()
    sets = {"PLANTED": ["GENE0", "GENE1", "NOT_A_GENE"], "OTHER": ["GENE5"]}
    payload = read_payload(ss.pl.concept_explorer(adata, tmp_path / "e.html", gene_sets=sets, max_cells=100))
    names = payload["genes"]
    assert payload["gene_sets"]["names"] == ["PLANTED", "OTHER"]
    assert payload["gene_sets"]["sizes"] == [3, 1]
    assert sorted(names[g] for g in payload["gene_sets"]["members"][0]) == ["GENE0", "GENE1"]
    arrays = decode_payload(payload)
    assert payload["n_cells"] == 100 and payload["n_obs"] == adata.n_obs
    assert arrays["coords"].size == 200 and arrays["act_indptr"][-1] == arrays["act_values"].size
    # statistics still describe all cells
    assert sum(payload["stats"]["n_active"]) == adata.obsm["concepts"].nnz
    assert ["cells drawn", 100, True] in payload["summary"]


def test_errors_name_the_fix_and_leave_adata_unchanged(tmp_path):
    adata = concepts_adata()
    before = (set(adata.obsm), set(adata.uns["sigscan"]), set(adata.obs))
    with pytest.raises(KeyError, match=r"sc\.tl\.tsne.*basis= one of \['umap'\]"):
        ss.pl.concept_explorer(adata, tmp_path / "e.html", basis="tsne")
    del adata.obsm["X_umap"]
    with pytest.raises(KeyError, match=r"sc\.tl\.umap"):
        ss.pl.concept_explorer(adata, tmp_path / "e.html")
    adata = concepts_adata()
    with pytest.raises(KeyError, match=r"ss\.tl\.concepts"):
        ss.pl.concept_explorer(adata, tmp_path / "e.html", key="sae")
    with pytest.raises(KeyError, match=r"not a column of adata\.obs"):
        ss.pl.concept_explorer(adata, tmp_path / "e.html", groupby="louvain")
    with pytest.raises(ValueError, match="max_cells"):
        ss.pl.concept_explorer(adata, tmp_path / "e.html", max_cells=0)
    assert (set(adata.obsm), set(adata.uns["sigscan"]), set(adata.obs)) == before
    assert not (tmp_path / "e.html").exists()


def test_basis_accepts_obsm_key_and_dense_activations(tmp_path):
    adata = concepts_adata(n_cells=50, tables=False)
    adata.obsm["concepts"] = adata.obsm["concepts"].toarray()
    adata.obsm["X_tsne"] = adata.obsm.pop("X_umap")
    payload = read_payload(ss.pl.concept_explorer(adata, tmp_path / "e.html", basis="X_tsne"))
    assert payload["basis"] == "X_tsne" and payload["n_cells"] == 50


def test_compact_at_100k_cells(tmp_path, big_page):
    # 100,000 cells × 64 concepts, k = 8: quantised + compressed, about 30 bytes per cell (inline base64 included)
    assert big_page.stat().st_size < 100_000 * 40


def _planted_explorer(planted_concepts, path):
    """The explorer of the planted-program data after the real pipeline (concepts → genes → enrichment)."""
    adata = planted_concepts[0]
    ss.tl.concept_enrichment(adata, adata.uns["programs"], n_top=8)
    adata.obsm["X_umap"] = adata.obsm["X_linear"][:, :2]
    return adata, ss.pl.concept_explorer(adata, path, groupby="program", gene_sets=adata.uns["programs"])


def test_real_pipeline_planted_programs(tmp_path, planted_concepts):
    adata, path = _planted_explorer(planted_concepts, tmp_path / "planted.html")
    payload = read_payload(path)
    groups, genes = payload["groups"], payload["genes"]
    table = adata.uns["sigscan"]["concepts_genes"]
    for p in range(4):
        program = f"PROGRAM{p}"
        g = groups["names"].index(program)
        # the concept with the highest mean activation in the program's cells ...
        concept = int(np.argmax([row[g] for row in groups["means"]]))
        # ... lists the tidy table's genes in rank order (planted genes on top) and the program as its best hit
        top = [genes[i] for i in payload["top_genes"][concept]["genes"]]
        assert top == table.loc[table["concept"] == concept].sort_values("rank")["gene"].head(50).tolist()
        assert top[0] in adata.uns["programs"][program]
        assert payload["enrichment"][concept][0]["set"] == program
        assert all(hit["overlap"] > 0 for hit in payload["enrichment"][concept])
    assert ["variance_explained", round(adata.uns["sigscan"]["concepts"]["variance_explained"], 4), True] in [
        [name, round(value, 4) if isinstance(value, float) else value, main] for name, value, main in payload["summary"]
    ]


# ---------------------------------------------------------------------------------------------------- browser


@pytest.fixture(scope="module")
def big_page(tmp_path_factory):
    rng = np.random.default_rng(1)
    n, n_concepts, k = 100_000, 64, 8
    adata = ad.AnnData(sparse.csr_matrix((n, 10), dtype=np.float32))
    adata.obsm["X_umap"] = rng.normal(size=(n, 2)).astype(np.float32)
    rows = np.repeat(np.arange(n), k)
    cols = np.argsort(rng.random((n, n_concepts)), axis=1)[:, :k].ravel()
    adata.obsm["concepts"] = sparse.csr_matrix(
        (rng.gamma(2.0, 1.0, n * k).astype(np.float32), (rows, cols)), shape=(n, n_concepts)
    )
    adata.obs["group"] = pd.Categorical(rng.integers(0, 10, n).astype(str))
    return ss.pl.concept_explorer(adata, tmp_path_factory.mktemp("big") / "big.html", groupby="group")


def _find_browser() -> tuple[str, str] | None:
    binary = next(
        (
            shutil.which(name)
            for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
            if shutil.which(name)
        ),
        None,
    )
    driver = shutil.which("chromedriver")
    return (binary, driver) if binary and driver else None


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip(
        "selenium.webdriver", reason="selenium is not installed (pip install sigscan[test])"
    )
    found = _find_browser()
    if found is None:
        pytest.skip(
            "no Chromium/Chrome with chromedriver found: run `make browser` as root (Debian: apt-get install "
            "chromium chromium-driver)"
        )
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,900",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(found[1]), options=options)
    driver.set_script_timeout(120)
    yield driver
    driver.quit()


def _wait(driver, script, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for: {script}")


def _open(driver, path):
    driver.get_log("browser")  # drop earlier messages
    driver.get(path.resolve().as_uri())
    _wait(driver, "return document.body.dataset.ready === 'true' || window.sigscanExplorer.state.error")
    state = driver.execute_script("return window.sigscanExplorer.state")
    assert state["error"] is None, state["error"]
    return state


def _errors(driver):
    return [entry for entry in driver.get_log("browser") if entry["level"] in {"SEVERE", "ERROR"}]


_CANVAS = """
const c = document.getElementById('scatter');
const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
let hash = 0, drawn = 0;
for (let i = 0; i < d.length; i += 4) {
  hash = (Math.imul(hash, 31) + d[i] * 65536 + d[i + 1] * 256 + d[i + 2]) | 0;
  if (d[i] !== 255 || d[i + 1] !== 255 || d[i + 2] !== 255) drawn++;
}
return [hash, drawn, window.sigscanExplorer.state.draws];
"""


def _canvas_after_draw(driver, draws_before):
    _wait(driver, f"return window.sigscanExplorer.state.draws > {draws_before}")
    return driver.execute_script(_CANVAS)


def test_page_loads_recolours_and_searches(tmp_path, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    adata = concepts_adata()
    path = ss.pl.concept_explorer(adata, tmp_path / "e.html", groupby="cell_type", gene_sets={"PLANTED": ["GENE3"]})
    state = _open(browser, path)
    assert state["concept"] == 0 and state["draws"] >= 1
    hash0, drawn0, draws = browser.execute_script(_CANVAS)
    assert drawn0 > 1000  # 600 cells of several pixels each
    assert browser.execute_script("return window.__pwned") is None  # the group name stayed text
    # selecting a concept in the list recolours the scatter
    browser.find_element(By.CSS_SELECTOR, '#concept-list li[data-concept="5"]').click()
    hash1, _, draws = _canvas_after_draw(browser, draws)
    assert browser.execute_script("return window.sigscanExplorer.state.concept") == 5
    assert hash1 != hash0
    assert "Concept C5" in browser.find_element(By.ID, "concept-detail").text
    assert "GENE5" in browser.find_element(By.ID, "concept-detail").text
    # the gene search finds a gene and lists the concepts it drives
    search = browser.find_element(By.ID, "search")
    search.send_keys("GENE7")
    hit = _wait(browser, "return document.querySelector('#results:not([hidden]) .hit[data-gene=\"GENE7\"]')")
    hit.click()
    detail = browser.find_element(By.ID, "gene-detail")
    assert detail.is_displayed() and "Gene GENE7" in detail.text
    tidy = adata.uns["sigscan"]["concepts_genes"]
    expected = sorted(f"C{c}" for c in tidy.loc[tidy["gene"] == "GENE7", "concept"])
    listed = sorted(
        row.get_attribute("data-concept") for row in detail.find_elements(By.CSS_SELECTOR, "tr[data-concept]")
    )
    assert sorted(f"C{c}" for c in listed) == expected and "C7" in expected
    # clicking a concept of the gene selects it and recolours
    draws = browser.execute_script("return window.sigscanExplorer.state.draws")
    before = browser.execute_script(_CANVAS)[0]
    other = next(
        label
        for label in expected
        if label != f"C{browser.execute_script('return window.sigscanExplorer.state.concept')}"
    )
    detail.find_element(By.CSS_SELECTOR, f'tr[data-concept="{other[1:]}"] .link').click()
    after = _canvas_after_draw(browser, draws)[0]
    assert browser.execute_script("return window.sigscanExplorer.state.concept") == int(other[1:]) and after != before
    # concepts and gene sets are searchable too; Enter opens the first hit
    search.clear()
    search.send_keys("C11", Keys.ENTER)
    _wait(browser, "return window.sigscanExplorer.state.concept === 11")
    search.clear()
    search.send_keys("planted")
    _wait(browser, "return document.querySelector('#results:not([hidden]) .hit[data-set=\"PLANTED\"]')").click()
    assert "PLANTED" in browser.find_element(By.ID, "gene-detail").text
    # colouring by the groups
    draws = browser.execute_script("return window.sigscanExplorer.state.draws")
    browser.find_element(By.CSS_SELECTOR, '#colour-by option[value="group"]').click()
    _canvas_after_draw(browser, draws)
    assert NASTY in browser.find_element(By.ID, "legend").text
    assert _errors(browser) == []


def test_page_shows_not_computed(tmp_path, browser):
    from selenium.webdriver.common.by import By

    adata = concepts_adata(tables=False, groups=False)
    del adata.varm["concepts_genes"]
    _open(browser, ss.pl.concept_explorer(adata, tmp_path / "e.html"))
    text = browser.find_element(By.ID, "concept-detail").text
    assert "gene scores not computed" in text and "enrichment not computed" in text and "groups not computed" in text
    assert _errors(browser) == []


def test_100k_cells_load_and_draw(big_page, browser):
    from selenium.webdriver.common.by import By

    state = _open(browser, big_page)  # generous bound (120 s) on loading; no timing assertion
    assert state["ready"]
    hash0, drawn0, draws = browser.execute_script(_CANVAS)
    assert drawn0 > 50_000
    assert browser.execute_script("return window.sigscanExplorer.data.n_cells") == 100_000
    browser.find_element(By.CSS_SELECTOR, '#concept-list li[data-concept="40"]').click()
    hash1, _, _ = _canvas_after_draw(browser, draws)
    assert hash1 != hash0
    assert _errors(browser) == []


def test_real_pipeline_in_the_browser(tmp_path, planted_concepts, browser):
    from selenium.webdriver.common.by import By

    adata, path = _planted_explorer(planted_concepts, tmp_path / "planted.html")
    _open(browser, path)
    gene = adata.uns["programs"]["PROGRAM2"][0]
    browser.find_element(By.ID, "search").send_keys(gene)
    _wait(browser, f"return document.querySelector('#results:not([hidden]) .hit[data-gene=\"{gene}\"]')").click()
    rows = browser.find_elements(By.CSS_SELECTOR, "#gene-detail tr[data-concept]")
    table = adata.uns["sigscan"]["concepts_genes"]
    assert sorted(int(r.get_attribute("data-concept")) for r in rows) == sorted(
        table.loc[table["gene"] == gene, "concept"]
    )
    # the gene's first concept is selected; its panel names the planted program as best group and enrichment hit
    detail = browser.find_element(By.ID, "concept-detail").text
    assert "PROGRAM2" in detail and "not computed" not in detail
    assert _errors(browser) == []
