"""Numeric precision of training: `auto | bf16 | fp32`, one rule for the CLI, the app and the library.

bf16 autocast (no loss scaling needed, unlike fp16) pays where the hardware multiplies bf16 faster than
fp32: CUDA GPUs of compute capability >= 8 (Ampere on); Intel CPUs with AMX (Sapphire Rapids on, when the
OS or hypervisor exposes it); AMD CPUs with AVX512-BF16 (Zen 4 on). Intel's AVX512-BF16 without AMX does
not pay: `benchmarks/speed.py --part train` trained the reference DCGAN at 0.82x its fp32 speed in bf16
on this project's 2-core Xeon (AVX512-BF16, AMX not exposed by the VM), and at 1.52x on a 2-core EPYC
(Zen 4, AVX512-BF16) with the same torch. Elsewhere "auto" means fp32; an explicit "bf16" is honoured
anyway (the user asked). Gradient penalties, R1 and the spectral-norm power iteration run under `fp32()`.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import torch

from ganhub.device import cpu_fields
from ganhub.errors import ConfigError

PRECISIONS = ("auto", "bf16", "fp32")
_AUTOCAST_TYPES = ("cpu", "cuda", "mps", "xpu")
_CPUINFO = "/proc/cpuinfo"  # Linux; elsewhere torch's probe decides


def bf16_pays_on_cpu(vendor: str, flags: set[str]) -> bool:
    """The rule for CPUs, from their vendor (/proc/cpuinfo's vendor_id) and ISA flags (see the module docstring)."""
    if "amx_bf16" in flags:
        return True
    return "avx512_bf16" in flags and vendor == "AuthenticAMD"


def _read_cpuinfo() -> tuple[str, set[str]]:
    """(vendor_id, flags) of the first CPU in /proc/cpuinfo; ("", set()) where there is none."""
    fields = cpu_fields(_CPUINFO)
    return fields.get("vendor_id", ""), set(fields.get("flags", "").split())


@functools.lru_cache(maxsize=1)
def _cpu_bf16() -> bool:
    """bf16_pays_on_cpu for this CPU: torch's own ISA probe where it has one, /proc/cpuinfo for the vendor."""
    vendor, flags = _read_cpuinfo()
    try:
        caps = torch._C._cpu._get_cpu_capability()  # dict of ISA flags (torch >= 2.3)
        if isinstance(caps, dict):
            flags |= {k for k in ("amx_bf16", "avx512_bf16") if caps.get(k)}
    except (AttributeError, RuntimeError):
        pass
    return bf16_pays_on_cpu(vendor, flags)


def native_bf16(device: str | torch.device) -> bool:
    """True where bf16 matrix multiplies run faster than fp32 on `device` (so bf16 autocast pays)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            return False
        major, _ = torch.cuda.get_device_capability(dev)
        return major >= 8
    if dev.type == "cpu":
        return _cpu_bf16()
    return False  # mps, xpu, ...: not claimed; pass "bf16" explicitly to try


def resolve(choice: str | None, device: str | torch.device) -> str:
    """`auto` -> "bf16" where native_bf16(device), else "fp32"; "bf16"/"fp32" are kept as asked."""
    c = "auto" if choice is None else str(choice).strip().lower()
    if c not in PRECISIONS:
        raise ConfigError(f"unknown precision {choice!r}; use one of {', '.join(PRECISIONS)}")
    if c == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return c


def autocast(device: str | torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on `device` for "bf16" ("auto" is resolved first), a no-op for "fp32"."""
    dev = torch.device(device)
    if resolve(precision, dev) == "bf16":
        return torch.autocast(dev.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def fp32() -> Iterator[None]:
    """Turn off every active autocast inside the block (gradient penalty, R1, spectral-norm power iteration).

    Tensors made under autocast before the block may be bf16: cast the inputs with `.float()`.
    """
    with contextlib.ExitStack() as stack:
        for kind in _AUTOCAST_TYPES:
            try:
                on = torch.is_autocast_enabled(kind)
            except (RuntimeError, TypeError):  # a device type this torch build does not know
                continue
            if on:
                stack.enter_context(torch.autocast(kind, enabled=False))
        yield
