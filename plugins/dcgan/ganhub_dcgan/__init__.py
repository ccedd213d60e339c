"""DCGAN (Radford et al. 2015).

Strided transposed convs in G, strided convs in D; BatchNorm everywhere except G's output and D's input;
ReLU + Tanh output in G; LeakyReLU(0.2) in D; weights from N(0, 0.02); BCE with the non-saturating G loss.
G is ganhub.nets.DCGANGenerator (shared with wgan-gp and sngan).

Defaults are tuned for quality per CPU-minute rather than copied from the paper: narrower networks
(g_width=d_width=48 instead of 64/128), a 5x higher learning rate with beta1 = 0, an EMA of G (see
ganhub.train) and a lazy R1 penalty on D give recognisable garments after a few minutes on a 2-core CPU;
`benchmarks/train_budget.py` measures it (the Config comments hold the numbers).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ganhub.errors import ConfigError
from ganhub.losses import nonsaturating_loss
from ganhub.nets import DCGANGenerator, dcgan_init, n_stages
from ganhub.variant import BaseConfig, Variant, bounded


@dataclass
class Config(BaseConfig):
    z_dim: int = 64
    g_width: int = bounded(48, ge=1, le=1024)  # channels of G's last hidden layer; doubles toward the 4x4 input
    d_width: int = bounded(48, ge=1, le=1024)  # channels of D's first layer; doubles toward the 4x4 output
    label_smoothing: float = bounded(0.0, ge=0, lt=1)  # one-sided: D's real targets become 1 - this (Salimans et al. 2016)
    batch_size: int = 64
    # Not the paper's lr 2e-4 and betas (0.5, 0.999) (plugin 0.1 used them, with ganhub's 1 kimg EMA). Five
    # minutes on a 2-core CPU (benchmarks/train_budget.py, README "Benchmarks", two 1-thread runs side by side
    # per pair) gave FID 145.5 with those, 105.1 at lr 1e-3, 88.0 with betas (0, 0.99) too, and 66.4 with a
    # 5 kimg EMA of G on top (10 and 20 kimg: 68.4, 68.0). A quiet 2-thread run of the 0.2 defaults: 76.9
    # (0.1: 123.6); 12,000 steps of them with lr_rampdown=0.5: 55.4 (0.1's 5,000 steps: 124.5).
    lr_g: float = 1e-3
    lr_d: float = 1e-3
    betas: tuple[float, float] = (0.0, 0.99)
    ema_half_life_kimg: float = 5.0  # overrides BaseConfig's 1.0
    # R1 on real images (Mescheder et al. 2018; 0 = off), lazily: added to D's loss every r1_interval steps,
    # scaled up to match. Without it the 0.2 defaults peak near 1,500 steps and degrade (FID 75.6 at 1,600,
    # 90.8 at 3,200); with gamma 0.1 the same run kept falling, to 26.5 at 3,200 (README "Benchmarks").
    # Five minutes on 2 threads: 23.7 (0.2: 76.9-92.5). 12,000 steps with lr_rampdown=0.5: 9.6 (weights/dcgan).
    # Folders written before 0.3 (no r1_gamma recorded) resume without it.
    r1_gamma: float = bounded(0.1, ge=0, le=1e4, absent=0.0)
    r1_interval: int = bounded(16, ge=1, le=10000)


class Discriminator(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        n = n_stages(cfg.resolution)
        widths = [cfg.d_width * 2**i for i in range(n)]  # e.g. 32px: [w, 2w, 4w]
        layers: list[nn.Module] = [nn.Conv2d(cfg.channels, widths[0], 4, 2, 1), nn.LeakyReLU(0.2, True)]  # no BN on input
        for a, b in zip(widths, widths[1:]):  # (B, a, H, W) -> (B, b, H/2, W/2)
            layers += [nn.Conv2d(a, b, 4, 2, 1, bias=False), nn.BatchNorm2d(b), nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(widths[-1], 1, 4, 1, 0))  # (B, 4w, 4, 4) -> (B, 1, 1, 1)
        self.net = nn.Sequential(*layers)
        self.apply(dcgan_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, R, R) -> (B,) logits
        return self.net(x).flatten()


def build(cfg: Config) -> tuple[nn.Module, nn.Module]:
    if cfg.num_classes:
        raise ConfigError("dcgan is unconditional; --set num_classes=0, or use sngan for a class-conditional GAN")
    return DCGANGenerator(cfg.z_dim, cfg.channels, cfg.resolution, cfg.g_width, init="dcgan"), Discriminator(cfg)


variant = Variant(
    name="dcgan",
    paper=(
        "Radford et al. 2015, Unsupervised Representation Learning with Deep "
        "Convolutional Generative Adversarial Networks, https://arxiv.org/abs/1511.06434"
    ),
    summary="Strided-conv G and D with BatchNorm, non-saturating BCE (Radford et al. 2015).",
    config_cls=Config,
    build=build,
    loss=nonsaturating_loss,
    test_config={"g_width": 4, "d_width": 4, "batch_size": 4, "z_dim": 8, "r1_interval": 1},
)
