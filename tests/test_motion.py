"""Motion once per frame (fastnst.motion) and the stream state's priors (fastnst.stabilize)."""

from __future__ import annotations

import numpy as np
import torch

from fastnst.motion import Motion, _complete
from fastnst.stabilize import Stabilizer, stream_state


def _texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    import cv2

    coarse = np.random.default_rng(seed).random((h // 6 + 1, w // 6 + 1, 3)).astype(np.float32)
    return cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1)


def _t(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float()


def test_a_translation_is_carried_and_the_entering_strip_is_not_trusted():
    big = _texture(64, 140)
    a, b = big[:, 20:116], big[:, 17:113]  # the scene moves right by 3 px
    m = Motion()
    m.update(a)
    assert m.trust is None and m.prior_mask() is None  # a first frame carries nothing
    m.update(b)
    assert m.trust is not None and m.trust.shape == (64, 96, 1)
    carried = m.carry(a)
    inner = (slice(8, -8), slice(12, -8))
    assert np.abs(carried[inner] - b[inner]).mean() < 0.01
    assert m.trust[inner].mean() > 0.9
    assert m.trust[:, :3].mean() < 0.5  # the strip that entered on the left has no past
    prior_mask = m.prior_mask()
    assert prior_mask.shape == (64, 96, 1) and set(np.unique(prior_mask)) <= {0.0, 1.0}
    assert prior_mask[:, :4].max() == 0 and prior_mask[inner].mean() > 0.9


def test_the_flow_of_a_shrunk_frame_carries_at_the_frames_size():
    """The flow runs at a shrunk frame (a ``scale`` under 1, never under MIN_FLOW_SIDE px a side) and
    comes back scaled to the frame: a 5-px move of a fine texture is carried to a fraction of a pixel
    (the error of a flow left at the small frame's scale, 1.7 px short, is 0.1 and more)."""
    from fastnst.motion import MIN_FLOW_SIDE

    big = _texture(220, 380, 3)
    a, b = big[:, 30:330], big[:, 25:325]  # 220×300: the scene moves right by 5 px
    errors = {}
    for scale in (1.0, 0.67):
        m = Motion(scale=scale)
        m.update(a)
        m.update(b)
        inner = (slice(12, -12), slice(20, -12))
        errors[scale] = float(np.abs(m.carry(a)[inner] - b[inner]).mean())
        assert m.trust.shape == (220, 300, 1) and m.trust[inner].mean() > 0.7 and m.prior_mask()[inner].min() == 1
    shrunk = Motion(scale=0.67)
    assert shrunk.flow_shape(220, 300) == (round(220 * 0.67), round(300 * 0.67))
    assert errors[1.0] < 0.01 and errors[0.67] < 0.03, errors
    assert min(shrunk.flow_shape(100, 300)) == MIN_FLOW_SIDE and shrunk.flow_shape(64, 96) == (64, 96)
    assert Motion().flow_shape(220, 300) == (220, 300)  # the default: the working size itself


def test_the_prior_mask_fills_speckles_and_erodes_real_holes():
    m = Motion(erode=3)
    trust = np.ones((40, 60, 1), np.float32)
    trust[5, 7] = 0  # a speckle of a noisy flow: filled
    trust[20:30, 30:45] = 0.0  # an occlusion: kept, one pixel wider on each side
    trust[0:40, 50:52] = 0.4  # trusted a little: still trusted (the network sees the frame)
    m.trust, m._eroded = trust, None
    mask = m.prior_mask()[..., 0]
    assert mask[5, 7] == 1 and mask[:, 50:52].min() == 1
    assert mask[19:31, 29:46].max() == 0 and mask[17, 27] == 1 and mask[32, 47] == 1


def test_a_flow_the_two_directions_disagree_on_is_filled_in_from_around_and_only_nearby():
    """A surface with no texture of its own: the forward-backward check fails on it, the flow around
    it is known. A small hole is filled with its surroundings' motion; deep inside a wide failed
    region nothing vouches for a fill, so it stays unsupported."""
    back = np.empty((64, 96, 2), np.float32)
    back[...] = (2.5, -1.0)
    consistent = np.ones((64, 96), bool)
    back[20:28, 40:48] = (40.0, 30.0)  # DIS's guess on the flat patch, unrelated to the motion
    consistent[20:28, 40:48] = False
    consistent[:, :40] = False  # a wide region of failures (an occlusion, or a frame of noise)
    filled, supported = _complete(back.copy(), consistent)
    np.testing.assert_allclose(filled[20:28, 40:48], np.broadcast_to((2.5, -1.0), (8, 8, 2)), atol=0.05)
    assert supported[20:28, 40:48].all()
    assert not supported[:, :20].any()
    np.testing.assert_array_equal(filled[consistent], back[consistent])  # the checked flow is kept


def test_a_cut_trusts_nothing_and_is_counted():
    m = Motion()
    m.update(_texture(48, 64, 1))
    m.update(_texture(48, 64, 2))
    assert m.trust is None and m.cuts == 1


def test_each_network_gets_its_own_previous_output_for_one_frame_only():
    stab = Stabilizer(0.0)
    frame = _t(_texture(32, 48))
    a, b = torch.full((1, 3, 32, 48), 0.2), torch.full((1, 3, 32, 48), 0.7)
    stab.begin(frame)
    assert stab.prior("a", frame) is None
    stab.remember("a", a)
    stab.remember("b", b)
    stab(frame, a)
    stab.begin(frame)
    prior_a, mask = stab.prior("a", frame)
    prior_b, _ = stab.prior("b", frame)
    assert torch.allclose(prior_a, a) and torch.allclose(prior_b, b) and float(mask.mean()) > 0.9
    stab.remember("a", a)  # b skips this frame ...
    stab(frame, a)
    stab.begin(frame)
    assert stab.prior("b", frame) is None  # ... so it has no prior on the next: the motion spans one frame
    assert stab.prior("a", frame) is not None


def test_begin_estimates_motion_once_per_frame(monkeypatch):
    stab = Stabilizer(0.5)
    calls = []
    update = stab.motion.update
    monkeypatch.setattr(stab.motion, "update", lambda f: (calls.append(1), update(f)))
    frame = _t(_texture(32, 48))
    for _ in range(3):
        stab.begin(frame)
        stab.begin(frame)  # a second network of the same frame
        stab(frame, frame)
    assert len(calls) == 3


def test_what_is_kept_for_the_next_frame_does_not_change_with_a_buffer_the_caller_reuses():
    """A stream read into the same arrays each frame (a capture buffer): the tensors made from them are
    views, and the motion and the history must keep copies, not the buffers."""
    tex, other = _texture(32, 48), _texture(32, 48, 5)
    frame_buf, out_buf = tex.copy(), np.full((32, 48, 3), 0.2, np.float32)
    frame, out = _t(frame_buf), _t(out_buf)  # (1,3,h,w) over (h,w,3) arrays: channels-last views
    stab = Stabilizer(1.0)
    stab(frame, out)
    frame_buf[:] = other  # the next frame read into the same buffers: another scene (a cut) ...
    out_buf[:] = 0.25
    steady = stab(frame, out)
    assert stab.cuts == 1  # ... which the motion sees, having kept the first frame ...
    assert torch.allclose(steady, torch.tensor(0.25))  # ... so nothing is carried
    frame_buf[:] = other  # the same scene again: the history kept is 0.25, not the reused buffer's 0.3
    out_buf[:] = 0.3
    carried = stab(frame, out)
    assert abs(float(carried.mean()) - (0.3 - 0.9 * 0.8 * 0.05)) < 0.01


def test_a_stream_state_exists_when_stabilising_or_for_a_video_network():
    assert stream_state(0.0, video=False) is None
    assert stream_state(0.0, video=True).strength == 0.0
    assert stream_state(0.5, video=False).strength == 0.5


def test_a_still_faint_ground_does_not_move_with_an_object_crossing_it():
    """A textured object crossing a still, faintly textured ground (a bus over a road): the ground's
    flow stays near zero, away from the object, so nothing carried over it is dragged along. DIS at its
    ultrafast preset's coarsest finish (a quarter of the size) moved it 3.6-4.4 px at the 90th percentile."""
    h, w = 144, 240
    ground = 0.45 + 0.04 * (_texture(h, w, seed=1) - 0.5)
    thing = _texture(60, 50, seed=2)
    noise = np.random.default_rng(3)
    m = Motion()
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    for t in range(5):
        frame = ground.copy()
        frame[20 + 10 * t:80 + 10 * t, 95:145] = thing  # 10 px down a frame
        m.update((frame + noise.normal(0, 0.01, frame.shape).astype(np.float32)).clip(0, 1))
        if t == 0:
            continue
        mx, my = m._map
        still = np.concatenate([np.hypot(mx - gx, my - gy)[:, c].ravel() for c in (slice(20, 80), slice(160, 220))])
        assert np.percentile(still, 90) < 1.2  # "fine": 0.7-0.9 px; "refined" 3.6-4.4
        assert abs(float(np.median((my - gy)[30 + 10 * t:60 + 10 * t, 105:135])) + 10) < 0.5  # the object's motion
        assert m.prior_mask()[:, 20:80].mean() > 0.9  # and trusted: what is carried there must not move
