"""Library noise stays out of the demo and the CLI; sigscan's own warnings about the data do not."""

from __future__ import annotations

import logging
import warnings

from sigscan._logging import quiet_libraries


def _warn_from(module: str, category: type[Warning] = UserWarning) -> None:
    warnings.warn_explicit("a message", category, filename=f"{module}.py", lineno=1, module=module)


def test_library_loggers_are_quiet_inside_and_restored_after():
    import lightning.pytorch  # noqa: F401  (sets its loggers to INFO on import)

    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    seed = logging.getLogger("lightning.fabric.utilities.seed")
    before = rank_zero.getEffectiveLevel(), seed.getEffectiveLevel()
    assert rank_zero.isEnabledFor(logging.INFO)  # the "GPU available" banner would show
    with quiet_libraries():
        assert not rank_zero.isEnabledFor(logging.INFO)
        assert not seed.isEnabledFor(logging.INFO)
        assert rank_zero.isEnabledFor(logging.WARNING)
    assert (rank_zero.getEffectiveLevel(), seed.getEffectiveLevel()) == before


def test_library_warnings_dropped_data_warnings_kept():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with quiet_libraries():
            _warn_from("lightning.pytorch.loops.fit_loop")
            _warn_from("scvi.model.base")
            _warn_from("torch.sparse")
            _warn_from("anndata._core", FutureWarning)
            _warn_from("sigscan.tl._attribution_score")
            _warn_from("anndata._core.anndata")
        _warn_from("lightning.pytorch.loops.fit_loop")  # outside the block: shown again
    assert [w.filename for w in caught] == [
        "sigscan.tl._attribution_score.py",
        "anndata._core.anndata.py",
        "lightning.pytorch.loops.fit_loop.py",
    ]


def _train_tiny_scvi() -> None:
    import scvi

    import sigscan as ss

    adata = ss.datasets.pbmc3k()[:120, :200].copy()
    scvi.settings.seed = 0
    scvi.model.SCVI.setup_anndata(adata)
    scvi.model.SCVI(adata, n_hidden=8, n_latent=2).train(max_epochs=1, accelerator="cpu", enable_progress_bar=False)


def _shown(caplog, capfd) -> str:
    """Everything the libraries printed or logged since the last call (Lightning logs to its own handler, or to the
    root logger's when one exists, as under pytest)."""
    out, err = capfd.readouterr()
    text = out + err + "\n".join(r.getMessage() for r in caplog.records)
    caplog.clear()
    return text


def test_training_prints_no_banners_inside(caplog, capfd):
    caplog.set_level(logging.DEBUG, logger="nothing")  # capture records without changing the libraries' levels
    _train_tiny_scvi()
    assert "GPU available" in _shown(caplog, capfd)  # what the block keeps out (the check would be empty otherwise)
    with quiet_libraries():
        _train_tiny_scvi()
    shown = _shown(caplog, capfd)
    for noise in ("GPU available", "TPU available", "Tip:", "Seed set", "Trainer.fit"):
        assert noise not in shown, noise
