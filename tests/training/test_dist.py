"""Distributed training (fastnst/training/dist.py): DDP over gloo in forked processes and torchrun, agreed stops."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fastnst.errors import FastNSTError
from fastnst.models import Arch, TransformerNet
from fastnst.styles import load_style
from fastnst.training.config import TrainConfig

from ..conftest import smooth_image
from .conftest import REPO, _log, tiny_config


def _ddp_worker(rank: int, world: int, port: int, cfg: TrainConfig) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from fastnst.training.loop import train

    train(cfg)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_processes_gloo_one_writer_and_resume(photos, tmp_path):
    """Two forked processes with torchrun's environment: DDP over gloo equals one process with the
    combined batch (the sampler shards one stream); only rank 0 writes; a DDP run resumes."""
    import torch.multiprocessing as mp

    from fastnst.training.loop import train

    # fp32: with bf16 (auto on CPUs with native bf16) the two reductions round differently by more than atol
    small = {"arch": "4,8,8:1", "image_size": 24, "steps": 3, "style_layers": {"relu1_2": 1.0, "relu2_1": 1.0},
             "amp": "off"}
    cfg = tiny_config(photos, tmp_path, batch_size=1, temporal_weight=0.0, **small)
    mp.start_processes(_ddp_worker, args=(2, _free_port(), cfg), nprocs=2, start_method="fork")
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert state["step"] == 3 and state["world"] == 2
    ddp_net = load_style(tmp_path / "model.safetensors").net

    one = train(tiny_config(photos, tmp_path, batch_size=2, temporal_weight=0.0, out_dir=str(tmp_path / "one"),
                            output=str(tmp_path / "one.safetensors"), **small))
    one_net = load_style(one.output).net
    img = torch.from_numpy(smooth_image(24, 24, 7)).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        assert torch.allclose(ddp_net(img), one_net(img), atol=2e-3)
        torch.manual_seed(0)
        init = TransformerNet(Arch((4, 8, 8), 1)).eval()  # the trainer's seeded initialisation
        moved = float((ddp_net(img) - init(img)).abs().max())
        assert moved > 0.02, moved  # so the equality above is not that of two untrained nets

    cfg = tiny_config(photos, tmp_path, batch_size=1, resume="auto", **{**small, "steps": 5})
    mp.start_processes(_ddp_worker, args=(2, _free_port(), cfg), nprocs=2, start_method="fork")
    log = _log(tmp_path / "run")
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5]  # one writer; continued where it stopped
    assert log[-1]["temporal"] > 0 and log[0]["temporal"] == 0
    assert load_style(tmp_path / "model.safetensors").train_config["steps"] == 5


class _StopOnRankOne:
    """A stop flag that only rank 1 sees (a SIGTERM that reached one process), from its first look."""

    def is_set(self) -> bool:
        return os.environ.get("RANK") == "1"


def _ddp_stop_worker(rank: int, world: int, port: int, cfg: TrainConfig, result_dir: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from fastnst.training.loop import train

    try:
        train(cfg, stop=_StopOnRankOne())  # type: ignore[arg-type]
        outcome = "finished"
    except KeyboardInterrupt:
        outcome = "stopped"
    Path(result_dir, f"rank{rank}").write_text(outcome)


def test_ddp_a_stop_seen_by_one_process_stops_every_process(photos, tmp_path):
    """Without agreement rank 0 would go on into the next gradient all-reduce and wait forever."""
    import torch.multiprocessing as mp

    from fastnst.training.loop import STOP_AGREE_EVERY

    cfg = tiny_config(photos, tmp_path, batch_size=1, temporal_weight=0.0, arch="4,8,8:1", image_size=24, steps=40,
                      style_layers={"relu1_2": 1.0})
    ctx = mp.start_processes(_ddp_stop_worker, args=(2, _free_port(), cfg, str(tmp_path)), nprocs=2,
                             start_method="fork", join=False)
    deadline = time.monotonic() + 120
    while not ctx.join(timeout=1):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail("a process is still blocked: the stop was not agreed")
    assert [(tmp_path / f"rank{r}").read_text() for r in (0, 1)] == ["stopped", "stopped"]
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert state["step"] == STOP_AGREE_EVERY  # both stopped at the first agreement point
    assert not (tmp_path / "model.safetensors").exists()


def test_torchrun_device_is_cuda_local_rank_and_a_conflicting_index_is_refused(monkeypatch):
    from fastnst.training import dist

    monkeypatch.setattr(dist, "pick_device", lambda name: torch.device("cuda" if name in ("auto", None) else name))
    assert dist.rank_device("auto", 1) == torch.device("cuda", 1)
    assert dist.rank_device("cuda", 3) == torch.device("cuda", 3)
    assert dist.rank_device("cuda:0", 0) == torch.device("cuda", 0)  # one process per node
    assert dist.rank_device("cpu", 1) == torch.device("cpu")
    with pytest.raises(FastNSTError, match="CUDA_VISIBLE_DEVICES"):
        dist.rank_device("cuda:0", 1)


@pytest.mark.slow
def test_torchrun_two_processes_gloo(photos, tmp_path):
    """``torchrun --nproc_per_node 2 -m train``: DDP on CPU (gloo), one writer, then resume under torchrun."""
    args = ["--content", str(photos), "--style", str(tmp_path / "stripes.png"), "--arch", "4,8,8:1",
            "--image-size", "24", "--batch-size", "1", "--vgg-weights", "random", "--device", "cpu",
            "--workers", "0", "--log-every", "1", "--style-layers", "relu1_2,relu2_1", "--no-progress",
            "--out-dir", str(tmp_path / "ddp"), "--output", str(tmp_path / "ddp.safetensors")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "train"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd + args + ["--steps", "3"], check=False, capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("wrote ") == 1  # rank 0 reports, rank 1 stays quiet
    state = torch.load(tmp_path / "ddp" / "checkpoint.pt", weights_only=True)
    assert state["step"] == 3 and state["world"] == 2
    proc = subprocess.run(cmd + args + ["--steps", "5", "--resume", "auto"], check=False, capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    log = _log(tmp_path / "ddp")
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5]  # written once, continued
    assert log[-1]["images_per_s"] > 0
    assert load_style(tmp_path / "ddp.safetensors").train_config["steps"] == 5
    print(f"torchrun test: {time.perf_counter() - t0:.1f} s")
