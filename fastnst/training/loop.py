"""The training loop: transformation net, VGG19 perceptual loss, two-frame temporal loss.

For a batch of pairs (:mod:`fastnst.training.data`: ``frame2 ≈ W(frame1, f)`` on ``mask``) the net ``N``
runs once on both frames stacked along the batch, ``O₁ = N(frame1)``, ``O₂ = N(frame2)``, and::

    L = α Σ_l c_l ‖φ_l(O₁) − φ_l(frame1)‖² / ‖φ_l(R)‖²          content, φ = VGG19 taps
      + β Σ_l s_l ‖G(φ_l(O₁)) − Ĝ_l‖² / ‖Ĝ_l‖²                style, G = Gram, Ĝ = style image(s)
      + γ TV(O₁)                                                total variation
      + λ Σ_p M(p) ‖O₂(p) − W(O₁, f)(p)‖² / (3 Σ_p M(p))        temporal (Ruder et al. 2016)

where ``‖·‖²`` are means over elements, layer weights ``c_l``, ``s_l`` are normalised to sum 1 and
``R`` are fixed reference photos (the held-out validation photos), so α, β, γ, λ are scale-free
(:func:`fastnst.losses.balanced_weights`). The temporal term teaches the net that a moved input must
give a moved output; it needs no VGG pass. With ``--perceptual-both`` the content/style terms
also cover ``O₂`` in the same (doubled) VGG pass.

The content, style and TV terms, the Gram targets and the balancing are
:class:`fastnst.perceptual.PerceptualLoss`, the same as the Gatys mode's; the temporal term is here.

Distillation (``--teacher``): a trained style net ``T`` replaces the VGG, and the student ``N`` learns
to reproduce it on the same pairs (no Gram targets, no VGG pass)::

    L = ‖O − T(x)‖₁ on both frames                                   distill
      + τ ‖∇O − ∇T(x)‖₁                                              texture (image gradients)
      + σ Σ_p M(p) |(O₂ − W(O₁, f)) − (T(x₂) − W(T(x₁), f))| / (3 Σ_p M)   steadiness

so the student inherits the teacher's look and its response to motion and noise. With
``--teacher-phases K`` the teacher's output is its mean over K × K offsets of its stride grid
(:func:`fastnst.models.phase_mean`): a strided network paints a scene moved by a fraction of its stride
a little differently, and the mean hardly does, so the student learns texture that moves with the scene.

Video networks (``--preset video``, Ruder et al. 2018): the net also takes its own previous output
carried along the flow, ``P = W(O_prev, f)``, times an eroded trust mask ``M̃`` (:func:`fastnst.models.video_input`).
From a pair, ``O₁ = N(frame1, ∅)`` is computed without gradient and ``O₂ = N(frame2, P·M̃)``; late in
training (``unroll_after``) the chain runs ``unroll`` frames, each next frame the last one moved by the
same flow again, so the net learns from priors it made itself. Every frame of a chain has noise and a
brightness of its own (``frame_noise``, ``frame_brightness``), as a camera's frames do: were frames 3
and 4 warps of the noisy frame 2, their noise would move with the scene, and the net would never learn
that texture drawn from noise must give way to the prior (measured, run P against run K of
weights/README.md: half the flicker on bikes.mp4 and vtest.avi at the same style distance). A share
``empty_prior`` of the samples
gets ``M̃ = 0``. The content, style and TV terms are taken on the chain's last output, and the temporal
term (against ``P``, on the trusted pixels, for the output and for the painting under the gate) on
those of its samples that were given a prior; the priors are detached, so no gradient reaches earlier
frames anyway.

Efficiency: the VGG stops after the deepest tap (:class:`fastnst.vgg.VGG19Features`), content
targets are computed under ``no_grad`` and only up to the deepest *content* tap
(:meth:`~fastnst.perceptual.PerceptualLoss.content_targets`), and the style Grams are computed once
before the first step.

Precision (:func:`amp_dtype`): the nets run under bf16/fp16 autocast only where the hardware has
that precision natively (``--amp auto``); the warp of the temporal term, the Gram matrices and the
loss reductions stay fp32 whatever the autocast dtype.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import losses
from ..devices import autocast, cpu_has_native_bf16, cuda_has_native_bf16
from ..errors import FastNSTError
from ..fileio import atomic_path, load_torch_weights, read_log_rows, write_json, write_log_rows
from ..flow import erode_mask, synthetic_flow, warp
from ..images import contact_sheet, read_image, resize_to, to_tensor, to_uint8, write_image
from ..models import PRESETS, Arch, TransformerNet, expand_to_video, phase_mean, video_input
from ..motion import Motion
from ..perceptual import PerceptualLoss, load_extractor, normalise_weights
from ..pictures import MatplotlibMissing, plot_loss_curves
from ..styles import family_of, load_style, load_style_file, save_style
from ..stylizer import style_work_size
from . import dist
from .config import TrainConfig, parse_config
from .data import (
    PairParams,
    StreamSampler,
    TrainingPairs,
    camera,
    center_square,
    find_photos,
    moving_occluders,
    read_video_pairs,
    split_validation,
    worker_init,
)

CHECKPOINT_FORMAT = "fastnst-train-checkpoint"
CHECKPOINT_VERSION = 1
LOSS_KEYS = ("content", "style", "tv", "temporal", "total")
DISTILL_KEYS = ("distill", "texture", "steadiness", "total")
# Under DDP the processes agree on a SIGTERM stop every N steps (a tiny all-reduce and, on CUDA, a
# host sync; every step would cost the sync every step). The agreement points are the same step
# numbers in every process, which DDP keeps in lockstep.
STOP_AGREE_EVERY = 5


@dataclass
class TrainResult:
    """What a finished run produced (on rank 0; other ranks get the same paths)."""

    output: Path
    out_dir: Path
    checkpoint: Path
    start_step: int
    steps: int
    seconds: float
    device: str
    world: int
    history: list[dict] = field(default_factory=list)


# --- pieces -----------------------------------------------------------------------------------------


def parse_arch(cfg: TrainConfig) -> tuple[Arch, str]:
    """The network shape and the preset label stored in the model file (``custom`` for ``--arch``)."""
    if not cfg.arch:
        if cfg.preset not in PRESETS:
            raise FastNSTError(f"Unknown preset {cfg.preset!r}; choose one of {sorted(PRESETS)}.")
        arch = PRESETS[cfg.preset]
        return (replace(arch, carry=cfg.carry) if cfg.carry else arch), cfg.preset
    try:
        widths, _, res = cfg.arch.partition(":")
        w = tuple(int(x) for x in widths.split(","))
        if len(w) != 3 or min(w) < 1 or not res or int(res) < 0:
            raise ValueError
        return Arch(w, int(res)), "custom"  # type: ignore[arg-type]
    except ValueError as exc:
        raise FastNSTError(f"--arch {cfg.arch!r} is not of the form W1,W2,W3:RES (e.g. 16,32,64:3).") from exc


def amp_dtype(mode: str, device: torch.device) -> tuple[torch.dtype | None, str]:
    """The autocast dtype for ``--amp MODE`` (None = fp32) and a one-line note for the user ("" = none).

    ``auto`` takes only what the hardware computes natively, because emulated bf16 is slower than
    fp32: bf16 on CUDA of compute capability ≥ 8 (else fp16), bf16 on CPUs with AVX512-BF16/AMX/Arm
    BF16 (else fp32). An explicit ``bf16`` is honoured anywhere, with a warning where it is emulated;
    ``fp16`` needs CUDA (CPU autocast has no useful fp16).
    """
    if mode == "off":
        return None, ""
    if device.type == "cuda":
        native = cuda_has_native_bf16(device)
        if mode == "auto":
            return (torch.bfloat16 if native else torch.float16), ""
        if mode == "bf16" and not native:
            return torch.bfloat16, f"warning: {device} has no native bf16 (compute capability < 8): emulated, slow"
        return {"bf16": torch.bfloat16, "fp16": torch.float16}[mode], ""
    if device.type != "cpu":
        return None, ""
    native = cpu_has_native_bf16()
    if mode == "auto":
        return (torch.bfloat16 if native else None), ""
    if mode == "fp16":
        raise FastNSTError("--amp fp16 needs a CUDA device; on a CPU use --amp bf16 or --amp off.")
    note = "" if native else "warning: this CPU has no native bf16 (no AVX512-BF16/AMX): --amp bf16 is emulated, slow"
    return torch.bfloat16, note


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Learning rate of step ``step + 1`` (0-based ``step`` steps done): ``lr`` after a linear warm-up."""
    if cfg.warmup_steps <= 0:
        return cfg.lr
    return cfg.lr * min(1.0, (step + 1) / cfg.warmup_steps)


def build_loss_network(cfg: TrainConfig, taps: Sequence[str], device: torch.device) -> nn.Module:
    """The VGG19 returning ``taps``: real weights (``cfg.vgg_weights`` or the cache), or for
    ``vgg_weights="random"`` a seeded random VGG19 with torchvision preprocessing (tests: no download)."""
    return load_extractor(taps, weights=cfg.vgg_weights or None, device=device)


def read_style_images(paths: Sequence[str], size: int, device: torch.device) -> list[torch.Tensor]:
    """The style images as ``(1,3,H,W)`` in ``[0,1]`` on ``device``, longer side ``size`` (0: as they are)."""
    images = [to_tensor(read_image(p), device) for p in paths]
    return [resize_to(img, size) for img in images] if size > 0 else images


@torch.no_grad()
def stylize_samples(net: TransformerNet, images: Sequence[torch.Tensor], device: torch.device,
                    dtype: torch.dtype | None) -> list[torch.Tensor]:
    was_training = net.training
    net.eval()
    try:
        with autocast(device, dtype):
            return [net(x).float().clamp(0, 1) for x in images]
    finally:
        net.train(was_training)


def sample_sheet(inputs: Sequence[torch.Tensor], outputs: Sequence[torch.Tensor], labels: Sequence[str],
                 step: int):
    """Inputs in the first row, their stylizations below (uint8 ``(H,W,3)`` grid)."""
    tiles = [to_uint8(x) for x in inputs] + [to_uint8(y) for y in outputs]
    names = list(labels) + [f"step {step}"] * len(outputs)
    return contact_sheet(tiles, columns=len(inputs), labels=names)


def save_checkpoint(path: Path, *, step: int, seconds: float, net: nn.Module, optimizer: torch.optim.Optimizer,
                    scaler: torch.amp.GradScaler, cfg: TrainConfig, arch: Arch, preset: str, world: int) -> Path:
    """A plain-dict checkpoint (loads with ``torch.load(weights_only=True)``), written atomically."""
    state = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "step": step,
        "seconds": seconds,
        "model": net.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler.is_enabled() else {},
        "config": cfg.to_dict(),
        "arch": arch.to_dict(),
        "preset": preset,
        "world": world,
        "rng": {"torch": torch.get_rng_state()},
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


def load_checkpoint(path: Path) -> dict:
    state = load_torch_weights(path, "a readable training checkpoint")
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise FastNSTError(f"{path} is not a fastnst training checkpoint.")
    return state


def require_arch(path: Path, found: Arch, found_preset: str | None, arch: Arch, preset: str) -> None:
    """Refuse weights of another network in one sentence (resume and ``--init`` alike)."""
    if found != arch:
        raise FastNSTError(f"{path} holds a {found_preset} network {found.to_dict()}, "
                           f"not the requested {preset} {arch.to_dict()}.")


def init_weights(net: TransformerNet, path: Path, arch: Arch, preset: str) -> None:
    """Load ``net``'s weights from a style model (``.safetensors``) or a training checkpoint. A video
    network may start from the per-frame network of its shape (zero prior weights: it starts as that
    network, :func:`fastnst.models.expand_to_video`)."""
    if not path.is_file():
        raise FastNSTError(f"--init {path} does not exist.")
    if path.suffix == ".safetensors":
        model = load_style_file(path)
        found, found_preset, state = model.net.arch, model.preset, model.net.state_dict()
    else:
        ckpt = load_checkpoint(path)
        found, found_preset, state = Arch.from_dict(ckpt["arch"]), ckpt.get("preset"), ckpt["model"]
    if arch.video and found == replace(arch, video=False, carry=0, gate=True):
        state = expand_to_video(state, arch)
    else:
        require_arch(path, found, found_preset, arch, preset)
    net.load_state_dict(state)  # copies into net's own dtype (shipped models are fp16)


def run_paths(cfg: TrainConfig, preset: str) -> tuple[str, Path, Path]:
    """``(name, out_dir, output)``: the run folder defaults to ``runs/NAME_PRESET`` and the style file
    into it, ``OUT_DIR/NAME_PRESET.safetensors``, never into a folder of installed styles. NAME defaults
    to the style image's stem, or the teacher's family (``starry_night`` for ``starry_night_fast``)."""
    name = cfg.name or (family_of(cfg.teacher) if cfg.teacher else Path(cfg.style[0]).stem)
    out_dir = Path(cfg.out_dir or f"runs/{name}_{preset}")
    output = Path(cfg.output) if cfg.output else out_dir / f"{name}_{preset}.safetensors"
    if output.suffix != ".safetensors":
        output = output.with_name(output.name + ".safetensors")
    return name, out_dir, output


def check_output(output: Path, cfg: TrainConfig, preset: str, resumed: dict | None) -> None:
    """Refuse to replace an existing file at ``output`` (a shipped style, another run's model) unless
    ``--force``; a resumed run may rewrite the model that the run it continues was writing."""
    if cfg.force or not output.exists():
        return
    if resumed is not None:
        previous = run_paths(TrainConfig.from_dict(resumed), preset)[2]
        if previous.resolve() == output.resolve():
            return
    raise FastNSTError(f"{output} already exists; pass --force to replace it, or choose another --output.")


def portable_config(cfg: TrainConfig) -> dict:
    """The configuration as stored in the style file: paths reduced to their last component, so a
    shared model carries no folder names of the machine that trained it."""
    d = cfg.to_dict()
    for key in ("content", "style", "video"):
        d[key] = [Path(p).resolve().name for p in d[key]]
    for key in ("out_dir", "output", "vgg_weights", "init", "resume", "recipe", "data_root", "teacher"):
        if d[key] and d[key] not in ("random", "auto"):
            d[key] = Path(d[key]).resolve().name
    return d


def resume_source(cfg: TrainConfig, ckpt_path: Path, out_dir: Path, info: dist.DistInfo) -> Path | None:
    """The checkpoint to continue from, if any (``--resume auto`` = the run folder's own)."""
    if cfg.resume == "auto":
        if ckpt_path.is_file():
            return ckpt_path
        _note(info, f"no checkpoint in {out_dir}: starting a new run")
        return None
    if cfg.resume:
        path = Path(cfg.resume)
        if not path.is_file():
            raise FastNSTError(f"Checkpoint {path} does not exist.")
        return path
    if ckpt_path.is_file():
        _note(info, f"{out_dir} holds a checkpoint; starting over (pass --resume auto to continue it)")
    return None


def _note(info: dist.DistInfo, text: str) -> None:
    if info.main:
        from tqdm.auto import tqdm

        tqdm.write(text, file=sys.stderr)


def _validate(cfg: TrainConfig) -> None:
    if not cfg.content:
        raise FastNSTError("Give at least one --content folder of photos.")
    if not cfg.style and not cfg.teacher:
        raise FastNSTError("Give at least one --style image (or a --teacher style model to distil).")
    if cfg.style and cfg.teacher:
        raise FastNSTError("--teacher distils a trained style model: give it without --style.")
    if cfg.steps < 1 or cfg.batch_size < 1 or cfg.image_size < 16:
        raise FastNSTError("--steps and --batch-size must be ≥ 1 and --image-size ≥ 16.")
    if cfg.lr <= 0:
        raise FastNSTError("--lr must be positive.")
    if cfg.warmup_steps < 0:
        raise FastNSTError("--warmup-steps must be 0 or more.")
    weights = (cfg.content_weight, cfg.style_weight, cfg.tv_weight, cfg.temporal_weight, cfg.texture_weight,
               cfg.steadiness_weight)
    if any(w < 0 or not math.isfinite(w) for w in weights):
        raise FastNSTError("Loss weights must be finite and non-negative.")
    if not (0.0 <= cfg.empty_prior <= 1.0 and 0.0 <= cfg.unroll_after <= 1.0):
        raise FastNSTError("--empty-prior and --unroll-after must be fractions from 0 to 1.")
    if cfg.unroll < 2 or cfg.prior_erode < 1 or cfg.prior_erode % 2 == 0:
        raise FastNSTError("--unroll must be at least 2 and --prior-erode an odd number of pixels.")
    if cfg.carry and (cfg.carry < 0 or cfg.carry % 2 == 0 or cfg.arch
                      or not getattr(PRESETS.get(cfg.preset), "carry", 0)):
        raise FastNSTError("--carry must be an odd number of pixels, and only a detail-carrying video "
                           "network (--preset video) has it.")
    if not 1 <= cfg.teacher_phases <= 8 or (cfg.teacher_phases > 1 and not cfg.teacher):
        raise FastNSTError("--teacher-phases must be from 1 to 8, and above 1 only with a --teacher.")
    if min(cfg.log_every, cfg.workers, cfg.threads, cfg.sample_every, cfg.checkpoint_every, cfg.val_images) < 0:
        raise FastNSTError("--log-every, --workers, --threads, --sample-every, --checkpoint-every and "
                           "--val-images must be ≥ 0.")
    for path in cfg.style:
        if not Path(path).is_file():
            raise FastNSTError(f"Style image {path} does not exist.")


class _MovingObjects:
    """The objects of :func:`fastnst.training.data.moving_occluders` pasted into a chain of frames: a
    patch of ``source`` (another photo) moving by ``step`` px a frame over the scene's own motion."""

    def __init__(self, source: torch.Tensor, box: torch.Tensor, step: torch.Tensor) -> None:
        self.source, self.box, self.step = source, box, step

    def into(self, frame: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Frame ``k`` (0-based) with its object, and the object's mask ``(B,1,H,W)``."""
        shift = (-k * self.step).expand(-1, 2, *frame.shape[-2:])
        box = warp(self.box, shift, padding_mode="zeros")[0]
        return frame * (1 - box) + warp(self.source, shift)[0] * box, box

    def into_next(self, frame: torch.Tensor, k: int, previous_box: torch.Tensor, flow: torch.Tensor,
                  inside: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(frame k with its object, the object's mask, the trust of the carried prior)``: nothing is
        trusted where the object is now or where it was (carried along the scene's flow), nor outside."""
        x, box = self.into(frame, k)
        was = warp(previous_box, flow, padding_mode="zeros")[0]
        return x, box, inside * (1 - box) * (1 - was)


class _EstimatedMotion:
    """The inference motion stage (:class:`fastnst.motion.Motion`: DIS, trust, erosion) run on a chain
    of training frames, one per sample, so a video network is trained on the priors it will get."""

    def __init__(self, erode: int) -> None:
        self.erode = erode
        self.motions: list[Motion] = []

    @staticmethod
    def _hwc(t: torch.Tensor) -> np.ndarray:
        return t.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()

    def start(self, x: torch.Tensor) -> None:
        """The chain's first frames ``(B,3,H,W)``."""
        while len(self.motions) < x.shape[0]:
            self.motions.append(Motion(erode=self.erode))
        for m, xi in zip(self.motions, x):
            m.reset()
            m.update(self._hwc(xi))

    def carry(self, x: torch.Tensor, prev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The next frames ``x`` ``(B,3,H,W)``: ``(prev carried onto them (B,3,H,W), mask (B,1,H,W))``,
        as :meth:`Motion.carry` and :meth:`Motion.prior_mask` give them at inference (zeros at a cut)."""
        carried, masks = torch.zeros_like(prev, dtype=torch.float32), torch.zeros_like(x[:, :1], dtype=torch.float32)
        for i, (m, xi) in enumerate(zip(self.motions, x)):
            m.update(self._hwc(xi))
            mask = m.prior_mask()
            if mask is not None:
                carried[i] = torch.from_numpy(m.carry(self._hwc(prev[i]))).permute(2, 0, 1)
                masks[i] = torch.from_numpy(mask).permute(2, 0, 1)
        return carried, masks


# --- the run ----------------------------------------------------------------------------------------


def train(cfg: TrainConfig, *, loss_net: nn.Module | None = None,
          stop: threading.Event | None = None) -> TrainResult:
    """Run (or continue) a training; see the module docstring for the loss.

    Writes into ``out_dir``: ``checkpoint.pt`` (every ``checkpoint_every`` steps and at the end),
    ``samples/step_NNNNNN.png`` and ``loss_curve.png`` (every ``sample_every`` steps and at the
    end), ``log.jsonl`` (every ``log_every`` steps: step, content, style, tv, temporal, total,
    images_per_s, seconds) and ``config.json``; finally the style model at ``output``. Under torchrun
    only rank 0 writes. ``loss_net`` replaces the VGG19 (a module returning ``{tap: features}``).
    ``stop``, once set, ends the run at the next step boundary like Ctrl-C (checkpoint, then
    ``KeyboardInterrupt``).
    """
    _validate(cfg)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    info = dist.setup(cfg.device)
    try:
        return _run(cfg, info, loss_net, stop)
    finally:
        dist.teardown(info)


def _run(cfg: TrainConfig, info: dist.DistInfo, loss_net: nn.Module | None,
         stop: threading.Event | None) -> TrainResult:
    trainer = _Trainer(cfg, info, stop)
    trainer.setup(loss_net)
    trainer.restore()
    trainer.prepare()
    trainer.run_steps()
    return trainer.finish()


class _Trainer:
    """One run's explicit state. The phases run in a fixed order — :meth:`setup` (data, loss network
    and targets, net, optimiser), :meth:`restore` (resume or ``--init``), :meth:`prepare` (run files,
    DDP, loader), :meth:`run_steps`, :meth:`finish` — because that order fixes the RNG stream, and a
    resumed run must match an uninterrupted one."""

    def __init__(self, cfg: TrainConfig, info: dist.DistInfo, stop: threading.Event | None) -> None:
        self.cfg, self.info, self.stop, self.device = cfg, info, stop, info.device
        self.arch, self.preset = parse_arch(cfg)
        self.name, self.out_dir, self.output = run_paths(cfg, self.preset)
        self.ckpt_path = self.out_dir / "checkpoint.pt"
        self.log_path = self.out_dir / "log.jsonl"
        self.resume_path = resume_source(cfg, self.ckpt_path, self.out_dir, info)
        self.state = load_checkpoint(self.resume_path) if self.resume_path is not None else None
        if self.state is not None:
            require_arch(self.resume_path, Arch.from_dict(self.state["arch"]), self.state.get("preset"),
                         self.arch, self.preset)
        check_output(self.output, cfg, self.preset, self.state["config"] if self.state is not None else None)
        self.dtype, amp_note = amp_dtype(cfg.amp, self.device)
        if amp_note:
            _note(info, amp_note)
        self.distilling = bool(cfg.teacher)
        self.keys = DISTILL_KEYS if self.distilling else LOSS_KEYS
        self.video = self.arch.video
        # a video network always trains on pairs: the second frame is where its prior comes from
        self.temporal = (cfg.steadiness_weight if self.distilling else cfg.temporal_weight) > 0 or self.video
        self.estimated_motion = (_EstimatedMotion(cfg.prior_erode)
                                 if self.video and cfg.prior_motion == "estimated" else None)
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.start_step, self.seconds0, self.history = 0, 0.0, []
        self.curve_note = ""  # set when the loss curve cannot be drawn (no matplotlib): noted once
        self.at_step = 0
        self.t0 = time.perf_counter()

    # --- setup / restore / prepare ---

    def setup(self, loss_net: nn.Module | None) -> None:
        self._setup_data()
        self._setup_loss(loss_net)
        torch.manual_seed(self.cfg.seed)
        self.net = TransformerNet(self.arch).to(device=self.device, memory_format=self.memory_format)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=self.cfg.lr)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.dtype == torch.float16)

    def _setup_data(self) -> None:
        """Training photos, held-out photos for the sample grid, optional video pairs."""
        cfg = self.cfg
        train_photos, val_photos = split_validation(find_photos(cfg.content), cfg.val_images)
        pairs = []
        for v in cfg.video:
            pairs += read_video_pairs(v, cfg.video_pairs, min_side=round(cfg.image_size / max(cfg.crop_min, 0.25)))
        params = PairParams(temporal=self.temporal, flow_shift=cfg.flow_shift, flow_zoom=cfg.flow_zoom,
                            flow_rotate=cfg.flow_rotate, flow_local=cfg.flow_local, frame_noise=cfg.frame_noise,
                            frame_brightness=cfg.frame_brightness)
        self.dataset = TrainingPairs(train_photos, cfg.image_size, seed=cfg.seed, params=params,
                                     crop_min=cfg.crop_min, video_pairs=pairs)
        self.shown = val_photos or train_photos[: min(4, len(train_photos))]
        self.sample_inputs = [resize_to(to_tensor(read_image(p), self.device), cfg.image_size) for p in self.shown]
        self.sample_labels = [p.stem[:18] + (" (val)" if val_photos else " (train)") for p in self.shown]

    def _setup_loss(self, loss_net: nn.Module | None) -> None:
        """The perceptual loss with the targets fixed for the whole run: the style Grams (mean over the
        style images) and the content weights balanced on reference photos; or the frozen teacher."""
        cfg, device = self.cfg, self.device
        if self.distilling:
            self.teacher = load_style(cfg.teacher, device=device)
            self.teacher.net.requires_grad_(False).eval()
            if cfg.teacher_phases > self.teacher.net.arch.multiple:
                raise FastNSTError(f"--teacher-phases {cfg.teacher_phases} is more than the teacher's grid has "
                                   f"({self.teacher.net.arch.multiple} a side).")
            return
        if loss_net is None:
            for layers, what in ((cfg.content_layers, "content"), (cfg.style_layers, "style")):
                normalise_weights(layers, what)  # a bad weight is reported before any weights are loaded
            loss_net = build_loss_network(cfg, [*cfg.content_layers, *cfg.style_layers], device)
        self.loss = PerceptualLoss(loss_net, cfg.content_layers, cfg.style_layers, content_weight=cfg.content_weight,
                                   style_weight=cfg.style_weight, tv_weight=cfg.tv_weight)
        self.loss.to(device, memory_format=self.memory_format)
        self.loss.set_style(read_style_images(cfg.style, cfg.style_size, device))
        if self.shown:
            refs = torch.cat([to_tensor(center_square(read_image(p), cfg.image_size), device) for p in self.shown])
        else:  # only video pairs: their first frames are the reference
            refs = torch.stack([self.dataset[k]["frame1"] for k in range(min(4, len(self.dataset)))]).to(device)
        self.loss.set_content_reference(refs)

    def restore(self) -> None:
        """Continue from the resumed checkpoint (weights, optimiser, scaler, RNG, log) or ``--init``."""
        cfg, state = self.cfg, self.state
        if state is not None:
            self.net.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])  # its saved lr is replaced at each step
            if state.get("scaler") and self.scaler.is_enabled():
                self.scaler.load_state_dict(state["scaler"])
            torch.set_rng_state(state["rng"]["torch"])
            self.start_step, self.seconds0 = int(state["step"]), float(state.get("seconds", 0.0))
            self.history = read_log_rows(self.log_path, self.start_step)
            _note(self.info, f"resuming {self.resume_path} at step {self.start_step}")
        elif cfg.init:
            init_weights(self.net, Path(cfg.init), self.arch, self.preset)
            _note(self.info, f"network initialised from {cfg.init}")
        self.at_step = self.start_step

    def prepare(self) -> None:
        """Run folder files (rank 0), the DDP/compiled model and the data loader."""
        cfg, info, device = self.cfg, self.info, self.device
        if info.main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            write_log_rows(self.log_path, self.history)
            write_json(self.out_dir / "config.json", cfg.to_dict())
        self.model: nn.Module = self.net
        if info.enabled:
            from torch.nn.parallel import DistributedDataParallel

            self.model = DistributedDataParallel(self.net, device_ids=[device.index] if device.type == "cuda" else None)
        if cfg.compile:
            self.model = torch.compile(self.model)
        sampler = StreamSampler(cfg.batch_size, cfg.steps, rank=info.rank, world=info.world,
                                start_step=self.start_step)
        self.loader = torch.utils.data.DataLoader(
            self.dataset, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.workers,
            pin_memory=device.type == "cuda", worker_init_fn=worker_init if cfg.workers else None,
            persistent_workers=False,
        )

    # --- the steps ---

    def run_steps(self) -> None:
        """All remaining steps; on a stop (Ctrl-C, ``stop``) checkpoint, then re-raise ``KeyboardInterrupt``."""
        from tqdm.auto import tqdm

        cfg, info = self.cfg, self.info
        self.net.train()
        # Refresh a bar in a terminal every second; in a log file (a background run) every minute.
        self.bar = tqdm(total=cfg.steps, initial=self.start_step, disable=not (cfg.progress and info.main),
                        unit="step", dynamic_ncols=True, desc=f"train {self.name}",
                        mininterval=1.0 if sys.stderr.isatty() else 60.0)
        self.window = torch.zeros(len(self.keys), device=self.device)
        self.window_steps, self.window_t = 0, time.perf_counter()
        self.t0 = time.perf_counter()
        self.at_step = self.start_step
        try:
            for batch in self.loader:
                b = self.step(batch)
                step = self.at_step
                if step % max(cfg.log_every, 1) == 0 or step == cfg.steps:
                    self.log(b)
                last = step == cfg.steps
                t_write = time.perf_counter()
                self.save_outputs(checkpoint=last or bool(cfg.checkpoint_every and step % cfg.checkpoint_every == 0),
                                  samples=last or bool(cfg.sample_every and step % cfg.sample_every == 0))
                self.window_t += time.perf_counter() - t_write  # images/s measures training, not file writing
                if self._stop_agreed(last):
                    raise KeyboardInterrupt
        except KeyboardInterrupt:
            if info.main and self.at_step > self.start_step:
                self.save_outputs(checkpoint=True, samples=False)
                _note(info, f"stopped at step {self.at_step}: checkpoint in {self.ckpt_path} "
                            "(--resume auto continues from it)")
            raise
        finally:
            self.bar.close()

    def _stop_agreed(self, last: bool) -> bool:
        """Whether any process saw ``stop``; under DDP asked only at the shared agreement points."""
        info = self.info
        return bool((not info.enabled or self.at_step % STOP_AGREE_EVERY == 0 or last)
                    and dist.any_process(self.stop is not None and self.stop.is_set(), info))

    def step(self, batch: Mapping[str, torch.Tensor]) -> int:
        """One optimisation step on ``batch``; adds its loss terms to the log window. Returns the batch size."""
        x1 = batch["frame1"].to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        with autocast(self.device, self.dtype):
            terms = self._loss_terms(batch, x1)
        self.optimizer.zero_grad(set_to_none=True)
        # a function of the step, so a resumed run matches, and a changed --lr applies to a continued one
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(self.cfg, self.at_step)
        self.scaler.scale(terms[-1]).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.at_step += 1
        self.bar.update(1)
        self.window += torch.stack(terms).detach().float()
        self.window_steps += 1
        return x1.shape[0]

    def _loss_terms(self, batch: Mapping[str, torch.Tensor], x1: torch.Tensor) -> list[torch.Tensor]:
        """``[content, style, tv, temporal, total]``, weighted (in the order of :data:`LOSS_KEYS`), or
        when distilling ``[distill, texture, steadiness, total]`` (:data:`DISTILL_KEYS`)."""
        if self.distilling:
            return self._distill_terms(batch, x1)
        if self.video:
            return self._video_terms(batch, x1)
        cfg, device, b = self.cfg, self.device, x1.shape[0]
        if self.temporal:
            x2 = batch["frame2"].to(device, non_blocking=True).contiguous(memory_format=self.memory_format)
            flow = batch["flow"].to(device, non_blocking=True)
            mask = batch["mask"].to(device, non_blocking=True)
            y = self.model(torch.cat([x1, x2]))
            y1, y2 = y[:b], y[b:]
            x_p, y_p = (torch.cat([x1, x2]), y) if cfg.perceptual_both else (x1, y1)
        else:
            y1 = self.model(x1)
            x_p, y_p = x1, y1
        l_content, l_style, l_tv = self.loss(y_p, self.loss.content_targets(x_p))
        if self.temporal:
            warped, _ = warp(y1, flow)
            l_temporal = cfg.temporal_weight * losses.temporal_loss(y2, warped, mask)
        else:
            l_temporal = torch.zeros((), device=device)
        return [l_content, l_style, l_tv, l_temporal, l_content + l_style + l_tv + l_temporal]

    def _video_terms(self, batch: Mapping[str, torch.Tensor], x1: torch.Tensor) -> list[torch.Tensor]:
        """The loss of a video network on one batch (module docstring): a chain of frames, each fed the
        previous output carried along the flow; the perceptual and temporal terms on the last."""
        cfg, dev = self.cfg, self.device
        b, s = x1.shape[0], x1.shape[-1]
        clean = batch["frame2"].to(dev, non_blocking=True).contiguous(memory_format=self.memory_format)
        flow = batch["flow"].to(dev, non_blocking=True)
        inside = batch["mask"].to(dev, non_blocking=True)
        g = torch.Generator().manual_seed((cfg.seed * 1_000_003 + self.at_step) * 64 + self.info.rank)
        kept = (torch.rand(b, generator=g) >= cfg.empty_prior).float().view(b, 1, 1, 1).to(dev)
        frames = cfg.unroll if self.at_step >= cfg.unroll_after * cfg.steps else 2
        objects = _MovingObjects(x1.roll(1, 0), *moving_occluders(frames, b, s, cfg.occluders, g, dev))
        jitter = synthetic_flow(b, s, s, max_shift=cfg.prior_jitter, max_zoom=0.0, max_rotate_deg=0.0,
                                local_amplitude=cfg.prior_jitter, generator=g, device=dev)
        total = flow  # from the chain's next frame back to frame 1 (composed, so one resampling a frame)

        def handed(x: torch.Tensor, prev: torch.Tensor, trust: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            """``(prev carried onto x by a flow with errors, as at inference; its eroded trust)``."""
            if estimated is not None:
                carried, mask = estimated.carry(x, prev)
                return carried.to(dev), mask.to(dev) * kept
            return warp(prev, flow + jitter)[0], erode_mask(trust, cfg.prior_erode) * kept

        with torch.no_grad():
            x, box = objects.into(camera(x1, cfg.frame_brightness, cfg.frame_noise, g), 0)
            estimated = self.estimated_motion
            if estimated is not None:
                estimated.start(x)
            prev = self.model(video_input(x)).float().clamp(0, 1)
            for k in range(1, frames - 1):
                x, box, trust = objects.into_next(clean, k, box, flow, inside)
                prev = self.model(video_input(x, *handed(x, prev, trust))).float().clamp(0, 1)
                # the next frame: the same motion again, warped from frame 1 along the composed flow
                # (one resampling, not one per frame: a chain of bilinear warps blurs), its own noise
                total = flow + warp(total, flow)[0]
                clean = camera(warp(x1, total)[0], cfg.frame_brightness, cfg.frame_noise, g)
        x, _, trust = objects.into_next(clean, frames - 1, box, flow, inside)
        prior, prior_mask = handed(x, prev, trust)
        y, paint = self.model(video_input(x, prior, prior_mask), painted=True)
        l_content, l_style, l_tv = self.loss(y, self.loss.content_targets(x))
        # Only a frame given a prior is held to it, and then both its output and the painting under the
        # gate are: were the painting free, the gate's last few % of it would make every trusted pixel
        # drift, frame after frame, towards a look of its own (measured: texture crawling on a still
        # camera). A frame painted from nothing is not held to the previous one at all: that two-frame
        # steadiness is what costs a per-frame network its texture, and here the prior gives it instead.
        moved = warp(prev, flow)[0]  # the previous output carried by the true (synthetic) motion
        # With temporal_target = prior, held to the prior exactly as it was handed over (the motion stage's
        # flow and mask) instead: where the estimate is wrong but trusted (a flat road: DIS cannot see its
        # motion, and the photometric check passes), copying would otherwise be punished, and the net
        # learns to repaint there every frame. Measured (runs W and X of weights/README.md): held so, it
        # copies wrong priors too, and smears; the content term (1 against 2000) does not stop it.
        carried, held = (prior, prior_mask) if cfg.temporal_target == "prior" else (moved, trust * kept)
        l_temporal = cfg.temporal_weight * (losses.temporal_loss(y, carried, held)
                                            + losses.temporal_loss(paint, carried, held))
        if cfg.empty_temporal > 0:  # optionally, some of a per-frame network's two-frame steadiness too
            l_temporal = l_temporal + cfg.empty_temporal * cfg.temporal_weight * losses.temporal_loss(
                y, moved, trust * (1 - kept))
        return [l_content, l_style, l_tv, l_temporal, l_content + l_style + l_tv + l_temporal]

    def _distill_terms(self, batch: Mapping[str, torch.Tensor], x1: torch.Tensor) -> list[torch.Tensor]:
        """The distillation loss of the module docstring on one batch (both frames in one pass)."""
        cfg, b = self.cfg, x1.shape[0]
        x = x1
        if self.temporal:
            x = torch.cat([x1, batch["frame2"].to(self.device, non_blocking=True).contiguous(
                memory_format=self.memory_format)])
        y = self.model(x)
        with torch.no_grad():
            t = phase_mean(self.teacher.net, x, cfg.teacher_phases)
        l_distill = losses.distill_loss(y, t)
        l_texture = cfg.texture_weight * losses.texture_loss(y, t)
        if self.temporal:
            flow = batch["flow"].to(self.device, non_blocking=True)
            mask = batch["mask"].to(self.device, non_blocking=True)
            change_y = y[b:].float() - warp(y[:b], flow)[0]
            change_t = t[b:].float() - warp(t[:b], flow)[0]
            l_steady = cfg.steadiness_weight * losses.steadiness_loss(change_y, change_t, mask)
        else:
            l_steady = torch.zeros((), device=self.device)
        return [l_distill, l_texture, l_steady, l_distill + l_texture + l_steady]

    # --- log / checkpoint / finish ---

    def log(self, b: int) -> None:
        """Append the window's mean losses (over all processes) to the history, the log and the bar."""
        info = self.info
        means = (dist.mean_over_processes(self.window, info) / self.window_steps).tolist()
        if not all(math.isfinite(v) for v in means):
            raise FastNSTError(f"Training diverged at step {self.at_step} (loss is not finite); "
                               "lower --lr or the loss weights.")
        now = time.perf_counter()
        rec = {"step": self.at_step, **dict(zip(self.keys, means)),
               "images_per_s": self.window_steps * b * info.world / max(now - self.window_t, 1e-9),
               "seconds": self.seconds0 + now - self.t0}
        self.history.append(rec)
        if info.main:
            with open(self.log_path, "a") as f:
                f.write(json.dumps(rec) + "\n")
        self.bar.set_postfix(**{k: f"{v:.3g}" for k, v in zip(self.keys, means)}, img_s=f"{rec['images_per_s']:.2f}")
        self.window.zero_()
        self.window_steps, self.window_t = 0, time.perf_counter()

    def save_outputs(self, *, checkpoint: bool, samples: bool) -> None:
        """Rank 0 only: the checkpoint and/or the sample sheet and loss curve at the current step."""
        info, step = self.info, self.at_step
        if not info.main:
            return
        if checkpoint:
            save_checkpoint(self.ckpt_path, step=step, seconds=self.seconds0 + time.perf_counter() - self.t0,
                            net=self.net, optimizer=self.optimizer, scaler=self.scaler, cfg=self.cfg,
                            arch=self.arch, preset=self.preset, world=info.world)
        if samples and self.sample_inputs:
            outs = stylize_samples(self.net, self.sample_inputs, self.device, self.dtype)
            write_image(self.out_dir / "samples" / f"step_{step:06d}.png",
                        sample_sheet(self.sample_inputs, outs, self.sample_labels, step))
        if samples:
            self.plot_losses()

    def plot_losses(self) -> None:
        """``loss_curve.png`` from the history so far; without matplotlib a note (once) and no picture."""
        if not self.history or self.curve_note:
            return
        try:
            plot_loss_curves({self.name: self.history}, self.out_dir / "loss_curve.png",
                             title=f"{self.name} ({self.preset})")
        except MatplotlibMissing:
            self.curve_note = "matplotlib is not installed (pip install 'fastnst[plots]'): no loss curve"
            _note(self.info, self.curve_note)

    def finish(self) -> TrainResult:
        """The style model (rank 0), after every process is done; the run's result."""
        cfg, info = self.cfg, self.info
        if self.at_step == self.start_step:  # nothing left to do (resumed a finished run): refresh the outputs
            self.save_outputs(checkpoint=False, samples=True)
        if info.main:
            style_image = ",".join(Path(p).name for p in cfg.style)
            extra = {}
            if self.distilling:  # the twin runs where its teacher runs and paints the teacher's painting
                t = self.teacher
                style_image = t.metadata.get("style_image", "")
                extra = {"work_size": style_work_size(t.metadata, t.train_config), "family": self.name}
            # The recorded name is the one the style will be listed and picked by: the file's stem.
            save_style(self.output, self.net, style_name=self.output.stem, style_image=style_image,
                       preset=self.preset, train_config=portable_config(cfg), half=cfg.half, **extra)
        dist.barrier(info)
        return TrainResult(output=self.output, out_dir=self.out_dir, checkpoint=self.ckpt_path,
                           start_step=self.start_step, steps=self.at_step,
                           seconds=self.seconds0 + time.perf_counter() - self.t0, device=str(self.device),
                           world=info.world, history=self.history)


def main(argv: Sequence[str] | None = None, *, prog: str = "python -m train") -> int:
    """Command-line entry: parse, train, print where the results are. Exit 2 on user errors."""
    try:
        cfg = parse_config(argv, prog)
    except FastNSTError as exc:  # an unreadable or invalid --recipe
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    previous = None
    stop = threading.Event()
    # `kill PID` of a background run: stop like Ctrl-C, i.e. checkpoint first. Only a flag here, acted
    # on between steps: raising from the handler could land mid-step or while a DataLoader batch is
    # being received from a worker, which then dies printing a traceback.
    try:
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    except ValueError:  # not the main thread
        pass
    try:
        result = train(cfg, stop=stop)
    except FastNSTError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if result.world == 1 or int(os.environ.get("RANK", "0")) == 0:
        last = result.history[-1] if result.history else {}
        print(f"wrote style {result.output.stem!r} to {result.output}  (steps {result.start_step}→{result.steps}, "
              f"{result.seconds:.1f} s on {result.device}{f' ×{result.world}' if result.world > 1 else ''})")
        if last:
            keys = DISTILL_KEYS if cfg.teacher else LOSS_KEYS
            print("final losses: " + "  ".join(f"{k} {last[k]:.4g}" for k in keys)
                  + f"  ({last['images_per_s']:.2f} images/s)")
        print(f"run folder: {result.out_dir}")
        print(f"use it: fastnst stylize INPUT --style {result.output} (or put it in a folder on FASTNST_WEIGHTS "
              f"to pick it as --style {result.output.stem})")
    return 0
