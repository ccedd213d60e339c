"""ganhub.precision: the auto|bf16|fp32 rule, the autocast contexts, and a bf16 training run on CPU."""

from __future__ import annotations

import json
import math

import pytest
import torch

from ganhub import precision
from ganhub.errors import ConfigError, GanhubError


@pytest.fixture
def cpu_bf16(monkeypatch):
    """Pretend the CPU does (True) or does not (False) multiply bf16 natively."""

    def set_(value: bool) -> None:
        monkeypatch.setattr(precision, "_cpu_bf16", lambda: value)

    return set_


def test_auto_follows_native_bf16_on_cpu(cpu_bf16):
    cpu_bf16(True)
    assert precision.native_bf16("cpu") and precision.resolve("auto", "cpu") == "bf16"
    assert precision.resolve(None, torch.device("cpu")) == "bf16"  # None means auto
    cpu_bf16(False)
    assert not precision.native_bf16("cpu") and precision.resolve("auto", "cpu") == "fp32"


@pytest.mark.parametrize(("vendor", "flags", "want"), [
    ("GenuineIntel", {"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}, True),  # Sapphire Rapids with AMX
    ("GenuineIntel", {"avx512f", "avx512_bf16"}, False),  # AVX512-BF16 alone: measured slower than fp32
    ("AuthenticAMD", {"avx512f", "avx512_bf16"}, True),  # Zen 4 on: measured 1.5x fp32
    ("AuthenticAMD", {"avx2", "fma"}, False),  # Zen 3 and older
    ("", set(), False),  # no /proc/cpuinfo (macOS, Windows)
])
def test_cpu_rule_by_vendor_and_flags(vendor, flags, want):
    assert precision.bf16_pays_on_cpu(vendor, flags) is want


def test_explicit_choices_are_kept(cpu_bf16):
    cpu_bf16(False)
    assert precision.resolve("bf16", "cpu") == "bf16"  # asked for: honoured even where emulated
    assert precision.resolve(" FP32 ", "cpu") == "fp32"
    cpu_bf16(True)
    assert precision.resolve("fp32", "cpu") == "fp32"


@pytest.mark.parametrize(("capability", "want"), [((8, 0), "bf16"), ((9, 0), "bf16"), ((7, 5), "fp32"), ((6, 1), "fp32")])
def test_auto_on_cuda_needs_compute_capability_8(monkeypatch, capability, want):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert precision.resolve("auto", "cuda:0") == want
    assert precision.native_bf16(torch.device("cuda", 0)) is (want == "bf16")


def test_auto_is_fp32_on_mps_and_on_absent_cuda(monkeypatch, cpu_bf16):
    cpu_bf16(True)
    assert precision.resolve("auto", "mps") == "fp32"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert precision.resolve("auto", "cuda") == "fp32"


@pytest.mark.parametrize("bad", ["fp16", "", "half", 16])
def test_bad_choice_is_a_config_error_naming_it(bad):
    with pytest.raises(ConfigError) as e:
        precision.resolve(bad, "cpu")
    msg = str(e.value)
    assert repr(bad) in msg and "auto, bf16, fp32" in msg and "\n" not in msg
    assert isinstance(e.value, GanhubError)


@pytest.mark.parametrize(("vendor", "flags", "want"), [("GenuineIntel", "fpu amx_tile amx_bf16 amx_int8 avx512_bf16", True),
                                                      ("GenuineIntel", "fpu amx_tile amx_bf16", True),
                                                      ("GenuineIntel", "fpu sse avx512f avx512_bf16 avx512bw", False),
                                                      ("AuthenticAMD", "fpu sse avx512f avx512_bf16 avx512bw", True),
                                                      ("AuthenticAMD", "fpu sse avx2 avx512f avx512bw", False)])
def test_cpu_flags_from_proc_cpuinfo_when_torch_cannot_tell(monkeypatch, tmp_path, vendor, flags, want):
    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\nvendor_id\t: {vendor}\nmodel name\t: Test CPU\nflags\t\t: {flags}\n\n"
                    f"processor\t: 1\nvendor_id\t: {vendor}\nflags\t\t: fpu\n")

    def no_probe():
        raise AttributeError("no _get_cpu_capability in this torch")

    monkeypatch.setattr(torch._C._cpu, "_get_cpu_capability", no_probe, raising=False)
    monkeypatch.setattr(precision, "_CPUINFO", str(info))
    precision._cpu_bf16.cache_clear()
    try:
        assert precision._cpu_bf16() is want
    finally:
        precision._cpu_bf16.cache_clear()


def test_torch_probe_agrees_with_proc_cpuinfo():
    try:
        flags = next(ln for ln in open("/proc/cpuinfo") if ln.startswith("flags")).split(":", 1)[1].split()
    except (OSError, StopIteration):
        pytest.skip("no /proc/cpuinfo here")
    vendor = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("vendor_id")), "")
    precision._cpu_bf16.cache_clear()
    assert precision._cpu_bf16() is precision.bf16_pays_on_cpu(vendor, set(flags))


def test_autocast_and_fp32_contexts():
    a = torch.randn(8, 8)
    with precision.autocast("cpu", "bf16"):
        assert (a @ a).dtype == torch.bfloat16
        with precision.fp32():
            assert not torch.is_autocast_enabled("cpu")
            assert (a @ a).dtype == torch.float32
        assert (a @ a).dtype == torch.bfloat16  # autocast is back after the fp32 block
    with precision.autocast(torch.device("cpu"), "fp32"):
        assert (a @ a).dtype == torch.float32
    with precision.fp32():  # outside any autocast: a no-op
        assert (a @ a).dtype == torch.float32


def _run(tmp_path, name: str, prec: str) -> tuple[list[dict[str, float]], dict]:
    from ganhub.train import train

    out = tmp_path / name
    losses = [ev.losses for ev in train("dcgan", dataset="fashion-mnist", limit=256, steps=12, out=out, seed=3,
                                        batch_size=16, overrides={"g_width": 8, "d_width": 8, "augment": "off"},
                                        precision=prec, device="cpu", preview_every=100, checkpoint_every=100,
                                        tensorboard=False)
              if ev.kind == "step"]
    return losses, json.loads((out / "config.json").read_text())


def test_bf16_run_on_cpu_trains(tmp_path):
    bf16, meta = _run(tmp_path, "bf16", "bf16")
    assert meta["recipe"]["precision"] == "bf16"
    assert len(bf16) == 12
    for key in ("loss_D", "loss_G"):
        values = [row[key] for row in bf16]
        assert all(math.isfinite(x) for x in values), values
        assert max(values) - min(values) > 1e-3, f"{key} does not move: {values}"
    fp32, _ = _run(tmp_path, "fp32", "fp32")
    # same seed, same data: only the precision differs, so bf16 autocast really was on
    assert [r["loss_D"] for r in bf16] != [r["loss_D"] for r in fp32]
    assert all(abs(a["loss_D"] - b["loss_D"]) < 0.5 for a, b in zip(bf16[:3], fp32[:3]))  # but close early on
