from __future__ import annotations

import torch

from fastnst import losses


def test_gram_against_hand_computation():
    f = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [0.0, 1.0]]]])  # (1,2,2,2)
    # rows: a=(1,2,3,4), b=(0,1,0,1); a·a=30, a·b=6, b·b=2; / (C·H·W = 8)
    expected = torch.tensor([[[30.0, 6.0], [6.0, 2.0]]]) / 8
    assert torch.allclose(losses.gram_matrix(f), expected)


def test_gram_is_fp32_under_autocast():
    f = (torch.rand(1, 4, 64, 64) * 300).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        g = losses.gram_matrix(f)
    assert g.dtype == torch.float32
    assert torch.isfinite(g).all()


def test_content_loss_value_and_gradient():
    x = torch.zeros(1, 2, 2, 2, requires_grad=True)
    t = torch.ones(1, 2, 2, 2)
    loss = losses.content_loss({"a": x}, {"a": t}, {"a": 2.0})
    assert torch.isclose(loss, torch.tensor(2.0))
    loss.backward()
    # d/dx of 2·mean((x−1)²) = 2·2(x−1)/8 = −0.5
    assert torch.allclose(x.grad, torch.full_like(x, -0.5))


def test_style_loss_zero_at_target_and_gradient_matches_finite_difference():
    torch.manual_seed(0)
    f = torch.rand(1, 3, 4, 4, dtype=torch.float64)
    target = {"a": losses.gram_matrix(f).detach()}
    assert losses.style_loss({"a": f}, target, {"a": 1.0}) == 0
    x = torch.rand(1, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda y: losses.style_loss({"a": y}, target, {"a": 1.0}), (x,))


def test_style_loss_broadcasts_target_over_batch():
    f = torch.rand(3, 2, 5, 5)
    target = {"a": losses.gram_matrix(f[:1])}
    loss = losses.style_loss({"a": f[:1].expand(3, -1, -1, -1)}, target, {"a": 1.0})
    assert loss.item() == 0.0


def test_total_variation():
    assert losses.total_variation(torch.ones(1, 3, 8, 8)).item() == 0.0
    x = torch.zeros(1, 1, 2, 2)
    x[0, 0, 0, 1] = 1.0  # one horizontal step (out of 2) and one vertical step (out of 2)
    assert torch.isclose(losses.total_variation(x), torch.tensor(0.5 + 0.5))
    y = torch.rand(1, 3, 8, 8, requires_grad=True)
    losses.total_variation(y).backward()
    assert y.grad.abs().sum() > 0


def test_temporal_loss_masks_pixels():
    a = torch.zeros(1, 3, 4, 4)
    b = torch.zeros(1, 3, 4, 4)
    b[..., 0, 0] = 1.0
    mask = torch.ones(1, 1, 4, 4)
    assert losses.temporal_loss(a, b, mask) > 0
    mask[..., 0, 0] = 0
    assert losses.temporal_loss(a, b, mask) == 0
    assert losses.temporal_loss(a, b, torch.zeros_like(mask)) == 0


def test_balanced_weights_make_terms_scale_free():
    t = {"a": torch.full((1, 2, 2), 4.0)}
    assert losses.balanced_weights(t, {"a": 1.0}) == {"a": 1 / 16}
    x = torch.rand(1, 3, 4, 4)
    y = torch.rand(1, 3, 4, 4)
    w1 = losses.balanced_weights({"a": y}, {"a": 1.0})
    w2 = losses.balanced_weights({"a": 57 * y}, {"a": 1.0})
    l1 = losses.content_loss({"a": x}, {"a": y}, w1)
    l2 = losses.content_loss({"a": 57 * x}, {"a": 57 * y}, w2)
    assert torch.isclose(l1, l2, rtol=1e-4)


def test_style_distance():
    g = {"a": losses.gram_matrix(torch.rand(1, 4, 8, 8))}
    assert losses.style_distance(g, g).item() == 0.0
    near = {"a": g["a"] * 1.1}
    far = {"a": g["a"] * 2.0}
    assert 0 < losses.style_distance(near, g) < losses.style_distance(far, g)
