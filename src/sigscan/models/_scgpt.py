"""scGPT: the published checkpoint folder, our own encoder module, and attribution over the binned value tensor."""

from __future__ import annotations

import json
import os
import pickle
import re
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy import sparse
from torch import nn

from ._base import (
    AttributionInputs,
    AttributionModel,
    load_matching_state,
    model_file_error,
    read_checkpoint,
    read_model_file,
)
from ._binning import N_BINS, bin_matrix
from ._transformer import Precision, autocast, check_precision, post_norm_layer

#: tokens the published embedding code adds to the vocabulary when missing, in this order
SPECIAL_TOKENS: tuple[str, ...] = ("<pad>", "<cls>", "<eoc>")
#: ``args.json`` fields without which the encoder cannot be built
_REQUIRED_ARGS: tuple[str, ...] = ("embsize", "nheads", "d_hid", "nlayers", "pad_value")
#: flash-attention parameter names → PyTorch ``nn.MultiheadAttention`` names (the published loader's renames)
_FLASH_RENAMES: tuple[tuple[re.Pattern, str], ...] = (
    (re.compile(r"self_attn\._impl\.Wqkv\."), "self_attn.in_proj_"),
    (re.compile(r"self_attn\.Wqkv\."), "self_attn.in_proj_"),
    (re.compile(r"self_attn\._impl\.out_proj\."), "self_attn.out_proj."),
)
#: tokens per autograd pass (rows × sequence length) when the attribution engine integrates along the IG path
_TOKENS_PER_PASS = {"cpu": 8192, "mps": 8192}
_TOKENS_PER_PASS_GPU = 65536


class _GeneEncoder(nn.Module):
    """Gene token embedding followed by LayerNorm (published name ``encoder``)."""

    def __init__(self, ntoken: int, d_model: int):
        super().__init__()
        self.embedding = nn.Embedding(ntoken, d_model)
        self.enc_norm = nn.LayerNorm(d_model)

    def forward(self, genes: torch.Tensor) -> torch.Tensor:
        return self.enc_norm(self.embedding(genes))


class _ContinuousValueEncoder(nn.Module):
    """Scalar value → vector: clamp(max), Linear(1, d), ReLU, Linear(d, d), LayerNorm, Dropout (``value_encoder``)."""

    def __init__(self, d_model: int, dropout: float, max_value: float = 512):
        super().__init__()
        self.linear1 = nn.Linear(1, d_model)
        self.activation = nn.ReLU()
        self.linear2 = nn.Linear(d_model, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.max_value = max_value

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        x = torch.clamp(values.unsqueeze(-1), max=self.max_value)
        return self.dropout(self.norm(self.linear2(self.activation(self.linear1(x)))))


class ScGPTEncoder(nn.Module):
    """The encoder path of scGPT's ``TransformerModel``, with the published parameter names.

    Gene tokens go through ``encoder`` (Embedding + LayerNorm), values through ``value_encoder`` (continuous value
    encoder); the two are summed and passed through ``transformer_encoder``, a :class:`torch.nn.TransformerEncoder`
    of post-norm, batch-first layers (ReLU feed-forward) with a key padding mask. Decoders and classifier heads of
    the published model are not part of it: they do not enter the cell embedding.

    Parameters
    ----------
    ntoken
        Vocabulary size, special tokens included.
    d_model
        Embedding size (``embsize`` in ``args.json``).
    nhead
        Attention heads (``nheads``).
    d_hid
        Feed-forward size (``d_hid``).
    nlayers
        Transformer layers (``nlayers``).
    dropout
        Dropout probability (inactive in eval mode).

    Examples
    --------
    >>> import sigscan as ss
    >>> encoder = ss.models.ScGPTEncoder(ntoken=10, d_model=16, nhead=2, d_hid=16, nlayers=1)
    >>> sorted({name.split(".")[0] for name, _ in encoder.named_parameters()})
    ['encoder', 'transformer_encoder', 'value_encoder']
    """

    def __init__(self, ntoken: int, d_model: int, nhead: int, d_hid: int, nlayers: int, dropout: float = 0.2):
        super().__init__()
        if d_model % nhead:
            raise ValueError(f"embsize ({d_model}) must be divisible by nheads ({nhead}).")
        self.encoder = _GeneEncoder(ntoken, d_model)
        self.value_encoder = _ContinuousValueEncoder(d_model, dropout)
        layer = nn.TransformerEncoderLayer(d_model, nhead, d_hid, dropout, batch_first=True)
        self.transformer_encoder = nn.TransformerEncoder(layer, nlayers, enable_nested_tensor=False)

    @property
    def d_model(self) -> int:
        """Size of the token and cell embeddings."""
        return self.encoder.embedding.embedding_dim

    def forward(self, genes: torch.Tensor, values: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        """Token outputs (batch × sequence × ``d_model``); ``padding_mask`` is ``True`` at padding positions."""
        embeddings = self.encoder(genes) + self.value_encoder(values)
        return self.transformer_encoder(embeddings, src_key_padding_mask=padding_mask)

    def cell_embedding(self, genes: torch.Tensor, values: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        """Output at the first (``<cls>``) position, batch × ``d_model``.

        In eval mode the layers are evaluated by :func:`sigscan.models._transformer.post_norm_layer` (the same arithmetic as
        :class:`torch.nn.TransformerEncoderLayer`, kept batch-first and contiguous, and with the last layer computed
        for the first position only); in training mode by the module itself.
        """
        if self.training:
            return self.forward(genes, values, padding_mask)[:, 0]
        x = self.encoder(genes) + self.value_encoder(values)
        keep = ~padding_mask[:, None, None, :]  # batch × 1 × 1 × keys, True where attended
        layers = self.transformer_encoder.layers
        for i, layer in enumerate(layers):
            x = post_norm_layer(layer, x, keep, first_only=i == len(layers) - 1)
        return x[:, 0]


@dataclass(frozen=True)
class _Config:
    """The ``args.json`` fields the encoder path uses."""

    embsize: int
    nheads: int
    d_hid: int
    nlayers: int
    pad_value: float
    dropout: float = 0.2
    pad_token: str = "<pad>"
    n_bins: int = N_BINS

    @classmethod
    def from_args(cls, args: Mapping[str, Any], source: str) -> _Config:
        missing = [key for key in _REQUIRED_ARGS if key not in args]
        if missing:
            raise KeyError(
                f"{source} lacks the field(s) {', '.join(missing)} needed to build the scGPT encoder; the published "
                "args.json holds embsize, nheads, d_hid, nlayers, dropout, pad_token and pad_value."
            )
        style = args.get("input_emb_style", "continuous")
        if style != "continuous":
            raise ValueError(
                f"{source}: input_emb_style={style!r}; only the continuous value encoder of the published "
                "pretrained models is supported."
            )
        if args.get("pre_norm", False):
            raise ValueError(
                f"{source}: pre_norm=true; only post-norm transformer layers (the published) are supported."
            )
        n_bins = args.get("n_bins", N_BINS)
        return cls(
            embsize=int(args["embsize"]),
            nheads=int(args["nheads"]),
            d_hid=int(args["d_hid"]),
            nlayers=int(args["nlayers"]),
            pad_value=float(args["pad_value"]),
            dropout=float(args.get("dropout", 0.2)),
            pad_token=str(args.get("pad_token", "<pad>")),
            n_bins=int(n_bins) if n_bins else N_BINS,
        )


@dataclass(frozen=True)
class _Layout:
    """Which sequence rows belong to which cell (passed through captum untouched: it is not a tensor)."""

    cell_of_row: np.ndarray
    chunks_per_cell: np.ndarray

    @property
    def n_rows(self) -> int:
        return len(self.cell_of_row)

    @property
    def n_cells(self) -> int:
        return len(self.chunks_per_cell)

    @property
    def chunked(self) -> bool:
        return self.n_rows != self.n_cells

    def groups(self, repeats: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Output slot of every row of ``repeats`` stacked copies, and the chunk count of every slot."""
        cells = torch.as_tensor(self.cell_of_row, device=device)
        offsets = torch.arange(repeats, device=device).repeat_interleave(self.n_rows) * self.n_cells
        counts = torch.as_tensor(self.chunks_per_cell, device=device).repeat(repeats)
        return cells.repeat(repeats) + offsets, counts


@dataclass(frozen=True)
class _Sequences:
    """A batch of cells as token sequences: ``<cls>`` first, then the cell's expressed genes, then padding."""

    values: torch.Tensor  # rows × (length − 1): binned values of the gene positions (0 at padding)
    genes: torch.Tensor  # rows × length: token ids (``<cls>`` id first, ``<pad>`` id at padding)
    mask: torch.Tensor  # rows × length: True at padding
    layout: _Layout
    row_of_entry: torch.Tensor  # for every stored entry of the CSR input: its row …
    column_of_entry: torch.Tensor  # … and its column in ``values``


def _rename(key: str) -> str:
    if key.startswith("module."):  # saved from DistributedDataParallel
        key = key[len("module.") :]
    for pattern, replacement in _FLASH_RENAMES:
        key = pattern.sub(replacement, key)
    return key


#: what fixes a damaged file of the scGPT folder
_FIX = "re-download the scGPT checkpoint folder (args.json, best_model.pt, vocab.json)"


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = read_checkpoint(path, fix=_FIX)
    except pickle.UnpicklingError as error:
        raise model_file_error(
            path,
            f"wrong format: not a plain PyTorch state dict (torch.load(weights_only=True) refused it: "
            f"{str(error).strip().splitlines()[0]})",
            "re-save the weights with torch.save(model.state_dict(), 'best_model.pt')",
        ) from error
    if isinstance(obj, Mapping):
        for key in ("model_state_dict", "state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    state = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)} if isinstance(obj, Mapping) else {}
    if not state:
        raise model_file_error(
            path, "wrong format: it holds no parameter tensors (expected a scGPT TransformerModel state dict)", _FIX
        )
    return state


def _read_json(path: Path) -> Any:
    return read_model_file(path, lambda p: json.loads(p.read_text()), what="JSON file", fix=_FIX)


def _read_vocab(path: Path, pad_token: str) -> dict[str, int]:
    raw = _read_json(path)
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f'{path} must map gene symbols to token ids (a JSON object), e.g. {{"A1BG": 0, ...}}.')
    vocab = {str(token): int(index) for token, index in raw.items()}
    duplicated = [index for index, n in Counter(vocab.values()).items() if n > 1]
    if duplicated:
        raise ValueError(
            f"{path} gives the same token id to several tokens (ids {duplicated[:5]}); ids must be unique."
        )
    if min(vocab.values()) < 0:
        raise ValueError(f"{path} holds negative token ids; ids must be 0, 1, 2, ….")
    for token in dict.fromkeys((pad_token, *SPECIAL_TOKENS)):
        if token not in vocab:
            vocab[token] = max(vocab.values()) + 1
    return vocab


def _ignored_args(args: Mapping[str, Any], max_length: int | None, ignored_keys: Sequence[str]) -> list[str]:
    """``args.json`` settings that shape the published embedding but that sigscan does not apply, with the reason."""
    out = []
    if args.get("input_style", "binned") != "binned":
        out.append(f"input_style={args['input_style']!r} (sigscan bins values per cell, input_style='binned')")
    if args.get("cell_emb_style", "cls") != "cls":
        out.append(f"cell_emb_style={args['cell_emb_style']!r} (sigscan embeds a cell by its <cls> output)")
    if "max_seq_len" in args and args["max_seq_len"] != max_length:
        out.append(
            f"max_seq_len={args['max_seq_len']} (sigscan uses max_length={max_length}, the published embedding "
            "default, and splits longer cells into chunks; pass max_length= to change it)"
        )
    batch_keys = [key for key in ignored_keys if key.split(".")[0] in ("dsbn", "batch_encoder", "bn")]
    if args.get("DSBN") or args.get("use_batch_labels") or batch_keys:
        out.append(
            "DSBN/use_batch_labels batch-label weights "
            f"({len(batch_keys)} tensors; the embedding is computed without batch labels, as for unseen data)"
        )
    return out


def _is_special(token: str) -> bool:
    return token.startswith("<") and token.endswith(">")


def load_encoder_state(encoder: ScGPTEncoder, state: Mapping[str, torch.Tensor], *, source: str) -> list[str]:
    """Load the encoder part of a published ``TransformerModel`` state dict with strict key matching.

    Flash-attention names (``self_attn.Wqkv.*``) are renamed to ``self_attn.in_proj_*``. Every encoder parameter
    must be present with the right shape; other keys (decoders, MVC, classifier heads) are ignored and returned.
    """
    state = {_rename(key): value for key, value in state.items()}
    rows = encoder.encoder.embedding.num_embeddings
    vocab_rows = state["encoder.embedding.weight"].shape[0] if "encoder.embedding.weight" in state else rows
    if vocab_rows != rows:
        raise ValueError(
            f"{source}: encoder.embedding.weight has {vocab_rows} rows but vocab.json "
            f"(with {', '.join(SPECIAL_TOKENS)}) has {rows} tokens; use the vocab.json saved with these weights."
        )
    return load_matching_state(
        encoder,
        state,
        source=source,
        label="scGPT",
        config="args.json",
        missing_hint="Point to the best_model.pt of a scGPT TransformerModel with a continuous value encoder, whose "
        "args.json matches it (nlayers, embsize).",
    )


class ScGPT(AttributionModel):
    """A scGPT model loaded from its published checkpoint folder into sigscan's own PyTorch module.

    The folder holds ``args.json`` (model sizes, ``pad_token``, ``pad_value``), ``best_model.pt`` (the state dict of
    scGPT's ``TransformerModel``; flash-attention layouts are renamed, decoder and classifier weights ignored) and
    ``vocab.json`` (gene symbol → token id; ``<pad>``, ``<cls>`` and ``<eoc>`` are added when missing). The ``scgpt``
    package itself is not needed.

    Input (:meth:`preprocess`): each cell's non-zero values are binned into 1 … 50 by that cell's quantiles, as the
    published code does, with ties broken by a seeded draw instead of an unseeded one (see
    :mod:`sigscan.models._binning`). Binning compares values only within a cell, so any non-negative values are
    accepted; raw counts (what the published embedding path bins) and normalised or log-normalised values give the
    same bins up to rare floating-point coincidences of a value with an interpolated quantile. The sequence of a cell
    is ``<cls>`` (value ``pad_value``) followed by its expressed vocabulary genes; attributions cover exactly those
    genes, so genes outside the vocabulary or not expressed get zero.

    Long cells: the published code keeps a random subset of ``max_length − 1`` expressed genes. Here a cell with more
    expressed genes is split deterministically into the fewest chunks of at most ``max_length − 1`` genes, dealt out
    in order of decreasing binned value (so every chunk spans the cell's expression range); each chunk gets its own
    ``<cls>`` and the cell embedding is the mean of the chunks' ``<cls>`` outputs. Every expressed gene is thus seen
    and attributed. ``max_length=None`` puts all genes of a cell in one sequence instead (memory grows with its
    square).

    Embedding: the transformer output at ``<cls>``, L2-normalised as the published embedding helper does
    (``head="prenorm"`` explains it before normalisation). The two attribution methods therefore explain different
    heads by default (``head="auto"``): ``method="ig"`` the L2-normalised embedding (as the reference does), and
    ``method="ixg"`` the embedding *before* normalisation, because the gradient of the normalised summation head
    vanishes at the cell itself (SPEC 1.1); the head used is recorded in the provenance (``head``, ``heads``).

    ``args.json`` settings the published embedding path reads but sigscan does not apply are reported once, in one
    warning when the folder is loaded: ``input_style`` other than ``"binned"`` (sigscan bins), ``cell_emb_style``
    other than ``"cls"`` (sigscan embeds with ``<cls>``), ``max_seq_len`` (sigscan uses ``max_length``, the
    published embedding default of 1,200, and chunks longer cells), and ``DSBN`` / ``use_batch_labels`` (batch-label
    weights: the embedding is computed without batch labels, as for unseen data). Attributions are taken with respect to the binned value
    tensor of the gene positions; the ``<cls>`` value is not part of it (a zero baseline for it would attribute to a
    token that is no gene), and padding positions are masked out, so they receive nothing. ``method="dl"`` is refused:
    captum's DeepLift has no rule for attention. IG along the path ``α · bins`` crosses the ReLU kinks of the value
    encoder, so its completeness error shrinks like ``1 / n_steps`` (about 1% at 256 steps on small random models).

    Parameters
    ----------
    path
        The checkpoint folder.
    max_length
        Longest sequence, ``<cls>`` included (the published default 1,200), or ``None`` for no limit.
    random_state
        Seed of the tie-breaking draws of the binning (recorded in provenance as ``binning_seed``).
    precision
        ``"float32"`` (default), ``"bf16"`` or ``"fp16"``: autocast of the forward pass (fused bf16/fp16 attention on
        CUDA; ``"bf16"`` also on CPU). Recorded in provenance.
    min_gene_overlap
        Fewer vocabulary genes than this in the data raise an error.
    name
        Name used in layer keys.

    Attributes
    ----------
    vocab
        Token → id, special tokens included.
    token_ids
        Token id of every gene of :attr:`gene_order`.
    ignored_keys
        Checkpoint tensors not used for the cell embedding (decoders, MVC, classifier heads), also logged at INFO.

    Examples
    --------
    >>> import tempfile, sigscan as ss
    >>> genes = ss.datasets.pbmc3k().var_names[:300]
    >>> folder = ss.models.ScGPT.random(genes, embsize=32, nheads=4, d_hid=32, nlayers=2).save(tempfile.mkdtemp())
    >>> model = ss.models.ScGPT(folder)
    >>> model.embedding_dim, model.n_genes
    (32, 300)
    """

    l2_normalized = True
    requires_counts = False

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        max_length: int | None = 1200,
        random_state: int = 0,
        precision: Precision = "float32",
        min_gene_overlap: int = 500,
        name: str = "scgpt",
    ):
        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"{path} is not a folder; point to the scGPT checkpoint folder (e.g. scGPT_human).")
        missing = [f for f in ("args.json", "best_model.pt", "vocab.json") if not (path / f).exists()]
        if missing:
            raise FileNotFoundError(
                f"{path} is not a scGPT checkpoint folder: missing {', '.join(missing)}. Point to the folder that "
                "holds args.json, best_model.pt and vocab.json."
            )
        args = _read_json(path / "args.json")
        config = _Config.from_args(args, source=str(path / "args.json"))
        vocab = _read_vocab(path / "vocab.json", config.pad_token)
        encoder = ScGPTEncoder(
            max(vocab.values()) + 1, config.embsize, config.nheads, config.d_hid, config.nlayers, config.dropout
        )
        self.ignored_keys = load_encoder_state(encoder, _read_state(path / "best_model.pt"), source=str(path))
        self._init(
            encoder,
            vocab,
            config,
            args,
            max_length=max_length,
            random_state=random_state,
            min_gene_overlap=min_gene_overlap,
            name=name,
        )
        self.precision = check_precision(precision)
        self.ignored_args = _ignored_args(args, self.max_length, self.ignored_keys)
        if self.ignored_args:
            warnings.warn(
                f"{path / 'args.json'}: sigscan does not apply these settings: " + "; ".join(self.ignored_args) + ".",
                UserWarning,
                stacklevel=2,
            )
        self.path = path

    def _init(
        self,
        encoder: ScGPTEncoder,
        vocab: dict[str, int],
        config: _Config,
        args: dict[str, Any],
        *,
        max_length: int | None,
        random_state: int,
        min_gene_overlap: int,
        name: str,
    ) -> None:
        if max_length is not None and (not isinstance(max_length, int | np.integer) or max_length < 2):
            raise ValueError(f"max_length must be an integer >= 2 (<cls> plus one gene) or None, not {max_length!r}.")
        self.encoder = encoder.eval()
        self.config = config
        self.args = dict(args)
        self.vocab = dict(vocab)
        genes = sorted((index, token) for token, index in vocab.items() if not _is_special(token))
        self.gene_order = pd.Index([token for _, token in genes], dtype=object)
        self.token_ids = np.array([index for index, _ in genes], dtype=np.int64)
        self.pad_id = vocab[config.pad_token]
        self.cls_id = vocab["<cls>"]
        self.pad_value = config.pad_value
        self.max_length = None if max_length is None else int(max_length)
        self.random_state = int(random_state)
        self.min_gene_overlap = min_gene_overlap
        self.name = name
        self.path = None
        self.precision = "float32"
        self.ignored_args = []
        if not hasattr(self, "ignored_keys"):
            self.ignored_keys = []

    @classmethod
    def random(
        cls,
        gene_order: Sequence[str],
        *,
        embsize: int = 512,
        nheads: int = 8,
        d_hid: int = 512,
        nlayers: int = 12,
        dropout: float = 0.2,
        pad_value: float = -2,
        random_state: int = 0,
        max_length: int | None = 1200,
        precision: Precision = "float32",
        min_gene_overlap: int = 500,
        name: str = "scgpt",
    ) -> ScGPT:
        """A scGPT-architecture model with random weights (for tests, tutorials and benchmarks).

        The defaults are the sizes of the published whole-human model; ``random_state`` seeds the weights. LayerNorm scales
        and shifts are randomised too, so that every parameter matters. Save it with :meth:`save`.
        """
        genes = pd.Index(gene_order).astype(str)
        if genes.has_duplicates:
            raise ValueError("gene_order holds duplicates; a vocabulary needs unique genes.")
        vocab = {gene: i for i, gene in enumerate(genes)}
        for token in SPECIAL_TOKENS:
            vocab[token] = len(vocab)
        with torch.random.fork_rng():
            torch.manual_seed(random_state)
            encoder = ScGPTEncoder(len(vocab), embsize, nheads, d_hid, nlayers, dropout)
            with torch.no_grad():
                encoder.encoder.embedding.weight.uniform_(-0.1, 0.1)  # the published initialisation
                for layer in encoder.transformer_encoder.layers:  # the clones start identical: draw each anew
                    nn.init.xavier_uniform_(layer.self_attn.in_proj_weight)
                    nn.init.normal_(layer.self_attn.in_proj_bias, std=0.02)
                    for linear in (layer.self_attn.out_proj, layer.linear1, layer.linear2):
                        linear.reset_parameters()
                for module in encoder.modules():
                    if isinstance(module, nn.LayerNorm):
                        module.weight.copy_(1 + 0.1 * torch.randn_like(module.weight))
                        module.bias.copy_(0.1 * torch.randn_like(module.bias))
        args = {
            "embsize": embsize,
            "nheads": nheads,
            "d_hid": d_hid,
            "nlayers": nlayers,
            "n_layers_cls": 3,
            "dropout": dropout,
            "pad_token": "<pad>",
            "pad_value": pad_value,
            "n_bins": N_BINS,
            "input_emb_style": "continuous",
            "max_seq_len": 1200,
        }
        self = cls.__new__(cls)
        self._init(
            encoder,
            vocab,
            _Config.from_args(args, source="ScGPT.random"),
            args,
            max_length=max_length,
            random_state=0,
            min_gene_overlap=min_gene_overlap,
            name=name,
        )
        self.precision = check_precision(precision)
        return self

    def save(self, path: str | os.PathLike, *, flash_attention: bool = False) -> Path:
        """Write the published folder format: ``args.json``, ``best_model.pt`` and ``vocab.json``.

        ``flash_attention=True`` names the attention input projections ``self_attn.Wqkv.*``, as checkpoints trained
        with flash attention do; otherwise the PyTorch names ``self_attn.in_proj_*`` are used.
        """
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = {key: value.detach().cpu().clone() for key, value in self.encoder.state_dict().items()}
        if flash_attention:
            state = {key.replace("self_attn.in_proj_", "self_attn.Wqkv."): value for key, value in state.items()}
        torch.save(state, path / "best_model.pt")
        args = {**self.args, "fast_transformer": bool(flash_attention)}
        (path / "args.json").write_text(json.dumps(args, indent=2))
        (path / "vocab.json").write_text(json.dumps(self.vocab, indent=1))
        return path

    # --- AttributionModel -------------------------------------------------------------------------------------

    @property
    def module(self) -> nn.Module:
        return self.encoder

    @property
    def embedding_dim(self) -> int:
        return self.encoder.d_model

    def preprocess(self, counts: sparse.csr_matrix) -> sparse.csr_matrix:
        """Counts (or any non-negative values) aligned to :attr:`gene_order` → binned values (CSR float32)."""
        return bin_matrix(counts, seed=self.random_state, n_bins=self.config.n_bins)

    def check_method(self, method: str) -> None:
        if method == "dl":
            raise ValueError(
                "scGPT does not support method='dl': captum's DeepLift applies its rescale rule only to module "
                "non-linearities (here the value encoder's ReLU), not to attention (products of inputs, softmax) or "
                "the transformer's functional ReLU, so its attributions would not sum to s(x) - s(0) (on a random "
                "scGPT they sum to about 1% of it). Use method='ig' (the default) or 'ixg'."
            )

    def default_batch_size(self, device: torch.device, method: str) -> int:
        if device.type == "cpu":
            return 4 if method == "ig" else 8
        return 32 if method == "ig" else 128

    def provenance(self) -> dict[str, Any]:
        return {
            "max_length": self.max_length or 0,  # 0: no limit
            "binning_seed": self.random_state,
            "precision": self.precision,
            "heads": "head='auto': ig explains the L2-normalised <cls> embedding, ixg the pre-normalisation one",
            "ignored_args": "; ".join(self.ignored_args),
        }

    def sequences(self, x: sparse.csr_matrix, device: torch.device | str = "cpu") -> _Sequences:
        """Token sequences of binned cells ``x`` (CSR, cells × :attr:`gene_order`) on ``device``."""
        device = torch.device(device)
        x = sparse.csr_matrix(x)
        if x.nnz and not np.all(x.data):
            x = x.copy()
            x.eliminate_zeros()
        n_cells = x.shape[0]
        per_cell = np.diff(x.indptr)
        if self.max_length is None:
            chunks = np.ones(n_cells, dtype=np.int64)
        else:
            chunks = np.maximum(1, -(-per_cell // (self.max_length - 1)))
        first_row = np.concatenate([[0], np.cumsum(chunks)[:-1]]).astype(np.int64)
        n_rows = int(chunks.sum())
        cell = np.repeat(np.arange(n_cells), per_cell)
        # deal each cell's genes to its chunks in order of decreasing value (ties: vocabulary order)
        order = np.lexsort((x.indices, -x.data, cell))
        rank = np.empty(x.nnz, dtype=np.int64)
        rank[order] = np.arange(x.nnz) - x.indptr[cell[order]]
        row = first_row[cell] + rank % chunks[cell]
        # within a row, genes in vocabulary order
        order = np.lexsort((x.indices, row))
        lengths = np.bincount(row, minlength=n_rows)
        row_start = np.concatenate([[0], np.cumsum(lengths)])
        column = np.empty(x.nnz, dtype=np.int64)
        column[order] = np.arange(x.nnz) - row_start[row[order]]
        length = 1 + max(1, int(lengths.max()) if n_rows else 1)

        genes = np.full((n_rows, length), self.pad_id, dtype=np.int64)
        genes[:, 0] = self.cls_id
        genes[row, column + 1] = self.token_ids[x.indices]
        values = np.zeros((n_rows, length - 1), dtype=np.float32)
        values[row, column] = x.data
        mask = np.arange(length)[None, :] > lengths[:, None]
        layout = _Layout(np.repeat(np.arange(n_cells), chunks), chunks)
        return _Sequences(
            values=torch.from_numpy(values).to(device),
            genes=torch.from_numpy(genes).to(device),
            mask=torch.from_numpy(mask).to(device),
            layout=layout,
            row_of_entry=torch.from_numpy(row).to(device),
            column_of_entry=torch.from_numpy(column).to(device),
        )

    def forward_inputs(self, inputs: torch.Tensor, *extra: Any, normalize: bool = True) -> torch.Tensor:
        """Cell embeddings from gene-position values ``inputs`` (rows × positions) and ``(genes, mask, layout)``.

        Captum stacks copies of the rows (integration steps, baselines) and repeats the tensor arguments alike; the
        layout, not being a tensor, is passed unchanged and the number of copies is read off the row count.
        """
        genes, mask, layout = extra
        repeats, remainder = divmod(inputs.shape[0], layout.n_rows)
        if remainder or genes.shape[0] != inputs.shape[0]:
            raise RuntimeError(
                f"scGPT: {inputs.shape[0]} value rows for {genes.shape[0]} token rows and a layout of "
                f"{layout.n_rows} rows; pass the tensors from ScGPT.sequences unchanged."
            )
        cls = inputs.new_full((inputs.shape[0], 1), self.pad_value)
        values = torch.cat([cls, inputs.masked_fill(mask[:, 1:], self.pad_value)], dim=1)
        with autocast(self.precision, inputs.device):
            out = self.encoder.cell_embedding(genes, values, mask).float()
        if layout.chunked:
            slots, counts = layout.groups(repeats, out.device)
            sums = out.new_zeros(repeats * layout.n_cells, out.shape[1]).index_add(0, slots, out)
            out = sums / counts.to(out.dtype)[:, None]
        return F.normalize(out, p=2, dim=1) if normalize else out

    def embed(self, x: torch.Tensor, *, normalize: bool = True) -> torch.Tensor:
        """Cell embeddings of dense binned input ``x`` (cells × :attr:`gene_order`), differentiable in ``x``."""
        pattern = sparse.csr_matrix(x.detach().cpu().numpy())
        seq = self.sequences(pattern, x.device)
        cells = torch.from_numpy(np.repeat(np.arange(pattern.shape[0]), np.diff(pattern.indptr))).to(x.device)
        columns = torch.from_numpy(pattern.indices.astype(np.int64)).to(x.device)
        inputs = torch.zeros(seq.values.shape, dtype=x.dtype, device=x.device).index_put(
            (seq.row_of_entry, seq.column_of_entry), x[cells, columns]
        )
        return self.forward_inputs(inputs, seq.genes, seq.mask, seq.layout, normalize=normalize)

    def attribution_inputs(self, x: sparse.csr_matrix, device: torch.device) -> AttributionInputs:
        """The binned value tensor of the gene positions, ``(genes, mask, layout)``, and the map back to genes."""
        x = sparse.csr_matrix(x)
        if x.nnz and not np.all(x.data):
            x = x.copy()
            x.eliminate_zeros()
        seq = self.sequences(x, device)

        def to_genes(attr: torch.Tensor) -> sparse.csr_matrix:
            values = attr.detach()[seq.row_of_entry, seq.column_of_entry].cpu().numpy()
            return sparse.csr_matrix((values, x.indices.copy(), x.indptr.copy()), shape=x.shape)

        length = seq.genes.shape[1]
        budget = _TOKENS_PER_PASS.get(torch.device(device).type, _TOKENS_PER_PASS_GPU)
        rows_per_pass = max(seq.layout.n_rows, budget // length)
        return AttributionInputs(seq.values, (seq.genes, seq.mask, seq.layout), to_genes, rows_per_pass)

    def __repr__(self) -> str:
        return (
            f"ScGPT(name={self.name!r}, n_genes={self.n_genes}, embedding_dim={self.embedding_dim}, "
            f"nlayers={self.config.nlayers}, max_length={self.max_length})"
        )
