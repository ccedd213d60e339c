"""The one folder format: a run folder, a `weights/` entry and a Hub model repo are the same thing.

    config.json          {"ganhub_format", "variant", "plugin": {package, version}, "config", "recipe", "step", "metrics"}
    model.safetensors    the EMA generator, ready to sample (huggingface_hub's PyTorchModelHubMixin layout)
    samples.png          a sample grid (the model card shows it)
    README.md            the model card
    checkpoint/training.safetensors   G, D, EMA, optimisers, step and RNG states, for exact resume

Only safetensors are read: nothing is ever unpickled. Every write is atomic (temp file + rename).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from ganhub import registry
from ganhub.errors import ConfigError, FolderError, UnknownVariant
from ganhub.variant import BaseConfig, Variant, config_to_dict, make_config

FORMAT = 1
CONFIG, MODEL, SAMPLES, CHECKPOINT = "config.json", "model.safetensors", "samples.png", "checkpoint/training.safetensors"


_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` so that `path` holds either the old or the new content, whatever happens."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file normal permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def state_bytes(module: nn.Module, metadata: dict[str, str] | None = None) -> bytes:
    sd = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    return st_save(sd, metadata=metadata)


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return st_load(path.read_bytes())
    except (SafetensorError, ValueError, OSError) as e:
        raise FolderError(f"{path} is not a readable safetensors file ({e}); re-download or re-train it") from None


def load_state_strict(module: nn.Module, sd: dict[str, torch.Tensor], what: str) -> None:
    """load_state_dict(strict=True), with an error that lists the mismatched keys and shapes."""
    own = module.state_dict()
    missing, unexpected = sorted(set(own) - set(sd)), sorted(set(sd) - set(own))
    shapes = [f"{k}: file {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}" for k in own if k in sd and sd[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        detail = "; ".join(
            part for part in (
                f"missing {missing[:3]}" if missing else "",
                f"unexpected {unexpected[:3]}" if unexpected else "",
                f"shape mismatch {shapes[:3]}" if shapes else "",
            ) if part
        )
        raise FolderError(f"{what} does not match its config ({detail}); the file and config.json come from different models")
    module.load_state_dict(sd, strict=True)


def read_config(folder: Path) -> dict[str, Any]:
    path = folder / CONFIG
    if not path.is_file():
        raise FolderError(f"{folder} has no {CONFIG}; point to a ganhub run folder, a weights name or a Hub repo id")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise FolderError(f"{path} is not valid JSON ({e.__class__.__name__}); restore it from the Hub or re-train") from None
    if not isinstance(meta, dict) or "variant" not in meta or "config" not in meta:
        raise FolderError(f"{path} is not a ganhub config (no 'variant'/'config' keys)")
    return meta


def variant_for(meta: dict[str, Any], where: Path) -> Variant:
    try:
        return registry.get(meta["variant"])
    except UnknownVariant:
        pkg = (meta.get("plugin") or {}).get("package", f"the plugin providing {meta['variant']!r}")
        raise FolderError(
            f"{where} needs variant {meta['variant']!r}, which is not installed; `pip install {pkg}` and retry"
        ) from None


def config_from_meta(variant: Variant, meta: dict[str, Any], where: Path) -> BaseConfig:
    try:
        return make_config(variant.config_cls, meta["config"])
    except ConfigError as e:
        raise FolderError(f"{where}/{CONFIG}: {e} (was it written by another version of the plugin?)") from None


def make_meta(variant: Variant, cfg: BaseConfig, recipe: dict[str, Any], step: int, metrics: dict | None = None) -> dict:
    entry = registry.entry(variant.name)
    meta = {
        "ganhub_format": FORMAT,
        "variant": variant.name,
        "plugin": {"package": entry.package, "version": entry.version},
        "config": config_to_dict(cfg),
        "recipe": recipe,
        "step": step,
    }
    if metrics:
        meta["metrics"] = metrics
    return meta


def save_generator(
    folder: str | Path, G: nn.Module, *, variant: Variant, cfg: BaseConfig, recipe: dict[str, Any], step: int
) -> Path:
    """Write model.safetensors and config.json (keeping any recorded metrics of the same step)."""
    folder = Path(folder)
    old_metrics = None
    if (folder / CONFIG).exists():
        try:
            old = json.loads((folder / CONFIG).read_text())
            old_metrics = old.get("metrics") if old.get("step") == step else None
        except (json.JSONDecodeError, OSError):
            pass
    atomic_write(folder / MODEL, state_bytes(G, {"format": "pt", "ganhub_variant": variant.name, "step": str(step)}))
    atomic_write_json(folder / CONFIG, make_meta(variant, cfg, recipe, step, old_metrics))
    return folder
