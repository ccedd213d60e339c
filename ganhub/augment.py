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

Adaptive strength (AdaptiveAugment): each transformation is applied to each image with probability p, and p
follows the overfitting heuristic of ADA (Karras, Aittala, Hellsten, Laine, Lehtinen & Aila 2020, "Training
Generative Adversarial Networks with Limited Data", https://arxiv.org/abs/2006.06676): r_t, the fraction of
real images D scores positive minus the fraction it scores negative, measured over ADA_INTERVAL iterations;
p rises while r_t exceeds the target (D is getting sure of the training images: it is memorising them) and
falls otherwise, by at most 1 per ADA_KIMG thousand images. It starts at 0, so a run that does not overfit
(a short run, or a big dataset) trains as if unaugmented. On 500 Fashion-MNIST images (dcgan, README
"Small data") full-strength DiffAugment stayed behind no augmentation for 12,800 steps, while adaptive
strength was level for 5,000 steps and then led, by 8 and 18 FID at 12,800 under two seeds. ADA's own
transformations (flips, rotations, colour and geometric warps) are not used: DiffAugment's three are cheap,
differentiable and already here; ADA's finding that strength must follow overfitting is what is taken.
The heuristic reads D's raw output on the real batch, so it assumes D's decision boundary is at 0
(non-saturating and hinge losses); a Wasserstein critic has none (wgan-gp defaults to augment_target=0).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
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
ADA_TARGET = 0.6  # ADA's target for r_t (the default of BaseConfig.augment_target)
ADA_INTERVAL = 4  # iterations between adjustments of p (ADA's)
ADA_KIMG = 500  # p moves by at most 1 per this many thousand (global) images (ADA's)
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
    """A callable (B, C, H, W) -> (B, C, H, W), differentiable, applying the policy's transformations in order.

    With p < 1 each transformation is applied to each image with probability p (drawn per image, on the
    CPU); p = 1 is DiffAugment as published (and draws nothing extra), p = 0 returns x untouched.
    """

    def __init__(self, policy: str = AUTO_POLICY, p: float = 1.0):
        canonical = parse_policy(policy)
        if canonical in ("auto", "off"):
            raise ConfigError(
                f"DiffAugment needs transformations, got {policy!r}; resolve it first with resolve_policy()"
            )
        if not 0 <= p <= 1:
            raise ConfigError(f"DiffAugment's probability p must be in [0, 1], got {p!r}")
        self.policy = canonical
        self.p = float(p)
        self.transforms = [TRANSFORMS[name] for name in canonical.split(",")]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ConfigError(
                f"DiffAugment works on images (B, C, H, W), got shape {tuple(x.shape)}; use augment=off"
            )
        p = self.p
        if p <= 0:
            return x
        for t in self.transforms:
            if p >= 1:
                x = t(x)
            else:
                chosen = (torch.rand(x.shape[0]) < p).to(x.device, non_blocking=True)[:, None, None, None]
                x = torch.where(chosen, t(x), x)
        return x.contiguous()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.policy!r}, p={self.p:g})"


class AdaptiveAugment(DiffAugment):
    """DiffAugment whose p follows ADA's heuristic (module docstring): starts at 0, moves every ADA_INTERVAL steps.

    The training loop shows it D's output on each D phase's real batch (`observe`, via AugmentedD) and calls
    `adjust` after every iteration; `state_dict` / `load_state_dict` carry p and the partial sums through
    checkpoints, so a resumed run continues exactly. Under torch.distributed, `adjust`'s `reduce` sums the
    counts over ranks, so every rank moves p the same way, and `pool` gathers them on rank 0 before a checkpoint.
    """

    def __init__(self, policy: str = AUTO_POLICY, target: float = ADA_TARGET, *, interval: int | None = None,
                 kimg: float | None = None):
        if not 0 < target < 1:
            raise ConfigError(f"the adaptive augmentation target must be in (0, 1), got {target!r}")
        super().__init__(policy, p=0.0)
        self.target = float(target)
        self.interval = int(ADA_INTERVAL if interval is None else interval)
        self.kimg = float(ADA_KIMG if kimg is None else kimg)
        self.r_t: float | None = None  # the last measured value of the heuristic
        self._sums = torch.zeros(2, dtype=torch.int64)  # (sum of sign(D(real)), number of reals) on this rank

    def observe(self, real_scores: torch.Tensor) -> None:
        """Count the signs of D's output on a batch of (augmented) real images."""
        s = real_scores.detach().flatten()
        signs = (s > 0).sum() - (s < 0).sum()  # int64 (MPS has no float64); no sync with the device here
        self._sums = self._sums.to(s.device) + torch.stack((signs, torch.full_like(signs, s.numel())))

    def adjust(self, step: int, global_batch: int,
               reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        """After iteration `step` (1-based): every `interval` steps, move p by ADA's rule and start counting anew."""
        if step % self.interval:
            return
        sums = self._sums if reduce is None else reduce(self._sums)
        signs, n = (int(v) for v in sums.cpu())
        self._sums = torch.zeros_like(self._sums)
        if n == 0:  # the loss never called D on the real batch as given: nothing to go by, p stays
            return
        self.r_t = signs / n
        direction = (self.r_t > self.target) - (self.r_t < self.target)
        self.p = min(1.0, max(0.0, self.p + direction * global_batch * self.interval / (self.kimg * 1000)))

    def pool(self, reduce: Callable[[torch.Tensor], torch.Tensor] | None, keep: bool) -> None:
        """Before a checkpoint: the counts of every rank gathered on one (keep=True: rank 0, which saves them)
        and zeroed on the others. Their sum, all that `adjust` uses, is unchanged; the saved state is the run's."""
        total = self._sums if reduce is None else reduce(self._sums)
        self._sums = total if keep else torch.zeros_like(total)

    def state_dict(self) -> dict[str, float | int]:
        signs, n = (int(v) for v in self._sums.cpu())
        return {"p": self.p, "signs": signs, "count": n}

    def load_state_dict(self, state: Mapping[str, Any], counts: bool = True) -> None:
        """`counts=False` (ranks other than 0 under torch.distributed) takes p but starts counting from zero."""
        p, signs, n = state["p"], state["signs"], state["count"]
        if not (isinstance(p, (int, float)) and 0 <= p <= 1 and all(type(v) is int for v in (signs, n))
                and n >= abs(signs)):
            raise ConfigError(f"adaptive augmentation state {dict(state)!r} is out of range")
        self.p = float(p)
        self._sums = torch.tensor([signs, n] if counts else [0, 0], dtype=torch.int64)


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
        self.reals: torch.Tensor | None = None  # set by the loop during D phases: the real batch, by identity

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        out = self.module(self.fn(x), *args, **kwargs)
        observe = getattr(self.fn, "observe", None)
        if observe is not None and x is self.reals:  # D's output on the real batch steers AdaptiveAugment
            score = out[0] if isinstance(out, (tuple, list)) and out else out  # (score, class logits, ...)
            if isinstance(score, torch.Tensor):
                observe(score)
        return out

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
