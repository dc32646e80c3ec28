"""Device and precision choice (fastnst.devices): which device and dtype "auto" picks on which
hardware, names accepted and refused, and the autocast context that follows."""

from __future__ import annotations

import platform

import pytest
import torch

from fastnst import devices
from fastnst.devices import (
    auto_dtype,
    autocast,
    cpu_has_native_bf16,
    cuda_has_native_bf16,
    parse_dtype,
    pick_device,
)
from fastnst.errors import FastNSTError

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.fixture
def fresh_probe():
    """cpu_has_native_bf16 is cached per process: clear it around a test that fakes the hardware."""
    cpu_has_native_bf16.cache_clear()
    yield
    cpu_has_native_bf16.cache_clear()


def _fake_cpu(monkeypatch, flags: set[str], machine: str = "x86_64") -> None:
    probe = getattr(torch._C, "_cpu", None)
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        if probe is not None and hasattr(probe, name):
            monkeypatch.setattr(probe, name, lambda: False)
    monkeypatch.setattr(devices, "_cpu_flags", lambda: flags)
    monkeypatch.setattr(platform, "machine", lambda: machine)


# --------------------------------------------------------------------------------------------------
# devices
# --------------------------------------------------------------------------------------------------


def test_pick_device_auto_and_explicit() -> None:
    want = "cuda" if torch.cuda.is_available() else "cpu"
    for name in (None, "", "auto"):
        assert pick_device(name).type == want
    assert pick_device("cpu") == CPU


@pytest.mark.parametrize("name, message", [("gpu", "Unknown device 'gpu'"), ("cuda:x", "Unknown device")])
def test_pick_device_refuses_unknown_names(name: str, message: str) -> None:
    with pytest.raises(FastNSTError, match=message):
        pick_device(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_pick_device_refuses_cuda_without_a_gpu() -> None:
    with pytest.raises(FastNSTError, match="sees no CUDA GPU"):
        pick_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_pick_device_refuses_a_gpu_index_past_the_last() -> None:
    with pytest.raises(FastNSTError, match=r"only \d+ CUDA GPU"):
        pick_device(f"cuda:{torch.cuda.device_count()}")


# --------------------------------------------------------------------------------------------------
# precision: bf16 only where the hardware computes it
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("flags, machine, native", [
    (set(), "x86_64", False),
    ({"avx2", "fma", "avx512f"}, "x86_64", False),  # AVX-512 without its BF16 extension: emulated
    ({"avx512f", "avx512_bf16"}, "x86_64", True),
    ({"amx_bf16", "amx_tile"}, "x86_64", True),
    ({"fp", "asimd", "bf16"}, "aarch64", True),
    ({"fp", "asimd"}, "aarch64", False),
    ({"bf16"}, "x86_64", False),  # the Arm flag's name means nothing on x86
])
def test_cpu_bf16_from_the_flags(monkeypatch, fresh_probe, flags, machine, native) -> None:
    _fake_cpu(monkeypatch, flags, machine)
    assert cpu_has_native_bf16() is native
    assert auto_dtype(CPU) == (torch.bfloat16 if native else torch.float32)


def test_cpu_bf16_when_pytorchs_own_probe_says_so(monkeypatch, fresh_probe) -> None:
    probe = getattr(torch._C, "_cpu", None)
    if probe is None or not hasattr(probe, "_is_avx512_bf16_supported"):
        pytest.skip("this PyTorch has no CPU capability probe")
    _fake_cpu(monkeypatch, set())
    monkeypatch.setattr(probe, "_is_avx512_bf16_supported", lambda: True)
    assert cpu_has_native_bf16()


def test_cpu_flags_are_read_from_cpuinfo(monkeypatch, tmp_path) -> None:
    info = tmp_path / "cpuinfo"
    monkeypatch.setattr(devices, "Path", lambda _: info)
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu avx2 avx512_bf16\n\nflags\t: other\n")
    assert devices._cpu_flags() == {"fpu", "avx2", "avx512_bf16"}  # the first CPU's line
    info.write_text("processor\t: 0\nFeatures\t: fp asimd bf16\n")
    assert devices._cpu_flags() == {"fp", "asimd", "bf16"}
    info.unlink()
    assert devices._cpu_flags() == set()  # no /proc (macOS, Windows): nothing is assumed


def test_cuda_bf16_by_compute_capability_not_by_emulation(monkeypatch) -> None:
    for capability, native in (((7, 5), False), ((8, 0), True), ((9, 0), True)):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda _d, c=capability: c)
        assert cuda_has_native_bf16(CUDA) is native
    assert auto_dtype(CUDA) == torch.float16  # inference on CUDA: fp16 whatever the capability


def test_parse_dtype_names(monkeypatch, fresh_probe) -> None:
    _fake_cpu(monkeypatch, set())
    assert parse_dtype(None, CPU) == parse_dtype("auto", CPU) == torch.float32
    assert parse_dtype("auto", CUDA) == torch.float16
    for name, dtype in (("fp32", torch.float32), ("FLOAT32", torch.float32), ("half", torch.float16),
                        ("fp16", torch.float16), ("bf16", torch.bfloat16), ("bfloat16", torch.bfloat16)):
        assert parse_dtype(name, CPU) == dtype
    assert parse_dtype(torch.bfloat16, CPU) == torch.bfloat16  # a dtype is taken as given
    with pytest.raises(FastNSTError, match="Unknown precision 'int8'; use one of auto, fp32, fp16, bf16"):
        parse_dtype("int8", CPU)


def test_autocast_runs_bf16_on_cpu_and_nothing_else_there() -> None:
    a, b = torch.rand(4, 4), torch.rand(4, 4)
    with autocast(CPU, torch.bfloat16):
        assert (a @ b).dtype == torch.bfloat16
    for dtype in (None, torch.float32, torch.float16):  # fp16 on a CPU would be emulated: left off
        with autocast(CPU, dtype):
            assert (a @ b).dtype == torch.float32
