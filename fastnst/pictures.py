"""Pictures for people: frame grids over time, temporal-error heat maps and training loss curves.

This module only draws. The numbers come from elsewhere: error maps from :mod:`fastnst.metrics`,
losses from a trainer's history or its ``log.jsonl`` (:func:`fastnst.fileio.read_training_log`).
Text on pictures goes through :func:`fastnst.fileio.put_label`; files are written atomically.

Pictures are ``(H,W,3)`` uint8 RGB arrays; frames given as tensors are ``(1,3,H,W)`` float in ``[0,1]``.
Loss curves need matplotlib (``pip install 'fastnst[plots]'``); without it they raise
:class:`MatplotlibMissing`, which a caller that can do without a plot (the trainer) catches.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from .errors import FastNSTError
from .fileio import atomic_path, label_width, put_label, read_training_log
from .images import contact_sheet, to_uint8

Frame = np.ndarray  # (H,W,3) uint8 RGB
# One heat-map row: (label, frame t, frame t+1 warped back to t, per-pixel error (H,W) float).
HeatRow = tuple[str, torch.Tensor, torch.Tensor, np.ndarray]
Rows = Sequence[Mapping[str, float]]  # training log rows, each with a "step"

UNTRUSTED_GREY = 128  # heat-map pixels the flow check did not trust
SCALE_BAR_HEIGHT = 40
LOSS_FIELDS: tuple[str, ...] = ("total", "content", "style", "tv", "temporal", "images_per_s")


class MatplotlibMissing(FastNSTError):
    """Loss curves were asked for but matplotlib is not installed."""


# --------------------------------------------------------------------------------------------------
# Frames over time
# --------------------------------------------------------------------------------------------------


class Spread:
    """Keeps about ``n`` items spread evenly over a stream of unknown length (the frames of a grid).

    Every item whose index is a multiple of the current step is kept; when more than ``2n`` are
    kept, every other one is dropped and the step doubles, so memory stays below ``2n`` items.
    """

    def __init__(self, n: int) -> None:
        self.n, self.step, self.items = max(1, n), 1, []

    def offer(self, index: int, item: object) -> None:
        if index % self.step == 0:
            self.items.append((index, item))
            if len(self.items) > 2 * self.n:
                self.items = self.items[::2]
                self.step *= 2

    def pick(self) -> list[tuple[int, object]]:
        """At most ``n`` ``(index, item)`` pairs, the first and last kept ones included."""
        if len(self.items) <= self.n:
            return self.items
        idx = np.linspace(0, len(self.items) - 1, self.n).round().astype(int)
        return [self.items[i] for i in idx]


def side_by_side_grid(inputs: Sequence[Frame], outputs: Sequence[Sequence[Frame]], *,
                      frame_labels: Sequence[str] | None = None, row_labels: Sequence[str] = ()) -> np.ndarray:
    """Input frames on the first row, each output's frames on the rows below (frames over time
    left to right) → one ``(H,W,3)`` uint8 image. Tiles are labelled with the row's name (``input``,
    ``row_labels[i]`` or ``output i``) and the frame's label."""
    n = len(inputs)
    names = ["input", *row_labels] + [f"output {i}" for i in range(len(row_labels), len(outputs))]
    tiles: list[np.ndarray] = list(inputs)
    labels = [f"{names[0]} {frame_labels[i]}" if frame_labels else names[0] for i in range(n)]
    for r, row in enumerate(outputs):
        if len(row) != n:
            raise ValueError("every output row needs as many frames as the input row")
        tiles += list(row)
        labels += [f"{names[r + 1]} {frame_labels[i]}" if frame_labels else names[r + 1] for i in range(n)]
    return contact_sheet(tiles, columns=n, labels=labels)


# --------------------------------------------------------------------------------------------------
# Temporal error heat map
# --------------------------------------------------------------------------------------------------


def heat_colours(values: np.ndarray, vmax: float) -> np.ndarray:
    """``(H,W)`` values in ``[0, vmax]`` → ``(H,W,3)`` uint8 RGB in the inferno colour map
    (0 black, ``vmax`` and above pale yellow)."""
    import cv2

    scaled = np.clip(values / max(vmax, 1e-12) * 255, 0, 255).astype(np.uint8)
    return cv2.applyColorMap(scaled, cv2.COLORMAP_INFERNO)[:, :, ::-1].copy()


SCALE_LEGENDS = ("mean squared RGB error; grey = untrusted (occluded, motion boundary)",
                 "mean sq. RGB error; grey = untrusted", "grey = untrusted")


def scale_bar(width: int, vmax: float) -> np.ndarray:
    """The heat map's key: an inferno ramp from 0 to ``vmax`` with both ends labelled under it and,
    between them, the longest of :data:`SCALE_LEGENDS` that fits → ``(SCALE_BAR_HEIGHT, width, 3)`` uint8."""
    size = 0.4
    bar = np.full((SCALE_BAR_HEIGHT, width, 3), 255, np.uint8)
    ramp = np.linspace(0, vmax, width - 8)[None, :].repeat(14, 0)
    bar[4:18, 4:width - 4] = heat_colours(ramp, vmax)
    top = f"{vmax:.3g}"
    top_x = width - 4 - label_width(top, size)
    labels = [("0", 4), (top, top_x)]
    room = (4 + label_width("0", size) + 12, top_x - 12)  # the legend keeps 12 px from the end labels
    legend = next((t for t in SCALE_LEGENDS if label_width(t, size) <= room[1] - room[0]), None)
    if legend is not None:
        labels.append((legend, (room[0] + room[1] - label_width(legend, size)) // 2))
    for text, x in labels:
        put_label(bar, text, (x, 34), scale=size, color=(0, 0, 0), outline=None)
    return bar


def error_heatmap(rows: Sequence[HeatRow], mask: torch.Tensor, *, vmax: float | None = None) -> np.ndarray:
    """Temporal error of one pair as a picture, one row per ``(label, frame_t, warped_next, error)``.

    Each row shows frame t | frame t+1 warped back to t | the per-pixel error (inferno colour map,
    one shared scale for all rows, untrusted pixels in flat grey), labelled with the row's mean error
    over trusted pixels. Frames are ``(1,3,H,W)`` float in ``[0,1]``, errors ``(H,W)`` in the same
    units as :func:`fastnst.metrics.warp_error_map`; ``mask`` ``(1,1,H,W)`` (``> 0.5`` = trusted).
    ``vmax`` (the top of the scale) defaults to the 99.5th percentile of the trusted errors. A scale
    bar is drawn below. Returns ``(H,W,3)`` uint8 RGB.
    """
    keep = mask[0, 0].cpu().numpy() > 0.5
    maps = [np.asarray(emap, np.float32) for *_, emap in rows]
    if vmax is None:
        vals = np.concatenate([m[keep] if keep.any() else m.ravel() for m in maps])
        vmax = float(np.percentile(vals, 99.5)) if vals.size else 1.0
    vmax = max(vmax, 1e-6)
    tiles, labels = [], []
    for (label, frame_t, warped, _), emap in zip(rows, maps):
        heat = heat_colours(emap, vmax)
        heat[~keep] = UNTRUSTED_GREY
        e = float(emap[keep].mean()) if keep.any() else float("nan")
        tiles += [to_uint8(frame_t), to_uint8(warped), heat]
        labels += [f"{label} t", f"{label} t+1 warped", f"{label} E={e:.3g}"]
    sheet = contact_sheet(tiles, columns=3, labels=labels)
    return np.vstack([sheet, scale_bar(sheet.shape[1], vmax)])


# --------------------------------------------------------------------------------------------------
# Loss curves
# --------------------------------------------------------------------------------------------------


def _read_runs(logs: str | os.PathLike | Sequence[str | os.PathLike],
               labels: Sequence[str] | None) -> dict[str, list[dict]]:
    """``{label: rows}`` from log files or run folders, labelled by ``labels`` or their folder names."""
    paths = [logs] if isinstance(logs, (str, os.PathLike)) else list(logs)
    if labels is not None and len(labels) != len(paths):
        raise FastNSTError(f"Give one label per training log ({len(paths)} logs, {len(labels)} labels).")
    names = list(labels) if labels else [Path(p).parent.name if Path(p).is_file() else Path(p).name for p in paths]
    runs: dict[str, list[dict]] = {}
    for i, (name, path) in enumerate(zip(names, paths)):
        runs[name if name not in runs else f"{name} ({i + 1})"] = read_training_log(path)
    return runs


def _shown_fields(runs: Mapping[str, Rows]) -> list[str]:
    """The fields of :data:`LOSS_FIELDS` that some row holds as a non-zero number (a switched-off
    term, 0 throughout, gets no panel)."""
    def shown(key: str) -> bool:
        return any(isinstance(r.get(key), (int, float)) and r[key] != 0 for rows in runs.values() for r in rows)

    present = [f for f in LOSS_FIELDS if shown(f)]
    if not present:
        raise FastNSTError("The training logs hold none of the fields " + ", ".join(LOSS_FIELDS) + ".")
    return present


def plot_loss_curves(runs: Mapping[str, Rows] | str | os.PathLike | Sequence[str | os.PathLike],
                     output: str | os.PathLike, *, labels: Sequence[str] | None = None, title: str = "") -> Path:
    """Loss curves, one panel per term (log scale where positive), one line per run → PNG at
    ``output``, written atomically. Used by ``fastnst curves`` and by the trainer (``loss_curve.png``).

    ``runs``: ``{label: rows}`` (rows in memory, e.g. a trainer's history) or training ``log.jsonl``
    files / run folders, labelled by ``labels`` or else by their folder names. Raises
    :class:`MatplotlibMissing` without matplotlib, :class:`FastNSTError` when no row holds a term.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise MatplotlibMissing("Loss curves need matplotlib: pip install 'fastnst[plots]'.") from exc
    runs = dict(runs) if isinstance(runs, Mapping) else _read_runs(runs, labels)
    present = _shown_fields(runs)
    cols = min(3, len(present))
    nrows = -(-len(present) // cols)
    # Figure + Agg canvas directly: no pyplot, so no global backend state is touched.
    fig = Figure(figsize=(4.2 * cols, 3.0 * nrows + (0.4 if title else 0)), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    if title:
        fig.suptitle(title)
    for i, key in enumerate(present):
        ax = fig.add_subplot(nrows, cols, i + 1)
        for name, rows in runs.items():
            pts = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, label=name, linewidth=1.5 if key == "total" else 1.0)
        if key != "images_per_s" and all(v > 0 for line in ax.get_lines() for v in line.get_ydata()):
            ax.set_yscale("log")
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3, which="both")
        if len(runs) > 1:
            ax.legend(fontsize=7)
    output = Path(output)
    with atomic_path(output) as tmp:
        fig.savefig(tmp, format="png")
    return output


__all__ = [
    "LOSS_FIELDS",
    "MatplotlibMissing",
    "Spread",
    "error_heatmap",
    "heat_colours",
    "plot_loss_curves",
    "scale_bar",
    "side_by_side_grid",
]
