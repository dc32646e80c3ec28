"""Inference engines behind one interface: a callable ``(B,3,h,w)`` float32 in [0,1] → the same,
float32 in [0,1], on the engine's device.

- :class:`TorchEngine`: the network in PyTorch (CUDA, training, and the reference for parity);
  autocast where the precision is native (:mod:`fastnst.devices`).
- :class:`OpenVINOEngine`: the same weights through OpenVINO on a CPU. Measured on the project's
  CPUs (``benchmarks/speed.py``), it runs the style networks 1.7–4× faster than PyTorch eager.

An OpenVINO model is converted once per (network, input shape) straight from the torch module
(``openvino.convert_model``) and kept in the user cache folder (:func:`cache_root`), keyed by the
weights' content hash, the architecture, the shape and the OpenVINO version. Every model is checked
against PyTorch on a fixed test frame when it is built or loaded from the cache (≥ :data:`MIN_PSNR` dB):
a stale or corrupt cache entry is rebuilt, and a model that still disagrees is not used. Cache entries
are folders written under a temporary name and renamed into place, so two processes converting the
same style at once each end with a whole entry and never see half of one.

:func:`make_engine` picks: ``auto`` is OpenVINO on a CPU when it is installed and works, PyTorch
elsewhere; when OpenVINO cannot be used the reason is kept in :attr:`Engine.note` (one line for the
user), never raised.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import os
import shutil
import uuid
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .devices import autocast, cpu_has_native_bf16
from .errors import FastNSTError
from .options import ENGINES

# Agreement with PyTorch a converted model must reach on the test frame. bf16 inference (OpenVINO's
# default on CPUs with AVX512-BF16/AMX) measured 45–52 dB on the shipped styles; fp32 above 90 dB.
MIN_PSNR = 40.0
CACHE_VERSION = "3"  # bump when what a cache entry holds changes (3: the video nets' tent as convolutions)
MODEL_FILES = ("model.xml", "model.bin")
MANIFEST = "manifest.json"  # the SHA-256 of each of MODEL_FILES, written with them


def cache_root() -> Path:
    """Where converted models are kept: ``openvino/`` in fastnst's cache folder
    (``$FASTNST_HOME``, else ``$XDG_CACHE_HOME/fastnst`` or ``~/.cache/fastnst``)."""
    from .vgg import cache_dir

    return cache_dir() / "openvino"


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Peak signal-to-noise ratio (dB) of two images in [0,1]; ``inf`` when equal."""
    mse = float((a.float() - b.float()).pow(2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def parity_frame(shape: tuple[int, ...]) -> torch.Tensor:
    """A fixed ``(B,3,h,w)`` (or a video network's ``(B,7,h,w)``) frame in [0,1] with smooth regions, edges and fine texture, so parity is
    checked where style networks do their work (the same bytes on every machine)."""
    b, _, h, w = shape
    y, x = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    g = torch.Generator().manual_seed(0)
    base = torch.stack([x, y, 0.5 + 0.4 * torch.sin(12 * (x + y))])
    base = base + 0.25 * ((x > 0.5) ^ (y > 0.4)).float() + 0.05 * torch.rand(3, h, w, generator=g)
    frame = base.clamp(0, 1)
    if shape[1] == 7:  # a video network's input: a prior (the frame mirrored) trusted on a soft half
        mask = (1.5 - 2 * x).clamp(0, 1)[None]
        frame = torch.cat([frame, frame.flip(-1) * mask, mask])
    return frame.expand(b, *frame.shape).contiguous()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def weights_key(net: nn.Module) -> str:
    """A content hash of ``net``'s architecture and weights (what a conversion depends on)."""
    h = hashlib.sha256()
    arch = getattr(net, "arch", None)
    h.update(json.dumps(arch.to_dict() if arch is not None else type(net).__name__, sort_keys=True).encode())
    for name, t in net.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


class TorchEngine:
    """The network in PyTorch on ``device``: CUDA half precision by converted weights, CPU bf16 by
    autocast (ops without a bf16 kernel keep working); channels-last where asked (cuDNN)."""

    name = "torch"

    def __init__(self, net: nn.Module, device: torch.device, dtype: torch.dtype, *, channels_last: bool = False,
                 compile: bool | str = False) -> None:
        self.device, self.dtype, self.channels_last = device, dtype, channels_last
        weights_dtype = dtype if device.type == "cuda" else torch.float32
        net = net.eval().requires_grad_(False).to(device, weights_dtype)
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
        self.net = net
        self.note = ""
        self._forward = torch.compile(net, mode=compile if isinstance(compile, str) else None,
                                      dynamic=True) if compile else net
        self._graphs = compile == "reduce-overhead"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        x = x.to(next(self.net.parameters()).dtype).contiguous(memory_format=fmt)
        with autocast(self.device, None if self.device.type == "cuda" else self.dtype):
            try:
                y = self._forward(x)
            except Exception as exc:  # only a compiled forward is retried
                if self._forward is self.net:
                    raise
                y = self._uncompiled(exc, x)
        if self._graphs:
            y = y.clone()  # CUDA graphs reuse their output buffer: the next call would overwrite this one
        return y.float().clamp_(0, 1)

    def _uncompiled(self, exc: Exception, x: torch.Tensor) -> torch.Tensor:
        """The eager network from now on: ``--compile`` is a speed-up, and a compiler that fails on
        this machine (seen: Inductor of a CUDA image's torch 2.11 against its sympy) must not stop a
        video. The reason goes into :attr:`note`; an error of the network itself is raised again."""
        msg = str(exc).strip().splitlines()[-1][:200] if str(exc).strip() else type(exc).__name__
        self.note = f"torch.compile failed ({type(exc).__name__}: {msg}); running the network uncompiled"
        self._forward, self._graphs = self.net, False
        return self.net(x)


def import_openvino():
    """``openvino``, imported without its usage telemetry. ``import openvino`` imports its model
    converter, which reports the import to Google Analytics unless the user opted out: from a child
    process forked off a thread, which deadlocked a test run here on the resolver's lock (stack read with
    gdb). A stylizer has no business reporting its users; with
    ``openvino_telemetry`` unimportable, OpenVINO uses its own no-op stub (``ovc.telemetry_stub``).
    A process that imported the telemetry before us keeps it."""
    import sys

    sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]
    import openvino

    return openvino


def openvino_available() -> str:
    """"" when OpenVINO can be imported, else why not (one line)."""
    try:
        import_openvino()
    except Exception as exc:  # noqa: BLE001 - a broken install raises more than ImportError
        return f"OpenVINO is not usable ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    return ""


# OpenVINO's CPU plugin (2026.4.1, on a Zen 5 with AVX512-BF16) never finished compiling a depthwise
# convolution 15 or more wide in bf16 (13 wide: 0.1 s; 15, 16 and 17: not within 25 s; in f32: 0.1 s). A
# video network's tent is 2k-1 wide (carry k), so one with carry 9 or more is compiled in f32.
MAX_BF16_TENT = 13


class OpenVINOEngine:
    """The network through OpenVINO on the CPU, one compiled model per input shape (see the module
    docstring for the cache and the parity check). ``precision``: ``"bf16"``, ``"f32"`` or None
    (OpenVINO's default for this CPU); ``threads``: OpenVINO's thread count (0: its own choice)."""

    name = "openvino"

    def __init__(self, net: nn.Module, *, precision: str | None = None, threads: int = 0,
                 cache: Path | None = None) -> None:
        ov = import_openvino()

        self.net = net.eval().requires_grad_(False).to("cpu", torch.float32)
        self.ov, self.core = ov, ov.Core()
        with contextlib.suppress(Exception):  # older OpenVINO: no such property, and mmap stays on
            self.core.set_property({"ENABLE_MMAP": False})  # the models are small; a mapped file can change
        self.note = ""
        tent = getattr(self.net, "tent", None)
        if precision != "f32" and tent is not None and tent.shape[-1] > MAX_BF16_TENT:
            precision = "f32"  # None is bf16 too, where the CPU has it
            self.note = f"OpenVINO cannot compile this network's {tent.shape[-1]}-px tent filter in bf16; running it in f32"
        self.precision, self.threads = precision, threads
        self.cache = cache_root() if cache is None else Path(cache)
        self.key = weights_key(self.net)
        self.parity: dict[tuple[int, ...], float] = {}  # PSNR against torch per compiled shape
        self._requests: dict[tuple[int, ...], object] = {}

    # -- the cache -------------------------------------------------------------------------------------

    def entry(self, shape: tuple[int, ...]) -> Path:
        """The cache folder of this network at ``shape``: it changes with the weights, the shape, the
        OpenVINO version and :data:`CACHE_VERSION`."""
        tag = f"{self.key}|{'x'.join(map(str, shape))}|{self.ov.__version__}|{CACHE_VERSION}"
        return self.cache / hashlib.sha256(tag.encode()).hexdigest()[:32]

    def _convert(self, shape: tuple[int, ...], dest: Path) -> None:
        """Convert the torch module at ``shape`` and save it as ``dest/model.xml`` (+ ``.bin``): written
        in a temporary folder, renamed into place; a concurrent writer's entry is kept as it is."""
        with warnings.catch_warnings():  # torch.jit's tracer warnings are about this tracing, not the user's input
            warnings.simplefilter("ignore")
            # a copy: OpenVINO's tracer works on the module it is given; the engine's own net stays untouched
            model = self.ov.convert_model(copy.deepcopy(self.net), example_input=torch.zeros(shape), input=[shape])
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.parent / f".{dest.name}.{uuid.uuid4().hex[:8]}.part"
        try:
            self.ov.save_model(model, str(tmp / "model.xml"), compress_to_fp16=False)
            (tmp / MANIFEST).write_text(json.dumps({name: _sha256(tmp / name) for name in MODEL_FILES}))
            with contextlib.suppress(FileExistsError, OSError):
                os.rename(tmp, dest)  # fails when another process got there first: use theirs
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @staticmethod
    def intact(entry: Path) -> bool:
        """Whether ``entry`` holds the files its conversion wrote, byte for byte (its manifest's hashes).
        Checked before OpenVINO sees them, so a truncated or rewritten file is rebuilt without OpenVINO
        ever parsing it (it reads the weights' offsets from the xml and trusts the bin to hold them)."""
        try:
            manifest = json.loads((entry / MANIFEST).read_text())
            return all(manifest.get(name) == _sha256(entry / name) for name in MODEL_FILES)
        except (OSError, ValueError, AttributeError):
            return False

    def _compile(self, entry: Path):
        config = {"PERFORMANCE_HINT": "LATENCY"}
        if self.precision:
            config["INFERENCE_PRECISION_HINT"] = self.precision
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = int(self.threads)
        return self.core.compile_model(self.core.read_model(str(entry / "model.xml")), "CPU", config)

    def _check(self, compiled, shape: tuple[int, ...]) -> float:
        x = parity_frame(shape)
        with torch.inference_mode():
            ref = self.net(x)
        out = torch.from_numpy(np.asarray(compiled.create_infer_request().infer({0: x.numpy()})[0]))
        return psnr(out.clamp(0, 1), ref)

    def _build(self, shape: tuple[int, ...]):
        """A checked infer request for ``shape``: from the cache, else (or when the cached one is
        unreadable or disagrees with torch) converted afresh. Raises FastNSTError when even a fresh
        conversion disagrees."""
        entry = self.entry(shape)
        for fresh in (False, True):
            if fresh or not self.intact(entry):
                shutil.rmtree(entry, ignore_errors=True)
                self._convert(shape, entry)
            try:
                compiled = self._compile(entry)
                score = self._check(compiled, shape)
            except Exception:
                if fresh:
                    raise
                continue
            if score >= MIN_PSNR:
                self.parity[shape] = score
                return compiled.create_infer_request()
            if fresh:
                raise FastNSTError(f"OpenVINO's result differs from PyTorch's ({score:.1f} dB PSNR, "
                                   f"below {MIN_PSNR:g})")
        raise AssertionError("unreachable")

    def request(self, shape: tuple[int, ...]):
        if shape not in self._requests:
            self._requests[shape] = self._build(shape)
        return self._requests[shape]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        shape = tuple(x.shape)
        out = self.request(shape).infer({0: x.to("cpu", torch.float32).contiguous().numpy()})[0]
        return torch.from_numpy(np.array(out, dtype=np.float32, copy=True)).clamp_(0, 1)


class FallbackEngine:
    """OpenVINO with PyTorch behind it: the first failure of OpenVINO at a new shape (conversion,
    compilation, parity) moves the stream to PyTorch for good, with the reason in :attr:`note`."""

    def __init__(self, primary: OpenVINOEngine, fallback: TorchEngine) -> None:
        self.primary, self.fallback = primary, fallback
        self.current: OpenVINOEngine | TorchEngine = primary
        self._why = ""

    @property
    def name(self) -> str:
        return self.current.name

    @property
    def note(self) -> str:
        """Why PyTorch took over, else what OpenVINO changed (:attr:`OpenVINOEngine.note`), else ``""``."""
        return self._why or self.primary.note

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.current is self.primary:
            try:
                return self.primary(x)
            except Exception as exc:  # noqa: BLE001 - any OpenVINO failure: keep going on PyTorch
                msg = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
                self._why = f"OpenVINO could not run this network ({msg}); running it with PyTorch"
                self.current = self.fallback
        return self.fallback(x)


def ov_precision(dtype: torch.dtype) -> str:
    """OpenVINO's precision hint for the dtype chosen by :func:`fastnst.devices.parse_dtype`."""
    return "bf16" if dtype == torch.bfloat16 and cpu_has_native_bf16() else "f32"


def make_engine(net: nn.Module, engine: str, device: torch.device, dtype: torch.dtype, *,
                channels_last: bool = False, compile: bool | str = False, threads: int = 0):
    """The engine ``engine`` (one of :data:`ENGINES`) names for ``net`` on ``device``; see the module
    docstring for ``auto``. Asking for ``openvino`` on a GPU, or where it is not installed, is an error."""
    if engine not in ENGINES:
        raise FastNSTError(f"Unknown engine {engine!r}; use one of {', '.join(ENGINES)}.")
    if engine == "openvino" and device.type != "cpu":
        raise FastNSTError(f"--engine openvino runs on the CPU, not on {device}; use --device cpu.")
    torch_engine = TorchEngine(net, device, dtype, channels_last=channels_last, compile=compile)
    if engine == "torch" or device.type != "cpu" or compile:
        return torch_engine
    why = openvino_available()
    if why:
        if engine == "openvino":
            raise FastNSTError(f"{why}: install it with `pip install openvino`, or use --engine torch.")
        torch_engine.note = f"{why}; running the network with PyTorch"
        return torch_engine
    ov_engine = OpenVINOEngine(net, precision=ov_precision(dtype), threads=threads)
    return FallbackEngine(ov_engine, torch_engine)


__all__ = [
    "ENGINES",
    "MAX_BF16_TENT",
    "MIN_PSNR",
    "FallbackEngine",
    "OpenVINOEngine",
    "TorchEngine",
    "cache_root",
    "import_openvino",
    "make_engine",
    "openvino_available",
    "parity_frame",
    "psnr",
    "weights_key",
]
