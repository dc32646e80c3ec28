"""CUDA paths, run only where a GPU is present (`pytest -m cuda`); nothing here runs on CI's CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def _clip(path: Path, w: int = 1280, h: int = 720, n: int = 40) -> Path:
    import av

    rng = np.random.default_rng(0)
    base = (rng.random((h // 8, w // 8, 3)) * 255).astype(np.uint8)
    import cv2

    base = cv2.resize(base, (w, h), interpolation=cv2.INTER_CUBIC)
    with av.open(str(path), "w") as c:
        vs = c.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        for i in range(n):
            frame = np.roll(base, 3 * i, axis=1)
            for p in vs.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
    return path


def _bf16_ok() -> bool:
    from fastnst.devices import cuda_has_native_bf16

    return cuda_has_native_bf16(torch.device("cuda"))


@pytest.mark.parametrize("compile", [False, True])
@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_720p_clip_through_the_pipeline(tmp_path: Path, dtype: str, compile: bool) -> None:
    from fastnst.pipeline import stylize_video
    from fastnst.video import probe

    if dtype == "bf16" and not _bf16_ok():
        pytest.skip("bf16 is emulated on this GPU")
    src = _clip(tmp_path / "in.mp4")
    out = tmp_path / "out.mp4"
    cpu = tmp_path / "cpu.mp4"
    res = stylize_video(src, out, "starry_night_fast", device="cuda", dtype=dtype, batch_size=2, compile=compile,
                        progress=False, crf=0, preset="ultrafast")
    stylize_video(src, cpu, "starry_night_fast", device="cpu", progress=False, crf=0, preset="ultrafast",
                  )
    assert res.frames == 40 and probe(out).frames == 40
    from fastnst.video import read_frames

    a = np.stack(list(read_frames(out))).astype(np.float64)
    b = np.stack(list(read_frames(cpu))).astype(np.float64)
    psnr = 10 * np.log10(255.0 ** 2 / max(np.mean((a - b) ** 2), 1e-12))
    assert psnr > 30, psnr


def test_reduce_overhead_outputs_are_not_overwritten() -> None:
    from fastnst.stylizer import Stylizer

    st = Stylizer("starry_night_fast", device="cuda", compile="reduce-overhead", work_size=0)
    a, b = torch.rand(1, 3, 64, 64, device="cuda"), torch.rand(1, 3, 64, 64, device="cuda")
    with torch.inference_mode():
        for _ in range(3):  # warm-up: graphs are recorded after a few calls
            st.network(a)
        ya = st.network(a)
        yb = st.network(b)
    assert not torch.equal(ya, yb)


def test_auto_dtype_is_fp16_on_cuda() -> None:
    from fastnst.devices import auto_dtype

    assert auto_dtype(torch.device("cuda")) == torch.float16
