"""SNGAN (Miyato et al. 2018): spectral normalisation on every D layer, hinge loss; class-conditional
with a projection discriminator (Miyato & Koyama 2018) when num_classes > 0.

D is the paper's "standard CNN" (Table 3) shrunk for CPU: 3x3/4x4 conv pairs with LeakyReLU(0.1),
spectrally normalised (one power iteration per step, as in the paper, kept in fp32 by
ganhub.nets.spectral_norm). G is ganhub.nets.DCGANGenerator, with conditional BatchNorm when conditional.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ganhub.losses import add_lazy_r1, hinge_d, hinge_g
from ganhub.nets import DCGANGenerator, n_stages, spectral_norm
from ganhub.variant import BaseConfig, Variant, bounded


@dataclass
class Config(BaseConfig):
    z_dim: int = 64
    g_width: int = bounded(48, ge=1, le=1024)  # channels of G's last hidden layer; doubles toward the 4x4 input
    d_width: int = bounded(32, ge=1, le=1024)  # channels of D's first block; doubles per block
    batch_size: int = 64
    # Miyato et al. 2018, Table 1 setting C (lr 2e-4, betas (0.5, 0.999), one D step per G step): the
    # setting where SN stayed strong while other normalisations failed, and DCGAN's own. TTUR (lr_g=1e-4,
    # lr_d=4e-4, betas=(0, 0.9)) starved the trouser class on Fashion-MNIST (1.3 % of samples at 7,500 steps).
    # dcgan's 0.2 recipe (lr 1e-3, betas (0, 0.99), 5 kimg EMA) won a 5-minute race here (FID 120.5 against
    # 183.4 for setting C with the same EMA, 1,154 steps, README "Benchmarks") but lost the long run:
    # FID 146.6 at 3,000 steps and 142.6 at 5,000 (setting C: 56.9 at 6,500, weights/sngan). Kept: setting C.
    # Setting C with a 5 kimg EMA and lr_rampdown=0.5 over 10,000 steps: 82.4 at 5,000, 87.1 at 8,000 (stopped);
    # the same with num_classes=10 scored 37.9 at 10,000 (weights/sngan-cond). README "Pretrained weights".
    # With R1 (0.2's option below) the verdict flips. Side by side, 8,000 steps, 5 kimg EMA, lr_rampdown=0.5,
    # r1_gamma=0.1, seed 0: setting C scored 187.9, 126.4, 95.4, 73.1, 68.1 at 1,000-5,000 steps (stopped);
    # dcgan's recipe 126.6, 59.5, 42.9, 36.6 at 1,000-4,000 and 33.7 at 8,000 (weights/sngan). The defaults stay
    # setting C for now: changing them would change what every recorded `ganhub train sngan` command means.
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    n_critic: int = 1
    r1_gamma: float = bounded(0.0, ge=0, le=1e4, absent=0.0)  # lazy R1 on real images (see dcgan); 0 = off
    r1_interval: int = bounded(16, ge=1, le=10000)  # added to D's loss every this many steps, scaled up to match


class Discriminator(nn.Module):
    """phi(x) -> psi(phi) (+ <embed(y), phi> when conditional: the projection of Miyato & Koyama 2018, eq. 3)."""

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
        self.head = spectral_norm(nn.Linear(c_in * 16, 1))  # (B, c * 4 * 4) -> (B, 1)
        # one spectrally normalised embedding row per class, projected onto the features
        self.embed = spectral_norm(nn.Embedding(cfg.num_classes, c_in * 16)) if cfg.num_classes else None

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:  # (B, C, R, R) -> (B,)
        if (labels is not None) != (self.embed is not None):
            raise ValueError("this D is " + ("class-conditional: call D(x, labels)" if self.embed is not None
                                             else "unconditional: call D(x)"))
        h = self.features(x).flatten(1)
        out = self.head(h).squeeze(1)
        if self.embed is not None:
            out = out + (self.embed(labels) * h).sum(1)
        return out


def build(cfg: Config) -> tuple[nn.Module, nn.Module]:
    G = DCGANGenerator(cfg.z_dim, cfg.channels, cfg.resolution, cfg.g_width, num_classes=cfg.num_classes, init="torch")
    return G, Discriminator(cfg)


def judge(D, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    return D(x) if labels is None else D(x, labels)


def loss(phase, *, G, D, real, fake, real_labels, fake_labels, z, cfg, step):
    if phase == "D":
        l_d = hinge_d(judge(D, real, real_labels), judge(D, fake, fake_labels))
        return add_lazy_r1(l_d, {"loss_D": l_d.item()}, D, real, gamma=cfg.r1_gamma, interval=cfg.r1_interval,
                           step=step, labels=real_labels)
    l_g = hinge_g(judge(D, fake, fake_labels))
    return l_g, {"loss_G": l_g.item()}


variant = Variant(
    name="sngan",
    paper=(
        "Miyato et al. 2018, Spectral Normalization for Generative Adversarial Networks, "
        "https://arxiv.org/abs/1802.05957"
    ),
    summary="Spectrally normalised D, hinge loss (Miyato et al. 2018); projection D when num_classes > 0.",
    config_cls=Config,
    build=build,
    loss=loss,
    test_config={"g_width": 4, "d_width": 4, "batch_size": 4, "z_dim": 8, "r1_gamma": 0.1, "r1_interval": 1},
)
