"""scFoundation: the published checkpoint layout, the embedding against the official one-cell procedure, attributions."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from scipy import sparse
from torch import nn

import sigscan as ss
from sigscan.cli import main
from sigscan.models._scfoundation import CHECKPOINT_FILE, GENE_INDEX_FILE, total_tokens

N_GENES = 600
SIZES = {"hidden_dim": 16, "depth": 2, "heads": 2}


@pytest.fixture(scope="module")
def genes() -> pd.Index:
    return pd.Index([f"GENE{i}" for i in range(N_GENES)])


@pytest.fixture(scope="module")
def model(genes) -> ss.models.ScFoundation:
    return ss.models.ScFoundation.random(genes, **SIZES, random_state=1)


@pytest.fixture(scope="module")
def folder(model, tmp_path_factory):
    return model.save(tmp_path_factory.mktemp("scfoundation"))


@pytest.fixture(scope="module")
def adata(genes) -> ad.AnnData:
    """7 cells × (the model genes shuffled + 5 others); cell 0 expresses 560 model genes, cell 4 none."""
    rng = np.random.default_rng(0)
    names = list(rng.permutation(genes)) + [f"OTHER{i}" for i in range(5)]
    counts = rng.poisson(rng.gamma(0.2, 1.0, size=len(names)), size=(7, len(names))).astype(np.float32)
    counts[0, rng.choice(N_GENES, 560, replace=False)] += 1 + rng.poisson(3, 560)
    counts[4, :N_GENES] = 0
    counts[5] *= 10  # same normalised values as a tenth of it, another S token
    return ad.AnnData(sparse.csr_matrix(counts), var=pd.DataFrame(index=names), obs=pd.DataFrame(index=list("abcdefg")))


def official_embedding(model: ss.models.ScFoundation, row: np.ndarray, pool: str, tgthighres: str) -> np.ndarray:
    """The official get_embedding.py procedure for one cell, written out with plain torch from the weights."""
    state = {k: v.double() for k, v in model.encoder.state_dict().items()}
    total = row.sum()
    values = np.log1p(row / total * 1e4)
    kind, k = tgthighres[0], float(tgthighres[1:])
    t = {"t": k, "f": np.log10(total * k), "a": np.log10(total) + k}[kind]
    full = np.concatenate([values, [t, np.log10(total)]])
    keep = np.flatnonzero(full > 0)  # the official gather: values > 0, ascending index
    x = torch.as_tensor(full[keep], dtype=torch.float64)
    h = F.leaky_relu(x[:, None] @ state["token_emb.mlp.weight"].T + state["token_emb.mlp.bias"], 0.1)
    logits = model.encoder.token_emb.bin_alpha * h + h @ state["token_emb.mlp2.weight"].T + state["token_emb.mlp2.bias"]
    tokens = torch.softmax(logits, dim=-1) @ state["token_emb.emb.weight"]
    tokens = tokens + state["pos_emb.weight"][torch.as_tensor(keep)]
    dim = tokens.shape[1]
    for i in range(SIZES["depth"]):
        layer = nn.TransformerEncoderLayer(dim, SIZES["heads"], 4 * dim, batch_first=True).double().eval()
        prefix = f"encoder.transformer_encoder.{i}."
        layer.load_state_dict({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)})
        with torch.no_grad():
            tokens = layer(tokens[None])[0]
    tokens = F.layer_norm(tokens, (dim,), state["encoder.norm.weight"], state["encoder.norm.bias"])
    if pool == "max":
        out = tokens.max(dim=0).values
    else:
        out = torch.cat([tokens[-1], tokens[-2], tokens[:-2].max(dim=0).values, tokens[:-2].mean(dim=0)])
    return out.detach().numpy()


def test_published_layout_round_trip(model, folder):
    checkpoint = torch.load(folder / CHECKPOINT_FILE, weights_only=True)
    entry = checkpoint["cell"]
    assert entry["config"]["model"] == "mae_autobin"
    keys = set(entry["state_dict"])
    assert all(key.startswith("model.") for key in keys)
    assert {"model.pos_emb.weight", "model.token_emb.emb_pad.weight", "model.encoder.norm.weight"} <= keys
    assert {"model.decoder_embed.weight", "model.norm.weight", "model.to_final.weight"} <= keys
    assert pd.read_csv(folder / GENE_INDEX_FILE, sep="\t")["gene_name"].tolist() == list(model.gene_order)
    loaded = ss.models.ScFoundation(folder)
    assert loaded.checksum == model.checksum
    assert loaded.embedding_dim == 4 * SIZES["hidden_dim"]
    resaved = torch.load(loaded.save(folder.parent / "again") / CHECKPOINT_FILE, weights_only=True)["cell"]
    assert set(resaved["state_dict"]) == keys
    for key in keys:
        torch.testing.assert_close(resaved["state_dict"][key], entry["state_dict"][key], rtol=0, atol=0)


class _OfficialShape(nn.Module):
    """The published MaeAutobin's parameter names (transformer encoder and decoder), for a strict load."""

    def __init__(self, n_genes: int, dim: int, depth: int, heads: int):
        super().__init__()
        self.token_emb = nn.Module()
        self.token_emb.mlp, self.token_emb.mlp2 = nn.Linear(1, 100), nn.Linear(100, 100)
        self.token_emb.emb, self.token_emb.emb_mask, self.token_emb.emb_pad = (
            nn.Embedding(100, dim),
            nn.Embedding(1, dim),
            nn.Embedding(1, dim),
        )
        self.pos_emb = nn.Embedding(n_genes + 3, dim)
        for part, layers in (("encoder", depth), ("decoder", 1)):
            block = nn.Module()
            block.transformer_encoder = nn.ModuleList(
                nn.TransformerEncoderLayer(dim, heads, 4 * dim, batch_first=True) for _ in range(layers)
            )
            block.norm = nn.LayerNorm(dim)
            setattr(self, part, block)
        self.decoder_embed, self.norm, self.to_final = nn.Linear(dim, dim), nn.LayerNorm(dim), nn.Linear(dim, 1)


def test_strict_official_load(folder):
    """The saved state dict loads strictly into a module with the published names (after the loader's strip)."""
    state = torch.load(folder / CHECKPOINT_FILE, weights_only=True)["cell"]["state_dict"]
    stripped = {key.split("model.", 1)[1]: value for key, value in state.items()}
    _OfficialShape(N_GENES, SIZES["hidden_dim"], SIZES["depth"], SIZES["heads"]).load_state_dict(stripped, strict=True)


def _edit_checkpoint(folder, tmp_path, edit):
    checkpoint = torch.load(folder / CHECKPOINT_FILE, weights_only=True)
    edit(checkpoint["cell"])
    out = tmp_path / "edited"
    out.mkdir(parents=True)
    torch.save(checkpoint, out / CHECKPOINT_FILE)
    (out / GENE_INDEX_FILE).write_text((folder / GENE_INDEX_FILE).read_text())
    return out


def test_errors_name_missing_keys_and_fields(folder, tmp_path):
    def drop_key(entry):
        del entry["state_dict"]["model.encoder.transformer_encoder.1.linear2.weight"]

    with pytest.raises(KeyError, match=r"encoder\.transformer_encoder\.1\.linear2\.weight"):
        ss.models.ScFoundation(_edit_checkpoint(folder, tmp_path / "a", drop_key))

    def drop_field(entry):
        del entry["config"]["model_config"]["mae_autobin"]["bin_alpha"]

    with pytest.raises(KeyError, match="bin_alpha"):
        ss.models.ScFoundation(_edit_checkpoint(folder, tmp_path / "b", drop_field))

    def performer_encoder(entry):
        entry["config"]["model_config"]["mae_autobin"]["encoder"]["module_type"] = "performer"

    with pytest.raises(ValueError, match="performer"):
        ss.models.ScFoundation(_edit_checkpoint(folder, tmp_path / "c", performer_encoder))
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / CHECKPOINT_FILE).write_bytes((folder / CHECKPOINT_FILE).read_bytes())
    with pytest.raises(FileNotFoundError, match=GENE_INDEX_FILE):
        ss.models.ScFoundation(tmp_path / "d")
    with pytest.raises(OSError, match=r"no 'rde' entry .*pass version="):
        ss.models.ScFoundation(folder, version="rde")


@pytest.mark.parametrize(("pool", "tgthighres"), [("all", "t4"), ("max", "t4"), ("all", "f2"), ("all", "a1")])
def test_embeddings_equal_official_one_cell_procedure(folder, adata, pool, tgthighres):
    model = ss.models.ScFoundation(folder, pool=pool, tgthighres=tgthighres)
    data = adata.copy()
    ss.pp.embeddings(data, model, batch_size=3, device="cpu", progress=False)  # padded batches of unequal cells
    counts = model.align(data.var).to_model(data.X).toarray().astype(np.float64)
    for i in range(data.n_obs):
        if counts[i].sum() == 0:
            assert np.isnan(data.obsm["X_scfoundation"][i]).all() == (pool == "all")
            continue
        expected = official_embedding(model, counts[i], pool, tgthighres)
        np.testing.assert_allclose(data.obsm["X_scfoundation"][i], expected, rtol=1e-4, atol=1e-4)
    assert data.uns["sigscan"]["embeddings"]["X_scfoundation"]["tgthighres"] == tgthighres


def test_total_count_tokens(model, adata):
    totals = np.array([1.0, 250.0, 1e4])
    t, s = total_tokens(totals, "t4")
    np.testing.assert_allclose(s, np.log10(totals))
    np.testing.assert_allclose(t, 4)
    np.testing.assert_allclose(total_tokens(totals, "f3")[0], np.log10(totals * 3))
    np.testing.assert_allclose(total_tokens(totals, "a0.5")[0], np.log10(totals) + 0.5)
    counts = model.align(adata.var).to_model(adata.X)
    seq = model.sequences(counts)
    np.testing.assert_allclose(seq.totals[:, 1].numpy(), np.log10(counts.sum(axis=1).A1.clip(1)), rtol=1e-6)
    # cell 5 is ten times cell 5 / 10: same gene values, S one higher, other embedding
    tenth = counts[5] / 10
    seq_tenth = model.sequences(tenth)
    np.testing.assert_allclose(
        seq_tenth.values[0].numpy(), seq.values[5, : seq_tenth.values.shape[1]].numpy(), rtol=1e-6
    )
    assert seq.totals[5, 1] - seq_tenth.totals[0, 1] == pytest.approx(1.0)
    with torch.no_grad():
        embeddings = [
            model.forward_inputs(s.values, s.totals, s.positions, s.mask, s.n_genes).numpy()
            for s in (model.sequences(counts[5]), seq_tenth)
        ]
    dim = SIZES["hidden_dim"]
    assert not np.allclose(embeddings[0][:, :dim], embeddings[1][:, :dim])  # the S token's output differs
    with pytest.raises(ValueError, match="tgthighres"):
        ss.models.ScFoundation.random(["A", "B"], **SIZES, tgthighres="x4")


def test_every_expressed_gene_is_attributed(model, adata):
    """No cap on expressed genes: cell 0 (over 550 genes) gets attribution beyond the 512th expressed gene."""
    data = adata[:1].copy()
    ss.pp.attributions(data, model, method="ixg", device="cpu", progress=False)
    attr = model.align(data.var).to_model(data.layers["attr_scfoundation_ixg"])
    counts = model.align(data.var).to_model(data.X)
    assert counts.nnz > 550
    order = np.sort(counts.indices)
    assert np.all(attr[0, order[512:]].toarray() != 0)
    assert attr.nnz == counts.nnz


@pytest.mark.parametrize("method", ["ig", "ixg"])
def test_attributions(model, adata, method):
    data = adata[1:].copy()
    kwargs = {"method": method, "n_steps": 8, "device": "cpu", "progress": False, "batch_size": 3}
    ss.pp.attributions(data, model, **kwargs)
    attr = data.layers[f"attr_scfoundation_{method}"]
    sums = np.asarray(attr.sum(axis=1)).ravel()
    np.testing.assert_allclose(np.delete(sums, 3), 1000, rtol=1e-4)
    assert sums[3] == 0  # no counts → no attribution
    assert np.all(attr.toarray()[data.X.toarray() == 0] == 0)  # zero input → zero
    again = adata[1:].copy()
    ss.pp.attributions(again, model, **{**kwargs, "batch_size": 6})
    np.testing.assert_allclose(again.layers[f"attr_scfoundation_{method}"].toarray(), attr.toarray(), atol=1e-3)
    provenance = data.uns["sigscan"]["attributions"][f"attr_scfoundation_{method}"]
    assert (provenance["pool"], provenance["tgthighres"], provenance["precision"]) == ("all", "t4", "float32")


def test_ig_completeness(model, adata):
    """IG with T and S held fixed: the gene attributions sum to s(x) − s(0) where s(0) keeps T and S."""
    data = adata[[1, 2, 3]].copy()
    table = ss.pp.completeness(data, model, n_steps=64, device="cpu")
    assert table["relative_error"].max() < 0.02


def test_dl_refused(model, adata):
    with pytest.raises(ValueError, match="method='dl'"):
        ss.pp.attributions(adata.copy(), model, method="dl", progress=False)


def test_sequence_longer_than_seq_len(folder, adata, tmp_path):
    def shorten(entry):
        entry["config"]["dataset_config"]["rnaseq"]["seq_len"] = N_GENES + 1
        entry["state_dict"]["model.pos_emb.weight"] = entry["state_dict"]["model.pos_emb.weight"][:-1]

    model = ss.models.ScFoundation(_edit_checkpoint(folder, tmp_path, shorten))
    full = ad.AnnData(
        sparse.csr_matrix(np.ones((1, N_GENES), dtype=np.float32)), var=pd.DataFrame(index=model.gene_order)
    )
    with pytest.raises(ValueError, match=f"seq_len of {N_GENES + 1}"):
        ss.pp.embeddings(full, model, progress=False)


def test_bf16_precision_plumbing(folder, adata):
    exact = adata.copy()
    ss.pp.embeddings(exact, ss.models.ScFoundation(folder), device="cpu", progress=False)
    reduced = adata.copy()
    ss.pp.embeddings(reduced, ss.models.ScFoundation(folder, precision="bf16"), device="cpu", progress=False)
    a, b = exact.obsm["X_scfoundation"], reduced.obsm["X_scfoundation"]
    keep = ~np.isnan(a).any(axis=1)
    assert not np.array_equal(a[keep], b[keep])  # autocast was active
    np.testing.assert_allclose(b[keep], a[keep], atol=0.15)
    assert b.dtype == np.float32
    assert reduced.uns["sigscan"]["embeddings"]["X_scfoundation"]["precision"] == "bf16"
    with pytest.raises(ValueError, match="fp16"):
        ss.pp.embeddings(adata.copy(), ss.models.ScFoundation(folder, precision="fp16"), device="cpu", progress=False)
    with pytest.raises(ValueError, match="precision"):
        ss.models.ScFoundation(folder, precision="half")


def test_cli(folder, adata, tmp_path, capsys):
    counts = tmp_path / "counts.h5ad"
    adata.write_h5ad(counts)
    out = tmp_path / "out.h5ad"
    args = ["attributions", str(counts), "--model", f"scfoundation:{folder}", "--method", "ixg", "--out", str(out)]
    assert main([*args, "--device", "cpu"]) == 0
    expected = adata.copy()
    ss.pp.attributions(expected, ss.models.ScFoundation(folder), method="ixg", device="cpu", progress=False)
    np.testing.assert_allclose(
        ad.read_h5ad(out).layers["attr_scfoundation_ixg"].toarray(),
        expected.layers["attr_scfoundation_ixg"].toarray(),
        atol=1e-4,
    )
    assert main(["attributions", str(counts), "--model", "foundation:x", "--out", str(out)]) != 0
    assert "scfoundation" in capsys.readouterr().err


def test_mask_and_pad_values_get_their_embeddings(model):
    """Values equal to the mask / pad token ids (102, 103) take emb_mask / emb_pad, as in the published module."""
    embedding = model.encoder.token_emb
    values = torch.tensor([[0.5, 102.0, 103.0, 4.0]])
    with torch.no_grad():
        out = embedding(values)
    torch.testing.assert_close(out[0, 1], embedding.emb_mask.weight[0])
    torch.testing.assert_close(out[0, 2], embedding.emb_pad.weight[0])
    assert not torch.allclose(out[0, 0], embedding.emb_pad.weight[0])
