"""Plot the style/flicker frontier from `fastnst eval --json` reports: style distance (× the input's)
against E_warp (× the input's floor), with and without stabilisation, one point per report.

    python docs/make_frontier.py LABEL=report.json [LABEL=report.json ...] -o docs/frontier.png
    python docs/make_frontier.py … --bar 0.40,3 --title "…" -o docs/quick_frontier.png   (quick mode's bar)

A report of a model (``--model``) holds both the stabilised and the unstabilised figures; the two are
joined by a line (``--stabilised-only`` plots the first alone). Lower-left is better; the bar
(``--bar STYLE,FLICKER``, default the look issue's: style ≤ 0.25×, E_warp ≤ 2×) is shaded.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def points(report: dict) -> list[tuple[str, float, float]]:
    """(kind, E_warp ratio, style ratio) for the report and its unstabilised twin if present."""
    out = []
    for kind, r in (("stabilised", report), ("no stabilisation", report.get("unstabilized"))):
        if r and r.get("e_warp_ratio") and r.get("style_distance") and r.get("style_distance_input"):
            out.append((kind, r["e_warp_ratio"], r["style_distance"] / r["style_distance_input"]))
    return out


def main(argv: list[str] | None = None) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("reports", nargs="+", help="LABEL=report.json")
    p.add_argument("-o", "--output", type=Path, default=Path("docs/frontier.png"))
    p.add_argument("--bar", default="0.25,2", help="STYLE,FLICKER: the target corner to shade (default: 0.25,2)")
    p.add_argument("--title", default="bikes.mp4: style against flicker (o stabilised, x not)")
    p.add_argument("--stabilised-only", action="store_true", help="leave out the unstabilised twins")
    p.add_argument("--numbered", action="store_true",
                   help="mark points with numbers and list the labels beside the plot (for crowded plots)")
    args = p.parse_args(argv)
    bar_style, bar_flicker = (float(v) for v in args.bar.split(","))
    fig, ax = plt.subplots(figsize=(10, 5) if args.numbered else (7, 5), dpi=110)
    key = []
    reports = [(item.split("=", 1)[0], json.loads(Path(item.split("=", 1)[1]).read_text())) for item in args.reports]
    left = min([0.3] + [x / 1.5 for _, r in reports for _, x, _ in points(r)])  # every point in view
    ax.fill_between([left, bar_flicker], 0, bar_style, color="#dfe", zorder=0,
                    label=f"the bar: style ≤ {bar_style:g}×, E_warp ≤ {bar_flicker:g}×")
    ax.axvline(bar_flicker, color="#9a9", ls="--", lw=1)
    ax.axhline(bar_style, color="#9a9", ls="--", lw=1)
    for n, (label, report) in enumerate(reports, 1):
        if args.numbered:
            key.append(f"{n}  {label}")
            label = str(n)
        pts = points(report)[:1 if args.stabilised_only else None]
        if len(pts) == 2:
            ax.plot([pts[0][1], pts[1][1]], [pts[0][2], pts[1][2]], color="#bbb", lw=1, zorder=1)
        for kind, x, y in pts:
            ax.scatter([x], [y], marker="o" if kind == "stabilised" else "x", zorder=2)
            if kind == "stabilised" or not args.numbered:  # numbered: the x beside its o needs no label
                ax.annotate(f"{label}" + ("" if kind == "stabilised" else " (no stab.)"), (x, y), fontsize=7,
                            xytext=(4, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlim(left=left)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_xlabel("E_warp / input floor (flicker; log)")
    ax.set_ylabel("style distance / input's (lower = closer to the painting)")
    ax.set_title(args.title)
    ax.grid(alpha=0.3)
    if key:
        fig.subplots_adjust(right=0.62)
        fig.text(0.64, 0.88, "\n".join(key), fontsize=8, va="top", family="monospace")
    else:
        fig.tight_layout()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.output)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
