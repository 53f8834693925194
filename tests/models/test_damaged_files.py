"""A damaged model file (issue 9): one line naming the file, the cause and the fix, for every loader and the CLI.

Each loader's folder is written by the wrapper's own ``save`` (tiny random weights), then one of its files is cut to
a third of its size (an interrupted download) or replaced by bytes that are no such file (an HTML error page with
binary noise).
"""

from __future__ import annotations

import pandas as pd
import pytest

import sigscan as ss
from sigscan._logging import set_level
from sigscan._model_spec import MODEL_KINDS
from sigscan.cli import main
from sigscan.models._base import ModelFileError

GENES = pd.Index([f"GENE{i}" for i in range(40)])
GARBAGE = b"<html>404 Not Found</html>\n\x00\xff\xfe\x89" * 40

#: kind → (a tiny model, the files of its folder that a loader reads, the fix its message names)
MODELS = {
    "scimilarity": (
        lambda: ss.models.SCimilarity.random(GENES, hidden_dim=(8,), latent_dim=4),
        ["encoder.ckpt", "layer_sizes.json", "gene_order.tsv"],
        "re-download the SCimilarity model folder",
    ),
    "scgpt": (
        lambda: ss.models.ScGPT.random(GENES, embsize=8, nheads=2, d_hid=8, nlayers=1),
        ["best_model.pt", "args.json", "vocab.json"],
        "re-download the scGPT checkpoint folder",
    ),
    "scfoundation": (
        lambda: ss.models.ScFoundation.random(GENES, hidden_dim=8, depth=1, heads=2),
        ["models.ckpt", "OS_scRNA_gene_index.19264.tsv"],
        "re-download the scFoundation files",
    ),
    "sctab": (
        lambda: ss.models.ScTabSSL.random(GENES, units=(8, 4)),
        ["model.ckpt", "var.parquet"],
        "re-download",
    ),
}
CASES = [(kind, name) for kind, (_, names, _) in MODELS.items() for name in names]
#: what each damage of each kind of file is called
CAUSES = {
    ("checkpoint", "truncated"): "the checkpoint is truncated",
    ("checkpoint", "garbage"): "not a PyTorch checkpoint (the file starts with b'<html>",
    ("other", "truncated"): "truncated or corrupt",
    ("other", "garbage"): "truncated or corrupt",
}


def _folder(kind, tmp_path):
    make, _, _ = MODELS[kind]
    folder = tmp_path / kind
    make().save(folder)
    return folder


def _damage(path, damage):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3] if damage == "truncated" else GARBAGE)


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
@pytest.mark.parametrize(("kind", "name"), CASES)
def test_damaged_file_is_named_with_cause_and_fix(kind, name, damage, tmp_path):
    folder = _folder(kind, tmp_path)
    getattr(ss.models, MODEL_KINDS[kind])(folder)  # intact: loads
    path = folder / name
    _damage(path, damage)
    if name.endswith((".tsv",)) and damage == "truncated":
        # a text table cut short is still a text table: fewer genes than the weights expect, said for this file
        with pytest.raises(ValueError, match=name.replace(".", r"\.")):
            getattr(ss.models, MODEL_KINDS[kind])(folder)
        return
    with pytest.raises(ModelFileError) as info:
        getattr(ss.models, MODEL_KINDS[kind])(folder)
    message = str(info.value)
    kind_of_file = "checkpoint" if name.endswith((".pt", ".ckpt")) else "other"
    assert message.startswith(f"cannot read {path}: "), message
    assert CAUSES[kind_of_file, damage] in message, message
    assert MODELS[kind][2] in message and "\n" not in message
    assert isinstance(info.value, OSError) and isinstance(info.value, ValueError)


def test_empty_checkpoint_is_called_truncated(tmp_path):
    folder = _folder("scgpt", tmp_path)
    (folder / "best_model.pt").write_bytes(b"")
    with pytest.raises(ModelFileError, match=r"best_model\.pt: the file is empty \(truncated"):
        ss.models.ScGPT(folder)


def test_wrong_format_names_missing_keys(tmp_path):
    import torch

    folder = _folder("scfoundation", tmp_path)
    with pytest.raises(ModelFileError, match=r"models\.ckpt: missing keys: no 'rde' entry .*pass version="):
        ss.models.ScFoundation(folder, version="rde")
    torch.save({"cell": {"config": {}}}, folder / "models.ckpt")
    with pytest.raises(ModelFileError, match=r"missing keys: \['cell'\] lacks state_dict; re-download"):
        ss.models.ScFoundation(folder)
    folder = _folder("sctab", tmp_path)
    torch.save({"weights": {}}, folder / "model.ckpt")
    with pytest.raises(ModelFileError, match=r"model\.ckpt: wrong format: not a Lightning checkpoint"):
        ss.models.ScTabSSL(folder)


@pytest.mark.parametrize("kind", list(MODELS))
def test_cli_one_line_exit_1_nothing_written(kind, tmp_path, capsys):
    folder = _folder(kind, tmp_path)
    checkpoint = folder / MODELS[kind][1][0]
    _damage(checkpoint, "truncated")
    adata = ss.datasets.toy(n_cells=20, n_genes=40)
    adata.var_names = GENES
    adata.write_h5ad(tmp_path / "in.h5ad")
    out = tmp_path / "out.h5ad"
    argv = ["attributions", str(tmp_path / "in.h5ad"), "--model", f"{kind}:{folder}", "--out", str(out)]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"cannot read {checkpoint}: the checkpoint is truncated" in err[0], err
    assert "Traceback" not in err[0] and not out.exists()
    try:
        assert main(["-v", *argv]) == 1
    finally:
        set_level(None)  # -v sets the level for the process; give the following tests scanpy's verbosity back
    assert "Traceback" in capsys.readouterr().err
