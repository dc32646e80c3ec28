"""Choosing the compute device and precision once, at the edge, and the autocast context that follows.

Precision rules (measured, see PITFALLS.md): bf16 autocast only where the hardware computes bf16
natively — CPUs with AVX512-BF16 or AMX, CUDA GPUs of compute capability ≥ 8 — because elsewhere it is
emulated and slower than fp32; fp16 on other CUDA GPUs; fp32 on every other CPU.
"""

from __future__ import annotations

import contextlib
import functools
import platform
from pathlib import Path

import torch

from .errors import FastNSTError

_DTYPES = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16, "float16": torch.float16,
           "half": torch.float16, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}


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
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise FastNSTError(f"Device {name!r} was asked for, but only {torch.cuda.device_count()} CUDA GPU(s) exist.")
    return device


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        key = line.split(":", 1)[0].strip().lower()
        if key in ("flags", "features"):  # x86 / aarch64
            return set(line.split(":", 1)[1].split())
    return set()


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True when this CPU computes bf16 in hardware (x86 AVX512-BF16 or AMX-BF16, Arm BF16).

    Asks PyTorch's own CPU probe first (it is what oneDNN will use), then the kernel's flag list.
    """
    probe = getattr(torch._C, "_cpu", None)
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        fn = getattr(probe, name, None)
        if fn is not None:
            try:
                if fn():
                    return True
            except Exception:  # noqa: BLE001, S110 - a probe that fails means "unknown", i.e. no
                pass
    flags = _cpu_flags()
    if {"avx512_bf16", "amx_bf16"} & flags:
        return True
    return platform.machine().lower() in ("aarch64", "arm64") and "bf16" in flags


def cuda_has_native_bf16(device: torch.device) -> bool:
    """``torch.cuda.is_bf16_supported()`` counts emulation as support; compute capability ≥ 8 does not."""
    return torch.cuda.get_device_capability(device)[0] >= 8


def auto_dtype(device: torch.device) -> torch.dtype:
    """The inference precision "auto" picks: fp16 on CUDA, bf16 on CPUs with native bf16, else fp32."""
    if device.type == "cuda":
        return torch.float16
    return torch.bfloat16 if (device.type == "cpu" and cpu_has_native_bf16()) else torch.float32


def parse_dtype(dtype: torch.dtype | str | None, device: torch.device) -> torch.dtype:
    """``None``/"auto" → :func:`auto_dtype`; names like "fp16" or "bf16" → torch dtypes."""
    if dtype is None or dtype == "auto":
        return auto_dtype(device)
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return _DTYPES[str(dtype).lower()]
    except KeyError as exc:
        raise FastNSTError(f"Unknown precision {dtype!r}; use one of auto, fp32, fp16, bf16.") from exc


def autocast(device: torch.device, dtype: torch.dtype | None):
    """Mixed precision for ``dtype`` on ``device`` (bf16 works on CPU too); a no-op for None/fp32."""
    if dtype is None or dtype == torch.float32:
        return contextlib.nullcontext()
    if device.type == "cpu" and dtype != torch.bfloat16:
        return contextlib.nullcontext()  # CPU autocast is bf16-only in practice; fp16 there is emulated
    return torch.autocast(device_type=device.type, dtype=dtype)
