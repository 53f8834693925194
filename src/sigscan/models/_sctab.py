"""SSL-scTab: the self-supervised scTab MLPs (theislab/ssl_in_scg Lightning checkpoints) as Linear-first encoders."""

from __future__ import annotations

import itertools
import os
import pickle
import re
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
import torch
from torch import nn

from .._logging import logger
from ._base import FirstLinear, model_file_error, read_checkpoint, read_model_file
from ._torch import TorchEncoder

#: where the encoder lives in each kind of checkpoint, in the order they are looked for
ENCODER_PREFIXES: tuple[str, ...] = ("classifier.", "encoder.", "inner_model.", "backbone.")
#: activations the checkpoints can name (hyper-parameter ``activation``: a class or its name)
_ACTIVATIONS: dict[str, type[nn.Module]] = {
    cls.__name__: cls for cls in (nn.SELU, nn.ReLU, nn.ELU, nn.GELU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid)
}
#: the architecture's own activation when the hyper-parameters do not name one (ssl_in_scg defaults)
_STRUCTURAL_ACTIVATION = {"classifier.": "ReLU", "encoder.": "SELU", "inner_model.": "SELU", "backbone.": "SELU"}
CHECKPOINT_FILE = "model.ckpt"
VAR_FILE = "var.parquet"


class _Opaque:
    """Stand-in for a pickled object whose class the restricted unpickler does not import (never executed)."""

    _qualified_name = "?"

    def __init__(self, *args: Any, **kwargs: Any):
        self.args = args

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<unloaded {self._qualified_name}>"


class _RestrictedUnpickler(pickle.Unpickler):
    """Imports only tensor-rebuilding functions and plain containers; any other global becomes an inert stand-in."""

    _ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("collections", "OrderedDict"),
        ("torch._utils", "_rebuild_tensor_v2"),
        ("torch._utils", "_rebuild_tensor_v3"),
        ("torch._utils", "_rebuild_parameter"),
        ("torch", "Size"),
        ("torch", "device"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED or (
            module == "torch" and (name.endswith("Storage") or isinstance(getattr(torch, name, None), torch.dtype))
        ):
            return super().find_class(module, name)
        return type(name, (_Opaque,), {"_qualified_name": f"{module}.{name}"})


_restricted_pickle = types.SimpleNamespace(Unpickler=_RestrictedUnpickler, load=pickle.load, __name__="restricted")


#: what fixes a damaged checkpoint
_FIX = "re-download the checkpoint (or point to another .ckpt file)"


def read_lightning_checkpoint(path: Path) -> dict[str, Any]:
    """A Lightning checkpoint as a dict, loaded without executing pickled code.

    ``torch.load(weights_only=True)`` first; checkpoints whose ``hyper_parameters`` pickle classes (activation,
    optimiser, scheduler) are then read by a restricted unpickler that rebuilds tensors and plain containers only and
    turns every other pickled object into an inert stand-in that records the class's name.
    """
    try:
        obj = read_checkpoint(path, fix=_FIX)
    except pickle.UnpicklingError:
        logger.info("%s pickles classes in its hyper-parameters; reading it with a restricted unpickler", path)
        obj = read_checkpoint(path, fix=_FIX, weights_only=False, pickle_module=_restricted_pickle)
    if not isinstance(obj, Mapping) or not isinstance(obj.get("state_dict"), Mapping):
        raise model_file_error(
            path,
            "wrong format: not a Lightning checkpoint (a dict with a 'state_dict')",
            "point to the .ckpt file of an ssl_in_scg model",
        )
    return dict(obj)


def _prefix_of(state: Mapping[str, torch.Tensor], source: str) -> str:
    for prefix in ENCODER_PREFIXES:
        if any(re.fullmatch(re.escape(prefix) + r"\d+\.weight", key) for key in state):
            return prefix
    raise KeyError(
        f"{source}: no encoder found: expected keys classifier.<i>.weight (fine-tuned classifier), encoder.<i>.weight "
        f"(masked auto-encoder), inner_model.<i>.weight (BYOL, Barlow Twins) or backbone.<i>.weight; found "
        f"{sorted(state)[:8]}."
    )


def _activation_name(hparams: Mapping[str, Any], prefix: str) -> tuple[str, str]:
    """(activation class name, where it was read)."""
    value = hparams.get("activation")
    if value is not None:
        name = value if isinstance(value, str) else getattr(value, "_qualified_name", getattr(value, "__name__", ""))
        name = str(name).rsplit(".", 1)[-1]
        if name not in _ACTIVATIONS:
            raise ValueError(
                f"hyper_parameters['activation'] is {value!r}; supported activations: {', '.join(_ACTIVATIONS)}."
            )
        return name, "hyper_parameters['activation']"
    kind = "MLPClassifier" if prefix == "classifier." else "ssl_in_scg encoder"
    return _STRUCTURAL_ACTIVATION[prefix], f"structure ({prefix}* keys: {kind})"


def build_mlp(
    state: Mapping[str, torch.Tensor], prefix: str, activation: str, source: str
) -> tuple[nn.Sequential, list[str]]:
    """The embedding MLP with the checkpoint's module indices (keys ``<prefix><i>.*``) and the keys it uses.

    Between Linear layers: an optional norm (BatchNorm1d with running statistics, else LayerNorm), the activation,
    then Dropout. For the fine-tuned classifier the final (logit) Linear is left out: the embedding is the output
    after the last hidden activation.
    """
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.(.+)")
    params: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        match = pattern.fullmatch(key)
        if match:
            params.setdefault(int(match.group(1)), {})[match.group(2)] = value
    linears = sorted(i for i, p in params.items() if "weight" in p and p["weight"].ndim == 2)
    if not linears or linears[0] != 0:
        raise KeyError(f"{source}: {prefix}0.weight (the first Linear layer) is missing.")
    end = linears[-1] + 1
    if prefix == "classifier.":  # leave out the logit layer: the embedding is the last hidden activation's output
        if len(linears) < 2:
            raise KeyError(f"{source}: a classifier needs hidden layers before its output layer.")
        end, linears = linears[-1], linears[:-1]
    modules: list[nn.Module] = []
    used: list[str] = []
    for index in range(end):
        p = params.get(index)
        if index in linears:
            weight = p["weight"]
            module = nn.Linear(weight.shape[1], weight.shape[0], bias="bias" in p)
        elif p is not None and "running_mean" in p:
            module = nn.BatchNorm1d(p["running_mean"].shape[0], eps=1e-3)
        elif p is not None and "weight" in p:
            module = nn.LayerNorm(p["weight"].shape[0], eps=1e-3)
        elif p is None and index - 1 >= 0 and (index - 1 in linears or _is_norm(params.get(index - 1))):
            module = _ACTIVATIONS[activation]()
        else:
            module = nn.Dropout(0.0)
        if p is not None:
            own = module.state_dict()
            missing = [f"{prefix}{index}.{name}" for name in own if name not in p]
            if missing:
                raise KeyError(f"{source}: missing {', '.join(missing)}.")
            module.load_state_dict({name: p[name] for name in own}, strict=True)
            used += [f"{prefix}{index}.{name}" for name in own]
        modules.append(module)
    return nn.Sequential(*modules), used


def _is_norm(params: Mapping[str, torch.Tensor] | None) -> bool:
    return params is not None and "weight" in params and params["weight"].ndim == 1


def _read_var(var: str | os.PathLike | pd.DataFrame) -> pd.Index:
    if isinstance(var, pd.DataFrame):
        table = var
    else:
        fix = "re-download scTab's var.parquet (or pass var= a DataFrame with feature_name)"
        table = read_model_file(var, pd.read_parquet, what="Parquet table", fix=fix)
    if "feature_name" not in table.columns:
        raise ValueError(
            f"the scTab var table has no 'feature_name' column (columns: {list(table.columns)}); pass scTab's "
            "var.parquet (feature_id, feature_name) as var=."
        )
    return pd.Index(table["feature_name"].astype(str))


class ScTabSSL(TorchEncoder):
    """A self-supervised scTab MLP (SSL-scTab) from its Lightning checkpoint.

    Reads the checkpoint's ``state_dict`` (``weights_only=True`` first; checkpoints whose hyper-parameters pickle
    classes are read by a restricted unpickler that runs no pickled code). The encoder is found under
    ``classifier.`` (fine-tuned ``MLPClassifier``: the embedding is the output after the last hidden ReLU, i.e.
    after ``classifier[14]`` of the published 5-hidden-layer classifier; the logit layer is left out), ``encoder.``
    (masked auto-encoders), ``inner_model.`` (BYOL; not the EMA ``byol.target_encoder.*``; Barlow Twins) or
    ``backbone.``; the embedding of an SSL encoder is the output of its last Linear layer. The activation is read from
    ``hyper_parameters["activation"]`` when present, else from the structure (SELU for the SSL encoders, ReLU for the
    classifiers); :attr:`activation_source` says which. Genes: scTab's ``var.parquet`` (``feature_name``), given as
    ``var=`` (path or DataFrame) or found next to the checkpoint. Input: each cell scaled to 10,000 over the model's
    genes, then log1p. The first operation on genes is a Linear layer, so attributions use the exact fast path.

    Parameters
    ----------
    path
        The ``.ckpt`` file, or a folder holding one ``.ckpt`` file (and ``var.parquet``).
    var
        scTab's gene table: a path to ``var.parquet`` or a DataFrame with ``feature_name``.
    min_gene_overlap
        Fewer model genes than this in the data raise an error.
    name
        Name used in layer keys.

    Examples
    --------
    >>> import tempfile, sigscan as ss
    >>> genes = ss.datasets.pbmc3k().var_names[:300]
    >>> folder = ss.models.ScTabSSL.random(genes, units=(32, 16)).save(tempfile.mkdtemp())
    >>> model = ss.models.ScTabSSL(folder)
    >>> model.embedding_dim, model.activation
    (16, 'SELU')
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        var: str | os.PathLike | pd.DataFrame | None = None,
        min_gene_overlap: int = 500,
        name: str = "sctab",
    ):
        path = Path(path)
        if path.is_dir():
            candidates = sorted(path.glob("*.ckpt"))
            if len(candidates) != 1:
                raise FileNotFoundError(
                    f"{path} holds {len(candidates)} .ckpt files; point to the checkpoint file itself."
                )
            checkpoint_path = candidates[0]
        elif path.is_file():
            checkpoint_path = path
        else:
            raise FileNotFoundError(f"{path} does not exist; point to an SSL-scTab .ckpt file or its folder.")
        if var is None:
            var = checkpoint_path.parent / VAR_FILE
            if not var.exists():
                raise FileNotFoundError(
                    f"no {VAR_FILE} next to {checkpoint_path}; pass var= (scTab's var.parquet or a DataFrame with "
                    "feature_name)."
                )
        checkpoint = read_lightning_checkpoint(checkpoint_path)
        state = {str(k): v for k, v in checkpoint["state_dict"].items() if isinstance(v, torch.Tensor)}
        hparams = checkpoint.get("hyper_parameters") or {}
        self._setup(state, dict(hparams) if isinstance(hparams, Mapping) else {}, _read_var(var), str(checkpoint_path))
        self._finish(min_gene_overlap, name)
        self.path = checkpoint_path
        self._prepare_in_background()

    def _setup(self, state: dict[str, torch.Tensor], hparams: dict[str, Any], genes: pd.Index, source: str) -> None:
        self.prefix = _prefix_of(state, source)
        self.activation, self.activation_source = _activation_name(hparams, self.prefix)
        mlp, used = build_mlp(state, self.prefix, self.activation, source)
        if mlp[0].in_features != len(genes):
            raise ValueError(
                f"{source}: the first layer takes {mlp[0].in_features} genes but the var table lists {len(genes)}; "
                "use the var.parquet of the scTab data the model was trained on."
            )
        self._state = state
        self._hparams = {k: v for k, v in hparams.items() if isinstance(v, str | int | float | bool | list | tuple)}
        self._hparams["activation"] = self.activation
        self.ignored_keys = sorted(set(state) - set(used))
        self._mlp, self._genes = mlp, genes

    def _finish(self, min_gene_overlap: int, name: str) -> None:
        super().__init__(self._mlp, self._genes, preprocess="log1p_cp10k", name=name, min_gene_overlap=min_gene_overlap)
        self.min_gene_overlap = min_gene_overlap
        self.path = None

    @classmethod
    def random(
        cls,
        gene_order: Sequence[str],
        *,
        units: Sequence[int] = (512, 512, 256, 256, 64),
        kind: str = "ssl",
        n_classes: int = 164,
        random_state: int = 0,
        min_gene_overlap: int = 500,
        name: str = "sctab",
    ) -> ScTabSSL:
        """An SSL-scTab-architecture model with random weights.

        ``kind="ssl"``: a masked-auto-encoder encoder (``encoder.*``, SELU; default sizes of the published models);
        ``kind="classifier"``: a fine-tuned ``MLPClassifier`` (``classifier.*``, ReLU, ``n_classes`` outputs).
        """
        if kind not in ("ssl", "classifier"):
            raise ValueError(f"kind={kind!r}; use 'ssl' (encoder) or 'classifier'.")
        genes = pd.Index(gene_order).astype(str)
        sizes = [len(genes), *units] + ([n_classes] if kind == "classifier" else [])
        activation = nn.SELU if kind == "ssl" else nn.ReLU
        prefix = "encoder." if kind == "ssl" else "classifier."
        layers: list[nn.Module] = []
        with torch.random.fork_rng():
            torch.manual_seed(random_state)
            for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
                layers.append(nn.Linear(n_in, n_out))
                if i < len(sizes) - 2:
                    layers += [activation(), nn.Dropout(0.1)]
        state = {f"{prefix}{k}": v for k, v in nn.Sequential(*layers).state_dict().items()}
        self = cls.__new__(cls)
        self._setup(state, {"units": list(units), "gene_dim": len(genes)}, genes, "ScTabSSL.random")
        self._finish(min_gene_overlap, name)
        return self

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``model.ckpt`` and ``var.parquet`` (``feature_name``).

        ``model.ckpt`` is a Lightning-style ``{"state_dict", "hyper_parameters"}`` of plain types (the activation as
        its class name), so it loads with ``torch.load(weights_only=True)``.
        """
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = {key: value.detach().cpu().clone() for key, value in self._state.items()}
        torch.save({"state_dict": state, "hyper_parameters": dict(self._hparams)}, path / CHECKPOINT_FILE)
        pd.DataFrame({"feature_name": list(self.gene_order)}).to_parquet(path / VAR_FILE)
        return path

    def first_linear(self) -> FirstLinear | None:
        """The exact fast path with autograd over the layers after the first.

        The hand-derived chain of :mod:`sigscan._engine._mlp` is not offered here: on these 512-512-256-256-64 MLPs it
        measured 20-35% slower than autograd for IG (ReLU and SELU alike; 256 PBMC3k cells, 50 steps, CPU).
        """
        split = super().first_linear()
        return None if split is None else FirstLinear(split.weight, split.bias, split.rest)

    def provenance(self) -> dict[str, Any]:
        return {
            "encoder_prefix": self.prefix,
            "activation": self.activation,
            "activation_source": self.activation_source,
        }

    def __repr__(self) -> str:
        widths = [m.out_features for m in self._module if isinstance(m, nn.Linear)]
        return (
            f"ScTabSSL(name={self.name!r}, n_genes={self.n_genes}, layers={widths}, activation={self.activation!r}, "
            f"encoder={self.prefix!r})"
        )
