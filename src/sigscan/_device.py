"""Which torch device a run uses (``"auto"``: CUDA, then MPS, then CPU), with errors that name the fix."""

from __future__ import annotations

import torch


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` → CUDA, then MPS, then CPU."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device not in {"cpu", "cuda", "mps"} and not device.startswith("cuda:"):
        raise ValueError(f"Unknown device {device!r}; use 'auto', 'cpu', 'cuda' or 'mps'.")
    resolved = torch.device(device)
    mps = getattr(torch.backends, "mps", None)
    available = {
        "cpu": True,
        "cuda": torch.cuda.is_available() and (resolved.index or 0) < torch.cuda.device_count(),
        "mps": mps is not None and mps.is_available(),
    }[resolved.type]
    if not available:
        raise ValueError(f"Device {device!r} is not available on this machine; use device='auto' or 'cpu'.")
    return resolved
