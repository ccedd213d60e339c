"""Sources of generators: a run folder, a bundled weights name or a Hub repo id -> a loaded generator.

Above both ganhub.run (the folder format) and ganhub.hub (pull), so neither imports the other's caller.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ganhub.device import pick_device
from ganhub.errors import FolderError
from ganhub.run import MODEL, RunFolder
from ganhub.variant import BaseConfig, Variant, build_models


@dataclass
class Loaded:
    G: nn.Module
    variant: Variant
    cfg: BaseConfig
    meta: dict[str, Any]
    path: Path

    @property
    def name(self) -> str:
        return self.meta.get("variant", "?")


def weights_dir() -> Path:
    """The bundled weights/ folder (next to the package in a checkout), or $GANHUB_WEIGHTS_DIR."""
    return Path(os.environ.get("GANHUB_WEIGHTS_DIR", Path(__file__).resolve().parent.parent / "weights"))


def bundled() -> list[str]:
    """Names of the bundled weights entries (folders holding a config.json)."""
    root = weights_dir()
    if not root.is_dir():
        return []
    return [p.name for p in sorted(root.iterdir()) if RunFolder(p).is_run()]  # skips e.g. the fmnist classifier


def resolve(source: str | Path) -> Path:
    """A folder path, a bundled weights name or a Hub repo id (`user/repo[@revision]`) -> a local folder."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if str(source) in bundled():
        return weights_dir() / str(source)
    from ganhub.hub import resolve_source

    repo = str(source).partition("@")[0]  # the revision (a branch, a tag, refs/pr/1) may hold slashes
    if repo.count("/") != 1 or str(source).startswith((".", "/", "~")):
        names = ", ".join(bundled()) or "none"
        raise FolderError(f"{source!r} is not a run folder, a bundled weights name ({names}) or a Hub repo id user/repo")
    return Path(resolve_source(str(source)))


def load_generator(source: str | Path, device: str | torch.device | None = None) -> Loaded:
    """Load the EMA generator of a folder / weights name / Hub repo, in eval mode on `device`."""
    folder = RunFolder(resolve(source))
    meta = folder.meta
    variant = folder.variant()
    cfg = folder.config(variant)
    if not folder.has_model():
        raise FolderError(f"{folder.path} has no {MODEL}; train it first or pull it again")
    G, _ = build_models(variant, cfg)
    folder.load_model(G)
    G = G.to(pick_device(device)).eval().requires_grad_(False)
    return Loaded(G, variant, cfg, meta, folder.path)
