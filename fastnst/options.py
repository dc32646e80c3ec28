"""Options of every command as dataclasses, and the defaults shared by the library and the command
line: each default lives here once. No heavy imports (only the standard library and
:mod:`fastnst.argtypes`), so ``fastnst --help`` stays quick. Each measured value says where it was
measured.

A field's metadata holds its command-line form (help text, argparse keywords, a ``flag`` when the
option's name differs from the field's); :func:`add_options` builds a parser's options from a
dataclass, walking into nested option dataclasses, so an option shared by several commands
(:class:`EngineOptions`, :class:`ModelOptions`) is declared once; the trainer's command line is built
by it too (:class:`fastnst.training.config.TrainConfig`: ``--x/--no-x`` booleans, a recipe's defaults).
:func:`from_args` turns the parsed arguments back into the dataclass; :func:`apply_settings` lets the
library take the same settings as keyword arguments (``stylize_video(..., work_size=64)``).
"""

from __future__ import annotations

import argparse
import functools
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass, replace
from typing import Any, TypeVar

from .argtypes import camera, floats, parse_layer_weights, positive_float, seconds, unit_float, work_size

# Weight of the motion-compensated previous output (fastnst.stabilize). 1 carries trusted strokes whole:
# on a pan with known motion it halved the true flicker of the 0.5 blend at the same style
# (weights/README.md, "Strokes carried whole"); 0.5 was the default of the earlier, capped blend.
DEFAULT_STABILIZE = 1.0
# x264 speed preset for stylized video: "medium" cost more than the network itself at 480p on 2 cores
# (benchmarks/speed.py); "veryfast" at CRF 18 keeps the quality and encodes several times faster.
DEFAULT_PRESET = "veryfast"
# x264/x265 rate control: CRF 18 is visually lossless for most content; the range and the preset
# names are x264's (fastnst.video checks them, with the encoder, before anything is decoded).
DEFAULT_CRF = 18
CRF_RANGE = (0, 51)
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo")
# x264 threads: 0 lets the encoder choose.
DEFAULT_ENCODER_THREADS = 0
# Smallest network working resolution (short side, px) accepted by --work-size.
MIN_WORK_SIZE = 32
# Working resolution (short side, px) for style files that record neither a working size nor a
# training crop size.
DEFAULT_WORK_SIZE = 256
# How the network's working-resolution output is brought to the output size (fastnst.upsample).
# Measured on bikes.mp4 (starry_night_fast, working size 160, 5 frames, style distance; full resolution
# 0.615): bicubic 0.657 (+7 %), joint bilateral 0.675 (+10 %, and 5-10x the cost of bicubic), bilinear 0.679,
# guided filter 0.758 (+23 %: it carries the photo's own fine texture back in, the look of a colour
# filter again).
DEFAULT_UPSAMPLER = "bicubic"
UPSAMPLERS = ("bicubic", "joint", "guided", "bilinear")
# Optical flow estimators `fastnst eval` offers (fastnst.metrics.make_flow).
FLOW_METHODS: tuple[str, ...] = ("dis", "raft_small", "raft_large")
# ONNX opset of `fastnst export` (17: the first with LayerNormalization; InstanceNorm exports fine).
DEFAULT_OPSET = 17
# Seconds of each cross-fade between styles of a timeline; = fastnst.timeline.DEFAULT_TRANSITION, not
# imported from there because that pulls in torch (tests check that the two agree).
DEFAULT_TRANSITION = 1.5
# Seconds of cross-fade when a webcam key changes the style or the strength.
DEFAULT_FADE = 0.5
# The webcam's frames are downscaled to this longer side by default: the network keeps pace with a
# camera on a laptop CPU at about this size.
WEBCAM_MAX_SIZE = 640
DTYPES = ("auto", "fp32", "fp16", "bf16")
# Inference engines (fastnst.runtime.ENGINES, not imported from there: it pulls in torch).
ENGINES = ("auto", "torch", "openvino")

T = TypeVar("T")


# --------------------------------------------------------------------------------------------------
# Declaring options
# --------------------------------------------------------------------------------------------------


def _h(help: str, *, flag: str | None = None, short: str | None = None, positional: bool = False,
       **argparse_kwargs: Any) -> dict[str, Any]:
    """A field's metadata as an option: ``help`` and ``argparse_kwargs`` go to ``add_argument``;
    ``flag`` replaces ``--field-name``; ``short`` adds e.g. ``-o``; ``positional`` makes it an argument."""
    return {"help": help, "flag": flag, "short": short, "positional": positional, **argparse_kwargs}


def _group(title: str | None = None, help_prefix: str = "") -> dict[str, Any]:
    """The metadata of a field holding another options dataclass, whose options join the command's:
    ``title`` puts them in an argument group, ``help_prefix`` starts each of their help texts."""
    return {"title": title, "help_prefix": help_prefix}


# Options that several commands share outside the dataclasses they share.
DEFAULT_DEVICE = "auto"
_DEVICE = _h("cpu, cuda, cuda:N or auto (CUDA when there is one)")
_MAX_SIZE = _h("downscale frames so the longer side is at most N px", type=int, metavar="N")
_QUIET = _h("no progress bar", short="-q")


# --------------------------------------------------------------------------------------------------
# The options of each command
# --------------------------------------------------------------------------------------------------


@dataclass
class ModelOptions:
    """How a style network meets the frames (working resolution, stabilisation): shared by stylize,
    webcam and ``eval --model``. ``None``: the style's own working size; :data:`DEFAULT_STABILIZE`."""

    work_size: int | None = field(default=None, metadata=_h(
        "network resolution: short side in px (default: the style's own; 0 or 'full': full resolution); "
        "the result is upsampled to the output size", type=work_size, metavar="N"))
    stabilize: float | None = field(default=None, metadata=_h(
        f"carry the previous frame's strokes along the input's motion against flicker (default "
        f"{DEFAULT_STABILIZE:g}: nearly whole where trusted; 0: off)", type=unit_float, metavar="0..1"))


@dataclass
class EngineOptions:
    """How the engine runs style networks over frames: shared by ``stylize``
    (:func:`fastnst.pipeline.stylize_video`, :func:`~fastnst.pipeline.stylize_path`) and ``webcam``
    (:func:`fastnst.webcam.run_webcam`). In the library ``device``/``dtype`` may also be a
    ``torch.device``/``torch.dtype``."""

    model: ModelOptions = field(default_factory=ModelOptions, metadata=_group())
    strength: float = field(default=1.0, metadata=_h(
        "style strength: 0 gives the input back, 1 the full style (scales a schedule's strengths; in webcam, "
        "keys +/- change it)", type=unit_float, metavar="0..1"))
    preserve_color: bool = field(default=False, metadata=_h(
        "keep the input's colours: style on luminance only (YIQ)"))
    device: Any = field(default=DEFAULT_DEVICE, metadata=_DEVICE)
    dtype: Any = field(default="auto", metadata=_h(
        "network precision (auto: fp16 on CUDA, bf16 on CPUs with native bf16, else fp32)", choices=DTYPES))
    max_size: int | None = field(default=None, metadata=_MAX_SIZE)
    scale: float | None = field(default=None, metadata=_h(
        "run the network at this factor of the resolution, above 0 and at most 8, instead of --work-size "
        "(<1: bigger brush strokes; the memory needed grows with its square)", type=positive_float,
        metavar="0..8"))
    upsampler: str = field(default=DEFAULT_UPSAMPLER, metadata=_h(
        "how the working-resolution result reaches the output size (joint/guided: edge-aware)",
        flag="--upsample", choices=UPSAMPLERS))
    threads: int | None = field(default=None, metadata=_h(
        "PyTorch CPU threads (default: measured over the first frames)", type=int))
    runtime: str = field(default="auto", metadata=_h(
        "what runs the network: openvino (CPU only; converted once per style and frame size, cached, checked "
        "against torch), torch, or auto = openvino on a CPU where it is installed, else torch",
        flag="--engine", choices=ENGINES))

    @property
    def work_size(self) -> int | None:
        return self.model.work_size

    @property
    def stabilize(self) -> float | None:
        return self.model.stabilize


@dataclass
class VideoOptions:
    """A video file's segment and encoding (:func:`fastnst.pipeline.stylize_video`)."""

    start: float | None = field(default=None, metadata=_h(
        "start time (s or [HH:]MM:SS); --style/--schedule times stay on the video's own clock", type=seconds))
    duration: float | None = field(default=None, metadata=_h(
        "segment length (s or [HH:]MM:SS)", type=seconds))
    batch_size: int | None = field(default=None, metadata=_h(
        "frames per batch (default: 8 on CUDA, 1 on CPU)", type=int))
    codec: str = field(default="libx264", metadata=_h(
        "video encoder: libx264, libx265, or another FFmpeg video encoder (libvpx-vp9, mpeg4, ffv1, …)"))
    crf: float | None = field(default=None, metadata=_h(
        f"x264/x265 quality, {CRF_RANGE[0]} (lossless) to {CRF_RANGE[1]}, lower is better "
        f"(default {DEFAULT_CRF}; libx264/libx265 only)", type=float, metavar="0..51"))
    preset: str | None = field(default=None, metadata=_h(
        f"x264/x265 speed preset: {', '.join(PRESETS)} (default {DEFAULT_PRESET}; libx264/libx265 only)",
        metavar="NAME"))


@dataclass
class StylizeOptions:
    """``fastnst stylize`` (:func:`fastnst.pipeline.stylize_path`)."""

    input: str = field(default="", metadata=_h(
        "image (.png/.jpg/.webp…), folder of images, or video file", positional=True))
    output: str = field(default="", metadata=_h(
        "output image, folder or video (.mp4/.mkv/.avi…)", short="-o", required=True))
    style: list[str] | None = field(default=None, metadata=_h(
        "style name (see `fastnst styles`), .safetensors path or blend a:0.6,b:0.4 (default: the default "
        "shipped style); repeat with @TIME (seconds or [HH:]MM:SS) for a timeline: --style a "
        "--style b@4 --style c@1:30. Times are on the input video's own clock, also with --start; an image "
        "gets the style at 0 s", action="append", metavar="STYLE[@TIME]"))
    schedule: str | None = field(default=None, metadata=_h(
        "styles over time from a .json/.toml file (entries: style, start, optional transition and strength; "
        "see README 'Style timeline'); instead of --style", metavar="FILE"))
    transition: float = field(default=DEFAULT_TRANSITION, metadata=_h(
        "length of each cross-fade between styles, centred on its time (0: a cut)", metavar="SECONDS"))
    engine: EngineOptions = field(default_factory=EngineOptions, metadata=_group())
    video: VideoOptions = field(default_factory=VideoOptions, metadata=_group("video"))
    force: bool = field(default=False, metadata=_h("replace an existing output file"))
    max_pixels: int | None = field(default=None, metadata=_h(
        "refuse images and video frames larger than N pixels (default: 50 million; 0: no limit)",
        type=int, metavar="N"))
    quiet: bool = field(default=False, metadata=_QUIET)


@dataclass
class WebcamOptions:
    """``fastnst webcam`` and :func:`fastnst.webcam.run_webcam`."""

    style: list[str] | None = field(default=None, metadata=_h(
        "style name, .safetensors path or blend a:0.6,b:0.4; repeat to switch between several",
        action="append"))
    engine: EngineOptions = field(default_factory=lambda: EngineOptions(max_size=WEBCAM_MAX_SIZE),
                                  metadata=_group())
    fade: float = field(default=DEFAULT_FADE, metadata=_h(
        "cross-fade length when a key changes the style or the strength (0: cut)", metavar="SECONDS"))
    camera: int | str = field(default=0, metadata=_h(
        "camera index, video file or URL (a file is paced at real time: frames the network misses are dropped)",
        type=camera))
    record: str | None = field(default=None, metadata=_h(
        "also record the stylized stream to this video file (no audio)"))
    snapshot_dir: str = field(default=".", metadata=_h("where the s key saves snapshots"))
    side_by_side: bool = field(default=False, metadata=_h("start with input and output side by side"))
    show: bool = field(default=True, metadata=_h(
        "run without a window (with --record / --max-frames)", flag="--no-window", action="store_false"))
    max_frames: int = field(default=0, metadata=_h("stop after N frames (0: until q or the end)"))


@dataclass
class EvalOptions:
    """``fastnst eval`` (:func:`fastnst.metrics.evaluate_video`)."""

    input: str = field(default="", metadata=_h("the input (unstylized) video", positional=True))
    stylized: str | None = field(default=None, metadata=_h(
        "the stylized video (same frames); omit it for the input's floor only, or use --model",
        positional=True, nargs="?"))
    style: str = field(default="", metadata=_h("the style image, for the style distance", required=True))
    model: str | None = field(default=None, metadata=_h(
        "a style model (name or .safetensors) to stylize INPUT with first; with stabilisation on, the model "
        "is also measured without it, in the same pass"))
    model_options: ModelOptions = field(default_factory=ModelOptions,
                                        metadata=_group(help_prefix="with --model: "))
    json: str | None = field(default=None, metadata=_h("also write the figures to this JSON file"))
    force: bool = field(default=False, metadata=_h("replace an existing --json file"))
    pictures: str | None = field(default=None, metadata=_h(
        "folder for grid.png (input | stylized) and heatmap.png"))
    max_frames: int = field(default=60, metadata=_h("frames to evaluate (after --stride); 0 = all"))
    stride: int = field(default=1, metadata=_h("keep every N-th frame (pairs are then N frames apart)"))
    max_size: int | None = field(default=None, metadata=_MAX_SIZE)
    start: float | None = field(default=None, metadata=_h("start at this time, seconds", type=float))
    flow: str = field(default="dis", metadata=_h("optical flow between input frames", choices=FLOW_METHODS))
    raft_weights: str | None = field(default=None, metadata=_h(
        "local torchvision RAFT weights file (for --flow raft_*)"))
    vgg_every: int = field(default=5, metadata=_h(
        "style/content distances on every N-th frame; 0 = E_warp only"))
    min_trusted: float = field(default=0.1, metadata=_h(
        "skip pairs with a smaller share of trusted flow pixels (shot cuts)"))
    style_size: int | None = field(default=None, metadata=_h(
        "longer side of the style image for its Gram matrices (default: the frames')", type=int))
    vgg_weights: str | None = field(default=None, metadata=_h("VGG19 weights file (default: the cache)"))
    device: str = field(default=DEFAULT_DEVICE, metadata=_DEVICE)
    quiet: bool = field(default=False, metadata=_QUIET)


@dataclass
class GatysConfig:
    """Settings of one Gatys optimisation (fastnst.gatys). ``None`` layers mean the backbone's defaults."""

    size: int = field(default=384, metadata=_h("longer side of the optimised image (of each frame of a video), px"))
    steps: int = field(default=300, metadata=_h(
        "optimiser iterations (of a video: for its first frame and each frame after a cut)"))
    frame_steps: int = field(default=20, metadata=_h(
        "video: iterations for every other frame, which starts from the previous result carried along "
        "the motion"))
    temporal_weight: float = field(default=1e5, metadata=_h(
        "video: weight of the term holding each frame to the previous result where the motion is trusted"))
    optimizer: str = field(default="lbfgs", metadata=_h("optimiser", choices=("lbfgs", "adam")))
    lr: float | None = field(default=None, metadata=_h(
        "learning rate (default: 1 for L-BFGS, 0.02 for Adam)", type=float))
    init: str = field(default="content", metadata=_h("starting image", choices=("content", "noise", "style")))
    content_layers: dict[str, float] | None = field(default=None, metadata=_h(
        "NAME[:W],… e.g. relu4_2 (default: the backbone's)", type=parse_layer_weights))
    style_layers: dict[str, float] | None = field(default=None, metadata=_h(
        "NAME[:W],… e.g. relu1_1,relu2_1:0.5 (default: the backbone's)", type=parse_layer_weights))
    content_weight: float = field(default=1.0, metadata=_h("weight of the content loss"))
    style_weight: float = field(default=10.0, metadata=_h("weight of the style (Gram) loss"))
    tv_weight: float | None = field(default=None, metadata=_h(
        "weight of the total-variation loss (default: 1 for an image; 30 for a video, whose smoother strokes "
        "travel with the motion better)", type=float))
    style_blend: Sequence[float] | None = field(default=None, metadata=_h(
        "blend weights of several style images, e.g. 0.7,0.3", flag="--style-weights", type=floats))
    preserve_color: bool = field(default=False, metadata=_h(
        "transfer style to luminance only, keep the content's colours"))
    save_every: int = field(default=0, metadata=_h(
        "write an intermediate image every N steps, plus a contact sheet"))
    seed: int = field(default=0, metadata=_h("random seed"))
    backbone: str = field(default="vgg19", metadata=_h("feature extractor (see `fastnst backbones`)"))
    pool: str = field(default="max", metadata=_h("VGG pooling", choices=("max", "avg")))


@dataclass
class GatysOptions:
    """``fastnst gatys`` (:func:`fastnst.gatys.run_gatys_files`; a video: :func:`fastnst.gatys_video.run_gatys_video`)."""

    content: str = field(default="", metadata=_h(
        "content image, or a video (stylized frame by frame, each held to the previous one)", positional=True))
    styles: list[str] = field(default_factory=list, metadata=_h(
        "style image(s); several are blended", positional=True, nargs="+"))
    output: str = field(default="", metadata=_h(
        "output image (.png/.jpg), or a video file (.mp4/.mkv) for a video CONTENT", short="-o", required=True))
    force: bool = field(default=False, metadata=_h("replace an existing output file"))
    start: float | None = field(default=None, metadata=_h("video: start time (s or [HH:]MM:SS)", type=seconds))
    duration: float | None = field(default=None, metadata=_h(
        "video: segment length (s or [HH:]MM:SS); try a few seconds first, a frame takes seconds", type=seconds))
    config: GatysConfig = field(default_factory=GatysConfig, metadata=_group())
    vgg_weights: str | None = field(default=None, metadata=_h(
        "weights file for the backbone (.safetensors/.h5/.pth)"))
    device: str = field(default=DEFAULT_DEVICE, metadata=_DEVICE)
    quiet: bool = field(default=False, metadata=_QUIET)


# --------------------------------------------------------------------------------------------------
# Options → parser → options
# --------------------------------------------------------------------------------------------------


_type_hints = functools.cache(typing.get_type_hints)  # a command's parser is built more than once in tests


def _base(hint: Any) -> Any:
    """``X`` for ``X | None``; ``hint`` itself otherwise."""
    args = typing.get_args(hint)
    rest = [a for a in args if a is not type(None)]
    return rest[0] if len(rest) == 1 and len(args) == 2 else hint


def _implied(hint: Any, negatable: bool) -> dict[str, Any]:
    """The ``add_argument`` keywords a field's type implies when its metadata names no action or type:
    a bool is a switch (``--x``, or ``--x/--no-x`` when ``negatable``), a list takes one or more
    values, a ``dict[str, float]`` takes layer weights ``NAME[:W],…``, an int or float its type."""
    base = _base(hint)
    if base is bool:
        return {"action": argparse.BooleanOptionalAction if negatable else "store_true"}
    if typing.get_origin(base) is list:
        return {"nargs": "+"}
    if typing.get_origin(base) is dict:
        return {"type": parse_layer_weights}
    return {"type": base} if base in (int, float) else {}


def _format_layers(weights: Mapping[str, float]) -> str:
    return ",".join(f"{k}:{v:g}" for k, v in weights.items())


def _default_note(hint: Any, default: Any, help: str) -> str:
    """`` (default: …)`` for a parser whose help texts state their defaults themselves (not for
    switches or lists, nor an empty default, nor a help text that already says its default)."""
    base = _base(hint)
    if base is bool or typing.get_origin(base) is list:
        return ""
    if isinstance(default, Mapping):
        return f" (default: {_format_layers(default)})"
    return "" if default in ("", None) or "default" in help else f" (default: {default})"


def _add_field(target: Any, f: Any, hint: Any, default: Any, help_prefix: str, *, given: bool = False,
               negatable: bool = False, show_defaults: bool = False) -> None:
    meta = dict(f.metadata)
    flag, short, positional = meta.pop("flag"), meta.pop("short"), meta.pop("positional")
    kwargs = {**meta, "help": help_prefix + meta["help"]}
    if show_defaults:
        kwargs["help"] += _default_note(hint, default, kwargs["help"])
    if given:  # a value from elsewhere (a recipe): the option may be left out
        kwargs.pop("required", None)
    if positional:
        names = [f.name]
        if kwargs.get("nargs") in ("?", "*"):
            kwargs["default"] = default
    else:
        names = [n for n in (short, flag or "--" + f.name.replace("_", "-")) if n]
        kwargs.update(dest=f.name, default=default)
        if flag and not {"metavar", "action", "choices"} & set(kwargs) and hint is not bool:
            kwargs["metavar"] = flag.lstrip("-").replace("-", "_").upper()  # not the field's name
    if "action" not in kwargs and "type" not in kwargs:
        kwargs = {**_implied(hint, negatable), **kwargs}
    target.add_argument(*names, **kwargs)


def add_options(parser: argparse.ArgumentParser, options: Any, defaults: Mapping[str, Any] | None = None, *,
                negatable: bool = False, show_defaults: bool = False, _target: Any = None,
                _prefix: str = "") -> argparse.ArgumentParser:
    """Add one command-line option per field of ``options`` (an options dataclass or an instance,
    whose values become the defaults), nested option dataclasses included; returns ``parser``.

    ``defaults`` (by field name, e.g. a recipe's values) replace those defaults, and an option given
    one is no longer required. ``negatable``: booleans are ``--x/--no-x`` rather than ``--x`` switches.
    ``show_defaults``: each help text ends with its default (for a parser without
    :class:`fastnst.argtypes.HelpFormatter`)."""
    instance = options() if isinstance(options, type) else options
    defaults = defaults or {}
    unknown = sorted(set(defaults) - set(field_names(instance))) if _target is None else []
    if unknown:
        raise TypeError(f"add_options() got default(s) for no option: {', '.join(unknown)}")
    hints = _type_hints(type(instance))
    target = _target or parser
    style = {"negatable": negatable, "show_defaults": show_defaults}
    for f in fields(instance):
        value = getattr(instance, f.name)
        if is_dataclass(value):
            title = f.metadata.get("title")
            inner = parser.add_argument_group(title) if title else target
            add_options(parser, value, defaults, **style, _target=inner,
                        _prefix=_prefix + f.metadata.get("help_prefix", ""))
        else:
            _add_field(target, f, hints[f.name], defaults.get(f.name, value), _prefix,
                       given=f.name in defaults, **style)
    return parser


def apply_settings(options: T, settings: Mapping[str, Any]) -> tuple[T, dict[str, Any]]:
    """A copy of ``options`` with each field named in ``settings`` (nested fields too, by their own
    name) set to that value, and the settings no field took."""
    left = dict(settings)
    changes: dict[str, Any] = {}
    for f in fields(options):  # type: ignore[arg-type]
        value = getattr(options, f.name)
        if is_dataclass(value) and f.name not in left:
            changes[f.name], left = apply_settings(value, left)
        elif f.name in left:
            changes[f.name] = left.pop(f.name)
    return replace(options, **changes), left  # type: ignore[type-var]


def with_settings(options: T, settings: Mapping[str, Any], function: str) -> T:
    """:func:`apply_settings`, with a TypeError (as for any Python call) for a setting no field takes."""
    new, left = apply_settings(options, settings)
    if left:
        raise TypeError(f"{function}() got unexpected keyword argument(s) {', '.join(map(repr, left))}")
    return new


def from_args(cls: type[T], args: argparse.Namespace) -> T:
    """The options dataclass ``cls`` from arguments parsed by a parser :func:`add_options` built."""
    names = set(field_names(cls))
    return apply_settings(cls(), {k: v for k, v in vars(args).items() if k in names})[0]


def field_names(options: Any) -> list[str]:
    """Every option of an options dataclass (or instance), nested ones included, by field name: the
    parser's destinations, and the keyword arguments the library functions that take it accept."""
    instance = options() if isinstance(options, type) else options
    names: list[str] = []
    for f in fields(instance):
        value = getattr(instance, f.name)
        names += field_names(value) if is_dataclass(value) else [f.name]
    return names
