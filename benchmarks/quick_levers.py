"""Quick mode's style/flicker frontier: each lever tried against issue 14's style target, at a fixed step count.

    nice -n 5 python benchmarks/quick_levers.py [--levers t10000,t3000,aa_t1000,…] [--steps 145]
        [--painting VincentVanGogh0013.webp] [--max-frames 40] [--work DIR] [--plot docs/quick_frontier.png]

Each lever is quick mode (``fastnst.training.quick``) with some of its settings changed, run in a child
process for exactly ``--steps`` steps (the wall clock is not the limit here: the step count is, so the
figures do not depend on the machine's load), then measured like ``fastnst eval bikes.mp4 --model …
--max-frames 40`` (stabilised at the lever's strength, the unstabilised twin from the same pass). One
table row per lever; each child's output goes to ``--work``/``LEVER.log``. ``--plot`` draws them with
``docs/make_frontier.py`` (the bar: style ≤ 0.40×, E_warp ≤ 3×). The reports stay in ``--work``
(``LEVER.json``); a lever whose report is there is not run again.

``aa_*`` levers are an experiment, not part of fastnst: they patch the network in the child process to
blur (binomial [1,2,1]²) before each stride-2 convolution and upsample bilinearly instead of nearest
(Zhang 2019, "Making convolutional networks shift-invariant again"), from the same trained weights.

Measured on the 2-core AMD Zen 3, VincentVanGogh0013 from night_cafe_fast, 145 steps, bikes.mp4 40 frames
(style × the input's / E_warp × the floor, stabilised 0.5): t10000 0.62/2.2, t3000 0.51/5.0, t1000
0.44/8.6, aa_t1000 0.45/8.6, noise_t1000 0.43/9.1, noise_t3000 0.48/5.9, video_t10000 0.51/6.0,
video_t3000 0.45/8.6, big_t10000 0.68/1.8, big_t3000 0.60/4.0, t3000 at stabilise 1 (stab1_t3000)
0.54/4.0: one curve (README, "Your own painting in minutes").
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data"
OTHER_VIDEOS = ["tree.avi", "vtest.avi", "bigbuckbunny.mp4"]  # real frame pairs: every video but bikes.mp4

# lever → (quick-mode settings changed, stabilise strength at evaluation, anti-aliased network)
LEVERS: dict[str, tuple[dict, float, bool]] = {
    "t10000": ({"temporal_weight": 10_000.0}, 0.5, False),
    "t3000": ({"temporal_weight": 3000.0}, 0.5, False),
    "t1000": ({"temporal_weight": 1000.0}, 0.5, False),
    "aa_t1000": ({"temporal_weight": 1000.0}, 0.5, True),
    "noise_t1000": ({"temporal_weight": 1000.0, "frame_noise": 0.005, "frame_brightness": 0.01}, 0.5, False),
    "noise_t3000": ({"temporal_weight": 3000.0, "frame_noise": 0.005, "frame_brightness": 0.01}, 0.5, False),
    "video_t10000": ({"temporal_weight": 10_000.0, "video_pairs": 100}, 0.5, False),
    "video_t3000": ({"temporal_weight": 3000.0, "video_pairs": 100}, 0.5, False),
    "big_t10000": ({"temporal_weight": 10_000.0, "style_size": 640}, 0.5, False),
    "big_t3000": ({"temporal_weight": 3000.0, "style_size": 640}, 0.5, False),
    "stab1_t3000": ({"temporal_weight": 3000.0}, 1.0, False),
}


def antialias_network() -> None:
    """Patch fastnst.models in this process: blur before stride-2 convs, bilinear upsampling."""
    import torch
    import torch.nn.functional as F

    from fastnst import models

    conv_forward = models.ConvLayer.forward

    def blur(x: torch.Tensor) -> torch.Tensor:
        k = torch.tensor([1.0, 2.0, 1.0], dtype=x.dtype, device=x.device)
        k = (k[:, None] * k[None, :] / 16).expand(x.shape[1], 1, 3, 3)
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), k, groups=x.shape[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv_forward(self, blur(x) if self.conv.stride[0] == 2 else x)

    models.ConvLayer.forward = forward
    models.UpsampleConvLayer.forward = lambda self, x: self.conv(
        F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))


def run_lever(name: str, painting: Path, steps: int, max_frames: int, work: Path) -> None:
    """Child process: train one lever for ``steps`` steps, measure it, write ``work/NAME.json``."""
    from fastnst.metrics import evaluate_video, save_report
    from fastnst.training import quick
    from fastnst.vgg import cached_weights_path

    settings, stabilize, aa = LEVERS[name]
    if aa:
        antialias_network()
    quick.QUICK_SETTINGS.update(settings)
    if "video_pairs" in settings:
        quick.QUICK_SETTINGS["video"] = [str(DATA / "videos" / v) for v in OTHER_VIDEOS]
    quick.MAX_STEPS = steps
    vgg = str(cached_weights_path())  # before FASTNST_HOME moves the cache with the styles folder
    os.environ["FASTNST_HOME"] = str(work / "home")
    code = quick.main(["--quick", "--style", str(painting), "--minutes", "600", "--name", name, "--force",
                       "--out-dir", str(work / name), "--no-progress", "--vgg-weights", vgg])
    if code:
        raise SystemExit(code)
    report = evaluate_video(DATA / "videos" / "bikes.mp4", style_image=painting, max_frames=max_frames,
                            style_model=work / "home" / "styles" / f"{name}.safetensors", stabilize=stabilize,
                            vgg_weights=vgg)
    save_report(report, work / f"{name}.json")


def ratios(report: dict) -> tuple[float, float, float]:
    """(style × the input's, E_warp × the floor, content distance) of a saved report."""
    return (report["style_distance"] / report["style_distance_input"], report["e_warp_ratio"],
            report["content_distance"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--levers", default=",".join(LEVERS), help=f"comma-separated, from: {', '.join(LEVERS)}")
    p.add_argument("--steps", type=int, default=145, help="training steps per lever (145: 5 quiet minutes here)")
    p.add_argument("--painting", default="VincentVanGogh0013.webp", help="a file in ../shared/data/styles")
    p.add_argument("--max-frames", type=int, default=40)
    p.add_argument("--work", type=Path, default=Path.home() / "fastnst-runs" / "quick_levers")
    p.add_argument("--plot", type=Path, help="also draw the frontier to this PNG")
    p.add_argument("--one", help=argparse.SUPPRESS)  # the child process's lever
    args = p.parse_args(argv)
    painting = DATA / "styles" / args.painting
    if args.one:
        run_lever(args.one, painting, args.steps, args.max_frames, args.work)
        return 0
    names = [n for n in args.levers.split(",") if n]
    unknown = [n for n in names if n not in LEVERS]
    if unknown:
        p.error(f"unknown lever(s) {', '.join(unknown)}; choose from {', '.join(LEVERS)}")
    args.work.mkdir(parents=True, exist_ok=True)
    print(f"{'lever':>14} {'style x':>8} {'E_warp x':>9} {'(no stab.)':>10} {'content':>8} {'seconds':>8}")
    for name in names:
        out, t0 = args.work / f"{name}.json", time.monotonic()
        if not out.exists():
            log = args.work / f"{name}.log"
            with log.open("w") as f:
                done = subprocess.run([sys.executable, __file__, "--one", name, "--steps", str(args.steps),
                                       "--painting", args.painting, "--max-frames", str(args.max_frames), "--work",
                                       str(args.work)], stdout=f, stderr=subprocess.STDOUT, cwd=REPO,
                                      env={**os.environ, "PYTHONPATH": str(REPO)}, check=False)
            if done.returncode:
                print(log.read_text()[-3000:], file=sys.stderr)
                raise SystemExit(f"lever {name} failed (exit {done.returncode}); its log: {log}")
        report = json.loads(out.read_text())
        style, flicker, content = ratios(report)
        unstab = report.get("unstabilized")
        raw = f"{ratios(unstab)[1]:.2f}x" if unstab else "-"
        print(f"{name:>14} {style:>7.3f}x {flicker:>8.2f}x {raw:>10} {content:>8.3f} {time.monotonic() - t0:>8.0f}",
              flush=True)
    if args.plot:
        subprocess.run([sys.executable, str(REPO / "docs" / "make_frontier.py"), "--bar", "0.40,3", "--numbered",
                        "--stabilised-only", "--title", f"quick mode levers: {painting.stem}, {args.steps} steps",
                        *(f"{n}={args.work / f'{n}.json'}" for n in names), "-o", str(args.plot)], check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
