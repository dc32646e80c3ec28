"""Defaults shared by the library and the command line, kept in one place (no heavy imports here, so
``fastnst --help`` stays quick). Each value says where it was measured."""

from __future__ import annotations

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
