"""Numeric precision of training: `auto | bf16 | fp32`, one rule for the CLI, the app and the library.

bf16 autocast (no loss scaling needed, unlike fp16) pays where the hardware multiplies bf16 faster than
fp32: CUDA GPUs of compute capability >= 8 (Ampere on) and CPUs with AMX (Sapphire Rapids on, when the
OS or hypervisor exposes it). AVX512-BF16 alone does not pay: its dot product issues on one port where
fp32 FMAs use two, so the peak is the same and the conversions make bf16 slower (measured on this
project's 2-core Xeon, AVX512-BF16 without AMX: bf16 matmul 78 against 140 GFLOP/s fp32 per core, the
reference DCGAN 0.9x). Elsewhere "auto" means fp32; an explicit "bf16" is honoured anyway (the user
asked). Gradient penalties, R1 and the spectral-norm power iteration run under `fp32()`.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import torch

from ganhub.errors import ConfigError

PRECISIONS = ("auto", "bf16", "fp32")
_AUTOCAST_TYPES = ("cpu", "cuda", "mps", "xpu")
_CPUINFO = "/proc/cpuinfo"  # Linux; elsewhere torch's probe decides


@functools.lru_cache(maxsize=1)
def _cpu_bf16() -> bool:
    """AMX-BF16 on this CPU (see the module docstring): torch's own probe when present, else /proc/cpuinfo."""
    try:
        caps = torch._C._cpu._get_cpu_capability()  # dict of ISA flags (torch >= 2.3)
        if isinstance(caps, dict) and "amx_bf16" in caps:
            return bool(caps["amx_bf16"])
    except (AttributeError, RuntimeError):
        pass
    try:
        with open(_CPUINFO) as f:
            for line in f:
                if line.startswith("flags"):
                    return "amx_bf16" in line.split(":", 1)[1].split()
    except OSError:
        pass
    return False


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
