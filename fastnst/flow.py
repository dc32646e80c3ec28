"""Optical flow helpers: backward warping, synthetic flows for training, occlusion masks, DIS flow.

Convention everywhere: a flow ``(B,2,H,W)`` (channels ``dx, dy`` in pixels) attached to frame A
points from each pixel ``p`` of A to where that content sits in frame B, so that
``A(p) ≈ B(p + flow(p))`` and ``warp(B, flow) ≈ A``. This is the convention of OpenCV's
``calcOpticalFlow*(prev=A, next=B)``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def _base_grid(b: int, h: int, w: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    ys = torch.arange(h, device=device, dtype=dtype)
    xs = torch.arange(w, device=device, dtype=dtype)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((gx, gy)).unsqueeze(0).expand(b, 2, h, w)


def warp(images: torch.Tensor, flow: torch.Tensor, *, padding_mode: str = "border") -> tuple[torch.Tensor, torch.Tensor]:
    """Backward-warp ``images`` ``(B,C,H,W)`` by ``flow`` ``(B,2,H,W)``: ``out(p) = images(p + flow(p))``.

    Bilinear sampling with ``align_corners=True``, where pixel centres sit at ``x / (W−1) · 2 − 1``;
    with that convention a zero flow is exactly the identity and an integer flow moves pixels
    exactly. Returns ``(warped, valid)``, both float32 (float64 for float64 inputs) even for half
    inputs or under autocast; ``valid`` ``(B,1,H,W)`` is 1 where ``p + flow(p)`` falls inside the
    source image.
    """
    b, _, h, w = images.shape
    # Always fp32, whatever the caller's autocast: a bf16 grid holds pixel positions to 8 bits of
    # mantissa, up to ~0.25 px off at 256 px, and the temporal loss then rewards blur. float64
    # inputs stay float64 (gradient checks).
    dtype = torch.promote_types(images.dtype, torch.float32)
    with torch.autocast(device_type=images.device.type, enabled=False):
        images, flow = images.to(dtype), flow.to(dtype)
        pos = _base_grid(b, h, w, images.device, dtype) + flow
        gx = pos[:, 0] * (2.0 / max(w - 1, 1)) - 1.0
        gy = pos[:, 1] * (2.0 / max(h - 1, 1)) - 1.0
        grid = torch.stack((gx, gy), dim=-1)
        warped = F.grid_sample(images, grid, mode="bilinear", padding_mode=padding_mode, align_corners=True)
    eps = 1e-3
    valid = (
        (pos[:, 0] >= -eps) & (pos[:, 0] <= w - 1 + eps) & (pos[:, 1] >= -eps) & (pos[:, 1] <= h - 1 + eps)
    ).unsqueeze(1)
    return warped, valid.to(dtype)


def erode_mask(mask: torch.Tensor, size: int) -> torch.Tensor:
    """Minimum filter of side ``size`` (odd, px) over a mask ``(B,1,H,W)`` in [0,1]; the frame's
    border does not erode (outside pixels are ignored). Trust shrinks away from occlusions and motion
    boundaries, where a flow's errors sit, so a carried-over output does not ghost at edges."""
    if size <= 1:
        return mask
    return -F.max_pool2d(-mask, size, stride=1, padding=size // 2)


def synthetic_flow(
    batch: int,
    height: int,
    width: int,
    *,
    max_shift: float = 6.0,
    max_zoom: float = 0.03,
    max_rotate_deg: float = 2.0,
    local_amplitude: float = 2.0,
    local_grid: int = 4,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """A random smooth flow ``(B,2,H,W)``: small global similarity motion plus local deformation.

    Global part: translation ``t ~ U(±max_shift)`` px, zoom ``s ~ U(±max_zoom)``, rotation
    ``θ ~ U(±max_rotate_deg)`` about the centre, i.e. ``flow_g(p) = (R_θ (1+s) − I)(p − c) + t``.
    Local part: a ``local_grid × local_grid`` field of ``N(0, local_amplitude²)`` vectors,
    bicubically upsampled, so neighbouring pixels move together as with real objects.
    """
    g = generator
    dev = torch.device(device)

    def u(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=g) * 2 - 1

    base = _base_grid(batch, height, width, torch.device("cpu"), torch.float32)
    centre = torch.tensor([(width - 1) / 2, (height - 1) / 2]).view(1, 2, 1, 1)
    rel = base - centre
    theta = u(batch) * max_rotate_deg * torch.pi / 180
    scale = 1 + u(batch) * max_zoom
    cos, sin = torch.cos(theta) * scale, torch.sin(theta) * scale
    rx = cos.view(-1, 1, 1) * rel[:, 0] - sin.view(-1, 1, 1) * rel[:, 1]
    ry = sin.view(-1, 1, 1) * rel[:, 0] + cos.view(-1, 1, 1) * rel[:, 1]
    shift = u(batch, 2) * max_shift
    flow = torch.stack((rx - rel[:, 0], ry - rel[:, 1]), dim=1) + shift.view(batch, 2, 1, 1)
    if local_amplitude > 0:
        coarse = torch.randn(batch, 2, local_grid, local_grid, generator=g) * local_amplitude
        flow = flow + F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=True)
    return flow.to(dev)


def forward_backward_mask(
    flow_fw: torch.Tensor, flow_bw: torch.Tensor, *, alpha: float = 0.01, beta: float = 0.5
) -> torch.Tensor:
    """Trust mask ``(B,1,H,W)`` from a forward-backward check (Sundaram et al. 2010; Ruder et al. 2016).

    ``flow_fw`` maps A→B, ``flow_bw`` B→A. With ``ŵ = warp(flow_bw, flow_fw)`` (the backward flow
    seen from A), a pixel is occluded where ``|w + ŵ|² > alpha(|w|² + |ŵ|²) + beta`` and lies on a
    motion boundary where ``|∇u|² + |∇v|² > 0.01|w|² + 0.002``. It is also invalid where
    ``p + w`` leaves the frame. Returns 1 for trusted pixels, 0 elsewhere.
    """
    back, inside = warp(flow_bw, flow_fw)
    sum_sq = (flow_fw + back).pow(2).sum(1, keepdim=True)
    mag = flow_fw.pow(2).sum(1, keepdim=True) + back.pow(2).sum(1, keepdim=True)
    occluded = sum_sq > alpha * mag + beta
    du = F.pad(flow_fw[:, :, :, 1:] - flow_fw[:, :, :, :-1], (0, 1, 0, 0))
    dv = F.pad(flow_fw[:, :, 1:, :] - flow_fw[:, :, :-1, :], (0, 0, 0, 1))
    grad_sq = du.pow(2).sum(1, keepdim=True) + dv.pow(2).sum(1, keepdim=True)
    boundary = grad_sq > 0.01 * flow_fw.pow(2).sum(1, keepdim=True) + 0.002
    return ((~occluded) & (~boundary)).to(flow_fw.dtype) * inside


def dis_flow(prev_rgb: np.ndarray, next_rgb: np.ndarray, *, preset: str = "medium") -> np.ndarray:
    """OpenCV DIS optical flow between two ``(H,W,3)`` uint8 RGB frames → ``(H,W,2)`` float32.

    ``prev(p) ≈ next(p + flow(p))``: the module's flow convention with A = prev, B = next.
    """
    import cv2

    presets = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
               "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}
    dis = cv2.DISOpticalFlow_create(presets[preset])
    a = cv2.cvtColor(prev_rgb, cv2.COLOR_RGB2GRAY)
    b = cv2.cvtColor(next_rgb, cv2.COLOR_RGB2GRAY)
    return dis.calc(a, b, None)


def flow_to_tensor(flow: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """``(H,W,2)`` numpy flow → ``(1,2,H,W)`` float32 tensor."""
    return torch.from_numpy(np.ascontiguousarray(flow.transpose(2, 0, 1))).unsqueeze(0).float().to(device)
