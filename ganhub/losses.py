"""Shared GAN losses and regularisers. Each names the paper and equation it implements.

D outputs raw logits / critic values of shape (B,) or (B, 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ganhub.precision import fp32


def bce_d(real_logits: torch.Tensor, fake_logits: torch.Tensor, real_label: float = 1.0) -> torch.Tensor:
    """Goodfellow et al. 2014, eq. 1 for D. `real_label` < 1 is one-sided label smoothing (Salimans et al. 2016)."""
    real_t = torch.full_like(real_logits, real_label)
    return F.binary_cross_entropy_with_logits(real_logits, real_t) + F.binary_cross_entropy_with_logits(
        fake_logits, torch.zeros_like(fake_logits)
    )


def nonsaturating_g(fake_logits: torch.Tensor) -> torch.Tensor:
    """Goodfellow et al. 2014, sec. 3: G maximises log D(G(z)) instead of minimising log(1 - D(G(z)))."""
    return F.softplus(-fake_logits).mean()


def wasserstein_d(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """Arjovsky et al. 2017: the critic maximises E[D(x)] - E[D(G(z))]."""
    return fake_scores.mean() - real_scores.mean()


def wasserstein_g(fake_scores: torch.Tensor) -> torch.Tensor:
    return -fake_scores.mean()


def hinge_d(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """Lim & Ye 2017 / Miyato et al. 2018, eq. 16: E[relu(1 - D(x))] + E[relu(1 + D(G(z)))]."""
    return F.relu(1.0 - real_scores).mean() + F.relu(1.0 + fake_scores).mean()


def hinge_g(fake_scores: torch.Tensor) -> torch.Tensor:
    return -fake_scores.mean()


def _call_D(D, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    return D(x) if labels is None else D(x, labels)


def gradient_penalty(D, real: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    """Gulrajani et al. 2017, eq. 3: E[(||grad D(x_hat)||_2 - 1)^2], x_hat on lines between real and fake.

    One interpolation coefficient per sample, drawn from U[0, 1]. Runs in fp32 even under autocast.
    For a conditional D pass the labels x_hat is judged under (the real batch's, typically).
    """
    with fp32():
        real, fake = real.detach().float(), fake.detach().float()
        eps = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), device=real.device, dtype=real.dtype)
        x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
        (grad,) = torch.autograd.grad(_call_D(D, x_hat, labels).sum(), x_hat, create_graph=True)
        return (grad.flatten(1).norm(2, dim=1) - 1).pow(2).mean()


def r1_penalty(D, real: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    """Mescheder et al. 2018, eq. 9: E[||grad D(x)||^2] on real data (multiply by gamma/2 yourself).

    Runs in fp32 even under autocast."""
    with fp32():
        x = real.detach().float().requires_grad_(True)
        (grad,) = torch.autograd.grad(_call_D(D, x, labels).sum(), x, create_graph=True)
        return grad.flatten(1).pow(2).sum(1).mean()


def lazy_r1(D, real: torch.Tensor, *, gamma: float, interval: int, step: int,
            labels: torch.Tensor | None = None) -> torch.Tensor | None:
    """R1 with lazy regularisation (Karras et al. 2020, sec. 3.1), to add to D's loss of the same step.

    On steps divisible by `interval`: gamma / 2 * interval * r1_penalty, so that averaged over steps it
    weighs gamma / 2, as R1 every step would. None on the other steps and whenever gamma is 0, so an
    unused R1 costs nothing. Folded into the D step rather than a phase of its own (Variant.reg_phases),
    D keeps one optimiser step per iteration."""
    if not gamma or step % interval:
        return None
    return r1_penalty(D, real, labels) * (gamma / 2 * interval)


def add_lazy_r1(loss: torch.Tensor, logs: dict[str, float], D, real: torch.Tensor, *, gamma: float, interval: int,
                step: int, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """A D phase's (loss, logs) with lazy_r1's term added and logged as "loss_r1" on the steps it applies."""
    r1 = lazy_r1(D, real, gamma=gamma, interval=interval, step=step, labels=labels)
    if r1 is None:
        return loss, logs
    return loss + r1, {**logs, "loss_r1": r1.item()}


def nonsaturating_loss(phase, *, G, D, real, fake, real_labels, fake_labels, z, cfg, step):
    """A whole Variant.loss for an unconditional D: bce_d with one-sided label smoothing `cfg.label_smoothing`
    and lazy R1 (`cfg.r1_gamma`, `cfg.r1_interval`) for D, nonsaturating_g for G. dcgan's loss; vanilla's
    calls it."""
    if phase == "D":
        l_d = bce_d(D(real), D(fake), real_label=1.0 - cfg.label_smoothing)
        return add_lazy_r1(l_d, {"loss_D": l_d.item()}, D, real, gamma=cfg.r1_gamma, interval=cfg.r1_interval,
                           step=step)
    l_g = nonsaturating_g(D(fake))
    return l_g, {"loss_G": l_g.item()}
