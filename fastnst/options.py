"""Defaults shared by the library and the command line, kept in one place (no heavy imports here, so
``fastnst --help`` stays quick). Each value says where it was measured."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# Blend weight of the motion-compensated previous output (fastnst.stabilize); chosen on bikes.mp4 with
# `fastnst eval` (flicker against style, see weights/README.md).
DEFAULT_STABILIZE = 0.5
# x264 speed preset for stylized video: "medium" cost more than the network itself at 480p on 2 cores
# (benchmarks/speed.py); "veryfast" at CRF 18 keeps the quality and encodes several times faster.
DEFAULT_PRESET = "veryfast"
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


@dataclass
class GatysConfig:
    """Settings of one Gatys optimisation (fastnst.gatys). ``None`` layers mean the backbone's defaults."""

    size: int = 384
    steps: int = 300
    optimizer: str = "lbfgs"
    lr: float | None = None
    init: str = "content"
    content_layers: dict[str, float] | None = None
    style_layers: dict[str, float] | None = None
    content_weight: float = 1.0
    style_weight: float = 10.0
    tv_weight: float = 1.0
    style_blend: Sequence[float] | None = None
    preserve_color: bool = False
    save_every: int = 0
    seed: int = 0
    backbone: str = "vgg19"
    pool: str = "max"
