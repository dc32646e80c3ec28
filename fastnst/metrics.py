"""What a viewer sees, as numbers: temporal warping error, style and content distance (the pictures
that show them — frame grids, error heat maps — are drawn by :mod:`fastnst.pictures`).

**Temporal warping error** (Lai et al. 2018, "Learning Blind Video Temporal Consistency"). For each
pair of consecutive *input* frames ``(I_t, I_{t+1})`` we estimate the optical flow both ways
(OpenCV DIS by default, torchvision RAFT on request), build a trust mask ``M_t`` from a
forward-backward check (occlusions, motion boundaries, pixels that leave the frame:
:func:`fastnst.flow.forward_backward_mask`), and score the *output* frames with

    E_t = Σ_p M_t(p) · (1/3) Σ_c (O_t(p,c) − Ô_{t+1}(p,c))²  /  Σ_p M_t(p),
    Ô_{t+1} = warp(O_{t+1}, flow_{t→t+1})   (output frame t+1 warped back to t),

with RGB in ``[0,1]``: a masked mean over trusted pixels of the squared error *averaged over the
three channels* — the same normalisation as Lai et al.'s ``evaluate_WarpError.py``, whose mask is a
3-channel image and whose denominator therefore counts pixels × channels. ``E_warp`` is the mean of
``E_t`` over pairs. Pairs where fewer than ``min_trusted`` (default 10 %) of the pixels are trusted are
skipped and listed: they are shot cuts (on bikes.mp4 a cut leaves ~1 % trusted, ordinary motion ≥ 48 %),
where a flow is meaningless and one pair would dominate the mean. The same formula applied to
the input frames themselves is the **floor**: what a perfectly consistent "stylization" that copies
the input would score; flow errors, lighting changes and compression noise keep it above 0.

**Style distance**: ``mean_l ‖G_l(O) − G_l(S)‖_F / ‖G_l(S)‖_F`` over VGG19 relu1_1…relu5_1
(:func:`fastnst.losses.style_distance`), with the style image ``S`` resized so its longer side equals
the evaluated frames' (or ``style_size``). **Content distance**: ``‖F(O) − F(I)‖_F / ‖F(I)‖_F`` at
relu4_2. Both are averaged over frames sampled every ``vgg_every`` frames; the input video's own style
distance is reported as what "no stylization" scores.

Frames enter as ``(H,W,3)`` uint8 RGB (what a user sees: stylized outputs are quantised to uint8 like
an encoded video) and are compared as ``(1,3,H,W)`` float in ``[0,1]`` on the chosen device.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np
import torch

from .devices import pick_device
from .errors import FastNSTError
from .fileio import load_safetensors, load_torch_weights, write_json
from .flow import dis_flow, flow_to_tensor, forward_backward_mask, warp
from .images import read_image, resize_to, to_tensor, write_image
from .losses import gram_matrix, style_distance
from .options import FLOW_METHODS
from .perceptual import blend_grams, load_extractor
from .pictures import HeatRow, Spread, error_heatmap, side_by_side_grid

STYLE_LAYERS: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
CONTENT_LAYER = "relu4_2"
EVAL_TAPS: tuple[str, ...] = (*STYLE_LAYERS, CONTENT_LAYER)
# Smallest frame side evaluated: relu5_1 lies behind four 2x2 poolings (16 px → 1), and OpenCV's DIS
# flow refuses images under 12 px.
MIN_EVAL_SIDE = 16

Frame = np.ndarray  # (H,W,3) uint8 RGB
FlowFn = Callable[[Frame, Frame], np.ndarray]  # (prev, next) → (H,W,2) float32, prev(p) ≈ next(p + flow(p))
FrameStylizer = Callable[[Frame], "Frame | torch.Tensor"]


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------


@dataclass
class EvalReport:
    """Figures for one stylized output next to the input video's own (the floor).

    ``e_warp``/``e_warp_input`` are mean squared RGB errors in ``[0,1]`` units (see module docstring);
    ``style_distance*`` and ``content_distance`` are relative (0 = identical statistics/features).
    ``None`` means "not measured" (no stylized output, or no pair/frame to measure on).
    """

    name: str
    input_video: str
    stylized: str | None
    style_image: str
    frames: int
    pairs: int
    size: tuple[int, int]  # (H, W) at which flow and all figures were computed
    stride: int
    flow: str
    e_warp: float | None
    e_warp_input: float | None
    style_distance: float | None
    style_distance_input: float | None
    content_distance: float | None
    vgg_frames: int
    vgg: str
    mask_fraction: float | None  # mean share of trusted pixels over the counted pairs
    skipped_pairs: list[int]  # first frame index of each pair skipped as a shot cut
    seconds: float
    device: str
    notes: list[str] = field(default_factory=list)
    pictures: dict[str, str] = field(default_factory=dict)
    unstabilized: EvalReport | None = None  # the same model without stabilisation, same pass

    @property
    def e_warp_ratio(self) -> float | None:
        """Stylized E_warp over the floor (1 = as stable as the input)."""
        if self.e_warp is None or not self.e_warp_input:
            return None
        return self.e_warp / self.e_warp_input

    def to_dict(self) -> dict:
        d = asdict(self)
        d["size"] = list(self.size)
        d["e_warp_ratio"] = self.e_warp_ratio
        d["unstabilized"] = self.unstabilized.to_dict() if self.unstabilized is not None else None
        return d


def _fmt(x: float | None, spec: str = ".4g") -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def format_report(report: EvalReport) -> str:
    """A small text table: input (floor) vs stylized, for the command line."""
    h, w = report.size
    head = (f"{report.input_video} vs {report.stylized or '(no stylized video: floor only)'}\n"
            f"{report.frames} frames (stride {report.stride}), {report.pairs} pairs, {w}x{h}, flow {report.flow}, "
            f"{report.vgg_frames} VGG frames ({report.vgg}), {report.seconds:.1f} s on {report.device}")
    ratio = report.e_warp_ratio
    rows = [
        ("metric", "input (floor)", "stylized", "stylized/floor"),
        ("E_warp", _fmt(report.e_warp_input), _fmt(report.e_warp), "—" if ratio is None else f"{ratio:.2f}x"),
        ("style distance", _fmt(report.style_distance_input), _fmt(report.style_distance), ""),
        ("content distance", "0", _fmt(report.content_distance), ""),
        ("trusted pixels", _fmt(None if report.mask_fraction is None else 100 * report.mask_fraction, ".1f") + "%",
         "", ""),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [head, ""] + ["  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r))
                          for r in rows]
    if report.unstabilized is not None:
        u = report.unstabilized
        lines.insert(4, "  ".join([
            "E_warp (no stabilisation)".ljust(widths[0]), "".rjust(widths[1]), _fmt(u.e_warp).rjust(widths[2]),
            ("—" if u.e_warp_ratio is None else f"{u.e_warp_ratio:.2f}x").rjust(widths[3])]))
        lines.insert(6, "  ".join(["style (no stabilisation)".ljust(widths[0]), "".rjust(widths[1]),
                                   _fmt(u.style_distance).rjust(widths[2]), "".rjust(widths[3])]))
        lines.insert(8, "  ".join(["content (no stabilisation)".ljust(widths[0]), "".rjust(widths[1]),
                                   _fmt(u.content_distance).rjust(widths[2]), "".rjust(widths[3])]))
    lines += [f"note: {n}" for n in report.notes]
    lines += [f"picture: {p}" for p in report.pictures.values()]
    return "\n".join(lines)


def save_report(reports: EvalReport | Sequence[EvalReport], path: str | os.PathLike) -> Path:
    """Write one report (a JSON object) or several (a JSON list) atomically."""
    data = reports.to_dict() if isinstance(reports, EvalReport) else [r.to_dict() for r in reports]
    return write_json(path, data)


# --------------------------------------------------------------------------------------------------
# Optical flow
# --------------------------------------------------------------------------------------------------


class RaftFlow:
    """torchvision RAFT (``raft_small``/``raft_large``) with weights from a local file only.

    ``weights``: a torchvision ``.pth`` (loaded with ``weights_only=True``) or ``.safetensors`` state
    dict; ``None`` looks for torchvision's own file in the torch hub cache. Nothing is downloaded.
    Called on two ``(H,W,3)`` uint8 RGB frames it returns ``(H,W,2)`` float32 flow, same convention
    as :func:`fastnst.flow.dis_flow`. ``iterations``: RAFT's recurrent refinement steps.
    """

    def __init__(self, variant: str = "raft_small", *, weights: str | os.PathLike | None = None,
                 device: torch.device | str = "cpu", iterations: int = 12) -> None:
        from torchvision.models import optical_flow as of

        enums = {"raft_small": of.Raft_Small_Weights, "raft_large": of.Raft_Large_Weights}
        if variant not in enums:
            raise FastNSTError(f"Unknown RAFT variant {variant!r}; use raft_small or raft_large.")
        fname = enums[variant].DEFAULT.url.rsplit("/", 1)[1]
        path = Path(weights) if weights is not None else Path(torch.hub.get_dir()) / "checkpoints" / fname
        if not path.is_file():
            raise FastNSTError(f"{variant} flow needs its weights as a local file ({path} not found): pass "
                               f"--raft-weights FILE with torchvision's {fname}, or use --flow dis.")
        try:
            if path.suffix == ".safetensors":
                state = load_safetensors(path)
            else:
                state = load_torch_weights(path, f"a {variant} weights file")
            net = getattr(of, variant)(weights=None, progress=False)
            net.load_state_dict(state)
        except FastNSTError:
            raise
        except Exception as exc:  # a wrong or corrupt file can fail in several libraries
            raise FastNSTError(f"{path} is not a {variant} weights file ({str(exc).splitlines()[0]}).") from exc
        self.name = variant
        self.iterations = iterations
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()

    @torch.no_grad()
    def __call__(self, prev_rgb: Frame, next_rgb: Frame) -> np.ndarray:
        h, w = prev_rgb.shape[:2]
        # RAFT wants [-1,1] inputs with sides that are multiples of 8 and at least 128 (its correlation
        # pyramid halves the 1/8-scale features three times); pad by replication and crop back.
        pad = (0, max(128, w + (-w) % 8) - w, 0, max(128, h + (-h) % 8) - h)
        a, b = (torch.nn.functional.pad(to_tensor(x, self.device) * 2 - 1, pad, mode="replicate")
                for x in (prev_rgb, next_rgb))
        flow = self.net(a, b, num_flow_updates=self.iterations)[-1][0, :, :h, :w]
        return flow.permute(1, 2, 0).float().cpu().numpy()


def make_flow(method: str = "dis", *, weights: str | os.PathLike | None = None,
              device: torch.device | str = "cpu") -> tuple[FlowFn, str]:
    """A flow function for ``method`` in :data:`FLOW_METHODS` and a short description of it."""
    if method == "dis":
        return dis_flow, "DIS medium"
    if method in ("raft_small", "raft_large"):
        raft = RaftFlow(method, weights=weights, device=device)
        return raft, method
    raise FastNSTError(f"Unknown flow method {method!r}; use one of {', '.join(FLOW_METHODS)}.")


# --------------------------------------------------------------------------------------------------
# The figures, frame by frame
# --------------------------------------------------------------------------------------------------


def warp_error_map(frame_t: torch.Tensor, frame_next: torch.Tensor, flow_fw: torch.Tensor) -> torch.Tensor:
    """Per-pixel ``(1/C) Σ_c (O_t − warp(O_{t+1}, flow))²`` → ``(B,1,H,W)``.

    ``frame_t``/``frame_next`` ``(B,C,H,W)`` float in ``[0,1]``; ``flow_fw`` ``(B,2,H,W)`` maps t → t+1.
    """
    warped, _ = warp(frame_next.float(), flow_fw.float())
    return (frame_t.float() - warped).pow(2).mean(1, keepdim=True)


def warp_error(frame_t: torch.Tensor, frame_next: torch.Tensor, flow_fw: torch.Tensor,
               mask: torch.Tensor) -> float | None:
    """Masked mean of :func:`warp_error_map` (one pair's ``E_t``); ``None`` when the mask is empty."""
    m = mask.float()
    total = float(m.sum())
    if total <= 0:
        return None
    return float((warp_error_map(frame_t, frame_next, flow_fw) * m).sum()) / total


def heat_rows(pairs: Sequence[tuple[str, torch.Tensor, torch.Tensor]], flow_fw: torch.Tensor) -> list[HeatRow]:
    """What :func:`fastnst.pictures.error_heatmap` draws for ``(label, frame_t, frame_next)`` pairs
    (``(1,3,H,W)`` in ``[0,1]``): ``(label, frame_t, frame_next warped back to t, error map (H,W))``."""
    rows: list[HeatRow] = []
    for label, frame_t, frame_next in pairs:
        warped, _ = warp(frame_next.float(), flow_fw.float())
        rows.append((label, frame_t, warped, warp_error_map(frame_t, frame_next, flow_fw)[0, 0].cpu().numpy()))
    return rows


def pair_flow(prev_rgb: Frame, next_rgb: Frame, flow_fn: FlowFn = dis_flow, *,
              device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Forward flow ``(1,2,H,W)`` (prev → next) and its trust mask ``(1,1,H,W)`` from both directions."""
    fw = flow_to_tensor(flow_fn(prev_rgb, next_rgb), device)
    bw = flow_to_tensor(flow_fn(next_rgb, prev_rgb), device)
    return fw, forward_backward_mask(fw, bw)


def style_targets(vgg: torch.nn.Module, style: torch.Tensor) -> dict[str, torch.Tensor]:
    """Gram matrices ``{layer: (1,C,C)}`` of a ``(1,3,H,W)`` style image in ``[0,1]`` at
    :data:`STYLE_LAYERS` (the style targets of :mod:`fastnst.perceptual`)."""
    return blend_grams(vgg, [style], STYLE_LAYERS)


def frame_style_distance(features: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor]) -> float:
    """Relative Gram distance of one image's VGG features to the style targets (0 = same statistics)."""
    return float(style_distance({k: gram_matrix(features[k]) for k in targets}, targets))


def content_distance(features: Mapping[str, torch.Tensor], reference: Mapping[str, torch.Tensor],
                     layer: str = CONTENT_LAYER) -> float:
    """``‖F(O) − F(I)‖_F / ‖F(I)‖_F`` at ``layer`` (0 = same features)."""
    a, b = features[layer].float(), reference[layer].float()
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


def image_distances(image: torch.Tensor, reference: torch.Tensor, style: torch.Tensor,
                    vgg: torch.nn.Module) -> tuple[float, float]:
    """``(style distance of image to style, content distance of image to reference)`` for ``(1,3,H,W)``."""
    with torch.no_grad():
        fi, fr = vgg(image), vgg(reference)
    return frame_style_distance(fi, style_targets(vgg, style)), content_distance(fi, fr)


# --------------------------------------------------------------------------------------------------
# Evaluation loop
# --------------------------------------------------------------------------------------------------


def _as_uint8(x: Frame | torch.Tensor) -> Frame:
    """A stylizer's output as ``(H,W,3)`` uint8 RGB: quantised like the video a user would watch."""
    if isinstance(x, torch.Tensor):
        from .images import to_uint8

        return to_uint8(x)
    x = np.asarray(x)
    if x.dtype != np.uint8 or x.ndim != 3 or x.shape[2] != 3:
        raise FastNSTError(f"A stylized frame must be (H,W,3) uint8 RGB, got {x.dtype} {x.shape}.")
    return x


def _fit(frame: Frame, size: tuple[int, int]) -> Frame:
    import cv2

    h, w = size
    if frame.shape[:2] == (h, w):
        return frame
    shrink = frame.shape[0] * frame.shape[1] > h * w
    return cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def _strided(frames: Iterable[Frame], stride: int) -> Iterator[Frame]:
    return islice(frames, 0, None, stride)


@dataclass
class _Acc:
    errors: list[float] = field(default_factory=list)
    style: list[float] = field(default_factory=list)
    content: list[float] = field(default_factory=list)
    worst: tuple | None = None  # (E, prev_in, in, prev_out, out, flow, mask) on CPU, for the heat map


def _mean(xs: Sequence[float]) -> float | None:
    return float(np.mean(xs)) if xs else None


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "output"


def _load_vgg(weights: str | os.PathLike | None, device: torch.device) -> torch.nn.Module:
    """The real VGG19 with :data:`EVAL_TAPS` (explicit file, else the cache, else torchvision's download)."""
    return load_extractor(EVAL_TAPS, weights=weights, device=device)


@dataclass
class _Kept:
    """The previous kept frame: input ``(H,W,3)`` uint8, input and outputs as ``(1,3,H,W)`` in ``[0,1]``."""

    frame: Frame
    x: torch.Tensor
    ys: dict[str, torch.Tensor]


@dataclass
class _EvalSetup:
    """What the evaluation loop reads: sources, networks and options (only ``streams`` advance)."""

    device: torch.device
    outputs: dict[str, Iterable[Frame] | FrameStylizer]
    labels: dict[str, str]
    callables: dict[str, FrameStylizer]
    streams: dict[str, Iterator[Frame]]
    flow_fn: FlowFn
    flow_desc: str
    vgg: torch.nn.Module | None
    vgg_desc: str
    style_rgb: Frame | None
    style_desc: str
    stride: int
    vgg_every: int
    style_size: int | None
    min_trusted: float
    max_frames: int | None
    keep_pictures: bool


@dataclass
class _EvalState:
    """Everything the evaluation loop accumulates, frame by frame."""

    accs: dict[str, _Acc]
    spread: Spread
    floor: _Acc = field(default_factory=_Acc)
    notes: list[str] = field(default_factory=list)
    mask_fracs: list[float] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    size: tuple[int, int] | None = None  # (H, W) of the first output's frames, fixed by the first frame
    targets: dict[str, torch.Tensor] | None = None  # style Grams, made on the first VGG frame
    prev: _Kept | None = None
    n_frames: int = 0
    n_vgg: int = 0
    limited: bool = False  # an output ran out before the input


def _pick_vgg(vgg: torch.nn.Module | None, vgg_every: int, weights: str | os.PathLike | None,
              device: torch.device) -> tuple[torch.nn.Module | None, str]:
    """The feature network for the distances (``None`` when ``vgg_every`` is 0) and its description."""
    if not vgg_every:
        return None, "none"
    if vgg is None:
        vgg = _load_vgg(weights, device)
        return vgg, f"VGG19 {getattr(vgg, 'preprocessing', '')}".strip()
    return vgg.to(device), "caller-supplied network"


def _setup(outputs: Mapping[str, Iterable[Frame] | FrameStylizer] | None, output_names: Mapping[str, str] | None,
           *, style_image: str | os.PathLike | Frame | None, device: torch.device | str | None,
           vgg: torch.nn.Module | None, vgg_weights: str | os.PathLike | None, flow: str,
           raft_weights: str | os.PathLike | None, max_frames: int | None, stride: int, vgg_every: int,
           style_size: int | None, min_trusted: float, pictures: str | os.PathLike | None) -> _EvalSetup:
    """Check the options and load what the loop needs (flow, VGG, style image); see :func:`evaluate_frames`."""
    if stride < 1:
        raise FastNSTError(f"--stride must be at least 1, got {stride}.")
    if vgg_every < 0:
        raise FastNSTError(f"--vgg-every must be 0 (E_warp only) or more, got {vgg_every}.")
    if max_frames is not None and max_frames < 2:
        raise FastNSTError(f"--max-frames must be at least 2 (E_warp needs a pair of frames) or 0 for all, got "
                           f"{max_frames}.")
    dev = device if isinstance(device, torch.device) else pick_device(device)
    outputs = dict(outputs or {})
    flow_fn, flow_desc = make_flow(flow, weights=raft_weights, device=dev)
    net, vgg_desc = _pick_vgg(vgg, vgg_every, vgg_weights, dev)
    if style_image is None and net is not None:
        raise FastNSTError("The style distance needs a style image.")
    is_path = isinstance(style_image, (str, os.PathLike))
    callables = {n: s for n, s in outputs.items() if callable(s)}
    return _EvalSetup(
        device=dev, outputs=outputs, labels={n: (output_names or {}).get(n, n) for n in outputs},
        callables=callables,
        streams={n: _strided(iter(s), stride) for n, s in outputs.items() if n not in callables},
        flow_fn=flow_fn, flow_desc=flow_desc, vgg=net, vgg_desc=vgg_desc,
        style_rgb=read_image(style_image) if is_path else style_image,
        style_desc=str(style_image) if is_path else ("array" if style_image is not None else "none"),
        stride=stride, vgg_every=vgg_every, style_size=style_size, min_trusted=min_trusted,
        max_frames=max_frames, keep_pictures=pictures is not None,
    )


def _read_outputs(cfg: _EvalSetup, st: _EvalState, k: int, frame: Frame) -> dict[str, Frame] | None:
    """Each output's frame for kept input frame ``k`` (uint8 HWC); ``None`` when one has run out."""
    outs: dict[str, Frame] = {}
    for n in cfg.outputs:
        o = _as_uint8(cfg.callables[n](frame)) if n in cfg.callables else next(cfg.streams[n], None)
        if o is None:
            st.notes.append(f"{cfg.labels[n]} ended after {k} frames; evaluated {k} frames of the input.")
            st.limited = True
            return None
        outs[n] = _as_uint8(o)
    return outs


def _align(cfg: _EvalSetup, st: _EvalState, frame: Frame,
           outs: dict[str, Frame]) -> tuple[Frame, dict[str, Frame]]:
    """The input frame and the outputs' frames resized to the evaluation size (the first output's)."""
    if st.size is None:
        st.size = next(iter(outs.values())).shape[:2] if outs else frame.shape[:2]
        if min(st.size) < MIN_EVAL_SIDE:
            which = "stylized" if outs else "input"
            raise FastNSTError(f"The {which} frames are {st.size[1]}x{st.size[0]}; evaluating needs at least "
                               f"{MIN_EVAL_SIDE} px a side (optical flow, and VGG's four poolings).")
        if frame.shape[:2] != st.size:
            st.notes.append(f"input frames ({frame.shape[1]}x{frame.shape[0]}) resized to the stylized "
                            f"frames' {st.size[1]}x{st.size[0]} for flow and distances.")
    size = st.size
    fitted: dict[str, Frame] = {}
    for n, o in outs.items():
        if o.shape[:2] != size:
            msg = f"{cfg.labels[n]} frames ({o.shape[1]}x{o.shape[0]}) resized to {size[1]}x{size[0]}."
            if msg not in st.notes:
                st.notes.append(msg)
        fitted[n] = _fit(o, size)
    return _fit(np.ascontiguousarray(frame), size), fitted


def _measure_pair(cfg: _EvalSetup, st: _EvalState, k: int, frame: Frame, x: torch.Tensor,
                  ys: dict[str, torch.Tensor]) -> None:
    """Flow and mask for the pair (previous kept frame, frame ``k``) and its E_warp for input and outputs."""
    prev = st.prev
    assert prev is not None
    fw, mask = pair_flow(prev.frame, frame, cfg.flow_fn, device=cfg.device)
    frac = float(mask.mean())
    e_in = warp_error(prev.x, x, fw, mask)
    if e_in is None or frac < cfg.min_trusted:
        st.skipped.append((k - 1) * cfg.stride)
        return
    st.mask_fracs.append(frac)
    st.floor.errors.append(e_in)
    if not cfg.outputs and cfg.keep_pictures and (st.floor.worst is None or e_in > st.floor.worst[0]):
        st.floor.worst = (e_in, prev.x.cpu(), x.cpu(), None, None, fw.cpu(), mask.cpu())
    for n, y in ys.items():
        e = warp_error(prev.ys[n], y, fw, mask)
        assert e is not None  # same mask as the floor's
        acc = st.accs[n]
        acc.errors.append(e)
        if cfg.keep_pictures and (acc.worst is None or e > acc.worst[0]):
            acc.worst = (e, prev.x.cpu(), x.cpu(), prev.ys[n].cpu(), y.cpu(), fw.cpu(), mask.cpu())


def _first_targets(cfg: _EvalSetup, features: Mapping[str, torch.Tensor], size: tuple[int, int]) -> dict:
    """Style Grams for the first VGG frame, after checking the network gives every tap needed."""
    missing = [t for t in EVAL_TAPS if t not in features]
    if missing:
        raise FastNSTError(f"The feature network lacks the layers {missing} needed for distances.")
    assert cfg.vgg is not None
    s = to_tensor(cfg.style_rgb, cfg.device)
    return style_targets(cfg.vgg, resize_to(s, cfg.style_size or max(size)))


def _measure_vgg(cfg: _EvalSetup, st: _EvalState, x: torch.Tensor, ys: dict[str, torch.Tensor]) -> None:
    """Style distance of the input and style + content distance of each output for one frame."""
    assert cfg.vgg is not None and st.size is not None
    with torch.no_grad():
        fx = cfg.vgg(x)
        if st.targets is None:
            st.targets = _first_targets(cfg, fx, st.size)
        st.floor.style.append(frame_style_distance(fx, st.targets))
        for n, y in ys.items():
            fy = cfg.vgg(y)
            st.accs[n].style.append(frame_style_distance(fy, st.targets))
            st.accs[n].content.append(content_distance(fy, fx))
    st.n_vgg += 1


def _step(cfg: _EvalSetup, st: _EvalState, k: int, frame: Frame) -> bool:
    """Measure kept input frame ``k``; ``False`` when an output has run out (stop the loop)."""
    outs = _read_outputs(cfg, st, k, frame)
    if outs is None:
        return False
    frame, outs = _align(cfg, st, frame, outs)
    x = to_tensor(frame, cfg.device)
    ys = {n: to_tensor(o, cfg.device) for n, o in outs.items()}
    if st.prev is not None:
        _measure_pair(cfg, st, k, frame, x, ys)
    if cfg.vgg is not None and k % cfg.vgg_every == 0:
        _measure_vgg(cfg, st, x, ys)
    if cfg.keep_pictures:
        st.spread.offer(k, (frame, outs))
    st.prev = _Kept(frame, x, ys)
    st.n_frames += 1
    return True


def _run(cfg: _EvalSetup, st: _EvalState, input_frames: Iterable[Frame], progress: bool) -> None:
    """The single pass over the kept input frames."""
    frames_in = _strided(input_frames, cfg.stride)
    if cfg.max_frames is not None:
        frames_in = islice(frames_in, cfg.max_frames)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.max_frames, unit="frame", desc="eval", leave=False)
    try:
        for k, frame in enumerate(frames_in):
            if not _step(cfg, st, k, frame):
                break
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()


def _closing_notes(cfg: _EvalSetup, st: _EvalState) -> None:
    """Refuse a pass with fewer than 2 frames; note outputs longer than the input and skipped pairs."""
    if st.n_frames < 2:
        raise FastNSTError(f"Need at least 2 frames to measure temporal consistency, got {st.n_frames}.")
    if not st.limited and (cfg.max_frames is None or st.n_frames < cfg.max_frames):
        for n, stream in cfg.streams.items():
            if next(stream, None) is not None:
                st.notes.append(f"{cfg.labels[n]} has more frames than the input; extra frames ignored.")
    if st.skipped:
        st.notes.append(f"{len(st.skipped)} pair(s) with < {cfg.min_trusted:.0%} trusted pixels skipped as shot "
                        f"cuts (after frames {', '.join(map(str, st.skipped))}).")


def _write_pictures(cfg: _EvalSetup, st: _EvalState, n: str, acc: _Acc | None, pics_dir: Path,
                    prefix: str) -> dict[str, str]:
    """``grid.png`` (input row over output ``n``'s row) and ``heatmap.png`` (its worst pair) → paths."""
    pics: dict[str, str] = {}
    chosen = st.spread.pick()
    tags = [f"#{i * cfg.stride}" for i, _ in chosen]
    ins = [f for _, (f, _) in chosen]
    rows = [[o[n] for _, (_, o) in chosen]] if acc is not None else []
    grid = side_by_side_grid(ins, rows, frame_labels=tags, row_labels=[n])
    pics["grid"] = str(write_image(pics_dir / f"{prefix}grid.png", grid))
    worst = acc.worst if acc is not None else st.floor.worst
    if worst is not None:
        _, pin, xin, pout, yout, fw, mask = worst
        pairs = [("input", pin, xin)] if pout is None else [(n, pout, yout), ("input", pin, xin)]
        heat = error_heatmap(heat_rows(pairs, fw), mask)
        pics["heatmap"] = str(write_image(pics_dir / f"{prefix}heatmap.png", heat))
    return pics


def _reports(cfg: _EvalSetup, st: _EvalState, input_name: str,
             pictures: str | os.PathLike | None) -> dict[str, EvalReport]:
    """One report per output (or ``{"input": floor}``), pictures written; ``seconds`` left at 0."""
    assert st.size is not None
    common = {
        "input_video": input_name, "style_image": cfg.style_desc, "frames": st.n_frames,
        "pairs": len(st.floor.errors), "size": tuple(st.size), "stride": cfg.stride, "flow": cfg.flow_desc,
        "e_warp_input": _mean(st.floor.errors), "style_distance_input": _mean(st.floor.style),
        "vgg_frames": st.n_vgg, "vgg": cfg.vgg_desc, "mask_fraction": _mean(st.mask_fracs),
        "skipped_pairs": st.skipped, "device": str(cfg.device),
    }
    reports: dict[str, EvalReport] = {}
    names = list(cfg.outputs) or ["input"]
    for n in names:
        acc = st.accs.get(n)
        pics: dict[str, str] = {}
        if pictures is not None:
            prefix = "" if len(names) == 1 else f"{_safe_name(n)}_"
            pics = _write_pictures(cfg, st, n, acc, Path(pictures), prefix)
        reports[n] = EvalReport(
            name=cfg.labels.get(n, n), stylized=cfg.labels[n] if acc is not None else None,
            e_warp=_mean(acc.errors) if acc else None, style_distance=_mean(acc.style) if acc else None,
            content_distance=_mean(acc.content) if acc else None, seconds=0.0, notes=list(st.notes),
            pictures=pics, **common,
        )
        if pics.get("heatmap"):
            reports[n].notes.append("heat map: the pair with the highest stylized E_warp.")
    return reports


def evaluate_frames(
    input_frames: Iterable[Frame],
    outputs: Mapping[str, Iterable[Frame] | FrameStylizer] | None = None,
    *,
    style_image: str | os.PathLike | Frame | None,
    device: torch.device | str | None = None,
    vgg: torch.nn.Module | None = None,
    vgg_weights: str | os.PathLike | None = None,
    flow: str = "dis",
    raft_weights: str | os.PathLike | None = None,
    max_frames: int | None = None,
    stride: int = 1,
    vgg_every: int = 5,
    style_size: int | None = None,
    min_trusted: float = 0.1,
    pictures: str | os.PathLike | None = None,
    grid_frames: int = 4,
    input_name: str = "input",
    output_names: Mapping[str, str] | None = None,
    progress: bool = False,
) -> dict[str, EvalReport]:
    """Evaluate stylized outputs of one input frame stream in a single pass (flows computed once).

    Args:
        input_frames: ``(H,W,3)`` uint8 RGB input frames, in order.
        outputs: ``{name: source}``; a source is an iterable of stylized frames aligned with the input
            frames (before striding) or a callable ``frame → stylized frame`` (uint8 HWC, or a
            ``(1,3,H,W)`` float tensor in ``[0,1]``), run on the kept input frames. Empty/None: floor only.
        style_image: path or ``(H,W,3)`` uint8 RGB array (may be None when ``vgg_every=0``).
        vgg: a feature extractor returning :data:`EVAL_TAPS` (tests pass a random ``VGG19Features``);
            ``None`` loads the real VGG19 (``vgg_weights`` or the cache).
        flow: ``"dis"`` or ``"raft_small"``/``"raft_large"`` (needs ``raft_weights`` or torchvision's
            file in the torch hub cache).
        max_frames: frames kept (after striding); stride ``k`` keeps every k-th frame, so pairs are
            ``(t, t+k)``.
        vgg_every: VGG distances on every n-th kept frame; 0 skips them (E_warp only, no VGG needed).
        style_size: longer side of the style image for its Grams; default the frames' longer side.
        min_trusted: pairs with a smaller share of trusted pixels are skipped as shot cuts.
        pictures: folder for ``grid.png`` / ``heatmap.png`` (prefixed by the output name when there
            are several outputs).

    Figures are computed at the resolution of the first output's frames; input frames (and other
    outputs) of another size are resized to it. Returns ``{name: EvalReport}``; with no outputs,
    ``{"input": report}`` holding the floor only.
    """
    t0 = time.perf_counter()
    cfg = _setup(outputs, output_names, style_image=style_image, device=device, vgg=vgg, vgg_weights=vgg_weights,
                 flow=flow, raft_weights=raft_weights, max_frames=max_frames, stride=stride, vgg_every=vgg_every,
                 style_size=style_size, min_trusted=min_trusted, pictures=pictures)
    st = _EvalState(accs={n: _Acc() for n in cfg.outputs}, spread=Spread(grid_frames))
    _run(cfg, st, input_frames, progress)
    _closing_notes(cfg, st)
    reports = _reports(cfg, st, input_name, pictures)
    elapsed = time.perf_counter() - t0
    for r in reports.values():
        r.seconds = elapsed
    return reports


# --------------------------------------------------------------------------------------------------
# Videos and style models
# --------------------------------------------------------------------------------------------------


def model_stylizer(style_model: str | os.PathLike, *, device: torch.device | str = "cpu",
                   work_size: int | None = None, stabilize: float = 0.0) -> FrameStylizer:
    """A frame → stylized frame function for a style model (name or ``.safetensors`` path), with the
    stylize command's stages: working resolution, edge-aware upsampling and, when ``stabilize`` > 0, a
    stabiliser whose history runs over the frames in the order they are given."""
    from .stabilize import stream_state
    from .stylizer import Stylizer

    stylizer = Stylizer(style_model, device=device, work_size=work_size)
    stabilizer = stream_state(stabilize, video=stylizer.video)  # a video network needs its priors anyway
    return lambda frame: stylizer(frame, stabilizer)


# A stylized file whose colour is stored at half resolution (4:2:0, as H.264 players expect) loses
# part of a painting's chroma texture, and differently on every frame as it moves: measured 2026-12-05
# (Zen 5), starry_night_fast on bikes.mp4, 60 frames, 1.94x the floor on the fly, 2.04x after a 4:4:4
# YUV round trip, 2.57x after a 4:2:0 one, 2.64x from the file `fastnst stylize` writes (x264, CRF 18);
# on bigbuckbunny.mp4 (1280x720) 0.68x, 0.75x and 0.90x: a third more at either size.
_SUBSAMPLED_NOTE = ("the stylized file stores its colour at reduced resolution ({pix_fmt}): its E_warp includes "
                    "that loss, which figures measured on the fly (--model) do not.")


def evaluate_outputs(
    input_video: str | os.PathLike,
    outputs: Mapping[str, str | os.PathLike | FrameStylizer],
    *,
    style_image: str | os.PathLike,
    device: torch.device | str | None = None,
    max_size: int | None = None,
    start: float | None = None,
    **kwargs,
) -> dict[str, EvalReport]:
    """Evaluate several stylized versions of one input video in one pass; each output is a stylized
    video file (same frame rate and frame count as the input) or a frame stylizer callable.
    ``kwargs`` go to :func:`evaluate_frames`."""
    from .video import probe, read_frames

    dev = device if isinstance(device, torch.device) else pick_device(device)
    sources: dict[str, Iterable[Frame] | FrameStylizer] = {}
    subsampled: dict[str, str] = {}  # output name → pixel format, for files whose colour is subsampled
    readers = [read_frames(input_video, start=start, max_size=max_size)]
    try:
        for name, src in outputs.items():
            if callable(src):
                sources[name] = src
            else:
                readers.append(read_frames(src, start=start, max_size=max_size))
                sources[name] = readers[-1]
                info = probe(src)
                if info.chroma_subsampled:
                    subsampled[name] = info.pix_fmt
        reports = evaluate_frames(readers[0], sources, style_image=style_image, device=dev,
                                  input_name=str(input_video), **kwargs)
    finally:
        for r in readers:  # close the containers of streams left unfinished (max_frames)
            r.close()
    for name, pix_fmt in subsampled.items():
        if name in reports:
            reports[name].notes.append(_SUBSAMPLED_NOTE.format(pix_fmt=pix_fmt))
    return reports


def evaluate_video(
    input_video: str | os.PathLike,
    stylized_video: str | os.PathLike | None = None,
    *,
    style_image: str | os.PathLike,
    style_model: str | os.PathLike | None = None,
    device: torch.device | str | None = None,
    work_size: int | None = None,
    stabilize: float | None = None,
    **kwargs,
) -> EvalReport:
    """E_warp (with the input's floor), style and content distance of a stylized video.

    Give ``stylized_video`` (a file) or ``style_model`` (a style name or ``.safetensors``: its frames
    are stylized on the fly, no file written, with the stylize command's defaults or ``work_size`` /
    ``stabilize``), or neither for the floor only. With a model and stabilisation on, the same model
    without stabilisation is measured in the same pass and returned in ``report.unstabilized``. Other
    keyword arguments (``max_frames``, ``stride``, ``max_size``, ``start``, ``flow``, ``vgg``,
    ``pictures``, …) as in :func:`evaluate_outputs` / :func:`evaluate_frames`.
    """
    from .options import DEFAULT_STABILIZE

    if stylized_video is not None and style_model is not None:
        raise FastNSTError("Give either a stylized video or a style model, not both.")
    dev = device if isinstance(device, torch.device) else pick_device(device)
    outputs: dict[str, str | os.PathLike | FrameStylizer] = {}
    names: dict[str, str] = {}
    if stylized_video is not None:
        outputs["stylized"], names["stylized"] = stylized_video, str(stylized_video)
    elif style_model is not None:
        strength = DEFAULT_STABILIZE if stabilize is None else float(stabilize)
        outputs["stylized"] = model_stylizer(style_model, device=dev, work_size=work_size, stabilize=strength)
        names["stylized"] = f"{style_model} (stylized on the fly, stabilise {strength:g})"
        if strength > 0:
            outputs["unstabilized"] = model_stylizer(style_model, device=dev, work_size=work_size)
            names["unstabilized"] = f"{style_model} (stylized on the fly, no stabilisation)"
    reports = evaluate_outputs(input_video, outputs, style_image=style_image, device=dev, output_names=names,
                               **kwargs)
    report = reports.get("stylized") or next(iter(reports.values()))
    report.unstabilized = reports.get("unstabilized")
    return report


__all__ = [
    "CONTENT_LAYER",
    "EVAL_TAPS",
    "FLOW_METHODS",
    "STYLE_LAYERS",
    "EvalReport",
    "RaftFlow",
    "content_distance",
    "evaluate_frames",
    "evaluate_outputs",
    "evaluate_video",
    "format_report",
    "frame_style_distance",
    "heat_rows",
    "image_distances",
    "make_flow",
    "model_stylizer",
    "pair_flow",
    "save_report",
    "style_targets",
    "warp_error",
    "warp_error_map",
]
