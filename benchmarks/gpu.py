"""The GPU table: attribution throughput of every model family on one device, bf16 against float32, the SPEC goal.

One command runs the whole table and writes a JSON of the figures. The sizes are chosen to finish in under 5 minutes on
one H100-class GPU (an estimate: no GPU was lent when it was written; ``seconds_total`` reports the real figure):

    python benchmarks/gpu.py                           # CUDA; writes benchmarks/_out/gpu.json
    python benchmarks/gpu.py --device cpu --quick      # the same code path on CPU, tiny models (a smoke run)

Rows (``ss.pp.attributions`` cells/s after a warm-up call, default batch sizes, i.e. sized to free device memory):

- SCimilarity architecture (SPEC 7: random weights, 28,231 genes, 1,024–1,024–128; the model folder written by
  benchmarks/attributions.py) on PBMC3k cells resampled to ``--cells``: IG (50 steps), DeepLIFT, gradient × input;
  IG again with ``precision="bf16"``, and its error against float32 on the 1000-scaled values (max |difference|,
  minimum and median per-cell Pearson);
- scVI (scvi-tools, trained for one epoch on PBMC3k; skipped when scvi-tools is not installed);
- scGPT (the size and IG steps of benchmarks/scgpt.py), scFoundation (reduced, as benchmarks/foundation.py), SSL-scTab (published
  size, as benchmarks/foundation.py).

``goal`` compares SCimilarity IG cells/s with the SPEC goal (>= 50,000 cells/s on one H100-class GPU). On CPU the
fast path is routed through its device branch (torch kernels, prefetching, asynchronous results), so ``--device cpu``
exercises the code that runs on CUDA; its timings are not the GPU figures.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import benchmark_cells, pbmc_gene_order, workdir

GOAL_IG_CELLS_PER_S = 50_000

#: full-size and ``--quick`` models: (SCimilarity hidden, latent, genes), scVI, scGPT, scFoundation, SSL-scTab
FULL = {"cells": 50_000, "scvi_cells": 20_000, "scgpt_cells": 64, "scf_cells": 256, "sctab_cells": 20_000}
QUICK = {
    "cells": 48,
    "scvi_cells": 32,
    "scgpt_cells": 4,
    "scf_cells": 4,
    "sctab_cells": 32,
    "scimilarity": {"genes": 600, "hidden_dim": (32, 32), "latent_dim": 8},
    "scgpt": {"genes": 100, "embsize": 16, "nheads": 2, "d_hid": 16, "nlayers": 1},
    "scfoundation": {"genes": 100, "hidden_dim": 16, "depth": 1, "heads": 2},
    "sctab": {"genes": 600, "units": (32, 16, 8)},
    "scvi": {"n_hidden": 16, "n_latent": 4, "max_epochs": 1},
}


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def throughput(name: str, model, adata, *, device: str, methods, n_steps: int = 50, **kwargs) -> tuple[dict, dict]:
    """Cells/s of ``ss.pp.attributions`` per method (after a warm-up call); returns (row, layers by method)."""
    import sigscan as ss
    from sigscan import _engine

    row = {"model": name, "genes": model.n_genes, "cells": adata.n_obs, "device": device, "ig_n_steps": n_steps}
    layers = {}
    for method in methods:
        options = {"method": method, "n_steps": n_steps, "device": device, "progress": False, **kwargs}
        ss.pp.attributions(adata[: min(64, adata.n_obs)].copy(), model, **options)  # warm-up (compile, allocate)
        cells = adata.copy()
        _synchronize(device)
        start = time.perf_counter()
        ss.pp.attributions(cells, model, key_added="attr", **options)
        _synchronize(device)
        seconds = time.perf_counter() - start
        layer = cells.layers["attr"]
        sums = np.asarray(layer.sum(axis=1)).ravel()
        row[f"{method}_cells_per_s"] = round(adata.n_obs / seconds, 1)
        row[f"{method}_seconds"] = round(seconds, 3)
        row[f"{method}_batch_size"] = kwargs.get("batch_size") or _engine._default_batch_size(
            model, torch.device(device), method
        )
        row[f"{method}_rows_sum_to_target"] = bool(np.allclose(sums[sums > 0], 1000, rtol=1e-3))
        row["precision"] = cells.uns["sigscan"]["attributions"]["attr"]["precision"]
        layers[method] = layer
    return row, layers


def agreement(a, b) -> dict:
    """Max |difference| and per-cell Pearson (minimum, median) of two attribution layers (1000-scaled rows)."""
    a, b = a.toarray().astype(np.float64), b.toarray().astype(np.float64)
    keep = (a.sum(1) > 0) & (b.sum(1) > 0)
    r = np.array([np.corrcoef(x, y)[0, 1] for x, y in zip(a[keep], b[keep], strict=True)])
    return {
        "max_abs_diff": round(float(np.abs(a - b).max()), 4),
        "mean_per_cell_max_abs_diff": round(float(np.abs(a - b).max(axis=1).mean()), 4),
        "min_pearson": round(float(r.min()), 6),
        "median_pearson": round(float(np.median(r)), 6),
    }


def scimilarity_rows(args, sizes: dict) -> tuple[list[dict], dict]:
    """SCimilarity-architecture IG/DL/IxG rows, the bf16 IG row, and bf16's error against float32."""
    import sigscan as ss

    if args.quick:
        spec = sizes["scimilarity"]
        genes = pbmc_gene_order(spec["genes"])
        model = ss.models.SCimilarity.random(
            genes, hidden_dim=spec["hidden_dim"], latent_dim=spec["latent_dim"], random_state=0
        )
    else:
        from attributions import _model_dir  # the SPEC 7 model folder, written once

        model = ss.models.SCimilarity(_model_dir())
    adata = benchmark_cells(sizes["cells"])
    name = f"SCimilarity architecture {model.n_genes} genes (random weights)"
    row, layers = throughput(name, model, adata, device=args.device, methods=("ig", "dl", "ixg"))
    bf16_row, bf16_layers = throughput(name, model, adata, device=args.device, methods=("ig",), precision="bf16")
    error = {"method": "ig", "cells": adata.n_obs, **agreement(layers["ig"], bf16_layers["ig"])}
    return [row, bf16_row], error


def scvi_row(args, sizes: dict) -> dict:
    """scVI (trained briefly on PBMC3k counts) IG and IxG, or why the row is skipped."""
    try:
        import scvi
    except ImportError:
        return {"model": "scVI", "skipped": "scvi-tools is not installed (pip install 'sigscan[scvi]')"}
    import warnings

    import sigscan as ss

    spec = sizes.get("scvi", {"n_hidden": 128, "n_latent": 10, "max_epochs": 1})
    train = benchmark_cells(2000 if not args.quick else 64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scvi.settings.seed = 0
        scvi.settings.dl_num_workers = 0
        scvi.model.SCVI.setup_anndata(train)
        trained = scvi.model.SCVI(train, n_hidden=spec["n_hidden"], n_latent=spec["n_latent"])
        accelerator = "gpu" if args.device.startswith("cuda") else "cpu"
        trained.train(max_epochs=spec["max_epochs"], accelerator=accelerator, enable_progress_bar=False, logger=False)
    model = ss.models.SCVI(trained)
    adata = benchmark_cells(sizes["scvi_cells"])
    row, _ = throughput("scVI (1 epoch on PBMC3k)", model, adata, device=args.device, methods=("ig", "ixg"))
    return row


def transformer_and_sctab_rows(args, sizes: dict) -> list[dict]:
    """scGPT, scFoundation and SSL-scTab rows (sizes of benchmarks/scgpt.py and benchmarks/foundation.py)."""
    import foundation
    import scgpt

    import sigscan as ss

    def size(key: str, full_spec: dict, full_genes: int) -> tuple[dict, list[str]]:
        """The model's constructor arguments and genes: the --quick size or the full benchmark's."""
        spec = dict(sizes[key]) if args.quick else dict(full_spec)
        return spec, pbmc_gene_order(spec.pop("genes") if args.quick else full_genes)

    rows = []
    spec, genes = size("scgpt", scgpt.SIZE, scgpt.N_GENES)
    model = ss.models.ScGPT.random(genes, **spec, random_state=0, min_gene_overlap=1)
    name = f"scGPT {spec['nlayers']} layers × {spec['embsize']} (random weights)"
    cells = benchmark_cells(sizes["scgpt_cells"])
    # IG with benchmarks/scgpt.py's reduced step count (its cost is linear in n_steps; the row records it)
    row, _ = throughput(name, model, cells, device=args.device, methods=("ixg", "ig"), n_steps=scgpt.N_STEPS)
    rows.append(row)

    spec, genes = size("scfoundation", foundation.SCF_SIZE, foundation.SCF_GENES)
    model = ss.models.ScFoundation.random(genes, **spec, random_state=0, min_gene_overlap=1)
    name = f"scFoundation reduced: {spec['depth']} layers × {spec['hidden_dim']} (random weights)"
    row, _ = throughput(name, model, benchmark_cells(sizes["scf_cells"]), device=args.device, methods=("ixg", "ig"))
    rows.append(row)

    spec, genes = size("sctab", {"units": foundation.SCTAB_UNITS}, foundation.SCTAB_GENES)
    model = ss.models.ScTabSSL.random(genes, **spec, random_state=0, min_gene_overlap=1)
    name = f"SSL-scTab {model.n_genes} → {'→'.join(map(str, spec['units']))} (random weights)"
    row, _ = throughput(name, model, benchmark_cells(sizes["sctab_cells"]), device=args.device, methods=("ig", "ixg"))
    rows.append(row)
    return rows


def machine(device: str) -> dict:
    """What the figures were measured on."""
    info = {
        "device": device,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_threads": torch.get_num_threads(),
    }
    if device.startswith("cuda"):
        free, total = torch.cuda.mem_get_info(torch.device(device))
        info |= {
            "gpu": torch.cuda.get_device_name(torch.device(device)),
            "gpu_memory_gb": round(total / 1e9, 1),
            "gpu_free_gb": round(free / 1e9, 1),
        }
    return info


def run(args) -> dict:
    """The whole table as one dict (what is written to the JSON)."""
    from sigscan import _engine

    if args.device == "cpu":
        _engine.TORCH_KERNELS_ON_CPU = True  # the device branch of the fast path, on CPU
    sizes = QUICK if args.quick else FULL
    if args.cells:
        sizes = {**sizes, "cells": args.cells}
    start = time.perf_counter()
    rows, bf16_error = scimilarity_rows(args, sizes)
    if not args.scimilarity_only:
        rows.append(scvi_row(args, sizes))
        rows.extend(transformer_and_sctab_rows(args, sizes))
    ig = rows[0]["ig_cells_per_s"]
    return {
        "machine": machine(args.device),
        "quick": bool(args.quick),
        "rows": rows,
        "bf16_vs_float32": bf16_error,
        "goal": {
            "ig_cells_per_s": ig,
            "spec_goal_cells_per_s": GOAL_IG_CELLS_PER_S,
            "fraction_of_goal": round(ig / GOAL_IG_CELLS_PER_S, 4),
            "meets_goal": ig >= GOAL_IG_CELLS_PER_S,
        },
        "seconds_total": round(time.perf_counter() - start, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (cpu forces the device branch)")
    parser.add_argument("--quick", action="store_true", help="tiny models and a few cells (a smoke run)")
    parser.add_argument("--cells", type=int, default=None, help="SCimilarity cells (default 50,000; --quick 48)")
    parser.add_argument("--scimilarity-only", action="store_true", help="only the SCimilarity rows and bf16 error")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/_out/gpu.json)")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("no CUDA device here; run with --device cpu --quick for the CPU smoke run")
    result = run(args)
    out = Path(args.out) if args.out else workdir() / "gpu.json"
    partial = out.with_name(out.name + ".partial")
    partial.write_text(json.dumps(result, indent=1, ensure_ascii=False))
    partial.replace(out)
    print(json.dumps(result, indent=1, ensure_ascii=False))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
