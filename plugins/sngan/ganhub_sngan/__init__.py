"""SNGAN (Miyato et al. 2018): spectral normalisation on every D layer, hinge loss.

D is the paper's "standard CNN" (Table 3) shrunk for CPU: 3x3/4x4 conv pairs with LeakyReLU(0.1),
spectrally normalised through torch.nn.utils.parametrizations.spectral_norm (one power iteration per
step, as in the paper). G is DCGAN's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ganhub.errors import ConfigError
from ganhub.losses import hinge_d, hinge_g
from ganhub.variant import BaseConfig, Variant


@dataclass
class Config(BaseConfig):
    z_dim: int = 64
    g_width: int = 48  # channels of G's last hidden layer; doubles toward the 4x4 input
    d_width: int = 32  # channels of D's first block; doubles per block
    batch_size: int = 64
    # Miyato et al. 2018, Table 1 setting C (lr 2e-4, betas (0.5, 0.999), one D step per G step): the
    # setting where SN stayed strong while other normalisations failed, and DCGAN's own, so sngan vs
    # dcgan isolates SN + hinge. TTUR (lr_g=1e-4, lr_d=4e-4, betas=(0, 0.9)) is one --set away; on
    # Fashion-MNIST at 32 px it starved the trouser class (1.3 % of samples at 7,500 steps).
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    n_critic: int = 1


def n_stages(resolution: int) -> int:
    n = int(math.log2(resolution)) - 2 if resolution >= 8 else -1
    if n < 1 or 4 * 2**n != resolution:
        raise ConfigError(f"resolution must be a power of two >= 8 (e.g. 32 or 64), got {resolution}")
    return n


class Generator(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        n = n_stages(cfg.resolution)
        widths = [cfg.g_width * 2 ** (n - 1 - i) for i in range(n)]
        layers: list[nn.Module] = [  # (B, z, 1, 1) -> (B, widths[0], 4, 4)
            nn.ConvTranspose2d(cfg.z_dim, widths[0], 4, 1, 0, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(True),
        ]
        for a, b in zip(widths, widths[1:]):  # (B, a, H, W) -> (B, b, 2H, 2W)
            layers += [nn.ConvTranspose2d(a, b, 4, 2, 1, bias=False), nn.BatchNorm2d(b), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(widths[-1], cfg.channels, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (B, z_dim) -> (B, C, R, R)
        return self.net(z[:, :, None, None])


class Discriminator(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        n = n_stages(cfg.resolution)
        layers: list[nn.Module] = []
        c_in = cfg.channels
        for i in range(n):  # (B, c_in, H, W) -> (B, c, H/2, W/2)
            c = cfg.d_width * 2**i
            layers += [
                spectral_norm(nn.Conv2d(c_in, c, 3, 1, 1)), nn.LeakyReLU(0.1, True),
                spectral_norm(nn.Conv2d(c, c, 4, 2, 1)), nn.LeakyReLU(0.1, True),
            ]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.head = spectral_norm(nn.Linear(c_in * 16, 1))  # (B, c, 4, 4) -> (B, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, R, R) -> (B,) scores
        return self.head(self.features(x).flatten(1)).squeeze(1)


def build(cfg: Config) -> tuple[nn.Module, nn.Module]:
    return Generator(cfg), Discriminator(cfg)


def loss(phase, *, G, D, real, fake, real_labels, fake_labels, z, cfg, step):
    if phase == "D":
        l_d = hinge_d(D(real), D(fake))
        return l_d, {"loss_D": l_d.item()}
    l_g = hinge_g(D(fake))
    return l_g, {"loss_G": l_g.item()}


variant = Variant(
    name="sngan",
    summary="Spectrally normalised D, hinge loss (Miyato et al. 2018).",
    config_cls=Config,
    build=build,
    loss=loss,
    test_config={"g_width": 4, "d_width": 4, "batch_size": 4, "z_dim": 8},
)
