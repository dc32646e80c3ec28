"""Exporting a style network for deployment without fastnst: ONNX (opset ≥ 17) and ``torch.export`` (.pt2).

The exported model has the :class:`fastnst.Stylizer` tensor convention: input ``(B,3,H,W)`` float32
RGB in ``[0,1]``, output the same shape, clamped to ``[0,1]`` inside the graph. A video network's
input has 7 channels (:func:`fastnst.models.video_input`): the frame, its previous output carried
along the motion times the trust mask, and the mask; zeros in the last 4 paint a frame from nothing.
Batch, height and width are dynamic; the network's pad-to-a-multiple-of-4 (8 after the unshuffle
stem of ``lite`` and ``video``) runs inside the graph, so any ``H, W ≥ MIN_SIDE`` works (above 8 px
for the unshuffle stem).

Why a wrapper instead of exporting :class:`~fastnst.models.TransformerNet` as is: its ``forward``
chooses the padding with Python ``if``/``max`` on the input size, which a tracer freezes to the
example's size (a model exported at 64×96 would then mis-pad 61×97 inputs), and its final slice
makes ``torch.export`` guard on "padding is non-zero". :class:`ExportNet` computes the same padding
with arithmetic only and crops with ``index_select``, so one graph serves every size.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .errors import FastNSTError
from .fileio import atomic_path, cannot_write, check_name, check_writable, refuse_existing
from .options import DEFAULT_OPSET

SUFFIXES = (".onnx", ".pt2")

# The first layer's 9×9 reflection pad needs more than 4 px; the graph has no replicate fallback.
MIN_SIDE = 5
INPUT_NAME, OUTPUT_NAME = "input", "output"


class ExportNet(nn.Module):
    """A :class:`TransformerNet` made export-friendly: ``(B,3,H,W)`` float32 ``[0,1]`` → same shape,
    clamped to ``[0,1]``; ``H, W ≥ MIN_SIDE``. Numerically the net's eval-mode ``forward``."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        arch = getattr(net, "arch", None)
        self.channels = arch.in_channels if arch is not None else 3  # 7 for a video network
        self.multiple = arch.multiple if arch is not None else 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        # (-h) % m equals TransformerNet's max((-h) % m, 2m - h) for every h > m, without a branch
        # (m = 4, or 8 after an unshuffle stem).
        m = self.multiple
        x = F.pad(x, (0, (-w) % m, 0, (-h) % m), mode="reflect")
        n = self.net
        y = n.decoder(n.residuals(n.encoder(x)))
        if self.channels == 7:  # a video network keeps part of its prior (TransformerNet.keep_prior)
            y = n.keep_prior(y, x)
        y = y.clamp(0.0, 1.0)
        rows = torch.arange(h, device=y.device)
        cols = torch.arange(w, device=y.device)
        return y.index_select(2, rows).index_select(3, cols)


@dataclass
class ExportResult:
    """What :func:`export_style` wrote. ``psnr`` maps a checked input size ``(H, W)`` to the exported
    model's PSNR (dB) against PyTorch's output; empty when no runtime was available to check."""

    path: Path
    format: str
    style_name: str
    opset: int | None = None
    psnr: dict[tuple[int, int], float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _check_output(path: Path, force: bool) -> str:
    check_name(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise FastNSTError(f"Cannot export to {suffix or 'a file without an extension'}; use .onnx or .pt2.")
    if path.is_dir():
        raise FastNSTError(f"Output {path} is a folder; give a file name such as {path / 'model'}{suffix}.")
    refuse_existing(path, force)
    check_writable(path)
    return suffix


def _example(batch: int = 2, h: int = 61, w: int = 97, channels: int = 3) -> torch.Tensor:
    # Batch 2 and sizes not a multiple of 4: sizes of 1 or padding of 0 would be specialised by export.
    return torch.rand(batch, channels, h, w, generator=torch.Generator().manual_seed(0))


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two images in ``[0,1]`` (capped at 200 dB for identical images)."""
    mse = float(((a.double() - b.double()) ** 2).mean())
    return 200.0 if mse <= 1e-20 else float(10 * torch.log10(torch.tensor(1.0 / mse)))


def opset_range() -> tuple[int, int, int]:
    """``(lowest, highest by the TorchScript exporter, highest)`` ONNX opset this PyTorch exports:
    17 is the first with LayerNormalization; above the TorchScript exporter's highest, torch's newer
    exporter (which needs onnxscript) is the only one."""
    try:
        from torch.onnx import _constants as c

        legacy = int(getattr(c, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", 20))
        return 17, legacy, max(legacy, int(getattr(c, "ONNX_MAX_OPSET", legacy)))
    except ImportError:  # a private module: assume what torch 2.5-2.14 say
        return 17, 20, 20


def _check_onnx_request(opset: int) -> None:
    """Refuse an opset out of range or a missing package before anything is loaded or written (the
    TorchScript exporter prints its whole graph to stdout before it rejects an opset)."""
    low, legacy, high = opset_range()
    if not low <= opset <= high:
        raise FastNSTError(f"--opset must be from {low} to {high} (what this PyTorch exports), got {opset}.")
    needed = ("onnx", "onnxscript") if opset > legacy else ("onnx",)  # torch.onnx writes through onnx
    missing = [name for name in needed if not _importable(name)]
    if missing:
        why = "" if missing == ["onnx"] else f" (opsets above {legacy} need torch's newer exporter)"
        raise FastNSTError(f"Exporting to ONNX needs the {' and '.join(missing)} package{'s' if len(missing) > 1 else ''}"
                           f"{why}: pip install 'fastnst[onnx]'.")


def _importable(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True


def _first_line(exc: BaseException) -> str:
    """An exporter's error, short: torch's can hold the whole graph and every weight."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return text if len(text) <= 200 else text[:200] + "…"


def _export_onnx(model: ExportNet, opset: int) -> bytes:
    """The ONNX model's bytes; built in memory, so the file name (which torch's exporter takes only as
    UTF-8 text) plays no part."""
    dyn = {0: "batch", 2: "height", 3: "width"}
    kwargs = {"opset_version": opset, "input_names": [INPUT_NAME], "output_names": [OUTPUT_NAME],
              "dynamic_axes": {INPUT_NAME: dyn, OUTPUT_NAME: dyn}}
    legacy_error: Exception | None = None
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated but needs no onnxscript and takes seconds, not half a
        # minute; the graph is traced from arithmetic on the input size, so it stays dynamic.
        warnings.simplefilter("ignore")
        if opset <= opset_range()[1]:
            buffer = io.BytesIO()
            try:
                torch.onnx.export(model, (_example(channels=model.channels),), buffer, dynamo=False, **kwargs)
                return buffer.getvalue()
            except (TypeError, RuntimeError, NotImplementedError) as exc:
                legacy_error = exc
            if not _importable("onnxscript"):
                raise FastNSTError(f"ONNX export failed ({_first_line(legacy_error)}).") from legacy_error
        try:
            d = torch.export.Dim.DYNAMIC
            program = torch.onnx.export(model, (_example(channels=model.channels),), dynamo=True,
                                        opset_version=opset,
                                        input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                        dynamic_shapes={"x": {0: d, 2: d, 3: d}}, verbose=False)
            return program.model_proto.SerializeToString()
        except Exception as exc:
            first = f"{_first_line(legacy_error)}; then " if legacy_error else ""
            raise FastNSTError(f"ONNX export failed ({first}{_first_line(exc)}).") from exc


def _add_onnx_metadata(data: bytes, meta: dict[str, str]) -> bytes:
    import onnx  # checked to be there before the export (_check_onnx_request)

    model = onnx.load_from_string(data)
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _onnx_runner(data: bytes):
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run(None, {INPUT_NAME: x.numpy()})[0])


def _export_pt2(model: ExportNet, tmp: Path) -> None:
    d = torch.export.Dim.DYNAMIC
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            program = torch.export.export(model, (_example(channels=model.channels),),
                                          dynamic_shapes={"x": {0: d, 2: d, 3: d}})
        except Exception as exc:
            raise FastNSTError(f"torch.export could not capture this network ({type(exc).__name__}).") from exc
        # Saved to memory, then written: torch's zip writer aborts the process (a C++ exception in a
        # destructor) when the disk fills up under it.
        buffer = io.BytesIO()
        torch.export.save(program, buffer)
    tmp.write_bytes(buffer.getvalue())


def _pt2_runner(path: Path):
    module = torch.export.load(io.BytesIO(path.read_bytes())).module()  # a path must be UTF-8 there
    return lambda x: module(x).detach()


def export_style(style, output: str | os.PathLike, *, force: bool = False, opset: int = DEFAULT_OPSET,
                 check_sizes: tuple[tuple[int, int], ...] = ((72, 128), (61, 97))) -> ExportResult:
    """Export a style network (name, ``.safetensors`` path, :class:`~fastnst.styles.StyleModel` or
    :class:`~fastnst.models.TransformerNet`) to ``output`` (``.onnx`` or ``.pt2``), fp32 on the CPU.

    The file is written under a temporary name, checked (the exported model is run at
    ``check_sizes`` and compared with PyTorch: below 40 dB PSNR it is rejected; ONNX is checked only
    when onnxruntime is installed), then renamed. An existing ``output`` is refused unless ``force``.
    """
    from .styles import StyleModel, load_style

    path = Path(output)
    suffix = _check_output(path, force)
    if suffix == ".onnx":
        _check_onnx_request(opset)
    if isinstance(style, StyleModel):
        net, name = style.net, style.name
    elif isinstance(style, nn.Module):
        net, name = style, type(style).__name__
    else:
        loaded = load_style(style, device="cpu")
        net, name = loaded.net, loaded.name
    import copy

    model = ExportNet(copy.deepcopy(net).float().cpu().eval().requires_grad_(False)).eval()
    result = ExportResult(path, suffix[1:], name, opset if suffix == ".onnx" else None)
    try:
        _write_checked(model, path, suffix, opset, check_sizes, result)
    except OSError as exc:  # a full disk or a folder that went away while writing
        raise cannot_write(path, exc) from exc
    return result


def _write_checked(model: ExportNet, path: Path, suffix: str, opset: int, check_sizes, result: ExportResult) -> None:
    name = result.style_name
    with atomic_path(path) as tmp:  # renamed only once written and checked; deleted on any error
        if suffix == ".onnx":
            from . import __version__

            data = _add_onnx_metadata(_export_onnx(model, opset), {
                "style_name": name, "fastnst_version": __version__, "convention": "RGB float32 [0,1] NCHW in and out" if model.channels == 3 else
                "video network: in 7 channels float32 NCHW (RGB frame [0,1], previous output carried along "
                "the motion × trust mask, trust mask [0,1]), out RGB float32 [0,1]"})
            tmp.write_bytes(data)
            run = _onnx_runner(data)
            if run is None:
                result.notes.append("onnxruntime is not installed: the exported model was not run")
        else:
            _export_pt2(model, tmp)
            run = _pt2_runner(tmp)
        if run is not None:
            _check_parity(model, run, check_sizes, result)


def _check_parity(model: ExportNet, run, sizes, result: ExportResult) -> None:
    for h, w in sizes:
        x = _example(1, h, w, model.channels)
        with torch.inference_mode():
            ref = model.net(x)
        got = run(x)
        if tuple(got.shape) != tuple(ref.shape):
            raise FastNSTError(f"The exported model returned shape {tuple(got.shape)} for {tuple(x.shape)}.")
        result.psnr[(h, w)] = psnr(got, ref)
        if result.psnr[(h, w)] < 40:
            raise FastNSTError(f"The exported model differs from PyTorch at {w}x{h} "
                               f"(PSNR {result.psnr[(h, w)]:.1f} dB < 40); nothing was written.")


__all__ = ["DEFAULT_OPSET", "MIN_SIDE", "SUFFIXES", "ExportNet", "ExportResult", "export_style", "psnr"]
