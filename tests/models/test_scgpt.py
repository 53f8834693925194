"""scGPT: checkpoint loading, the <cls> embedding, deterministic binning, attributions through the transformer."""

from __future__ import annotations

import json
import logging

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from scipy import sparse
from torch import nn

import sigscan as ss
from sigscan._logging import logger
from sigscan.models import _scgpt
from sigscan.models._binning import bin_cell, bin_matrix, digitize_bounds, quantile_edges, tie_uniforms

N_GENES = 40
SIZES = {"embsize": 16, "nheads": 2, "d_hid": 24, "nlayers": 2}


def published_binning(row: np.ndarray, uniforms: np.ndarray, n_bins: int = 51) -> np.ndarray:
    """The published rule written out step by step, with the uniform draws given (the oracle)."""
    out = np.zeros(len(row), dtype=np.int64)
    nonzero = np.nonzero(row)[0]
    if len(nonzero) == 0:
        return out
    values = row[nonzero].astype(np.float64)
    edges = np.quantile(values, np.linspace(0, 1, n_bins - 1))
    left = np.digitize(values, edges)
    right = np.digitize(values, edges, right=True)
    out[nonzero] = np.ceil(uniforms * (right - left) + left).astype(np.int64)
    return out


@pytest.fixture(scope="module")
def genes() -> pd.Index:
    return pd.Index([f"GENE{i}" for i in range(N_GENES)])


@pytest.fixture(scope="module")
def model(genes) -> ss.models.ScGPT:
    return ss.models.ScGPT.random(genes, **SIZES, random_state=3)


@pytest.fixture(scope="module")
def adata(genes) -> ad.AnnData:
    """12 cells × (the 40 model genes in shuffled order + 6 genes outside the model); cell 5 expresses none."""
    rng = np.random.default_rng(0)
    names = list(rng.permutation(genes)) + [f"OTHER{i}" for i in range(6)]
    rates = rng.gamma(0.6, 2.0, size=len(names))
    counts = rng.poisson(rates, size=(12, len(names))).astype(np.float32)
    counts[5, :N_GENES] = 0
    return ad.AnnData(
        sparse.csr_matrix(counts), var=pd.DataFrame(index=names), obs=pd.DataFrame(index=map(str, range(12)))
    )


def model_counts(adata: ad.AnnData, model: ss.models.ScGPT) -> sparse.csr_matrix:
    return model.align(adata.var).to_model(sparse.csr_matrix(adata.X, dtype=np.float32))


# --- loading -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("flash", [False, True])
def test_checkpoint_round_trip_with_strict_keys(model, tmp_path, flash):
    folder = model.save(tmp_path / "ckpt", flash_attention=flash)
    state = torch.load(folder / "best_model.pt", weights_only=True)
    attention_keys = [key for key in state if ".self_attn." in key and "out_proj" not in key]
    expected = {"self_attn.Wqkv.weight", "self_attn.Wqkv.bias"} if flash else {"self_attn.in_proj_weight"}
    assert {key.split(".", 3)[-1] for key in attention_keys} >= expected
    assert set(json.loads((folder / "args.json").read_text())) >= {"embsize", "nheads", "d_hid", "nlayers", "pad_value"}

    loaded = ss.models.ScGPT(folder)
    assert loaded.ignored_keys == []
    reference = model.encoder.state_dict()
    assert loaded.encoder.state_dict().keys() == reference.keys()
    for key, value in loaded.encoder.state_dict().items():
        assert torch.equal(value, reference[key]), key
    assert list(loaded.gene_order) == list(model.gene_order)
    assert loaded.checksum == model.checksum


def test_published_extra_keys_are_ignored_and_reported(model, tmp_path):
    folder = model.save(tmp_path / "ckpt", flash_attention=True)
    state = torch.load(folder / "best_model.pt", weights_only=True)
    d = SIZES["embsize"]
    extra = {
        "decoder.fc.0.weight": torch.randn(d, d),
        "mvc_decoder.gene2query.weight": torch.randn(d, d),
        "cls_decoder.out_layer.weight": torch.randn(3, d),
        "flag_encoder.weight": torch.randn(2, d),
    }
    torch.save({**state, **extra}, folder / "best_model.pt")
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        loaded = ss.models.ScGPT(folder)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert loaded.ignored_keys == sorted(extra)
    assert any("ignored 4 tensors" in r and "mvc_decoder: 1" in r and "decoder: 1" in r for r in records), records
    assert loaded.checksum == model.checksum


def test_missing_parameter_is_named(model, tmp_path):
    folder = model.save(tmp_path / "ckpt")
    state = torch.load(folder / "best_model.pt", weights_only=True)
    del state["transformer_encoder.layers.1.norm2.bias"]
    torch.save(state, folder / "best_model.pt")
    with pytest.raises(KeyError, match=r"transformer_encoder\.layers\.1\.norm2\.bias"):
        ss.models.ScGPT(folder)


@pytest.mark.parametrize("field", ["embsize", "nlayers", "pad_value"])
def test_missing_config_field_is_named(model, tmp_path, field):
    folder = model.save(tmp_path / "ckpt")
    args = json.loads((folder / "args.json").read_text())
    del args[field]
    (folder / "args.json").write_text(json.dumps(args))
    with pytest.raises(KeyError, match=field):
        ss.models.ScGPT(folder)


def test_config_that_does_not_match_the_weights(model, tmp_path):
    folder = model.save(tmp_path / "ckpt")
    args = json.loads((folder / "args.json").read_text())
    (folder / "args.json").write_text(json.dumps({**args, "d_hid": 8}))
    with pytest.raises(ValueError, match=r"linear1\.weight"):
        ss.models.ScGPT(folder)
    (folder / "args.json").write_text(json.dumps(args))
    vocab = json.loads((folder / "vocab.json").read_text())
    vocab["EXTRA_GENE"] = max(vocab.values()) + 1
    (folder / "vocab.json").write_text(json.dumps(vocab))
    with pytest.raises(ValueError, match=r"vocab\.json"):
        ss.models.ScGPT(folder)


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        ss.models.ScGPT(tmp_path / "nowhere")
    (tmp_path / "args.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"best_model\.pt, vocab\.json"):
        ss.models.ScGPT(tmp_path)


def test_special_tokens_are_added(model, genes, tmp_path):
    folder = model.save(tmp_path / "ckpt")
    vocab = json.loads((folder / "vocab.json").read_text())
    assert [vocab[t] for t in ("<pad>", "<cls>", "<eoc>")] == [N_GENES, N_GENES + 1, N_GENES + 2]
    (folder / "vocab.json").write_text(json.dumps({g: vocab[g] for g in genes}))  # a gene-only vocabulary
    loaded = ss.models.ScGPT(folder)
    assert (loaded.pad_id, loaded.cls_id, loaded.vocab["<eoc>"]) == (N_GENES, N_GENES + 1, N_GENES + 2)
    assert list(loaded.gene_order) == list(genes)
    assert loaded.n_genes == N_GENES and loaded.requires_counts is False and loaded.l2_normalized


# --- the <cls> embedding ------------------------------------------------------------------------------------------


def plain_reference(folder) -> tuple[nn.Module, dict]:
    """A plain torch.nn.TransformerEncoder stack built from args.json and best_model.pt, without sigscan."""
    args = json.loads((folder / "args.json").read_text())
    vocab = json.loads((folder / "vocab.json").read_text())
    state = torch.load(folder / "best_model.pt", weights_only=True)
    d = args["embsize"]
    embedding, gene_norm = nn.Embedding(len(vocab), d), nn.LayerNorm(d)
    value1, value2, value_norm = nn.Linear(1, d), nn.Linear(d, d), nn.LayerNorm(d)
    layer = nn.TransformerEncoderLayer(d, args["nheads"], args["d_hid"], args["dropout"], batch_first=True)
    stack = nn.TransformerEncoder(layer, args["nlayers"], enable_nested_tensor=False)
    with torch.no_grad():
        embedding.weight.copy_(state["encoder.embedding.weight"])
        for module, prefix in [
            (gene_norm, "encoder.enc_norm"),
            (value1, "value_encoder.linear1"),
            (value2, "value_encoder.linear2"),
            (value_norm, "value_encoder.norm"),
        ]:
            module.weight.copy_(state[f"{prefix}.weight"])
            module.bias.copy_(state[f"{prefix}.bias"])
        for i, block in enumerate(stack.layers):
            p = f"transformer_encoder.layers.{i}."
            block.self_attn.in_proj_weight.copy_(state[p + "self_attn.Wqkv.weight"])
            block.self_attn.in_proj_bias.copy_(state[p + "self_attn.Wqkv.bias"])
            for name in ("self_attn.out_proj", "linear1", "linear2", "norm1", "norm2"):
                target = block.get_submodule(name)
                target.weight.copy_(state[p + name + ".weight"])
                target.bias.copy_(state[p + name + ".bias"])

    class Reference(nn.Module):
        def __init__(self):
            super().__init__()
            self.parts = nn.ModuleList([embedding, gene_norm, value1, value2, value_norm, stack])

        def forward(self, tokens, values, mask):
            x = gene_norm(embedding(tokens)) + value_norm(value2(torch.relu(value1(values.clamp(max=512)[..., None]))))
            return stack(x, src_key_padding_mask=mask)[:, 0]

    return Reference().eval(), {"vocab": vocab, "pad_value": args["pad_value"]}


def reference_batch(binned: sparse.csr_matrix, vocab: dict, genes: pd.Index, pad_value: float):
    """Sequences built by hand: <cls> (pad_value) then the expressed genes in vocabulary order, then padding."""
    rows = []
    for i in range(binned.shape[0]):
        lo, hi = binned.indptr[i], binned.indptr[i + 1]
        order = np.argsort(binned.indices[lo:hi])
        tokens = [vocab["<cls>"]] + [vocab[genes[j]] for j in binned.indices[lo:hi][order]]
        rows.append((tokens, [pad_value, *binned.data[lo:hi][order].tolist()]))
    length = max(len(t) for t, _ in rows)
    tokens = torch.full((len(rows), length), vocab["<pad>"])
    values = torch.full((len(rows), length), float(pad_value))
    for i, (t, v) in enumerate(rows):
        tokens[i, : len(t)] = torch.tensor(t)
        values[i, : len(v)] = torch.tensor(v)
    return tokens, values, tokens.eq(vocab["<pad>"])


def test_cls_embedding_equals_plain_transformer_encoder(model, adata, tmp_path):
    folder = model.save(tmp_path / "ckpt", flash_attention=True)
    loaded = ss.models.ScGPT(folder)
    reference, meta = plain_reference(folder)
    binned = loaded.preprocess(model_counts(adata, loaded))
    tokens, values, mask = reference_batch(binned, meta["vocab"], loaded.gene_order, meta["pad_value"])
    assert mask[5, 1:].all()  # the empty cell is <cls> alone
    with torch.no_grad():
        expected = reference(tokens, values, mask)
        ours = loaded.embed(torch.as_tensor(binned.toarray()), normalize=False)
        normalised = loaded.embed(torch.as_tensor(binned.toarray()))
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(normalised, F.normalize(expected, dim=1), atol=1e-5, rtol=1e-5)
    seq = loaded.sequences(binned)
    assert torch.equal(seq.genes, tokens) and torch.equal(seq.mask, mask)


def test_long_cells_are_chunked_deterministically(genes):
    model = ss.models.ScGPT.random(genes, **SIZES, random_state=1, max_length=4)  # 3 genes per sequence
    values = np.zeros((2, N_GENES), dtype=np.float32)
    values[0, [2, 5, 9, 11, 20, 30, 33]] = [7, 1, 50, 3, 22, 9, 12]  # 7 genes → 3 chunks
    values[1, [4, 8]] = [2, 40]  # fits in one sequence
    binned = sparse.csr_matrix(values)
    seq = model.sequences(binned)
    assert seq.layout.cell_of_row.tolist() == [0, 0, 0, 1]
    # decreasing value: 50(g9) 22(g20) 12(g33) 9(g30) 7(g2) 3(g11) 1(g5) dealt to chunks 0,1,2,0,1,2,0
    chunks = [[9, 30, 5], [20, 2], [33, 11], [4, 8]]
    ids = model.token_ids
    for row, members in enumerate(chunks):
        members = sorted(members)
        assert seq.genes[row, 0] == model.cls_id
        assert seq.genes[row, 1 : 1 + len(members)].tolist() == ids[members].tolist()
        source = 0 if row < 3 else 1
        assert seq.values[row, : len(members)].tolist() == values[source, members].tolist()
        assert not seq.mask[row, : 1 + len(members)].any() and seq.mask[row, 1 + len(members) :].all()
    with torch.no_grad():
        per_chunk = []
        for members in chunks[:3]:
            members = sorted(members)
            tokens = torch.tensor([[model.cls_id, *ids[members].tolist()]])
            vals = torch.tensor([[model.pad_value, *values[0, members].tolist()]])
            per_chunk.append(model.encoder(tokens, vals, torch.zeros_like(tokens, dtype=torch.bool))[:, 0])
        expected = torch.cat(per_chunk).mean(dim=0)
        ours = model.embed(torch.as_tensor(values), normalize=False)
    torch.testing.assert_close(ours[0], expected, atol=1e-5, rtol=1e-5)


def test_embed_is_differentiable_only_through_expressed_genes(model, adata):
    x = torch.as_tensor(model.preprocess(model_counts(adata, model)).toarray()).requires_grad_(True)
    model.embed(x).sum().backward()
    assert torch.all(x.grad[x == 0] == 0)
    assert (x.grad[x != 0] != 0).float().mean() > 0.9


# --- binning ------------------------------------------------------------------------------------------------------


def test_binning_hand_computed():
    # three distinct values: edges run from 1 to 5, 25 of them below 3 and none equal to 3 or to 5 but the last
    cell = np.array([0, 5, 0, 1, 3], dtype=np.float32)
    assert bin_matrix(sparse.csr_matrix(cell)).toarray().ravel().tolist() == [0, 50, 0, 1, 25]
    # two values: every edge but the first and last lies strictly between them
    assert bin_matrix(sparse.csr_matrix([[2.0, 0, 9.0]])).toarray().ravel().tolist() == [1, 0, 50]
    assert bin_matrix(sparse.csr_matrix((2, 4), dtype=np.float32)).nnz == 0  # all-zero cells stay empty


def test_binning_matches_published_rule_with_ties():
    rng = np.random.default_rng(1)
    cells = [
        np.array([4, 4, 4, 4, 4, 4], dtype=np.float32),  # one value: every edge equals it → bins 1 … 50
        np.array([0, 1, 1, 1, 2, 0, 7, 7, 1, 30], dtype=np.float32),
        rng.poisson(0.8, 300).astype(np.float32),  # many ties, many zeros
        rng.permutation(np.arange(1, 201)).astype(np.float32),  # more genes than bins, no ties
    ]
    for seed in (0, 7):
        for cell in cells:
            nonzero = np.nonzero(cell)[0]
            left, _ = digitize_bounds(cell[nonzero], quantile_edges(cell[nonzero]))
            uniforms = tie_uniforms(nonzero, seed)
            expected = published_binning(cell, uniforms)
            ours = bin_matrix(sparse.csr_matrix(cell), seed=seed).toarray().ravel()
            np.testing.assert_array_equal(ours, expected)
            assert ours[cell == 0].max(initial=0) == 0 and ours[cell > 0].min() >= 1 and ours.max() <= 50
            order = np.argsort(cell[nonzero], kind="stable")  # bins never decrease with the value across ties
            assert np.all(np.diff(left[order]) >= 0)
    tied = bin_cell(np.arange(6), cells[0][:6])
    assert len(set(tied.tolist())) > 1  # ties are spread over the bins …
    np.testing.assert_array_equal(tied, bin_cell(np.arange(6), cells[0][:6]))  # … the same way every time
    assert not np.array_equal(bin_cell(np.arange(6), cells[0][:6], seed=1), tied)
    distinct = bin_matrix(sparse.csr_matrix(cells[3])).toarray().ravel()
    assert set(distinct.tolist()) == set(range(1, 51))
    assert np.all(np.diff(distinct[np.argsort(cells[3])]) >= 0)


def test_binning_is_per_cell_and_rank_based(adata, model):
    counts = model_counts(adata, model)
    together = bin_matrix(counts, seed=3)
    apart = sparse.vstack([bin_matrix(counts[i], seed=3) for i in range(counts.shape[0])])
    np.testing.assert_array_equal(together.toarray(), apart.toarray())  # independent of the batch
    reversed_cells = bin_matrix(counts[::-1], seed=3)
    np.testing.assert_array_equal(reversed_cells.toarray()[::-1], together.toarray())  # and of the cell order
    scaled = counts * 4.0  # exact in floating point: identical ranks and identical interpolated edges
    np.testing.assert_array_equal(bin_matrix(scaled, seed=3).toarray(), together.toarray())
    normalised = counts.multiply(1e4 / np.maximum(counts.sum(axis=1), 1)).tocsr()
    normalised.data = np.log1p(normalised.data)
    logged = bin_matrix(normalised, seed=3)
    assert np.array_equal(logged.indices, together.indices)
    # the same bins up to rare floating-point coincidences of a value with an interpolated edge
    assert np.mean(logged.data == together.data) > 0.97
    assert np.abs(logged.data - together.data).max() <= 2


def test_binning_input_checks():
    x = sparse.csr_matrix(np.array([[0, 1.0, 2.0]], dtype=np.float32))
    x.data[0] = -1
    with pytest.raises(ValueError, match="non-negative"):
        bin_matrix(x)
    explicit = sparse.csr_matrix((np.array([0.0, 3.0], dtype=np.float32), [0, 2], [0, 2]), shape=(1, 3))
    assert bin_matrix(explicit).nnz == 1  # explicit zeros are not expressed genes
    assert explicit.nnz == 2  # and the input is not modified


# --- attributions -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["ig", "ixg"])
def test_attributions_properties(model, adata, method):
    kwargs = {"method": method, "n_steps": 16, "progress": False, "device": "cpu"}
    first = ss.pp.attributions(adata, model, copy=True, **kwargs)
    second = ss.pp.attributions(adata, model, copy=True, batch_size=12, **kwargs)
    key = f"attr_scgpt_{method}"
    layer = first.layers[key]
    assert layer.dtype == np.float32 and layer.shape == adata.shape
    counts = adata.X.toarray()
    in_model = first.var[f"{key}_in_model"].to_numpy()
    assert in_model.sum() == N_GENES
    dense = layer.toarray()
    assert np.all(dense[:, ~in_model] == 0)
    assert np.all(dense[counts == 0] == 0)  # not expressed → exactly zero
    assert (dense[(counts > 0) & in_model] > 0).mean() > 0.95
    sums = dense.sum(axis=1)
    np.testing.assert_allclose(np.delete(sums, 5), 1000, rtol=1e-4)
    assert sums[5] == 0  # no expressed model gene
    repeat = ss.pp.attributions(adata, model, copy=True, **kwargs).layers[key]
    np.testing.assert_array_equal(repeat.toarray(), dense)  # identical across runs
    np.testing.assert_allclose(second.layers[key].toarray(), dense, rtol=1e-3, atol=1e-3)  # batching: padding only
    provenance = first.uns["sigscan"]["attributions"][key]
    assert provenance["engine"] == "captum"
    assert provenance["head"] == ("reference" if method == "ig" else "prenorm")


def test_deeplift_is_refused_clearly(model, adata):
    with pytest.raises(ValueError, match="method='ig'"):
        ss.pp.attributions(adata, model, method="dl", progress=False, copy=True)


def test_ig_completeness_on_the_value_tensor(model, adata):
    coarse = ss.pp.completeness(adata, model, n_steps=8, device="cpu")
    fine = ss.pp.completeness(adata, model, n_steps=256, device="cpu")
    expressed = fine["delta"].abs() > 0
    assert expressed.sum() == adata.n_obs - 1  # the empty cell has s(x) = s(0)
    assert fine.loc[expressed, "relative_error"].max() < 0.01
    assert fine["relative_error"].mean() < coarse["relative_error"].mean()


def test_chunked_and_internally_batched_ig_is_complete(genes, adata, monkeypatch):
    model = ss.models.ScGPT.random(genes, **SIZES, random_state=2, max_length=6)  # cells split into up to 5 chunks
    counts = model_counts(adata, model)
    assert np.diff(counts.indptr).max() > 5 * 2
    full = ss.pp.completeness(adata, model, n_steps=16, device="cpu")
    monkeypatch.setitem(_scgpt._TOKENS_PER_PASS, "cpu", 1)  # one integration step per autograd pass
    batched = ss.pp.completeness(adata, model, n_steps=16, device="cpu", batch_size=5)
    np.testing.assert_allclose(batched["attribution_sum"], full["attribution_sum"], rtol=1e-4, atol=1e-7)
    monkeypatch.undo()
    fine = ss.pp.completeness(adata, model, n_steps=256, device="cpu")
    expressed = fine["delta"].abs() > 0
    assert fine.loc[expressed, "relative_error"].max() < 0.015  # the error is O(1/n_steps): ReLU kinks on the path
    assert fine["relative_error"].mean() < full["relative_error"].mean() / 4
    result = ss.pp.attributions(adata, model, n_steps=8, progress=False, copy=True, device="cpu")
    dense = result.layers["attr_scgpt_ig"].toarray()
    expressed_genes = (adata.X.toarray() > 0) & result.var["attr_scgpt_ig_in_model"].to_numpy()
    assert np.array_equal(dense > 0, expressed_genes)  # every expressed gene is attributed, in whichever chunk


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_attributions_on_cuda_match_cpu(model, adata):
    cpu = ss.pp.attributions(adata, model, n_steps=16, progress=False, copy=True, device="cpu")
    gpu = ss.pp.attributions(adata, model, n_steps=16, progress=False, copy=True, device="cuda")
    np.testing.assert_allclose(gpu.layers["attr_scgpt_ig"].toarray(), cpu.layers["attr_scgpt_ig"].toarray(), atol=1e-2)


def test_command_line_attributions(model, adata, tmp_path, capsys):
    from sigscan.cli import main

    folder = model.save(tmp_path / "ckpt", flash_attention=True)
    adata.write_h5ad(tmp_path / "in.h5ad")
    out = tmp_path / "out.h5ad"
    assert (
        main(
            [
                "attributions",
                str(tmp_path / "in.h5ad"),
                "--model",
                f"scgpt:{folder}",
                "--method",
                "ixg",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    result = ad.read_h5ad(out)
    expected = ss.pp.attributions(adata, model, method="ixg", progress=False, copy=True, device="cpu")
    np.testing.assert_allclose(
        result.layers["attr_scgpt_ixg"].toarray(), expected.layers["attr_scgpt_ixg"].toarray(), atol=1e-3
    )
    assert (
        main(
            [
                "attributions",
                str(tmp_path / "in.h5ad"),
                "--model",
                f"scgpt:{folder}",
                "--method",
                "dl",
                "--out",
                str(out),
            ]
        )
        == 2
    )
    assert "--method ig" in capsys.readouterr().err  # the CLI names its flag (issue 9)


def test_ignored_args_are_reported_once(model, adata, tmp_path):
    import warnings

    folder = model.save(tmp_path / "published")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the published defaults: nothing ignored, no warning
        assert ss.models.ScGPT(folder).ignored_args == []
    args = json.loads((folder / "args.json").read_text())
    args |= {"input_style": "normed_raw", "cell_emb_style": "avg-pool", "max_seq_len": 3001, "DSBN": True}
    (folder / "args.json").write_text(json.dumps(args))
    with pytest.warns(UserWarning) as record:
        loaded = ss.models.ScGPT(folder)
    assert len(record) == 1
    message = str(record[0].message)
    for setting in ("input_style='normed_raw'", "cell_emb_style='avg-pool'", "max_seq_len=3001", "DSBN"):
        assert setting in message
    data = adata.copy()
    ss.pp.attributions(data, loaded, method="ixg", device="cpu", progress=False)
    provenance = data.uns["sigscan"]["attributions"]["attr_scgpt_ixg"]
    assert provenance["max_length"] == 1200 and provenance["binning_seed"] == 0
    assert provenance["head"] == "prenorm" and "pre-normalisation" in provenance["heads"]
    assert "max_seq_len=3001" in provenance["ignored_args"]


def test_bf16_precision_plumbing(model, adata):
    exact, reduced = adata.copy(), adata.copy()
    ss.pp.embeddings(exact, model, device="cpu", progress=False)
    bf16 = ss.models.ScGPT.random(model.gene_order, **SIZES, random_state=3, precision="bf16")
    ss.pp.embeddings(reduced, bf16, device="cpu", progress=False)
    a, b = exact.obsm["X_scgpt"], reduced.obsm["X_scgpt"]
    assert not np.array_equal(a, b)
    np.testing.assert_allclose(b, a, atol=0.05)
    assert reduced.uns["sigscan"]["embeddings"]["X_scgpt"]["precision"] == "bf16"
