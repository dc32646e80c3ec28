"""What the temporal loss buys: E_warp, style and content distance of style models, next to baselines.

    python benchmarks/quality.py VIDEO [VIDEO ...] --style STYLE_IMAGE \\
        --model A.safetensors [--baseline A_no_temporal.safetensors] [--model B.safetensors ...] \\
        [--max-frames 60] [--max-size 360] [--json results.json]

Each ``--baseline`` belongs to the ``--model`` before it: the same architecture trained without the
temporal loss. Every video is decoded once; all models stylize the same frames frame by frame and are
scored against the same flows (:func:`fastnst.metrics.evaluate_outputs`). The table gives, per video,
the input's floor, each model's figures, and model/baseline ratios (E_warp ratio < 1: the temporal
term reduced flicker).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fastnst.devices import pick_device
from fastnst.errors import FastNSTError
from fastnst.fileio import write_json
from fastnst.metrics import evaluate_outputs, model_stylizer
from fastnst.styles import read_metadata, resolve_style


class _ModelAction(argparse.Action):
    """``--model`` opens a new entry; ``--baseline`` attaches to the latest one."""

    def __call__(self, parser, namespace, value, option_string=None):
        entries = getattr(namespace, "entries", None) or []
        if option_string == "--model":
            entries.append({"model": value, "baseline": None})
        elif not entries or entries[-1]["baseline"] is not None:
            parser.error("--baseline must follow the --model it belongs to (one baseline per model)")
        else:
            entries[-1]["baseline"] = value
        namespace.entries = entries


def _label(path: str) -> str:
    return Path(path).stem


def _arch(path: str) -> tuple[str, str]:
    """(preset, arch JSON) from a style file's metadata."""
    meta = read_metadata(resolve_style(path))
    return meta.get("preset", "?"), meta.get("arch", "")


def _temporal_weight(path: str) -> str:
    """The temporal loss weight recorded in the file's training config, as text ("?" when absent)."""
    try:
        cfg = json.loads(read_metadata(resolve_style(path)).get("train_config", "{}"))
    except json.JSONDecodeError:
        return "?"
    w = cfg.get("temporal_weight")
    return "?" if w is None else f"{w:g}"


def _f(x: float | None, spec: str = ".4g") -> str:
    return "—" if x is None else format(x, spec)


def _ratio(a: float | None, b: float | None) -> str:
    return "—" if a is None or not b else f"{a / b:.2f}x"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("videos", nargs="+", help="input videos")
    ap.add_argument("--style", required=True, help="the style image the models were trained on")
    ap.add_argument("--model", action=_ModelAction, dest="entries", required=True, help="style model")
    ap.add_argument("--baseline", action=_ModelAction, dest="entries",
                    help="same architecture trained without the temporal loss (for the preceding --model)")
    ap.add_argument("--max-frames", type=int, default=60)
    ap.add_argument("--stride", type=int, default=1)
    ap.add_argument("--max-size", type=int, default=None, help="longer side of the decoded frames, px")
    ap.add_argument("--vgg-every", type=int, default=5)
    ap.add_argument("--flow", default="dis")
    ap.add_argument("--raft-weights", default=None)
    ap.add_argument("--vgg-weights", default=None)
    ap.add_argument("--pictures", type=Path, default=None, help="folder for grids and heat maps, per video")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", type=Path, default=None, help="also write all reports here")
    args = ap.parse_args(argv)

    try:
        device = pick_device(args.device)
        for e in args.entries:
            if e["baseline"] is not None and _arch(e["model"])[1] != _arch(e["baseline"])[1]:
                print(f"warning: {e['baseline']} does not have the architecture of {e['model']}", file=sys.stderr)
        paths = [p for e in args.entries for p in (e["model"], e["baseline"]) if p is not None]
        labels = {p: _label(p) for p in paths}
        if len(set(labels.values())) != len(labels):
            labels = {p: p for p in paths}  # same stems in different folders: keep full paths apart
        rows, all_reports = [], []
        for video in args.videos:
            stylizers = {labels[p]: model_stylizer(p, device=device) for p in paths}
            pics = args.pictures / Path(video).stem if args.pictures else None
            reports = evaluate_outputs(
                video, stylizers, style_image=args.style, device=device, max_frames=args.max_frames,
                stride=args.stride, max_size=args.max_size, vgg_every=args.vgg_every, flow=args.flow,
                raft_weights=args.raft_weights, vgg_weights=args.vgg_weights, pictures=pics, progress=True,
            )
            all_reports += [dict(r.to_dict(), video=video, model=p) for p, r in
                            ((p, reports[labels[p]]) for p in paths)]
            first = reports[labels[paths[0]]]
            h, w = first.size
            rows.append((Path(video).name, f"input (floor), {first.frames} frames {w}x{h}", "", "",
                         _f(first.e_warp_input), _f(first.style_distance_input), "0"))
            for e in args.entries:
                m = reports[labels[e["model"]]]
                rows.append(("", labels[e["model"]], _arch(e["model"])[0], _temporal_weight(e["model"]),
                             _f(m.e_warp), _f(m.style_distance), _f(m.content_distance)))
                if e["baseline"] is not None:
                    b = reports[labels[e["baseline"]]]
                    rows.append(("", f"{labels[e['baseline']]} (baseline)", _arch(e["baseline"])[0],
                                 _temporal_weight(e["baseline"]), _f(b.e_warp), _f(b.style_distance),
                                 _f(b.content_distance)))
                    rows.append(("", "  ratio model/baseline", "", "", _ratio(m.e_warp, b.e_warp),
                                 _ratio(m.style_distance, b.style_distance),
                                 _ratio(m.content_distance, b.content_distance)))
            print(f"{video}: {first.seconds:.1f} s, flow {first.flow}, {first.vgg_frames} VGG frames", file=sys.stderr)
    except FastNSTError as exc:
        print(f"quality: error: {exc}", file=sys.stderr)
        return 2

    header = ("video", "model", "preset", "temporal w.", "E_warp", "style dist.", "content dist.")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(c.ljust(widths[i]) if i < 4 else c.rjust(widths[i]) for i, c in enumerate(r)))
    if args.json:
        write_json(args.json, all_reports)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
