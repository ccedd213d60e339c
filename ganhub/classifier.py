"""The Fashion-MNIST classifier ganhub trains and ships (weights/fmnist-classifier) as an offline
feature extractor for FID/KID/precision-recall and as the judge of class coverage.

Input: (B, 1, 32, 32) floats in [-1, 1] (Fashion-MNIST bilinearly resized 28 -> 32, as the generators see it).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from ganhub.folder import read_safetensors, weights_dir

NAME = "fmnist-classifier"


class FMNISTClassifier(nn.Module):
    def __init__(self, width: int = 32, features: int = 128):
        super().__init__()

        def block(a: int, b: int) -> list[nn.Module]:  # (B, a, H, W) -> (B, b, H/2, W/2)
            return [nn.Conv2d(a, b, 3, padding=1), nn.BatchNorm2d(b), nn.ReLU(True),
                    nn.Conv2d(b, b, 3, padding=1), nn.BatchNorm2d(b), nn.ReLU(True), nn.MaxPool2d(2)]

        self.body = nn.Sequential(*block(1, width), *block(width, 2 * width), *block(2 * width, 4 * width))
        self.embed = nn.Sequential(nn.Flatten(), nn.Dropout(0.3), nn.Linear(4 * width * 16, features), nn.ReLU(True))
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(features, 10))
        self.width, self.features = width, features

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # -> (features (B, F), logits (B, 10))
        f = self.embed(self.body(x))
        return f, self.head(f)


def path() -> Path:
    return weights_dir() / NAME


def load(device: str | torch.device = "cpu") -> FMNISTClassifier:
    from ganhub.errors import FolderError

    folder = path()
    if not (folder / "config.json").is_file():
        raise FolderError(f"the Fashion-MNIST classifier is missing from {folder}; run scripts/train_classifier.py")
    cfg = json.loads((folder / "config.json").read_text())
    model = FMNISTClassifier(cfg["width"], cfg["features"])
    model.load_state_dict(read_safetensors(folder / "model.safetensors"), strict=True)
    return model.to(device).eval().requires_grad_(False)
