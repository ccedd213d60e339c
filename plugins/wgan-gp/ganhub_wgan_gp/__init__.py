"""WGAN-GP (Gulrajani et al. 2017): Wasserstein critic + gradient penalty.

Algorithm 1 of the paper: lambda = 10, n_critic = 5, Adam(betas=(0, 0.9)); one interpolation
coefficient per sample; the critic has no BatchNorm (the penalty is per sample, BN would couple samples).
G is ganhub.nets.DCGANGenerator with PyTorch's default init (as the bundled weights were trained).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ganhub.errors import ConfigError
from ganhub.losses import gradient_penalty, wasserstein_d, wasserstein_g
from ganhub.nets import DCGANGenerator, n_stages
from ganhub.variant import BaseConfig, Variant, bounded


@dataclass
class Config(BaseConfig):
    z_dim: int = 64
    g_width: int = bounded(48, ge=1, le=1024)  # channels of G's last hidden layer; doubles toward the 4x4 input
    d_width: int = bounded(48, ge=1, le=1024)  # channels of the critic's first layer; doubles toward the 4x4 output
    gp_lambda: float = bounded(10.0, ge=0, le=1e4)  # gradient-penalty weight (paper: 10)
    batch_size: int = 64
    # Not the paper's lr 1e-4 (plugin 0.1 used it, with ganhub's 1 kimg EMA): eight minutes on one thread each,
    # side by side (`benchmarks/train_budget.py --variant wgan-gp --minutes 8 --threads 1 --no-reference`,
    # ~510 G steps), with a 5 kimg EMA of G: FID 669.0 at lr 1e-4, 276.5 at 3e-4.
    lr_g: float = 3e-4
    lr_d: float = 3e-4
    ema_half_life_kimg: float = 5.0  # overrides BaseConfig's 1.0
    betas: tuple[float, float] = (0.0, 0.9)  # paper: (0, 0.9)
    n_critic: int = 5  # critic updates per G update (paper: 5)
    # Small data: DiffAugment at full strength, not ganhub's adaptive default: ADA's heuristic reads the sign
    # of D's output on reals, and a Wasserstein critic's output has no fixed zero (only differences count)
    augment_target: float = 0.0


class Critic(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        n = n_stages(cfg.resolution)
        widths = [cfg.d_width * 2**i for i in range(n)]
        layers: list[nn.Module] = [nn.Conv2d(cfg.channels, widths[0], 4, 2, 1), nn.LeakyReLU(0.2, True)]
        for a, b in zip(widths, widths[1:]):  # (B, a, H, W) -> (B, b, H/2, W/2), no normalisation
            layers += [nn.Conv2d(a, b, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(widths[-1], 1, 4, 1, 0))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, R, R) -> (B,) critic values
        return self.net(x).flatten()


def build(cfg: Config) -> tuple[nn.Module, nn.Module]:
    if cfg.num_classes:
        raise ConfigError("wgan-gp is unconditional; --set num_classes=0, or use sngan for a class-conditional GAN")
    return DCGANGenerator(cfg.z_dim, cfg.channels, cfg.resolution, cfg.g_width, init="torch"), Critic(cfg)


def loss(phase, *, G, D, real, fake, real_labels, fake_labels, z, cfg, step):
    if phase == "D":
        w = wasserstein_d(D(real), D(fake))
        gp = gradient_penalty(D, real, fake)  # in fp32 under autocast
        total = w + cfg.gp_lambda * gp
        # -w estimates the Wasserstein distance; it is the number to watch in a WGAN run
        return total, {"loss_D": total.item(), "w_dist": -w.item(), "gp": gp.item()}
    l_g = wasserstein_g(D(fake))
    return l_g, {"loss_G": l_g.item()}


variant = Variant(
    name="wgan-gp",
    paper="Gulrajani et al. 2017, Improved Training of Wasserstein GANs, https://arxiv.org/abs/1704.00028",
    summary="Wasserstein critic with gradient penalty, n_critic=5 (Gulrajani et al. 2017).",
    config_cls=Config,
    build=build,
    loss=loss,
    test_config={"g_width": 4, "d_width": 4, "batch_size": 4, "z_dim": 8, "n_critic": 2},
)
