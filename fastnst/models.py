"""The feed-forward transformation network (Johnson et al. 2016, with Ulyanov's instance norm).

Encoder (9×9 conv, two stride-2 3×3 convs) → residual blocks → decoder that upsamples with
nearest neighbour *then* convolves (no transposed convs: no checkerboard) → 9×9 conv to RGB.
Reflection padding everywhere so borders do not darken. Input and output are RGB
``(B,3,H,W)`` float in ``[0,1]``; any H×W works (reflect-padded to a multiple of 4, cropped back).

The ``unshuffle`` stem (preset ``lite``) does no convolution at the full working resolution: the
frame is folded into 12 channels at half resolution (pixel-unshuffle), the encoder and decoder run
from there, and the last 3×3 conv makes 12 channels that pixel-shuffle unfolds back to RGB at full
resolution (Shi et al. 2016). On CPUs a full-resolution conv with 3 or 16 channels is memory-bound:
the two 9×9 edge convs are half of the ``fast`` preset's multiply-adds and more of its time. The last
conv starts as ICNR (Aitken et al. 2017: the four sub-pixels of each output pixel share weights), so
the untrained net is nearest-neighbour upsampling of one half-resolution image and has no 2×2 grid
pattern to unlearn.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .errors import FastNSTError

NormFactory = Callable[[int], nn.Module]


def instance_norm(channels: int) -> nn.Module:
    # The norm is built through a factory so a conditional-instance-norm variant (one affine
    # pair per style) can be dropped in without touching the layer code.
    return nn.InstanceNorm2d(channels, affine=True)


STEMS = ("conv9", "unshuffle")


@dataclass(frozen=True)
class Arch:
    """Network shape: channel widths of the three encoder stages, number of residual blocks, and the
    stem: ``"conv9"`` (9×9 convs at full resolution in and out, Johnson et al.) or ``"unshuffle"``
    (pixel-unshuffle in, pixel-shuffle out: nothing at full resolution)."""

    widths: tuple[int, int, int] = (32, 64, 128)
    n_residual: int = 5
    stem: str = "conv9"

    def to_dict(self) -> dict:
        d = {"widths": list(self.widths), "n_residual": self.n_residual}
        if self.stem != "conv9":  # files written before stems existed say nothing: conv9
            d["stem"] = self.stem
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Arch:
        try:
            widths = tuple(int(x) for x in d["widths"])
            stem = d.get("stem", "conv9")
            if len(widths) != 3 or stem not in STEMS:
                raise ValueError
            return cls(widths=widths, n_residual=int(d["n_residual"]), stem=stem)  # type: ignore[arg-type]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise FastNSTError(f"Invalid network description {d!r}.") from exc

    @property
    def multiple(self) -> int:
        """Input sides are padded to a multiple of this: 2 per stride-2 stage (and 2 for unshuffle)."""
        return 8 if self.stem == "unshuffle" else 4


PRESETS: dict[str, Arch] = {
    "quality": Arch((32, 64, 128), 5),  # pytorch/examples' net: 1.68 M parameters
    "fast": Arch((16, 32, 64), 3),  # ~4× fewer FLOPs, for CPU and webcam
    # No full-resolution layer: ~7.6 k multiply-adds per output pixel against fast's 33.5 k (see
    # the module docstring and benchmarks/speed.py); the shipped *_lite styles are fast's distilled twins.
    "lite": Arch((16, 32, 64), 3, "unshuffle"),
}


class ConvLayer(nn.Module):
    """Reflection pad → conv (→ optional instance norm → ReLU)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, *,
                 norm: NormFactory | None = instance_norm, relu: bool = True) -> None:
        super().__init__()
        self.pad = nn.ReflectionPad2d(kernel // 2)
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride)
        self.norm = norm(out_ch) if norm is not None else nn.Identity()
        self.act = nn.ReLU(inplace=True) if relu else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(self.pad(x))))


class ResidualBlock(nn.Module):
    """Two 3×3 conv layers with instance norm and an identity shortcut (He et al. 2016)."""

    def __init__(self, channels: int, norm: NormFactory = instance_norm) -> None:
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, 3, norm=norm)
        self.conv2 = ConvLayer(channels, channels, 3, norm=norm, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.conv1(x))


class UpsampleConvLayer(nn.Module):
    """Nearest-neighbour ×2 upsampling, then a ConvLayer (Odena et al. 2016: no checkerboard)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, norm: NormFactory = instance_norm) -> None:
        super().__init__()
        self.conv = ConvLayer(in_ch, out_ch, kernel, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class TransformerNet(nn.Module):
    """Image transformation network.

    ``forward(x)``: ``(B,3,H,W)`` float in ``[0,1]`` → same shape. In training mode the output is
    not clamped (clamping would zero the gradient of out-of-range pixels); in eval mode it is
    clamped to ``[0,1]``.
    """

    def __init__(self, arch: Arch | None = None, *, norm: NormFactory = instance_norm) -> None:
        super().__init__()
        self.arch = arch or PRESETS["quality"]
        c1, c2, c3 = self.arch.widths
        if self.arch.stem == "unshuffle":
            first: list[nn.Module] = [nn.PixelUnshuffle(2), ConvLayer(12, c1, 3, norm=norm)]
            last: list[nn.Module] = [ConvLayer(c1, 12, 3, norm=None, relu=False), nn.PixelShuffle(2)]
        else:
            first, last = [ConvLayer(3, c1, 9, norm=norm)], [ConvLayer(c1, 3, 9, norm=None, relu=False)]
        self.encoder = nn.Sequential(
            *first,
            ConvLayer(c1, c2, 3, 2, norm=norm),
            ConvLayer(c2, c3, 3, 2, norm=norm),
        )
        self.residuals = nn.Sequential(*(ResidualBlock(c3, norm) for _ in range(self.arch.n_residual)))
        self.decoder = nn.Sequential(
            UpsampleConvLayer(c3, c2, 3, norm),
            UpsampleConvLayer(c2, c1, 3, norm),
            *last,
        )
        if self.arch.stem == "unshuffle":
            icnr_(self.decoder[2].conv, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        m = self.arch.multiple
        # a multiple of m, and at least 2m: the first reflection pad needs more pixels than it adds
        ph, pw = max((-h) % m, 2 * m - h), max((-w) % m, 2 * m - w)
        if ph or pw:
            # reflect needs pad < size; tiny inputs fall back to replicate
            mode = "reflect" if (ph < h and pw < w) else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        y = self.decoder(self.residuals(self.encoder(x)))[..., :h, :w]
        return y if self.training else y.clamp(0.0, 1.0)


def icnr_(conv: nn.Conv2d, scale: int) -> None:
    """ICNR initialisation (Aitken et al. 2017) of a conv feeding ``PixelShuffle(scale)``: the
    ``scale²`` sub-pixel filters of each output channel start equal, so the shuffled output is a
    nearest-neighbour upsampling — no checkerboard at step 0."""
    out_ch = conv.out_channels // (scale * scale)
    with torch.no_grad():
        base = conv.weight[:out_ch].clone()
        conv.weight.copy_(base.repeat_interleave(scale * scale, dim=0))
        conv.bias.copy_(conv.bias[:out_ch].clone().repeat_interleave(scale * scale))


def build_model(*, preset: str | None = "quality", arch: Arch | None = None) -> TransformerNet:
    """Build a TransformerNet from a preset name or an explicit :class:`Arch` (keyword-only)."""
    if arch is None:
        if preset not in PRESETS:
            raise FastNSTError(f"Unknown preset {preset!r}; choose one of {sorted(PRESETS)}.")
        arch = PRESETS[preset]
    return TransformerNet(arch)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["PRESETS", "STEMS", "Arch", "ConvLayer", "ResidualBlock", "TransformerNet", "UpsampleConvLayer",
           "build_model", "count_parameters", "icnr_"]
