"""Choosing the compute device once, at the edge, and the autocast context that follows from it."""

from __future__ import annotations

import contextlib

import torch

from .errors import FastNSTError


def pick_device(name: str | None = None) -> torch.device:
    """Resolve ``"auto"``/``None`` to CUDA when present, else CPU; validate an explicit name.

    >>> pick_device("cpu")
    device(type='cpu')
    """
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise FastNSTError(f"Unknown device {name!r}; use 'cpu', 'cuda', 'cuda:N' or 'auto'.") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise FastNSTError(f"Device {name!r} was asked for, but this PyTorch build sees no CUDA GPU.")
    return device


def autocast(device: torch.device, dtype: torch.dtype | None):
    """Mixed precision on CUDA; a no-op context on CPU or when ``dtype`` is None/float32."""
    if dtype is None or dtype == torch.float32 or device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=dtype)
