"""The training configuration: one dataclass, from which the command line is built.

Every field of :class:`TrainConfig` becomes an option (``image_size`` → ``--image-size``) whose
help text lives in the field's metadata, so the dataclass is the one source of truth; the parser is
built by :func:`fastnst.options.add_options`, as every command's is. This module imports neither torch
nor fastnst's heavy parts, so ``fastnst --help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys
import typing
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ..argtypes import parse_layer_weights
from ..errors import FastNSTError
from ..options import _h, add_options, from_args

# Content at relu2_2 (Johnson et al. 2016) keeps edges and small detail; style at Gatys et al.'s
# relu1_1…relu5_1, the set the Gatys mode and `fastnst eval`'s style distance use. Johnson's style set
# (relu1_2, relu2_2, relu3_3, relu4_3) saves the conv4_4…conv5_1 work but left the style distance on
# bikes.mp4 at 0.66 where relu1_1…relu5_1 reached 0.49 in 250 more steps (fast preset, 128 px).
# Weights are relative (see TrainConfig). Temporal 1000 rather than 50: with style 10, fine-tuning
# starry_night for 250 steps at temporal 50 / 200 / 1000 gave E_warp 11.4× / 6.5× / 2.5× the input's
# floor for style distance 0.49 / 0.53 / 0.62: the temporal weight buys most of the flicker back for
# a little style. Style 10 and TV 10 as in the Gatys mode's sweep.
JOHNSON_CONTENT_LAYERS = {"relu2_2": 1.0}
GATYS_STYLE_LAYERS = {"relu1_1": 1.0, "relu2_1": 1.0, "relu3_1": 1.0, "relu4_1": 1.0, "relu5_1": 1.0}
AMP_CHOICES = ("auto", "bf16", "fp16", "off")


@dataclass
class TrainConfig:
    """Settings of one training run (see ``python -m train --help`` for each field's meaning).

    Loss weights are *relative*: each layer weight is divided by the mean square of its target
    (:func:`fastnst.losses.balanced_weights`) and layer weights are normalised to sum to 1, so
    the same numbers work for Caffe- or torchvision-convention VGG weights.
    """

    content: list[str] = field(default_factory=list, metadata=_h(
        "photo folder(s), searched recursively (a COCO train2014 folder works)", required=True, metavar="DIR"))
    style: list[str] = field(default_factory=list, metadata=_h(
        "style image(s); several are blended by averaging their Gram matrices (not with --teacher)",
        metavar="IMAGE"))
    name: str = field(default="", metadata=_h(
        "run name: the run folder is runs/NAME_PRESET and the style file NAME_PRESET.safetensors "
        "(default: the first style image's file stem)"))
    preset: str = field(default="fast", metadata=_h(
        "network preset (lite: no full-resolution layer, for CPUs; usually distilled with --teacher; "
        "video: lite fed its own previous output, fine-tuned with --init from a lite style; video_plain: "
        "the same without the gate, as fast as lite but for the stem)",
        choices=("fast", "quality", "lite", "video", "video_plain")))
    arch: str = field(default="", metadata=_h(
        "explicit network shape 'W1,W2,W3:RES' (e.g. '8,16,32:1'); overrides --preset"))
    image_size: int = field(default=256, metadata=_h("training crop size, px (square)"))
    batch_size: int = field(default=4, metadata=_h("photos per step and per process"))
    steps: int = field(default=2000, metadata=_h(
        "optimizer steps in total (a resumed run continues up to this number)"))
    lr: float = field(default=1e-3, metadata=_h("Adam learning rate"))
    # Adam's first steps move every weight by about lr whatever its gradient (the moment estimates hold
    # one sample): a fine-tune at lr 1e-3 wrecked a trained net in two steps (quick.py). A linear ramp
    # over the first steps lets the estimates settle, so short fine-tunes can use a higher lr.
    warmup_steps: int = field(default=0, metadata=_h("ramp the learning rate linearly up over the first N steps"))
    content_weight: float = field(default=1.0, metadata=_h("weight of the relative content loss"))
    style_weight: float = field(default=10.0, metadata=_h("weight of the relative style (Gram) loss"))
    tv_weight: float = field(default=10.0, metadata=_h(
        "weight of the total-variation loss (mean squared neighbour difference)"))
    temporal_weight: float = field(default=1000.0, metadata=_h(
        "weight of the two-frame temporal loss (masked MSE between stylize(frame2) and warp(stylize(frame1))); "
        "0 turns the temporal branch off"))
    # Distillation: a small net learns to reproduce a trained one. Its loss needs no VGG (about a third
    # of a perceptual step's cost on a CPU, benchmarks/train_speed.py), so a CPU twin trains in minutes.
    teacher: str = field(default="", metadata=_h(
        "distil: learn to reproduce this style model (name or .safetensors) on the photos instead of the "
        "VGG loss; --style is then not needed. Loss: L1 to the teacher's output on both frames + "
        "--texture-weight × L1 of image gradients + --steadiness-weight × L1 of the frame-to-frame change",
        metavar="STYLE"))
    texture_weight: float = field(default=1.0, metadata=_h(
        "distillation: weight of the image-gradient (brush texture) term"))
    steadiness_weight: float = field(default=1.0, metadata=_h(
        "distillation: weight of the term matching the teacher's change between the two frames (0: off)"))
    teacher_phases: int = field(default=1, metadata=_h(
        "distillation: average the teacher over K x K offsets of its stride grid (K² teacher passes a step), "
        "so the student learns a painting that moves with sub-pixel motion instead of being redrawn "
        "(1: off; at most the teacher's stride)", metavar="K"))
    # Video networks (preset video; Ruder et al. 2018): frame 2's prior is frame 1's output, detached and
    # carried along the known flow, times the eroded in-frame mask.
    empty_prior: float = field(default=0.5, metadata=_h(
        "video networks: share of samples trained with an empty prior, so first frames and newly "
        "uncovered areas are still painted from nothing"))
    empty_temporal: float = field(default=0.0, metadata=_h(
        "video networks: share of --temporal-weight that holds a frame painted from nothing to the previous "
        "output (a per-frame network's two-frame term; 0: free, the prior alone carries the steadiness)"))
    unroll: int = field(default=4, metadata=_h(
        "video networks: frames chained late in training (each fed the previous one's output), so "
        "errors fed back do not pile up; 2 = the pair only"))
    unroll_after: float = field(default=0.5, metadata=_h(
        "video networks: fraction of --steps after which the chain is --unroll frames long (2 before)"))
    occluders: float = field(default=0.5, metadata=_h(
        "video networks: share of samples in which an object (a patch of another photo) moves across the "
        "scene on its own, so the net learns to paint over untrusted holes inside the frame"))
    prior_jitter: float = field(default=0.5, metadata=_h(
        "video networks: std (px) of a smooth error added to the flow that carries the prior, as a real "
        "flow's errors, so the net re-anchors its prior on the frame instead of copying it"))
    prior_motion: str = field(default="known", metadata=_h(
        "video networks: what carries the prior and masks it: known = the synthetic flow (with "
        "--prior-jitter) and its occlusions; estimated = the inference motion stage itself (DIS flow "
        "between the two input frames, its forward-backward and photometric trust, eroded), so the net "
        "meets DIS's errors (flat regions, noise) in training and learns where not to copy",
        choices=("known", "estimated")))
    temporal_target: str = field(default="known", metadata=_h(
        "video networks: what a frame given a prior is held to: known = the previous output carried by the "
        "true (synthetic) motion, under its occlusion mask; prior = the prior exactly as the net was handed "
        "it, under its mask, so copying it is never punished where the motion estimate is wrong but trusted "
        "(measured: the net then copies wrong priors too, and smears)",
        choices=("known", "prior")))
    prior_erode: int = field(default=3, metadata=_h(
        "video networks: side of the minimum filter applied to the prior's mask (px, odd), so edges "
        "are not carried over"))
    carry: int = field(default=0, metadata=_h(
        "video networks: side k of the box that, applied twice (a tent 2k-1 px wide), splits the prior into the "
        "coarse picture (always the current painting's) and the detail the gate carries (odd; 0: the "
        "preset's, 5); wider carries larger strokes along, and more of what the flow got wrong"))
    content_layers: dict[str, float] = field(default_factory=lambda: dict(JOHNSON_CONTENT_LAYERS),
                                             metadata=_h("content taps NAME[:W],…", metavar="LAYERS"))
    style_layers: dict[str, float] = field(default_factory=lambda: dict(GATYS_STYLE_LAYERS),
                                           metadata=_h("style taps NAME[:W],…", metavar="LAYERS"))
    style_size: int = field(default=512, metadata=_h(
        "longer side of the style image when its Grams are taken; 0 = as is"))
    perceptual_both: bool = field(default=False, metadata=_h(
        "also apply the content/style loss to the second frame (same VGG pass, twice its batch)"))
    crop_min: float = field(default=0.6, metadata=_h(
        "smallest random crop, as a fraction of the photo's shorter side"))
    seed: int = field(default=0, metadata=_h(
        "seed of data order, augmentation, synthetic flows and initialisation"))
    device: str = field(default="auto", metadata=_h(
        "cpu, cuda, cuda:N or auto (under torchrun: cuda:LOCAL_RANK)"))
    amp: str = field(default="auto", metadata=_h(
        "mixed precision: auto = bf16 where the hardware has it natively (CUDA compute capability ≥ 8, "
        "CPUs with AVX512-BF16/AMX), else fp16 on CUDA and fp32 on CPU; bf16 runs on any CPU (emulated "
        "ones are slower than fp32); fp16 needs CUDA",
        choices=AMP_CHOICES))
    channels_last: bool = field(default=False, metadata=_h(
        "channels-last memory format for both nets (helps CUDA tensor cores)"))
    compile: bool = field(default=False, metadata=_h("torch.compile the transformation net"))
    threads: int = field(default=0, metadata=_h(
        "CPU threads for torch in the training process (0 = torch's default, all cores); 1 is faster on "
        "a CPU shared with other jobs"))
    workers: int = field(default=2, metadata=_h("DataLoader worker processes (0 = load in the main process)"))
    log_every: int = field(default=20, metadata=_h(
        "write a log.jsonl record (and refresh the progress bar) every N steps"))
    sample_every: int = field(default=250, metadata=_h(
        "write a sample grid and the loss curve every N steps (0 = only at the end)"))
    checkpoint_every: int = field(default=250, metadata=_h(
        "write checkpoint.pt every N steps (0 = only at the end)"))
    val_images: int = field(default=4, metadata=_h(
        "photos held out (deterministically) for the sample grid"))
    out_dir: str = field(default="", metadata=_h(
        "folder for checkpoint, samples, log and loss curve (default: runs/NAME_PRESET)"))
    output: str = field(default="", metadata=_h(
        "final style model path; its file stem is the name the style is listed and picked by "
        "(default: OUT_DIR/NAME_PRESET.safetensors)"))
    force: bool = field(default=False, metadata=_h(
        "replace an existing file at --output (a resumed run may always rewrite its own model)"))
    half: bool = field(default=False, metadata=_h("store the final model's weights as fp16 (half the file size)"))
    vgg_weights: str = field(default="", metadata=_h(
        "VGG19 weights file (.safetensors/.h5/.pth); default: the fastnst cache; "
        "'random' = a seeded random VGG19, for tests only"))
    resume: str = field(default="", metadata=_h(
        "continue from a checkpoint: a path, or 'auto' = OUT_DIR/checkpoint.pt when present"))
    init: str = field(default="", metadata=_h(
        "start the network from another run's weights (a style model .safetensors or a checkpoint.pt of "
        "the same architecture), to fine-tune a trained style with new losses or a new painting; the "
        "optimiser and step count start afresh; ignored when resuming"))
    # The synthetic second frame (fastnst.training.data): global similarity motion + smooth local deformation.
    flow_shift: float = field(default=6.0, metadata=_h("synthetic flow: max global translation, px"))
    flow_zoom: float = field(default=0.03, metadata=_h("synthetic flow: max relative zoom"))
    flow_rotate: float = field(default=2.0, metadata=_h("synthetic flow: max rotation, degrees"))
    flow_local: float = field(default=2.0, metadata=_h("synthetic flow: std of the local deformation, px"))
    frame_noise: float = field(default=0.02, metadata=_h(
        "second frame: std of added Gaussian noise (images in [0,1])"))
    frame_brightness: float = field(default=0.05, metadata=_h("second frame: max relative brightness change"))
    # Optional real frame pairs.
    video: list[str] = field(default_factory=list, metadata=_h(
        "video file(s) whose consecutive frames join the photos as training pairs "
        "(flow: OpenCV DIS, occlusions: forward-backward check)", metavar="VIDEO"))
    video_pairs: int = field(default=200, metadata=_h("frame pairs taken from each video, spread over it"))
    progress: bool = field(default=True, metadata=_h("show a progress bar"))
    # A recipe: these settings from a TOML file (train/recipes/ holds one per shipped style).
    recipe: str = field(default="", metadata=_h(
        "TOML file of these settings (names as the options here, with '_' for '-'); options given on the "
        "command line override it; its content/style/video paths are relative to its data_root", metavar="FILE"))
    data_root: str = field(default="", metadata=_h(
        "folder the recipe's content/style/video paths are relative to (default: the recipe's own data_root "
        "setting, taken relative to the recipe file, else the recipe file's folder)", metavar="DIR"))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def build_parser(prog: str = "python -m train", defaults: Mapping[str, object] | None = None
                 ) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Train a fastnst style network (Johnson et al. 2016) on a photo folder, with a VGG19 "
                    "perceptual loss and a two-frame temporal loss. Runs under torchrun for several "
                    "processes (DistributedDataParallel). --recipe FILE.toml takes the settings from a file "
                    "(train/recipes/ reproduces each shipped style). Your own painting in minutes: "
                    "--style PAINTING --quick [--minutes N] (see --quick --help).",
    )
    # Booleans are --x/--no-x (a recipe's true can be turned off); the help texts state the defaults, a
    # recipe's where it gives one (which also makes --content/--style no longer required).
    add_options(parser, TrainConfig, defaults, negatable=True, show_defaults=True)
    # listed here for --help only: fastnst.training.main hands a --quick command line to quick mode's own parser
    parser.add_argument("--quick", action="store_true",
                        help="your own painting as a style in minutes: --quick --style PAINTING (see --quick --help)")
    return parser


def parse_config(argv: Sequence[str] | None = None, prog: str = "python -m train") -> TrainConfig:
    """The configuration from ``argv``: dataclass defaults, then ``--recipe``'s values, then the
    options given explicitly. Raises FastNSTError for an unreadable or invalid recipe."""
    argv = list(sys.argv[1:] if argv is None else argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--recipe", default="")
    pre.add_argument("--data-root", default="")
    known, _ = pre.parse_known_args(argv)
    defaults = read_recipe(known.recipe, data_root=known.data_root) if known.recipe else None
    return from_args(TrainConfig, build_parser(prog, defaults).parse_args(argv))


# --- recipes ----------------------------------------------------------------------------------------

RECIPE_DATA_KEYS = ("content", "style", "video")


def read_recipe(path: str | Path, *, data_root: str | Path = "") -> dict[str, object]:
    """The settings of a TOML recipe as :class:`TrainConfig` field values, checked and typed.

    ``content``, ``style`` and ``video`` paths are taken relative to ``data_root`` when given (relative
    to the current folder), else to the recipe's own ``data_root`` setting (relative to the recipe
    file), else to the recipe file's folder. Other paths (``init``, ``out_dir``, ``output``, …) stay
    relative to the current folder, like the command line's.
    """
    path = Path(path)
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError as exc:
            raise FastNSTError("Reading a --recipe needs Python ≥ 3.11 or `pip install tomli`.") from exc
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise FastNSTError(f"Recipe {path} cannot be read ({exc.strerror or exc}).") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise FastNSTError(f"Recipe {path} is not valid TOML ({exc}).") from exc
    known = {f.name: f for f in fields(TrainConfig)}
    unknown = sorted(set(raw) - set(known) | ({"recipe"} & set(raw)))
    if unknown:
        raise FastNSTError(f"Recipe {path} has unknown setting(s) {', '.join(unknown)}: the settings are the "
                           "options of `python -m train --help`, with '_' for '-'.")
    hints = typing.get_type_hints(TrainConfig)
    values = {k: _recipe_value(path, k, v, hints[k], known[k].metadata.get("choices")) for k, v in raw.items()}
    root = Path(data_root) if data_root else path.parent / str(values.get("data_root", ""))
    for key in RECIPE_DATA_KEYS:
        if key in values:
            values[key] = [os.path.normpath(root / p) for p in values[key]]  # type: ignore[union-attr]
    values["data_root"] = os.path.normpath(root)
    values["recipe"] = str(path)
    return values


def _recipe_value(path: Path, key: str, value: object, hint: object, choices: Sequence[str] | None) -> object:
    """``value`` as the field's type (a string for a list becomes a one-item list; layers may be a
    table or the command line's ``NAME:W,…`` string); FastNSTError otherwise."""
    def bad(what: str) -> FastNSTError:
        return FastNSTError(f"Recipe {path}: {key} must be {what}, not {value!r}.")

    if hint is bool:
        if not isinstance(value, bool):
            raise bad("true or false")
    elif hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        value = float(value)
    elif hint is str:
        if not isinstance(value, str):
            raise bad("a string")
    elif typing.get_origin(hint) is list:
        value = [value] if isinstance(value, str) else value
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad("a string or a list of strings")
    elif typing.get_origin(hint) is dict:
        try:
            value = parse_layer_weights(value) if isinstance(value, str) else {
                str(k): float(v) for k, v in value.items() if not isinstance(v, bool)}  # type: ignore[union-attr]
        except (argparse.ArgumentTypeError, AttributeError, TypeError, ValueError) as exc:
            raise bad("a table of layer = weight (or 'relu1_1:1,relu2_1:1')") from exc
    if choices and value not in choices:
        raise bad("one of " + ", ".join(choices))
    return value
