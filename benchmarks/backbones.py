"""Reproduce the seed's Table 4.1: Gatys optimisation time and final total-variation loss per backbone.

    python benchmarks/backbones.py CONTENT STYLE [--size 256] [--steps 50] [--backbones vgg19,resnet50]

Each backbone runs the same optimisation (same image, size, steps, optimiser, loss weights — the
losses are scale-free, see fastnst.losses.balanced_weights) in one process, one after the other.
Backbones without local weights run with a seeded random initialisation and are marked so: their
time is meaningful, their losses are not. Prints a table; ``--out DIR`` also keeps the images.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from fastnst.backbones import RANDOM, get_backbone
from fastnst.devices import pick_device
from fastnst.errors import FastNSTError
from fastnst.gatys import IMAGE_TV_WEIGHT, GatysConfig, stylize_gatys
from fastnst.images import read_image, resize_to, to_tensor, to_uint8, write_image


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("content")
    ap.add_argument("style")
    ap.add_argument("--backbones", default="vgg19,resnet50,efficientnet_b7")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--optimizer", default="lbfgs", choices=("lbfgs", "adam"))
    ap.add_argument("--repeats", type=int, default=1, help="runs per backbone; the median time is reported")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", type=Path, default=None, help="folder for the result images")
    args = ap.parse_args(argv)

    device = pick_device(args.device)
    content = resize_to(to_tensor(read_image(args.content), device), args.size)
    style = resize_to(to_tensor(read_image(args.style), device), args.size)
    rows = []
    for name in args.backbones.split(","):
        spec = get_backbone(name)
        layers = list(spec.content_layers) + list(spec.style_layers)
        try:
            net, weights = spec.build(layers, device=device), "ImageNet"
        except FastNSTError:
            net, weights = spec.build(layers, weights=RANDOM, device=device), "random (no local weights)"
        cfg = GatysConfig(size=args.size, steps=args.steps, optimizer=args.optimizer, backbone=name)
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            out, hist = stylize_gatys(content, [style], cfg, net, progress=False)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - t0)
        rows.append((name, weights, statistics.median(times), hist[-1]["tv"] / IMAGE_TV_WEIGHT, hist[-1]["total"]))
        if args.out:
            write_image(args.out / f"{name}.png", to_uint8(out))
        print(f"  {name}: done", file=sys.stderr)

    print(f"\nGatys optimisation, {args.steps} {args.optimizer} steps at {args.size}px on {device} "
          f"(torch {torch.__version__}, {torch.get_num_threads()} threads)")
    print(f"{'backbone':18s} {'weights':28s} {'time s':>8s} {'s/step':>8s} {'TV loss':>10s} {'total loss':>11s}")
    base = rows[0][2]
    for name, weights, t, tv, total in rows:
        print(f"{name:18s} {weights:28s} {t:8.1f} {t / args.steps:8.3f} {tv:10.5f} {total:11.4g}   ×{t / base:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
