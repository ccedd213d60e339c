"""DiffAugment: differentiable augmentation of everything D sees, real and fake alike.

Zhao, Liu, Lin, Zhu & Han 2020, "Differentiable Augmentation for Data-Efficient GAN Training"
(https://arxiv.org/abs/2006.10738). Three transformations, each drawn independently per image:
  color        brightness + U(-0.5, 0.5); saturation x U(0, 2) around the per-pixel channel mean;
               contrast x U(0.5, 1.5) around the image mean. (Saturation is a no-op on grey images.)
  translation  shift by up to 1/8 of the side in each direction, filling with zeros (mid-grey in [-1, 1]).
  cutout       zero a square of half the side, centred anywhere in the image (clipped at the border).
Because the same differentiable transformations are applied to real and fake images before D, and G's
gradients flow through them, D cannot memorise a small dataset and G is not taught to draw the
augmentations (the paper's finding: augmenting only the reals leaks them into the samples).

Random parameters are drawn on the CPU from torch's global generator and then moved to the images'
device, so a seed gives the same augmentations on CPU, CUDA and MPS.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ganhub.errors import ConfigError
from ganhub.variant import AUGMENT_POLICIES as POLICIES  # color, translation, cutout
from ganhub.variant import parse_policy  # the one parser, below this module so config checks can use it

AUGMENT_AUTO_BELOW = 5000  # "auto" augments datasets with fewer images than this (the paper's gains are
# largest at 100-5,000 images and vanish towards the full 50-70k of CIFAR-10/FFHQ; Fashion-MNIST's 60k: off)
AUTO_POLICY = ",".join(POLICIES)  # all three: the paper's recommendation for small data
TRANSLATION_RATIO = 1 / 8
CUTOUT_RATIO = 1 / 2


def resolve_policy(augment: str, n_images: int, kind: str = "image") -> str | None:
    """The policy to train with, or None for no augmentation.

    "auto" is on (all three transformations) for image datasets of fewer than AUGMENT_AUTO_BELOW images
    and off otherwise; 2-D points are never augmented, and asking for it explicitly is an error.
    """
    policy = parse_policy(augment)
    if policy == "off":
        return None
    if kind == "points":
        if policy == "auto":
            return None
        raise ConfigError(f"augment={augment!r} works on images and this dataset is 2-D points; use augment=off")
    if policy == "auto":
        return AUTO_POLICY if n_images < AUGMENT_AUTO_BELOW else None
    return policy


def _uniform(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, 1, 1) U(0, 1), drawn on the CPU (same numbers on every device), in x's dtype and device."""
    return torch.rand(x.shape[0], 1, 1, 1).to(x.device, x.dtype, non_blocking=True)


def _offsets(n: int, low: int, high: int, device: torch.device) -> torch.Tensor:
    """(n,) integers in [low, high], drawn on the CPU."""
    return torch.randint(low, high + 1, (n,)).to(device, non_blocking=True)


def color(x: torch.Tensor) -> torch.Tensor:
    x = x + (_uniform(x) - 0.5)  # brightness
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (_uniform(x) * 2) + mean  # saturation
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_uniform(x) + 0.5) + mean  # contrast


def translation(x: torch.Tensor, ratio: float = TRANSLATION_RATIO) -> torch.Tensor:
    """(B, C, H, W) -> same, each image shifted by its own (dy, dx) with |dy| <= H/8, |dx| <= W/8."""
    B, _, H, W = x.shape
    dy = _offsets(B, -int(H * ratio), int(H * ratio), x.device)
    dx = _offsets(B, -int(W * ratio), int(W * ratio), x.device)
    padded = F.pad(x, (1, 1, 1, 1))  # a zero border that every out-of-image index is clamped onto
    rows = (torch.arange(H, device=x.device)[None] + dy[:, None] + 1).clamp(0, H + 1)  # (B, H)
    cols = (torch.arange(W, device=x.device)[None] + dx[:, None] + 1).clamp(0, W + 1)  # (B, W)
    b = torch.arange(B, device=x.device)[:, None, None]
    # advanced indices around a slice: the result is (B, H, W, C)
    return padded[b, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def cutout(x: torch.Tensor, ratio: float = CUTOUT_RATIO) -> torch.Tensor:
    """(B, C, H, W) -> same, with a (H/2, W/2) square of zeros centred at a random point of each image."""
    B, _, H, W = x.shape
    h, w = int(H * ratio), int(W * ratio)
    cy = _offsets(B, 0, H - h % 2, x.device)  # the centre, in [0, H] ([0, H - 1] for odd h) as in the reference
    cx = _offsets(B, 0, W - w % 2, x.device)
    y = torch.arange(H, device=x.device)[None] - (cy[:, None] - h // 2)  # (B, H): 0 at the square's top row
    xx = torch.arange(W, device=x.device)[None] - (cx[:, None] - w // 2)
    inside = ((y >= 0) & (y < h))[:, :, None] & ((xx >= 0) & (xx < w))[:, None, :]  # (B, H, W)
    return x * (~inside).to(x.dtype)[:, None]


TRANSFORMS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "color": color,
    "translation": translation,
    "cutout": cutout,
}


class DiffAugment:
    """A callable (B, C, H, W) -> (B, C, H, W), differentiable, applying the policy's transformations in order."""

    def __init__(self, policy: str = AUTO_POLICY):
        canonical = parse_policy(policy)
        if canonical in ("auto", "off"):
            raise ConfigError(
                f"DiffAugment needs transformations, got {policy!r}; resolve it first with resolve_policy()"
            )
        self.policy = canonical
        self.transforms = [TRANSFORMS[p] for p in canonical.split(",")]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ConfigError(
                f"DiffAugment works on images (B, C, H, W), got shape {tuple(x.shape)}; use augment=off"
            )
        for t in self.transforms:
            x = t(x)
        return x.contiguous()

    def __repr__(self) -> str:
        return f"DiffAugment({self.policy!r})"


class AugmentedD(nn.Module):
    """D seen through an augmentation: forward(x, *args) = D(fn(x), *args).

    D is held as the child `module` (so parameters(), train(), requires_grad_() and .to() reach it), but
    state_dict() and load_state_dict() are D's own, without a "module." prefix: the wrapper adds no state
    and is never what gets saved. Attributes the wrapper lacks are looked up on D (extra heads, buffers).
    """

    def __init__(self, D: nn.Module, fn: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.module = D
        self.fn = fn

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        return self.module(self.fn(x), *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            inner = self._modules.get("module")
            if inner is None:
                raise
            return getattr(inner, name)

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return self.module.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        return self.module.load_state_dict(state_dict, strict=strict, assign=assign)


def unwrap(D: nn.Module) -> nn.Module:
    """The discriminator itself, whether or not it is wrapped in AugmentedD."""
    return D.module if isinstance(D, AugmentedD) else D
