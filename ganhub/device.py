"""Which torch device to run on: one rule for the trainer, the sampler and the app."""

from __future__ import annotations

import os

import torch

from ganhub.errors import ConfigError


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """cuda, then mps, then cpu; an explicit choice is checked rather than silently replaced."""
    if device in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available here; use --device cpu or auto")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError(f"device {device!r} requested but MPS is not available here; use --device cpu or auto")
    return dev


def memory_format(device: torch.device) -> torch.memory_format:
    """The layout the trainer keeps 4-D weights and image batches in on `device`.

    channels_last (NHWC) on CPUs, oneDNN's native layout: `python benchmarks/speed.py --part train --threads 1`
    measured the whole loop at 1.14x a plain fp32 PyTorch loop with it, 1.03x without (README, Benchmarks).
    Other devices keep NCHW: unmeasured there (cuDNN wants NHWC only with tensor cores under autocast).
    """
    return torch.channels_last if device.type == "cpu" else torch.contiguous_format


def to_format(x: torch.Tensor, fmt: torch.memory_format) -> torch.Tensor:
    """x in `fmt` when x is a 4-D batch (B, C, H, W); points and vectors unchanged."""
    return x.contiguous(memory_format=fmt) if x.dim() == 4 else x


def describe(device: torch.device) -> str:
    """What trained a run, for its record and model card: e.g. "CPU (Intel(R) Xeon(R) Processor, 2 threads)",
    "CUDA (NVIDIA A100-SXM4-40GB)", "MPS (Apple GPU)"."""
    if device.type == "cuda":
        return f"CUDA ({torch.cuda.get_device_name(device)})"
    if device.type == "mps":
        return "MPS (Apple GPU)"
    if device.type != "cpu":
        return device.type
    model = cpu_fields().get("model name", "")  # Linux; elsewhere the thread count alone
    threads = f"{torch.get_num_threads()} thread{'s' if torch.get_num_threads() != 1 else ''}"
    return f"CPU ({model}, {threads})" if model else f"CPU ({threads})"


def cpu_fields(path: str = "/proc/cpuinfo") -> dict[str, str]:
    """The first CPU's entry in /proc/cpuinfo ({"vendor_id": ..., "model name": ..., "flags": ...}); {} where
    there is none (macOS, Windows)."""
    fields: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():  # a blank line ends the first CPU's entry
                    break
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields
