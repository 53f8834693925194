"""scFoundation: the published ``models.ckpt``, our own encoder module, and attribution over the expressed genes' values."""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

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
    preprocess_counts,
    read_checkpoint,
    read_model_file,
)
from ._transformer import Precision, autocast, check_precision, post_norm_layer

#: file names of the published checkpoint folder
CHECKPOINT_FILE = "models.ckpt"
GENE_INDEX_FILE = "OS_scRNA_gene_index.19264.tsv"
#: fields of the merged configuration (``model_config[model]`` plus ``dataset_config["rnaseq"]``) the encoder needs
_REQUIRED_CONFIG: tuple[str, ...] = ("seq_len", "bin_num", "bin_alpha", "pad_token_id", "mask_token_id", "encoder")
_REQUIRED_BLOCK: tuple[str, ...] = ("module_type", "hidden_dim", "depth", "heads")
#: tokens per autograd pass (rows × sequence length) along the IG path
_TOKENS_PER_PASS = {"cpu": 16384, "mps": 16384}
_TOKENS_PER_PASS_GPU = 262144

Pool = Literal["all", "max"]


class AutoBinEmbedding(nn.Module):
    """scFoundation's auto-discretisation value embedding (published name ``token_emb``).

    A scalar value ``v`` becomes ``softmax(bin_alpha·h + mlp2(h)) @ emb.weight`` with ``h = LeakyReLU_0.1(mlp(v))``: a
    soft assignment to ``bin_num`` learned bins, smooth in ``v``. Values exactly equal to the mask / pad token ids
    get the ``emb_mask`` / ``emb_pad`` vectors instead, as in the published module.
    """

    def __init__(self, dim: int, bin_num: int, bin_alpha: float, mask_token_id: float, pad_token_id: float):
        super().__init__()
        self.mlp = nn.Linear(1, bin_num)
        self.mlp2 = nn.Linear(bin_num, bin_num)
        self.emb = nn.Embedding(bin_num, dim)
        self.emb_mask = nn.Embedding(1, dim)
        self.emb_pad = nn.Embedding(1, dim)
        self.bin_alpha = float(bin_alpha)
        self.mask_token_id = mask_token_id
        self.pad_token_id = pad_token_id

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` (any shape) → embeddings (shape + ``dim``)."""
        h = F.leaky_relu(self.mlp(values.unsqueeze(-1)), 0.1)
        weights = torch.softmax(self.bin_alpha * h + self.mlp2(h), dim=-1)
        out = weights @ self.emb.weight.to(weights.dtype)
        for token_id, table in ((self.mask_token_id, self.emb_mask), (self.pad_token_id, self.emb_pad)):
            special = values.unsqueeze(-1) == token_id
            if special.any():  # never for normalised values and T/S; skip two full passes over the tokens
                out = torch.where(special, table.weight[0].to(out.dtype), out)
        return out


class _TransformerStack(nn.Module):
    """Post-norm, batch-first PyTorch encoder layers and a final LayerNorm (published name ``encoder``)."""

    def __init__(self, dim: int, depth: int, heads: int, ff_mult: int = 4):
        super().__init__()
        self.transformer_encoder = nn.ModuleList(
            nn.TransformerEncoderLayer(dim, heads, dim * ff_mult, batch_first=True) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        if self.training:
            for layer in self.transformer_encoder:
                x = layer(x, src_key_padding_mask=padding_mask)
            return self.norm(x)
        keep = ~padding_mask[:, None, None, :]
        for layer in self.transformer_encoder:
            x = post_norm_layer(layer, x, keep)
        return self.norm(x)


class ScFoundationEncoder(nn.Module):
    """The encoder path of scFoundation's ``MaeAutobin`` with the published parameter names.

    ``token_emb`` (:class:`AutoBinEmbedding`) embeds each token's value, ``pos_emb`` (``seq_len + 1`` rows) its gene
    index (19,264 and 19,265 for the T and S tokens of the published model); the sum goes through ``encoder``:
    ``encoder.transformer_encoder.{i}`` post-norm :class:`torch.nn.TransformerEncoderLayer` (ReLU, feed-forward
    ``4 × dim``) with a key padding mask, then ``encoder.norm``. The decoder of the masked auto-encoder does not enter
    the cell embedding and is not part of this module.

    Examples
    --------
    >>> import sigscan as ss
    >>> encoder = ss.models.ScFoundationEncoder(seq_len=100, dim=16, depth=1, heads=2)
    >>> sorted({name.split(".")[0] for name, _ in encoder.named_parameters()})
    ['encoder', 'pos_emb', 'token_emb']
    """

    def __init__(
        self,
        *,
        seq_len: int,
        dim: int,
        depth: int,
        heads: int,
        bin_num: int = 100,
        bin_alpha: float = 1.0,
        pad_token_id: float = 103,
        mask_token_id: float = 102,
    ):
        super().__init__()
        if dim % heads:
            raise ValueError(f"encoder hidden_dim ({dim}) must be divisible by heads ({heads}).")
        self.token_emb = AutoBinEmbedding(dim, bin_num, bin_alpha, mask_token_id, pad_token_id)
        self.pos_emb = nn.Embedding(seq_len + 1, dim)
        self.encoder = _TransformerStack(dim, depth, heads)
        self.seq_len = int(seq_len)

    @property
    def dim(self) -> int:
        """Width of the token embeddings."""
        return self.pos_emb.embedding_dim

    def forward(self, values: torch.Tensor, positions: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        """Token outputs (rows × length × ``dim``) after the final norm; ``padding_mask`` is ``True`` at padding."""
        x = self.token_emb(values) + self.pos_emb(positions).to(values.dtype)
        return self.encoder(x, padding_mask)


def pool_tokens(tokens: torch.Tensor, n_genes: torch.Tensor, pool: str) -> torch.Tensor:
    """Cell embedding from token outputs laid out as ``[genes…, T, S, padding…]`` with ``n_genes`` genes per row.

    ``"all"``: ``[S, T, max over genes, mean over genes]`` (4 × dim, the published order); ``"max"``: the maximum over
    all real tokens (genes, T and S). Padding never enters. Rows without genes get NaN for ``"all"``.
    """
    rows, length, _dim = tokens.shape
    position = torch.arange(length, device=tokens.device)[None, :]
    n = n_genes[:, None]
    if pool == "max":
        real = position < n + 2
        return tokens.masked_fill(~real[..., None], float("-inf")).amax(dim=1)
    gene = (position < n)[..., None]
    index = torch.arange(rows, device=tokens.device)
    t_token = tokens[index, n_genes]
    s_token = tokens[index, n_genes + 1]
    maximum = tokens.masked_fill(~gene, float("-inf")).amax(dim=1)
    mean = tokens.masked_fill(~gene, 0).sum(dim=1) / n.clamp_min(1).to(tokens.dtype)
    out = torch.cat([s_token, t_token, maximum, mean], dim=1)
    return torch.where((n > 0), out, torch.full_like(out, float("nan")))


def total_tokens(totals: np.ndarray, tgthighres: str) -> tuple[np.ndarray, np.ndarray]:
    """T and S token values from each cell's total counts (S = log10 total; T by ``tgthighres``, see the class)."""
    kind, amount = tgthighres[0], float(tgthighres[1:])
    with np.errstate(divide="ignore"):
        s = np.log10(totals)
        if kind == "t":
            t = np.full_like(totals, amount)
        elif kind == "f":
            t = np.log10(totals * amount)
        else:
            t = s + amount
    return t, s


def _check_tgthighres(tgthighres: str) -> str:
    try:
        valid = tgthighres[0] in "tfa" and np.isfinite(float(tgthighres[1:]))
    except (ValueError, TypeError, IndexError):
        valid = False
    if not valid:
        raise ValueError(
            f"tgthighres={tgthighres!r}: use 't<k>' (T = k), 'f<k>' (T = log10(total·k)) or 'a<k>' "
            "(T = log10(total) + k), e.g. 't4' (the published default)."
        )
    return tgthighres


@dataclass(frozen=True)
class _Sequences:
    """A batch of cells as scFoundation token sequences: expressed genes in gene order, then T and S, then padding."""

    values: torch.Tensor  # rows × max genes: the normalised values at the gene positions (0 at padding)
    totals: torch.Tensor  # rows × 2: T and S values (held fixed along the IG path)
    positions: torch.Tensor  # rows × (max genes + 2): gene index of each token (T: n_genes, S: n_genes + 1)
    mask: torch.Tensor  # rows × (max genes + 2): True at padding
    n_genes: torch.Tensor  # rows: expressed genes per row
    row_of_entry: torch.Tensor  # for every stored entry of the CSR input: its row …
    column_of_entry: torch.Tensor  # … and its column in ``values``


#: what fixes a damaged file of the scFoundation folder
_FIX = f"re-download the scFoundation files ({CHECKPOINT_FILE}, {GENE_INDEX_FILE})"


def _read_checkpoint(path: Path, version: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    try:
        obj = read_checkpoint(path, fix=_FIX)
    except pickle.UnpicklingError as error:
        raise model_file_error(
            path,
            "wrong format: it holds more than tensors and plain containers (torch.load(weights_only=True) refused "
            f"it: {str(error).strip().splitlines()[0]})",
            "the published models.ckpt loads this way; re-save a dict of config and state_dict",
        ) from error
    if not isinstance(obj, Mapping) or version not in obj:
        keys = list(obj) if isinstance(obj, Mapping) else type(obj).__name__
        fix = "pass version= one of these" if isinstance(obj, Mapping) and obj else _FIX
        raise model_file_error(path, f"missing keys: no {version!r} entry (found {keys})", fix)
    entry = obj[version]
    missing = [key for key in ("config", "state_dict") if not isinstance(entry, Mapping) or key not in entry]
    if missing:
        raise model_file_error(path, f"missing keys: [{version!r}] lacks {', '.join(missing)}", _FIX)
    return dict(entry["config"]), dict(entry["state_dict"])


def merge_config(config: Mapping[str, Any], source: str) -> dict[str, Any]:
    """The official loader's merge: ``model_config[model]`` updated with ``dataset_config["rnaseq"]``."""
    for key in ("model", "model_config", "dataset_config"):
        if key not in config:
            raise KeyError(
                f"{source}: config lacks {key!r}; the published config holds model, model_config and dataset_config."
            )
    model = config["model"]
    if model != "mae_autobin":
        raise ValueError(f"{source}: model {model!r}; only the published 'mae_autobin' model is supported.")
    if model not in config["model_config"] or "rnaseq" not in config["dataset_config"]:
        raise KeyError(f"{source}: config lacks model_config[{model!r}] or dataset_config['rnaseq'].")
    merged = {**config["model_config"][model], **config["dataset_config"]["rnaseq"]}
    missing = [key for key in _REQUIRED_CONFIG if key not in merged]
    missing += [f"encoder.{key}" for key in _REQUIRED_BLOCK if key not in merged.get("encoder", {})]
    if missing:
        raise KeyError(f"{source}: config lacks the field(s) {', '.join(missing)} needed to build the encoder.")
    if merged["encoder"]["module_type"] != "transformer":
        raise ValueError(
            f"{source}: encoder module_type {merged['encoder']['module_type']!r}; only the 'transformer' encoder of "
            "the published cell-embedding model is supported."
        )
    return merged


def _strip(state: Mapping[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """``model.<param>`` → ``<param>``: the official loader keeps the text after the first ``model.``."""
    out = {}
    for key, value in state.items():
        if "model." not in key:
            raise KeyError(f"{source}: state_dict key {key!r} lacks the 'model.' prefix of the published checkpoints.")
        out[key.split("model.", 1)[1]] = value
    return out


def load_encoder_state(encoder: ScFoundationEncoder, state: Mapping[str, torch.Tensor], *, source: str) -> list[str]:
    """Load the encoder path with strict key matching; return the other keys (decoder, heads), which are kept."""
    return load_matching_state(
        encoder,
        state,
        source=source,
        label="scFoundation",
        missing_hint="Point to the published models.ckpt (its 'cell' entry) or a file written by ScFoundation.save, "
        "whose config matches the weights.",
    )


def _read_gene_index(path: Path) -> pd.Index:
    table = read_model_file(path, lambda p: pd.read_csv(p, sep="\t"), what="tab-separated table", fix=_FIX)
    if "gene_name" not in table.columns:
        raise ValueError(f"{path} has no 'gene_name' column (columns: {list(table.columns)}); use the published file.")
    genes = pd.Index(table["gene_name"].astype(str))
    if genes.has_duplicates:
        raise ValueError(f"{path} lists genes more than once: {list(genes[genes.duplicated()][:5])}.")
    return genes


class ScFoundation(AttributionModel):
    """scFoundation loaded from its published checkpoint folder into sigscan's own PyTorch module.

    The folder holds ``models.ckpt`` (a dict keyed by version; ``version`` picks the entry, ``"cell"`` being the
    cell-embedding model; each entry holds ``config`` and a ``state_dict`` with ``model.``-prefixed keys) and the gene
    index ``OS_scRNA_gene_index.19264.tsv`` (column ``gene_name``). The encoder path is loaded with strict key
    matching; decoder tensors are kept (and written back by :meth:`save`) but do not enter the embedding.

    Input (the official ``pre_normalized="F"`` path): each cell's counts over the model's genes are scaled to 10,000
    and log1p-transformed; the expressed genes (value > 0) become tokens in gene-index order, followed by the T and
    S tokens: S = log10 of the cell's total counts over the model's genes, T = k for ``tgthighres="t<k>"``,
    log10(total·k) for ``"f<k>"`` and log10(total) + k for ``"a<k>"``. Every expressed gene is a token: there is no
    cap on their number (the published model's ``seq_len`` of 19,266 fits all 19,264 genes plus T and S; a cell
    longer than a model's ``seq_len`` is an error naming the limit). Cells are batched with per-row padding and a
    key padding mask, so a batch embeds each cell exactly as the official one-cell-at-a-time script does (which
    gathers the same tokens; it would drop a T or S token whose value is <= 0, i.e. a total of 1 count or less,
    where sigscan keeps it). Cells without counts over the model's genes have no embedding (NaN).

    :meth:`preprocess` therefore returns the aligned counts: normalisation and the T and S tokens are computed per
    cell from them. Attributions (``method="ig"`` or ``"ixg"``) are taken with respect to the expressed genes'
    normalised values with T and S held fixed along the IG path (zero baseline for the gene values only), so genes
    without counts get exactly zero. ``method="dl"`` is refused (captum's DeepLift has no rule for attention).

    Parameters
    ----------
    path
        The checkpoint folder.
    pool
        ``"all"``: the S token, T token, max and mean over gene tokens, concatenated (4 × 768 for the published
        model); ``"max"``: the maximum over all tokens.
    tgthighres
        The T token: ``"t<k>"``, ``"f<k>"`` or ``"a<k>"`` (published default ``"t4"``).
    version
        Entry of ``models.ckpt`` (``"cell"``; ``"rde"`` is the read-depth-enhancement model).
    precision
        ``"float32"`` (default), ``"bf16"`` or ``"fp16"``: autocast of the forward pass (fused bf16/fp16 attention
        on CUDA; ``"bf16"`` also on CPU). Recorded in provenance.
    min_gene_overlap
        Fewer model genes than this in the data raise an error.
    name
        Name used in layer keys.

    Examples
    --------
    >>> import tempfile, sigscan as ss
    >>> genes = ss.datasets.pbmc3k().var_names[:300]
    >>> folder = ss.models.ScFoundation.random(genes, hidden_dim=16, depth=1, heads=2).save(tempfile.mkdtemp())
    >>> model = ss.models.ScFoundation(folder)
    >>> model.embedding_dim, model.n_genes
    (64, 300)
    """

    requires_counts = True

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        pool: Pool = "all",
        tgthighres: str = "t4",
        version: str = "cell",
        precision: Precision = "float32",
        min_gene_overlap: int = 500,
        name: str = "scfoundation",
    ):
        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"{path} is not a folder; point to the scFoundation folder with models.ckpt.")
        missing = [f for f in (CHECKPOINT_FILE, GENE_INDEX_FILE) if not (path / f).exists()]
        if missing:
            raise FileNotFoundError(
                f"{path} is not a scFoundation checkpoint folder: missing {', '.join(missing)}. Put the published "
                f"{CHECKPOINT_FILE} and {GENE_INDEX_FILE} in one folder."
            )
        source = f"{path / CHECKPOINT_FILE}[{version!r}]"
        raw_config, raw_state = _read_checkpoint(path / CHECKPOINT_FILE, version)
        config = merge_config(raw_config, source)
        genes = _read_gene_index(path / GENE_INDEX_FILE)
        if len(genes) + 2 < int(config["seq_len"]):  # T and S take the positions right after the genes
            raise model_file_error(
                path / GENE_INDEX_FILE,
                f"it lists {len(genes):,} genes but {CHECKPOINT_FILE}'s seq_len ({config['seq_len']}) is for "
                f"{int(config['seq_len']) - 2:,} (truncated, or from another model)",
                _FIX,
            )
        encoder = _build_encoder(config)
        state = _strip(raw_state, source)
        others = load_encoder_state(encoder, state, source=source)
        self.ignored_keys = others
        self._other_state = {key: state[key] for key in others}
        self._init(encoder, genes, raw_config, version, pool, tgthighres, precision, min_gene_overlap, name)
        self.path = path

    def _init(
        self,
        encoder: ScFoundationEncoder,
        genes: pd.Index,
        raw_config: dict[str, Any],
        version: str,
        pool: str,
        tgthighres: str,
        precision: str,
        min_gene_overlap: int,
        name: str,
    ) -> None:
        if pool not in ("all", "max"):
            raise ValueError(f"pool={pool!r}; use 'all' (S, T, max, mean) or 'max'.")
        if encoder.seq_len < len(genes) + 1:
            raise ValueError(
                f"the config's seq_len ({encoder.seq_len}) is too small for {len(genes)} genes plus the T and S "
                f"positions ({len(genes)} and {len(genes) + 1}); the published model has seq_len = 19266."
            )
        self.encoder = encoder.eval()
        self.gene_order = pd.Index(genes, dtype=object)
        self.raw_config = raw_config
        self.version = version
        self.pool = pool
        self.tgthighres = _check_tgthighres(tgthighres)
        self.precision = check_precision(precision)
        self.min_gene_overlap = min_gene_overlap
        self.name = name
        self.path = None

    @classmethod
    def random(
        cls,
        gene_order: Sequence[str],
        *,
        hidden_dim: int = 768,
        depth: int = 12,
        heads: int = 12,
        decoder_hidden_dim: int | None = None,
        decoder_depth: int = 1,
        decoder_heads: int | None = None,
        bin_num: int = 100,
        bin_alpha: float = 1.0,
        random_state: int = 0,
        pool: Pool = "all",
        tgthighres: str = "t4",
        precision: Precision = "float32",
        min_gene_overlap: int = 500,
        name: str = "scfoundation",
    ) -> ScFoundation:
        """A scFoundation-architecture model with random weights (for tests, tutorials and benchmarks).

        The defaults are the encoder sizes of the published cell model; ``seq_len`` is the number of genes + 2. The
        masked-auto-encoder decoder (needed by a strict official load, not by the embedding) is a small transformer
        block (``decoder_*``; the published decoder is a Performer). ``random_state`` seeds the weights; LayerNorm scales and
        shifts are randomised too. Save it in the published layout with :meth:`save`.
        """
        genes = pd.Index(gene_order).astype(str)
        if genes.has_duplicates:
            raise ValueError("gene_order holds duplicates; the gene index needs unique genes.")
        decoder_dim = decoder_hidden_dim or hidden_dim
        config = {
            "model": "mae_autobin",
            "model_config": {
                "mae_autobin": {
                    "encoder": {"module_type": "transformer", "hidden_dim": hidden_dim, "depth": depth, "heads": heads},
                    "decoder": {
                        "module_type": "transformer",
                        "hidden_dim": decoder_dim,
                        "depth": decoder_depth,
                        "heads": decoder_heads or heads,
                    },
                    "n_class": 104,
                    "pad_token_id": 103,
                    "mask_token_id": 102,
                    "bin_num": bin_num,
                    "bin_alpha": bin_alpha,
                }
            },
            "dataset_config": {"rnaseq": {"seq_len": len(genes) + 2}},
        }
        merged = merge_config(config, "ScFoundation.random")
        with torch.random.fork_rng():
            torch.manual_seed(random_state)
            encoder = _build_encoder(merged)
            decoder = _TransformerStack(decoder_dim, decoder_depth, decoder_heads or heads)
            with torch.no_grad():
                for module in (*encoder.modules(), *decoder.modules()):
                    if isinstance(module, nn.TransformerEncoderLayer):  # the clones start identical: draw each anew
                        nn.init.xavier_uniform_(module.self_attn.in_proj_weight)
                        nn.init.normal_(module.self_attn.in_proj_bias, std=0.02)
                        for linear in (module.self_attn.out_proj, module.linear1, module.linear2):
                            linear.reset_parameters()
                    elif isinstance(module, nn.LayerNorm):
                        module.weight.copy_(1 + 0.1 * torch.randn_like(module.weight))
                        module.bias.copy_(0.1 * torch.randn_like(module.bias))
                    elif isinstance(module, nn.Embedding):
                        nn.init.normal_(module.weight, std=0.5)
            heads_state = {
                "decoder_embed": nn.Linear(hidden_dim, decoder_dim),
                "norm": nn.LayerNorm(decoder_dim),
                "to_final": nn.Linear(decoder_dim, 1),
            }
        others = {f"decoder.{key}": value for key, value in decoder.state_dict().items()}
        for prefix, module in heads_state.items():
            others |= {f"{prefix}.{key}": value for key, value in module.state_dict().items()}
        self = cls.__new__(cls)
        self.ignored_keys = sorted(others)
        self._other_state = others
        self._init(encoder, genes, config, "cell", pool, tgthighres, precision, min_gene_overlap, name)
        return self

    def save(self, path: str | os.PathLike) -> Path:
        """Write the published layout: ``models.ckpt`` and ``OS_scRNA_gene_index.19264.tsv``.

        ``models.ckpt`` is ``{version: {config, state_dict}}`` with ``model.``-prefixed keys, decoder tensors included.
        """
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = {**self.encoder.state_dict(), **self._other_state}
        state = {f"model.{key}": value.detach().cpu().clone() for key, value in sorted(state.items())}
        checkpoint = {self.version: {"config": self.raw_config, "state_dict": state}}
        torch.save(checkpoint, path / CHECKPOINT_FILE)
        table = pd.DataFrame({"index": np.arange(self.n_genes), "gene_name": np.asarray(self.gene_order)})
        table.to_csv(path / GENE_INDEX_FILE, sep="\t", index=False)
        return path

    # --- AttributionModel -------------------------------------------------------------------------------------

    @property
    def module(self) -> nn.Module:
        return self.encoder

    @property
    def embedding_dim(self) -> int:
        return self.encoder.dim * (4 if self.pool == "all" else 1)

    def preprocess(self, counts: sparse.csr_matrix) -> sparse.csr_matrix:
        """Counts aligned to :attr:`gene_order` → the same counts (CSR float32).

        Normalisation, log1p and the T/S tokens are computed per cell from them when sequences are built (see
        :meth:`sequences`).
        """
        return preprocess_counts(counts, "none")

    def check_method(self, method: str) -> None:
        if method == "dl":
            raise ValueError(
                "scFoundation does not support method='dl': captum's DeepLift applies its rescale rule only to "
                "module non-linearities, not to attention (products of inputs, softmax), the value embedding's "
                "softmax over bins or the transformer's functional ReLU, so its attributions would not sum to "
                "s(x) - s(0). Use method='ig' (the default) or 'ixg'."
            )

    def default_batch_size(self, device: torch.device, method: str) -> int:
        if method == "embed":
            return 16 if device.type == "cpu" else 256
        if device.type == "cpu":
            return 4 if method == "ig" else 8
        return 32 if method == "ig" else 128

    def provenance(self) -> dict[str, Any]:
        return {"pool": self.pool, "tgthighres": self.tgthighres, "precision": self.precision, "version": self.version}

    def sequences(self, x: sparse.csr_matrix, device: torch.device | str = "cpu") -> _Sequences:
        """Token sequences of counts ``x`` (CSR, cells × :attr:`gene_order`) on ``device``."""
        device = torch.device(device)
        x = sparse.csr_matrix(x, dtype=np.float32)
        if x.nnz and not np.all(x.data > 0):
            x = x.copy()
            x.data[x.data < 0] = 0
            x.eliminate_zeros()
        x.sort_indices()
        totals = np.asarray(x.sum(axis=1, dtype=np.float64)).ravel()
        values = preprocess_counts(x, "log1p_cp10k")
        t, s = total_tokens(np.where(totals > 0, totals, 1.0), self.tgthighres)
        n_genes = np.diff(x.indptr)
        length = int(n_genes.max(initial=0)) + 2
        if length > self.encoder.seq_len:
            longest = int(np.argmax(n_genes))
            raise ValueError(
                f"cell {longest} of this batch expresses {n_genes[longest]} genes; with the T and S tokens that is "
                f"{length} tokens, more than this model's seq_len of {self.encoder.seq_len}."
            )
        n_rows = x.shape[0]
        row = np.repeat(np.arange(n_rows), n_genes)
        column = np.arange(x.nnz) - np.repeat(x.indptr[:-1], n_genes)
        gene_values = np.zeros((n_rows, max(length - 2, 1)), dtype=np.float32)
        gene_values[row, column] = values.data
        positions = np.zeros((n_rows, length), dtype=np.int64)
        positions[row, column] = x.indices
        index = np.arange(n_rows)
        positions[index, n_genes] = self.n_genes
        positions[index, n_genes + 1] = self.n_genes + 1
        mask = np.arange(length)[None, :] >= (n_genes + 2)[:, None]
        return _Sequences(
            values=torch.from_numpy(gene_values).to(device),
            totals=torch.from_numpy(np.stack([t, s], axis=1).astype(np.float32)).to(device),
            positions=torch.from_numpy(positions).to(device),
            mask=torch.from_numpy(mask).to(device),
            n_genes=torch.from_numpy(n_genes.astype(np.int64)).to(device),
            row_of_entry=torch.from_numpy(row).to(device),
            column_of_entry=torch.from_numpy(column).to(device),
        )

    def forward_inputs(self, inputs: torch.Tensor, *extra: Any, normalize: bool = True) -> torch.Tensor:
        """Cell embeddings from the gene values ``inputs`` (rows × positions) and ``(totals, positions, mask, n_genes)``.

        Captum stacks copies of the rows (integration steps, baselines) and repeats the tensor arguments alike.
        """
        totals, positions, mask, n_genes = extra
        rows, width = inputs.shape
        if totals.shape[0] != rows or positions.shape[1] not in (width + 2, width + 1):
            raise RuntimeError(
                f"scFoundation: {rows} value rows of width {width} for {totals.shape[0]} T/S rows and positions of "
                f"width {positions.shape[1]}; pass the tensors from ScFoundation.sequences unchanged."
            )
        length = positions.shape[1]
        gene = torch.arange(width, device=inputs.device)[None, :] < n_genes[:, None]
        values = torch.cat([inputs * gene, inputs.new_zeros(rows, length - width)], dim=1)
        values = values.scatter(1, torch.stack([n_genes, n_genes + 1], dim=1), totals.to(values.dtype))
        with autocast(self.precision, inputs.device):
            tokens = self.encoder(values, positions, mask)
            out = pool_tokens(tokens, n_genes, self.pool)
        return out.float()

    def embed(self, x: torch.Tensor, *, normalize: bool = True) -> torch.Tensor:
        """Cell embeddings of dense counts ``x`` (cells × :attr:`gene_order`).

        Differentiable in ``x``, through the normalised values and the T and S tokens alike.
        """
        pattern = sparse.csr_matrix(x.detach().cpu().numpy())
        seq = self.sequences(pattern, x.device)
        cells = seq.row_of_entry
        columns = torch.from_numpy(pattern.indices.astype(np.int64)).to(x.device)
        counts = x.clamp_min(0)
        totals = counts.sum(dim=1, keepdim=True)
        normalised = torch.log1p(counts / totals.clamp_min(torch.finfo(x.dtype).tiny) * 1e4)
        inputs = torch.zeros(seq.values.shape, dtype=x.dtype, device=x.device).index_put(
            (seq.row_of_entry, seq.column_of_entry), normalised[cells, columns]
        )
        safe = totals[:, 0].clamp_min(1)
        s = torch.log10(safe)
        kind, amount = self.tgthighres[0], float(self.tgthighres[1:])
        t = torch.full_like(s, amount) if kind == "t" else (torch.log10(safe * amount) if kind == "f" else s + amount)
        return self.forward_inputs(inputs, torch.stack([t, s], dim=1), seq.positions, seq.mask, seq.n_genes)

    def attribution_inputs(self, x: sparse.csr_matrix, device: torch.device) -> AttributionInputs:
        """The expressed genes' normalised values, ``(totals, positions, mask, n_genes)`` and the map back to genes."""
        x = sparse.csr_matrix(x, dtype=np.float32)
        x.eliminate_zeros()
        x.sort_indices()
        seq = self.sequences(x, device)

        def to_genes(attr: torch.Tensor) -> sparse.csr_matrix:
            values = attr.detach()[seq.row_of_entry, seq.column_of_entry].float().cpu().numpy()
            return sparse.csr_matrix((values, x.indices.copy(), x.indptr.copy()), shape=x.shape)

        length = seq.positions.shape[1]
        budget = _TOKENS_PER_PASS.get(torch.device(device).type, _TOKENS_PER_PASS_GPU)
        rows_per_pass = max(x.shape[0], budget // length)
        return AttributionInputs(
            seq.values, (seq.totals, seq.positions, seq.mask, seq.n_genes), to_genes, rows_per_pass
        )

    def __repr__(self) -> str:
        return (
            f"ScFoundation(name={self.name!r}, n_genes={self.n_genes}, embedding_dim={self.embedding_dim}, "
            f"depth={len(self.encoder.encoder.transformer_encoder)}, pool={self.pool!r}, tgthighres={self.tgthighres!r})"
        )


def _build_encoder(config: Mapping[str, Any]) -> ScFoundationEncoder:
    block = config["encoder"]
    return ScFoundationEncoder(
        seq_len=int(config["seq_len"]),
        dim=int(block["hidden_dim"]),
        depth=int(block["depth"]),
        heads=int(block["heads"]),
        bin_num=int(config["bin_num"]),
        bin_alpha=float(config["bin_alpha"]),
        pad_token_id=config["pad_token_id"],
        mask_token_id=config["mask_token_id"],
    )
