"""Least-squares GAN (Mao et al. 2017, eq. 2 with a-b-c = 0-1-1): D regresses real to 1 and fake to 0,
G pushes D(G(z)) toward 1. Squared errors instead of the sigmoid cross-entropy give G gradients even for
fakes D already calls fake with confidence.

A third-party plugin written only against ganhub's public API: the DCGAN generator from ganhub.nets, a
small D of our own, one loss for every phase. Install it (`pip install -e examples/ganhub-lsgan`) and
`ganhub list` shows it; `ganhub train lsgan --dataset fashion-mnist --steps 2000 --out runs/lsgan` trains it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ganhub.errors import ConfigError
from ganhub.nets import DCGANGenerator, dcgan_init, n_stages
from ganhub.variant import BaseConfig, Variant, bounded


@dataclass
class Config(BaseConfig):
    g_width: int = bounded(32, ge=1, le=1024)  # channels of G's last hidden layer; doubles toward 4x4
    d_width: int = bounded(32, ge=1, le=1024)  # channels of D's first layer; doubles toward 4x4
    lr_g: float = 2e-4  # paper: 2e-4 with Adam(0.5, 0.999), as the defaults
    lr_d: float = 2e-4


class Discriminator(nn.Module):
    """DCGAN-style D without a final sigmoid: (B, C, R, R) -> (B,) raw scores, regressed to 0 / 1."""

    def __init__(self, cfg: Config):
        super().__init__()
        widths = [cfg.d_width * 2**i for i in range(n_stages(cfg.resolution))]
        layers: list[nn.Module] = [nn.Conv2d(cfg.channels, widths[0], 4, 2, 1), nn.LeakyReLU(0.2, True)]
        for a, b in zip(widths, widths[1:]):  # (B, a, H, W) -> (B, b, H/2, W/2)
            layers += [nn.Conv2d(a, b, 4, 2, 1, bias=False), nn.BatchNorm2d(b), nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(widths[-1], 1, 4, 1, 0))  # (B, 4w, 4, 4) -> (B, 1, 1, 1)
        self.net = nn.Sequential(*layers)
        self.apply(dcgan_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten()


def build(cfg: Config) -> tuple[nn.Module, nn.Module]:
    if cfg.num_classes:  # say so, rather than silently train an unconditional model
        raise ConfigError("lsgan is unconditional; --set num_classes=0")
    return DCGANGenerator(cfg.z_dim, cfg.channels, cfg.resolution, cfg.g_width), Discriminator(cfg)


def loss(phase, *, G, D, real, fake, real_labels, fake_labels, z, cfg, step):
    # `fake` comes from the loop: detached in phase "D", with grad in phase "G"
    if phase == "D":
        l_d = 0.5 * ((D(real) - 1).pow(2).mean() + D(fake).pow(2).mean())
        return l_d, {"loss_D": l_d.item()}
    l_g = 0.5 * (D(fake) - 1).pow(2).mean()
    return l_g, {"loss_G": l_g.item()}


variant = Variant(
    name="lsgan",
    summary="Least-squares GAN: D regresses real to 1 and fake to 0 (Mao et al. 2017).",
    config_cls=Config,
    build=build,
    loss=loss,
    test_config={"g_width": 4, "d_width": 4, "batch_size": 4, "z_dim": 8},
)
