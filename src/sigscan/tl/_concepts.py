"""``ss.tl.concepts``: a Top-K sparse autoencoder on cell embeddings, whose latents are sparse "concepts" (SPEC 5.2)."""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from scipy import sparse
from torch import nn

from .._device import resolve_device
from .._docs import doc_adata, doc_params
from .._logging import logger, timed

if TYPE_CHECKING:
    from anndata import AnnData

    from ..models import AttributionModel

#: weight of the AuxK loss (Gao et al. 2024)
AUX_ALPHA = 1 / 32
#: fewer cells than this cannot train a dictionary
MIN_CELLS = 10
#: default number of optimiser steps the automatic ``n_epochs`` aims at
_TARGET_STEPS = 3000
#: below this many multiply-adds per encoder pass, training uses one CPU thread
_SMALL_STEP = 1 << 24
_B_DEC_INITS = ("geometric_median", "mean")


def geometric_median(x: np.ndarray, *, max_iter: int = 200, tol: float = 1e-7) -> np.ndarray:
    """Geometric median of the rows of ``x`` (Weiszfeld's algorithm, float64, deterministic).

    Starts at the mean; a point that coincides with a row is handled by the Vardi–Zhang correction.
    """
    x = np.asarray(x, dtype=np.float64)
    point = x.mean(axis=0)
    for _ in range(max_iter):
        distances = np.linalg.norm(x - point, axis=1)
        at_point = distances < 1e-12
        weights = 1.0 / np.where(at_point, 1.0, distances)
        weights[at_point] = 0.0
        if weights.sum() == 0:
            return point
        candidate = (weights[:, None] * x).sum(axis=0) / weights.sum()
        n_at = int(at_point.sum())
        if n_at:  # Vardi–Zhang: blend with the data point the iterate sits on
            r = np.linalg.norm((weights[:, None] * (x - point)).sum(axis=0))
            gamma = min(1.0, n_at / r) if r > 0 else 1.0
            candidate = (1 - gamma) * candidate + gamma * point
        if np.linalg.norm(candidate - point) <= tol * max(1.0, np.linalg.norm(point)):
            return candidate
        point = candidate
    return point


class TopKSAE(nn.Module):
    """``z = TopK(ReLU(W_enc (x − b_dec) + b_enc))``, ``x̂ = W_dec z + b_dec`` (Gao et al. 2024).

    ``x`` is the standardised input (embedding divided by the stored scale). Decoder columns are unit norm.
    """

    def __init__(self, d_input: int, n_concepts: int, k: int):
        super().__init__()
        self.k = k
        self.W_enc = nn.Parameter(torch.empty(n_concepts, d_input))
        self.b_enc = nn.Parameter(torch.zeros(n_concepts))
        self.W_dec = nn.Parameter(torch.empty(d_input, n_concepts))
        self.b_dec = nn.Parameter(torch.zeros(d_input))

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        """``ReLU(W_enc (x − b_dec) + b_enc)``: every concept's activation before the top-k selection."""
        return torch.relu((x - self.b_dec) @ self.W_enc.T + self.b_enc)

    def topk(self, pre: torch.Tensor) -> torch.Tensor:
        """Keep the ``k`` largest pre-activations of each row (ties broken by the lower index), zero the rest."""
        values, indices = torch.topk(pre, self.k, dim=1, sorted=False)
        return torch.zeros_like(pre).scatter(1, indices, values)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``W_dec z + b_dec``."""
        return z @ self.W_dec.T + self.b_dec

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(pre-activations, sparse code, reconstruction)``."""
        pre = self.pre_activations(x)
        z = self.topk(pre)
        return pre, z, self.decode(z)

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        """Rescale every decoder column to unit norm."""
        self.W_dec.div_(self.W_dec.norm(dim=0, keepdim=True).clamp_min(1e-12))

    @torch.no_grad()
    def remove_parallel_gradient(self) -> None:
        """Remove from each decoder column's gradient its component along the (unit) column."""
        if self.W_dec.grad is not None:
            parallel = (self.W_dec.grad * self.W_dec).sum(dim=0, keepdim=True)
            self.W_dec.grad.sub_(parallel * self.W_dec)


@dataclass
class ConceptModel:
    """A trained Top-K sparse autoencoder over a cell embedding: encode new cells into concepts.

    Build it from an AnnData that :func:`sigscan.tl.concepts` ran on with :meth:`from_uns`; :meth:`encode` turns
    embeddings into concept activations (CSR, at most ``k`` non-zeros per cell), :meth:`pre_activations` gives the
    activations before the top-k selection, :meth:`reconstruct` the decoded embeddings.

    Attributes
    ----------
    W_enc, b_enc, W_dec, b_dec
        Encoder (``n_concepts × d``), encoder bias, decoder (``d × n_concepts``, unit-norm columns) and pre-encoder
        bias, in standardised units.
    scale
        Inputs are divided by this number before encoding (and reconstructions multiplied by it).
    k
        Active concepts per cell.
    use_rep
        The ``obsm`` key of the embedding the dictionary was trained on.
    params
        Training parameters and provenance.

    Examples
    --------
    >>> import sigscan as ss
    >>> adata = ss.datasets.pbmc3k()[:200].copy()
    >>> adata.obsm["X_pca"] = ss.datasets.toy(n_cells=200).X[:, :20].toarray()
    >>> ss.tl.concepts(adata, use_rep="X_pca", n_concepts=16, k=2, n_epochs=2)
    >>> sae = ss.tl.ConceptModel.from_uns(adata)
    >>> sae.encode(adata.obsm["X_pca"]).shape
    (200, 16)
    """

    W_enc: np.ndarray
    b_enc: np.ndarray
    W_dec: np.ndarray
    b_dec: np.ndarray
    scale: float
    k: int
    use_rep: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def n_concepts(self) -> int:
        """Size of the dictionary."""
        return int(self.W_enc.shape[0])

    @property
    def d_input(self) -> int:
        """Size of the embedding."""
        return int(self.W_enc.shape[1])

    @classmethod
    def from_uns(cls, adata: AnnData, key: str = "concepts") -> ConceptModel:
        """Rebuild the dictionary stored by :func:`sigscan.tl.concepts` in ``adata.uns["sigscan"][key]``."""
        record = adata.uns.get("sigscan", {}).get(key)
        if not isinstance(record, dict) or "weights" not in record:
            raise KeyError(
                f"adata.uns['sigscan'][{key!r}] holds no concept dictionary; run ss.tl.concepts(adata, "
                f"key_added={key!r}) first or pass the key it was stored under."
            )
        weights = record["weights"]
        return cls(
            W_enc=np.asarray(weights["W_enc"], dtype=np.float32),
            b_enc=np.asarray(weights["b_enc"], dtype=np.float32),
            W_dec=np.asarray(weights["W_dec"], dtype=np.float32),
            b_dec=np.asarray(weights["b_dec"], dtype=np.float32),
            scale=float(record["scale"]),
            k=int(record["params"]["k"]),
            use_rep=str(record["use_rep"]),
            params=dict(record["params"]),
        )

    def module(self, device: str | torch.device = "cpu") -> TopKSAE:
        """The dictionary as a torch module (standardised units) on ``device``."""
        sae = TopKSAE(self.d_input, self.n_concepts, self.k)
        with torch.no_grad():
            for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
                getattr(sae, name).copy_(torch.from_numpy(np.asarray(getattr(self, name), dtype=np.float32)))
        return sae.to(device).eval().requires_grad_(False)

    def _check_input(self, x: Any) -> np.ndarray:
        x = np.asarray(x.toarray() if sparse.issparse(x) else x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.d_input:
            raise ValueError(
                f"The embedding has shape {x.shape} but the concept dictionary was trained on {self.d_input}-"
                f"dimensional embeddings ({self.use_rep!r}); encode embeddings of the same model."
            )
        if not np.isfinite(x).all():
            raise ValueError("The embedding holds NaN or infinite values; recompute it (ss.pp.embeddings).")
        return x

    def pre_activations(self, x: Any, *, batch_size: int = 8192) -> np.ndarray:
        """Activations before the top-k selection (dense float32, cells × concepts) of embeddings ``x``."""
        x = self._check_input(x)
        sae = self.module()
        out = np.empty((x.shape[0], self.n_concepts), dtype=np.float32)
        with torch.no_grad():
            for lo in range(0, x.shape[0], batch_size):
                out[lo : lo + batch_size] = sae.pre_activations(torch.from_numpy(x[lo : lo + batch_size]) / self.scale)
        return out

    def encode(self, x: Any, *, batch_size: int = 8192) -> sparse.csr_matrix:
        """Concept activations (CSR float32, cells × concepts, at most ``k`` non-zeros per cell) of embeddings ``x``."""
        x = self._check_input(x)
        return _encode(self.module(), x, self.scale, batch_size)

    def reconstruct(self, x: Any, *, batch_size: int = 8192) -> np.ndarray:
        """Embeddings decoded from their concepts (float32, in the embedding's own units)."""
        codes = self.encode(x, batch_size=batch_size)
        sae = self.module()
        with torch.no_grad():
            return (sae.decode(torch.from_numpy(codes.toarray())) * self.scale).numpy()

    def with_rep(self, use_rep: str, **params: Any) -> ConceptModel:
        """The same dictionary, recorded as encoding ``obsm[use_rep]`` (with ``params`` added to its parameters)."""
        return replace(self, use_rep=use_rep, params={**self.params, **params})

    def weights(self) -> dict[str, np.ndarray]:
        """The parameters as numpy arrays (what ``uns`` stores)."""
        return {
            name: np.asarray(getattr(self, name), dtype=np.float32) for name in ("W_enc", "b_enc", "W_dec", "b_dec")
        }


def _encode(sae: TopKSAE, x: np.ndarray, scale: float, batch_size: int) -> sparse.csr_matrix:
    blocks = []
    with torch.no_grad():
        for lo in range(0, x.shape[0], batch_size):
            z = sae.topk(sae.pre_activations(torch.from_numpy(x[lo : lo + batch_size]).to(sae.W_enc.device) / scale))
            blocks.append(sparse.csr_matrix(z.cpu().numpy().astype(np.float32)))
    out = sparse.vstack(blocks, format="csr") if blocks else sparse.csr_matrix((0, sae.W_enc.shape[0]))
    out = out.astype(np.float32)
    out.eliminate_zeros()
    return out


def _variance_explained(x: np.ndarray, reconstruction: np.ndarray) -> float:
    """``1 − Σ‖x − x̂‖² / Σ‖x − x̄‖²`` over all cells."""
    total = float(((x - x.mean(axis=0)) ** 2).sum(dtype=np.float64))
    residual = float(((x - reconstruction) ** 2).sum(dtype=np.float64))
    return 1.0 - residual / total if total > 0 else 0.0


@dataclass(frozen=True)
class _Training:
    """The resolved training settings of one :func:`concepts` run."""

    n_concepts: int
    k: int
    n_epochs: int
    batch_size: int
    learning_rate: float
    k_aux: int
    dead_window: int
    b_dec_init: str
    random_state: int

    def as_params(self) -> dict[str, Any]:
        return {
            "n_concepts": self.n_concepts,
            "k": self.k,
            "n_epochs": self.n_epochs,
            "batch_size": self.batch_size,
            "learning_rate": self.learning_rate,
            "k_aux": self.k_aux,
            "aux_alpha": AUX_ALPHA,
            "dead_window": self.dead_window,
            "b_dec_init": self.b_dec_init,
            "random_state": self.random_state,
        }


@contextmanager
def _torch_threads(n: int | None):
    """Run the block with ``n`` torch CPU threads (``None``: unchanged), restoring the previous number."""
    previous = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _train(x: np.ndarray, settings: _Training, device: torch.device) -> tuple[TopKSAE, dict[str, np.ndarray]]:
    """Train the SAE on standardised embeddings ``x``; returns the module and the per-epoch training curve.

    Small problems train on one CPU thread: the matrices are too small to gain from more, and thread start-up costs
    more than the arithmetic (a tenfold slowdown measured on a loaded 2-core machine).
    """
    small = settings.batch_size * x.shape[1] * settings.n_concepts < _SMALL_STEP
    with _torch_threads(1 if small and device.type == "cpu" else None):
        return _train_loop(x, settings, device)


def _train_loop(x: np.ndarray, settings: _Training, device: torch.device) -> tuple[TopKSAE, dict[str, np.ndarray]]:
    n, d = x.shape
    generator = torch.Generator().manual_seed(settings.random_state)
    sae = TopKSAE(d, settings.n_concepts, settings.k)
    with torch.no_grad():
        # decoder columns: random unit directions; encoder initialised as the decoder's transpose (Gao et al.)
        sae.W_dec.copy_(torch.randn(d, settings.n_concepts, generator=generator))
        sae.normalize_decoder()
        sae.W_enc.copy_(sae.W_dec.T)
        centre = geometric_median(x) if settings.b_dec_init == "geometric_median" else x.mean(axis=0, dtype=np.float64)
        sae.b_dec.copy_(torch.from_numpy(centre.astype(np.float32)))
    sae.to(device)
    data = torch.from_numpy(x).to(device)
    optimizer = torch.optim.Adam(sae.parameters(), lr=settings.learning_rate)
    # samples since each concept last fired; "dead" when above the window
    since_fired = torch.zeros(settings.n_concepts, dtype=torch.long, device=device)
    curve: dict[str, list[float]] = {"loss": [], "mse": [], "aux": [], "dead_fraction": []}
    for _ in range(settings.n_epochs):
        order = torch.randperm(n, generator=generator).to(device)
        sums = np.zeros(3)
        for lo in range(0, n, settings.batch_size):
            batch = data[order[lo : lo + settings.batch_size]]
            pre, z, recon = sae(batch)
            residual = batch - recon
            mse = residual.pow(2).sum(dim=1).mean() / d
            fired = (z > 0).any(dim=0)
            since_fired += batch.shape[0]
            since_fired[fired] = 0
            dead = since_fired > settings.dead_window
            aux = _aux_loss(sae, pre, residual.detach(), dead, settings.k_aux)
            loss = mse + AUX_ALPHA * aux
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            sae.remove_parallel_gradient()
            optimizer.step()
            sae.normalize_decoder()
            sums += np.array([loss.item(), mse.item(), aux.item()]) * batch.shape[0]
        curve["loss"].append(sums[0] / n)
        curve["mse"].append(sums[1] / n)
        curve["aux"].append(sums[2] / n)
        curve["dead_fraction"].append(float((since_fired > settings.dead_window).float().mean()))
    sae.eval().requires_grad_(False)
    return sae.cpu(), {name: np.asarray(values, dtype=np.float64) for name, values in curve.items()}


def _aux_loss(sae: TopKSAE, pre: torch.Tensor, residual: torch.Tensor, dead: torch.Tensor, k_aux: int) -> torch.Tensor:
    """AuxK: reconstruct the residual from the top-``k_aux`` dead latents, normalised by the residual's variance."""
    n_dead = int(dead.sum())
    if n_dead == 0 or k_aux == 0:
        return pre.new_zeros(())
    masked = pre.masked_fill(~dead[None, :], 0.0)
    values, indices = torch.topk(masked, min(k_aux, n_dead), dim=1, sorted=False)
    z_aux = torch.zeros_like(pre).scatter(1, indices, values)
    aux_reconstruction = z_aux @ sae.W_dec.T  # the residual has no bias term
    error = (residual - aux_reconstruction).pow(2).sum(dim=1).mean()
    variance = (residual - residual.mean(dim=0)).pow(2).sum(dim=1).mean().clamp_min(1e-12)
    return error / variance


def _check_sizes(n_concepts: int, k: int, n_epochs: int | None, batch_size: int, learning_rate: float) -> None:
    if not isinstance(n_concepts, int | np.integer) or n_concepts < 2:
        raise ValueError(f"n_concepts must be an integer of at least 2, not {n_concepts!r}.")
    if not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be a positive integer (active concepts per cell), not {k!r}.")
    if k >= n_concepts:
        raise ValueError(f"k ({k}) must be smaller than n_concepts ({n_concepts}); lower k or raise n_concepts.")
    if n_epochs is not None and (not isinstance(n_epochs, int | np.integer) or n_epochs < 1):
        raise ValueError(f"n_epochs must be a positive integer or None (automatic), not {n_epochs!r}.")
    if not isinstance(batch_size, int | np.integer) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, not {batch_size!r}.")
    if not (np.isfinite(learning_rate) and learning_rate > 0):
        raise ValueError(f"learning_rate must be a positive number, not {learning_rate!r}.")


def _embedding(adata: AnnData, use_rep: str) -> np.ndarray:
    if use_rep not in adata.obsm:
        available = ", ".join(map(repr, adata.obsm)) or "none"
        raise KeyError(
            f"adata.obsm has no {use_rep!r} (available: {available}); pass use_rep= naming an embedding, or model= "
            "to compute one with ss.pp.embeddings."
        )
    x = adata.obsm[use_rep]
    x = np.asarray(x.toarray() if sparse.issparse(x) else x, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] < 2:
        raise ValueError(f"adata.obsm[{use_rep!r}] must be a cells × dimensions matrix with at least 2 dimensions.")
    if not np.isfinite(x).all():
        raise ValueError(f"adata.obsm[{use_rep!r}] holds NaN or infinite values; recompute the embedding.")
    return x


def _resolve_rep(adata: AnnData, model: AttributionModel | None, use_rep: str | None) -> tuple[str, bool]:
    """The ``obsm`` key to train on, and whether the embeddings must be computed with ``model`` first."""
    if model is None:
        if use_rep is None:
            raise ValueError(
                "Pass use_rep= (an adata.obsm key holding cell embeddings) or model= (a sigscan model wrapper whose "
                "embeddings ss.pp.embeddings computes first)."
            )
        return use_rep, False
    from .._engine import check_model

    check_model(model)
    key = use_rep or f"X_{model.name}"
    return key, key not in adata.obsm


def _record(
    model: ConceptModel, *, fve: float, dead_fraction: float, curve: dict[str, np.ndarray] | None
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "weights": model.weights(),
        "scale": float(model.scale),
        "use_rep": model.use_rep,
        "params": dict(model.params),
        "variance_explained": float(fve),
        "dead_fraction": float(dead_fraction),
    }
    if curve is not None:
        record["training_curve"] = curve
    return record


def _source_model(concepts_from: Any, key_added: str) -> ConceptModel:
    if isinstance(concepts_from, ConceptModel):
        return concepts_from
    if hasattr(concepts_from, "uns") and hasattr(concepts_from, "obsm"):
        return ConceptModel.from_uns(concepts_from, key_added)
    raise TypeError(
        f"concepts_from must be an AnnData that ss.tl.concepts ran on, or a ss.tl.ConceptModel, not "
        f"{type(concepts_from).__name__}."
    )


@doc_params(adata=doc_adata)
def concepts(
    adata: AnnData,
    model: AttributionModel | None = None,
    *,
    use_rep: str | None = None,
    n_concepts: int = 64,
    k: int = 8,
    n_epochs: int | None = None,
    batch_size: int = 256,
    learning_rate: float = 1e-3,
    b_dec_init: Literal["geometric_median", "mean"] = "geometric_median",
    random_state: int = 0,
    key_added: str = "concepts",
    device: str = "auto",
    concepts_from: AnnData | ConceptModel | None = None,
    layer: str | None = None,
) -> None:
    """Sparse "concepts" of a cell embedding: a Top-K sparse autoencoder trained on a model's latent space.

    The dictionary follows Gao et al. 2024 ("Scaling and evaluating sparse autoencoders"):
    ``z = TopK(ReLU(W_enc (x − b_dec) + b_enc))`` and ``x̂ = W_dec z + b_dec`` on embeddings ``x`` standardised by
    one stored scale (the root-mean-square deviation from the mean, per dimension). The pre-encoder bias ``b_dec``
    starts at the geometric median of the data (or the mean); decoder columns start at random unit directions, the
    encoder at their transpose, and stay unit norm (each step removes the gradient component parallel to a column,
    then renormalises it). The loss is the reconstruction MSE plus ``1/32`` × AuxK, which reconstructs the residual
    from the ``k_aux`` most active *dead* concepts (no activation over the last epoch's worth of cells), so that dead
    concepts get gradient. Training is deterministic: on CPU the same ``random_state`` gives bit-identical weights.

    Parameters
    ----------
    {adata}
    model
        A model wrapper from :mod:`sigscan.models`. When given and ``adata.obsm`` lacks the embedding,
        :func:`sigscan.pp.embeddings` computes it first (into ``use_rep``, default ``f"X_{{model.name}}"``).
    use_rep
        The ``adata.obsm`` key of the embedding to train on.
    n_concepts
        Size of the dictionary.
    k
        Active concepts per cell (``1 ≤ k < n_concepts``).
    n_epochs
        Passes over the cells; ``None`` picks enough epochs for about 3,000 optimiser steps (5 to 200 epochs).
    batch_size
        Cells per optimiser step.
    learning_rate
        Adam learning rate.
    b_dec_init
        Initial pre-encoder bias: ``"geometric_median"`` (Weiszfeld) or ``"mean"``.
    random_state
        Seed of the initialisation and of the order of cells.
    key_added
        Where the results go (see Returns).
    device
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"mps"``; bit-identical results are promised on CPU only.
    concepts_from
        An AnnData that this function ran on (its ``uns["sigscan"][key_added]`` is used) or a
        :class:`~sigscan.tl.ConceptModel`: encode ``adata`` with that trained dictionary instead of training one.
    layer
        Counts layer for :func:`sigscan.pp.embeddings` when the embeddings are computed here.

    Returns
    -------
    ``None``. Writes

    - ``adata.obsm[key_added]``: concept activations, CSR float32, cells × ``n_concepts``, at most ``k`` non-zeros
      per cell;
    - ``adata.uns["sigscan"][key_added]``: ``weights`` (``W_enc``, ``b_enc``, ``W_dec``, ``b_dec`` as numpy arrays),
      ``scale``, ``use_rep``, ``params``, ``training_curve`` (per epoch: loss, mse, aux, dead_fraction),
      ``variance_explained`` (of the embedding, by the reconstruction) and ``dead_fraction`` (concepts active in no
      cell).

    Examples
    --------
    >>> import sigscan as ss
    >>> adata = ss.datasets.pbmc3k()[:300].copy()
    >>> model = ss.models.SCimilarity.random(adata.var_names, hidden_dim=(32,), latent_dim=16)
    >>> ss.tl.concepts(adata, model, n_concepts=32, k=4, n_epochs=5)
    >>> adata.obsm["concepts"].shape, int(adata.obsm["concepts"].getnnz(axis=1).max()) <= 4
    ((300, 32), True)
    """
    source = _source_model(concepts_from, key_added) if concepts_from is not None else None
    if source is None:
        _check_sizes(n_concepts, k, n_epochs, batch_size, learning_rate)
        if b_dec_init not in _B_DEC_INITS:
            raise ValueError(f"Unknown b_dec_init {b_dec_init!r}; use 'geometric_median' or 'mean'.")
    elif use_rep is None:
        use_rep = source.use_rep
    rep, compute = _resolve_rep(adata, model, use_rep)
    if not compute:
        x = _embedding(adata, rep)
    if adata.n_obs < MIN_CELLS and source is None:
        raise ValueError(
            f"adata has {adata.n_obs} cells; training a concept dictionary needs at least {MIN_CELLS} (use "
            "concepts_from= to encode a few cells with a dictionary trained elsewhere)."
        )
    torch_device = resolve_device(device)
    if compute:
        from ..pp import embeddings

        embedding_dim = model.embedding_dim  # type: ignore[union-attr]
        if source is not None and embedding_dim != source.d_input:
            raise ValueError(
                f"{model.name} embeddings have {embedding_dim} dimensions but the concept dictionary was trained on "  # type: ignore[union-attr]
                f"{source.d_input}; pass the model whose embeddings it was trained on."
            )
        embeddings(adata, model, layer=layer, key_added=rep, device=device, progress=False)  # type: ignore[arg-type]
        x = _embedding(adata, rep)

    if source is not None:
        _write(adata, key_added, source.with_rep(rep, encoded_with="concepts_from"), x, curve=None)
        return None
    trained, curve = _fit(
        x, rep, n_concepts, k, n_epochs, batch_size, learning_rate, b_dec_init, random_state, torch_device
    )
    _write(adata, key_added, trained, x, curve=curve)
    return None


def _fit(
    x: np.ndarray,
    rep: str,
    n_concepts: int,
    k: int,
    n_epochs: int | None,
    batch_size: int,
    learning_rate: float,
    b_dec_init: str,
    random_state: int,
    device: torch.device,
) -> tuple[ConceptModel, dict[str, np.ndarray]]:
    """Resolve the training settings, standardise ``x`` and train the dictionary."""
    n_obs, d = x.shape
    centred = x - x.mean(axis=0, dtype=np.float64).astype(np.float32)
    scale = float(np.sqrt((centred.astype(np.float64) ** 2).sum() / (n_obs * d)))
    if scale == 0:
        raise ValueError(f"adata.obsm[{rep!r}] is the same for every cell; there is nothing to learn concepts from.")
    batch = int(min(batch_size, n_obs))
    steps_per_epoch = math.ceil(n_obs / batch)
    epochs = (
        int(n_epochs) if n_epochs is not None else int(min(200, max(5, math.ceil(_TARGET_STEPS / steps_per_epoch))))
    )
    settings = _Training(
        n_concepts=int(n_concepts),
        k=int(k),
        n_epochs=epochs,
        batch_size=batch,
        learning_rate=float(learning_rate),
        k_aux=int(min(n_concepts - k, max(2 * k, d // 2))),
        dead_window=int(n_obs),
        b_dec_init=b_dec_init,
        random_state=int(random_state),
    )
    with timed(f"training a Top-K sparse autoencoder ({n_concepts} concepts, k={k}) on {n_obs} cells"):
        sae, curve = _train(x / scale, settings, device)
    trained = ConceptModel(
        W_enc=sae.W_enc.detach().numpy().copy(),
        b_enc=sae.b_enc.detach().numpy().copy(),
        W_dec=sae.W_dec.detach().numpy().copy(),
        b_dec=sae.b_dec.detach().numpy().copy(),
        scale=scale,
        k=int(k),
        use_rep=rep,
        params=settings.as_params(),
    )
    return trained, curve


def _write(
    adata: AnnData, key_added: str, model: ConceptModel, x: np.ndarray, *, curve: dict[str, np.ndarray] | None
) -> None:
    """Encode ``x``, measure the fit, and write ``obsm[key_added]`` and ``uns["sigscan"][key_added]``."""
    with timed(f"encoding {x.shape[0]} cells into {model.n_concepts} concepts"):
        codes = model.encode(x)
        fve = _variance_explained(x, model.reconstruct(x))
    dead = 1.0 - np.unique(codes.indices).size / model.n_concepts
    logger.info("    variance explained %.3f, dead concepts %.1f%%", fve, 100 * dead)
    adata.obsm[key_added] = codes
    adata.uns.setdefault("sigscan", {})[key_added] = _record(model, fve=fve, dead_fraction=dead, curve=curve)
