"""Training speed: seconds per step and steps/s, fp32 against bf16 autocast, per crop size.

    nice -n 10 python benchmarks/train_speed.py [--sizes 128,256] [--dtypes fp32,bf16] [--threads 2]
                                                [--preset fast] [--batch-size 4] [--steps 6] [--warmup 2]

Each setting is one real run of the trainer (:func:`fastnst.training.loop.train`: data pipeline with one
DataLoader worker, transformation net on both frames, VGG19 up to relu5_1, content/style/TV/temporal
losses, backward, Adam) on synthetic photos in a temporary folder, with ``log_every=1``; a step's
time is ``batch / images_per_s`` of its log record (file writing excluded), and the table shows the
median over the steps after ``--warmup``. VGG19 weights: the cached real ones when ``fastnst vgg
fetch`` has been run, else a seeded random VGG19 (speed does not depend on the weights). bf16 is
asked for explicitly (``--amp bf16``), so it is measured even where ``--amp auto`` would not pick
it; the header says whether this CPU computes bf16 natively (where it does not, bf16 is emulated
and slower than fp32).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # `train/` is a top-level folder of the checkout

from fastnst.devices import cpu_has_native_bf16, pick_device
from fastnst.images import write_image
from fastnst.training.config import TrainConfig
from fastnst.training.loop import train
from fastnst.vgg import cached_weights_path


def synthetic_photos(folder: Path, n: int = 24, size: tuple[int, int] = (480, 360)) -> Path:
    """``n`` photo-like images (gradients, blobs, noise) and a striped style image in ``folder``."""
    rng = np.random.default_rng(0)
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    for i in range(n):
        img = np.stack([np.sin(x / (30 + i) + i), np.cos(y / (41 - i % 7)), np.sin((x + y) / 67 - i)], -1)
        img = (img * 0.4 + 0.5 + rng.normal(0, 0.05, img.shape)).clip(0, 1)
        write_image(folder / "photos" / f"p{i:02d}.png", (img * 255).astype(np.uint8))
    style = np.zeros((320, 320, 3), np.uint8)
    style[::9] = (250, 200, 20)
    style[:, ::13] = (20, 60, 220)
    write_image(folder / "style.png", style)
    return folder


class StepClock:
    """Process CPU time at each step boundary. The trainer looks at its ``stop`` flag once per step
    (single process), so a flag that is never set serves as a per-step hook."""

    def __init__(self) -> None:
        self.cpu: list[float] = []

    def is_set(self) -> bool:
        self.cpu.append(time.process_time())
        return False


def time_setting(root: Path, *, size: int, amp: str, threads: int, steps: int, warmup: int,
                 args: argparse.Namespace, vgg: str) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds of each measured step (after warm-up) of one short training run.

    CPU seconds count the training process only (not the DataLoader worker); with one torch thread
    they are close to the wall time the step would take on an otherwise idle machine."""
    cfg = TrainConfig(
        content=[str(root / "photos")], style=[str(root / "style.png")], preset=args.preset, image_size=size,
        batch_size=args.batch_size, steps=warmup + steps + 1, amp=amp, device=args.device, threads=threads,
        workers=1, log_every=1, sample_every=0, checkpoint_every=0, val_images=0, style_size=256,
        vgg_weights=vgg, progress=False, out_dir=str(root / f"run_{size}_{amp}_{threads}"),
        output=str(root / f"model_{size}_{amp}_{threads}.safetensors"))
    clock = StepClock()
    history = train(cfg, stop=clock).history  # type: ignore[arg-type]
    # The last step also writes the model, samples and loss curve: left out. cpu[j] is step j + 2 (the
    # first step has no start mark).
    cpu = [b - a for a, b in zip(clock.cpu, clock.cpu[1:])]
    wall = [args.batch_size / r["images_per_s"] for r in history]
    return wall[warmup:warmup + steps], cpu[max(warmup - 1, 0):warmup - 1 + steps] if warmup else cpu[:steps - 1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="128,256", help="crop sizes, px (comma-separated)")
    p.add_argument("--dtypes", default="fp32,bf16", help="fp32 and/or bf16 (comma-separated)")
    p.add_argument("--threads", default="2", help="torch threads of the training process (comma-separated)")
    p.add_argument("--preset", default="fast")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--steps", type=int, default=4, help="measured steps per setting")
    p.add_argument("--warmup", type=int, default=1, help="steps left out before measuring")
    p.add_argument("--emulated", action="store_true",
                   help="measure emulated bf16 at every size too (by default, on a CPU without native bf16, "
                        "one bf16 step at the smallest size only: emulated bf16 is tens of times slower)")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    sizes = sorted(int(s) for s in args.sizes.split(","))
    dtypes = [d.strip() for d in args.dtypes.split(",")]
    threads = [int(t) for t in args.threads.split(",")]
    device = pick_device(args.device)
    vgg = "" if cached_weights_path() is not None else "random"
    native = cpu_has_native_bf16() if device.type == "cpu" else True
    columns = [(d, t) for d in dtypes for t in threads]

    results: dict[tuple[int, str, int], float] = {}
    cpu_s: dict[tuple[int, str, int], float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = synthetic_photos(Path(tmp))
        for size in sizes:
            for d, t in columns:
                emulated = d == "bf16" and not native and not args.emulated
                if emulated and (size != sizes[0] or t != threads[-1]):
                    continue
                steps, warmup = (1, 0) if emulated else (args.steps, args.warmup)
                t0 = time.perf_counter()
                wall, cpu = time_setting(root, size=size, amp={"fp32": "off", "bf16": "bf16"}[d], threads=t,
                                         steps=steps, warmup=warmup, args=args, vgg=vgg)
                results[size, d, t] = statistics.median(wall)
                cpu_s[size, d, t] = statistics.median(cpu) if cpu else float("nan")
                print(f"  {size} px {d} {t} threads: {results[size, d, t]:.3f} s/step, CPU "
                      f"{cpu_s[size, d, t]:.3f} s/step (run {time.perf_counter() - t0:.0f} s)", file=sys.stderr,
                      flush=True)
    print_table(results, cpu_s, sizes, columns, args, device, native, vgg)
    return 0


def print_table(results: dict, cpu_s: dict, sizes: list[int], columns: list[tuple[str, int]],
                args: argparse.Namespace, device: torch.device, native: bool, vgg: str) -> None:
    print(f"\nTraining speed: {args.preset} preset, batch {args.batch_size}, {device}, median of {args.steps} "
          f"steps after {args.warmup} warm-up (torch {torch.__version__}, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f})")
    if device.type == "cpu":
        print("bf16 on this CPU: " + ("native (AVX512-BF16/AMX)" if native else
                                      "NOT native: emulated; measured with 1 step (incl. first-call costs), "
                                      "at the smallest size only unless --emulated"))
    print("VGG19 weights: " + ("cached real weights" if vgg == "" else
                               "random (none cached; run `fastnst vgg fetch`; speed does not depend on them)"))
    print("s/step = wall time; cpu = CPU seconds of the training process per step (at 1 thread, about the "
          "wall time on an idle machine)")
    head = f"{'size':>6s}" + "".join(f" {f'{d} {t}T s/step':>16s} {'steps/s':>8s} {'cpu':>7s}" for d, t in columns)
    ratio_t = max(t for _, t in columns)
    with_ratio = ("fp32", ratio_t) in columns and ("bf16", ratio_t) in columns
    print(head + (f" {f'bf16/fp32 {ratio_t}T time':>20s}" if with_ratio else ""))
    for size in sizes:
        row = f"{size:>4d}px"
        for d, t in columns:
            v = results.get((size, d, t))
            row += (f" {v:16.3f} {1 / v:8.3f} {cpu_s[size, d, t]:7.2f}" if v
                    else f" {'skipped':>16s} {'':>8s} {'':>7s}")
        if with_ratio and (size, "bf16", ratio_t) in results:
            row += f" {results[size, 'bf16', ratio_t] / results[size, 'fp32', ratio_t]:19.2f}×"
        print(row)


if __name__ == "__main__":
    sys.exit(main())
