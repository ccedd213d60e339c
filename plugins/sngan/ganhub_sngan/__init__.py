"""SNGAN (Miyato et al. 2018): spectral normalisation on every D layer, hinge loss; class-conditional
with a projection discriminator (Miyato & Koyama 2018) when num_classes > 0.

`arch="cnn"` (the default): D is the paper's "standard CNN" (Table 3) shrunk for CPU, 3x3/4x4 conv pairs with
LeakyReLU(0.1); G is ganhub.nets.DCGANGenerator. `arch="resnet"`: the paper's ResNet (Table 4, after Gulrajani
et al. 2017), also shrunk: pre-activation residual blocks, G upsampling by nearest neighbour, D downsampling by
average pooling to 8x8, then two blocks at 8x8, ReLU and global sum pooling. Every D layer is spectrally
normalised (one power iteration per step, as in the paper, kept in fp32 by ganhub.nets.spectral_norm); G's
BatchNorm is class-conditional when conditional.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ganhub.losses import add_lazy_r1, hinge_d, hinge_g
from ganhub.nets import ConditionalBatchNorm2d, DCGANGenerator, check_labels, n_stages, spectral_norm
from ganhub.variant import BaseConfig, Variant, bounded


@dataclass
class Config(BaseConfig):
    z_dim: int = 64
    arch: str = bounded("cnn", choices=("cnn", "resnet"), absent="cnn")  # the paper's standard CNN, or its ResNet
    g_width: int = bounded(48, ge=1, le=1024)  # channels of G's last hidden layer; doubles toward the 4x4 input
    d_width: int = bounded(32, ge=1, le=1024)  # channels of D's first block; doubles per block
    batch_size: int = 64
    # dcgan's recipe (lr 1e-3, betas (0, 0.99), a 5 kimg EMA of G) with R1 on real images (Mescheder et al.
    # 2018; 0 = off), lazily: added to D's loss every r1_interval steps, scaled up to match. Not the paper's
    # setting C (Miyato et al. 2018, Table 1: lr 2e-4, betas (0.5, 0.999)), plugin 0.1-0.3's defaults with
    # ganhub's 1 kimg EMA. Side by side, 8,000 steps, 5 kimg EMA, lr_rampdown=0.5, r1_gamma=0.1, seed 0:
    # setting C scored FID 187.9, 126.4, 95.4, 73.1, 68.1 at 1,000-5,000 steps (stopped), this recipe 126.6,
    # 59.5, 42.9, 36.6, 31.6. Without R1 it won a 5-minute race (120.5 against setting C's 183.4, README
    # "Benchmarks") but stood at 146.6 after 3,000 steps. 20,000 steps with lr_rampdown=0.5: FID 17.1
    # (weights/sngan). TTUR (lr_g=1e-4, lr_d=4e-4, betas=(0, 0.9)) starved the trouser class on Fashion-MNIST
    # (1.3 % of samples at 7,500 steps). Folders written before 0.4 record their rates and resume as they
    # were (no r1_gamma recorded: without R1). Setting C with the old EMA: --set lr_g=2e-4 --set lr_d=2e-4
    # --set betas=0.5,0.999 --set ema_half_life_kimg=1 --set r1_gamma=0.
    lr_g: float = 1e-3
    lr_d: float = 1e-3
    betas: tuple[float, float] = (0.0, 0.99)
    n_critic: int = 1
    ema_half_life_kimg: float = 5.0  # overrides BaseConfig's 1.0
    r1_gamma: float = bounded(0.1, ge=0, le=1e4, absent=0.0)
    r1_interval: int = bounded(16, ge=1, le=10000)  # added to D's loss every this many steps, scaled up to match


class ProjectionD(nn.Module):
    """phi(x) -> psi(phi) (+ <embed(y), phi> when conditional: the projection of Miyato & Koyama 2018, eq. 3).
    Subclasses set `features` (x -> phi), `head` (psi) and `embed` (None when unconditional)."""

    features: nn.Module
    head: nn.Module
    embed: nn.Module | None

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:  # (B, C, R, R) -> (B,)
        check_labels(self.embed is not None, labels, "D", "D(x")
        h = self.features(x).flatten(1)
        out = self.head(h).squeeze(1)
        if self.embed is not None:
            out = out + (self.embed(labels) * h).sum(1)
        return out


class Discriminator(ProjectionD):
    """The standard CNN: phi = the conv stack's (c, 4, 4) output, flattened."""

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


def _xavier(conv: nn.Module, gain: float) -> nn.Module:
    """The ResNet's init (Miyato et al.'s code): Xavier-uniform, gain sqrt(2) inside a residual branch, 1 elsewhere."""
    nn.init.xavier_uniform_(conv.weight, gain)
    nn.init.zeros_(conv.bias)
    return conv


class GBlock(nn.Module):
    """BN, ReLU, 2x nearest upsampling, 3x3 conv, BN, ReLU, 3x3 conv; shortcut: upsampling, 1x1 conv.
    (B, a, H, W) [, labels (B,)] -> (B, b, 2H, 2W)."""

    def __init__(self, a: int, b: int, num_classes: int):
        super().__init__()
        self.bn1, self.bn2 = (ConditionalBatchNorm2d(c, num_classes) if num_classes else nn.BatchNorm2d(c) for c in (a, b))
        self.conv1 = _xavier(nn.Conv2d(a, b, 3, 1, 1), 2**0.5)
        self.conv2 = _xavier(nn.Conv2d(b, b, 3, 1, 1), 2**0.5)
        self.skip = _xavier(nn.Conv2d(a, b, 1), 1.0)

    def _bn(self, bn: nn.Module, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        return bn(x, labels) if labels is not None else bn(x)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = F.interpolate(F.relu(self._bn(self.bn1, x, labels)), scale_factor=2.0)
        h = self.conv2(F.relu(self._bn(self.bn2, self.conv1(h), labels)))
        return h + self.skip(F.interpolate(x, scale_factor=2.0))


class ResNetGenerator(nn.Module):
    """z -> linear -> (4w', 4, 4) -> one GBlock per 2x -> BN, ReLU, 3x3 conv, tanh. Channels follow the CNN
    generator's schedule (4w, 2w, w at 4, 8, 16 px for 32 px), w at full size. (B, z_dim) -> (B, C, R, R)."""

    def __init__(self, cfg: Config):
        super().__init__()
        n = n_stages(cfg.resolution)
        self.conditional = cfg.num_classes > 0
        widths = [cfg.g_width * 2 ** (n - 1 - i) for i in range(n)] + [cfg.g_width]
        self.c0 = widths[0]
        self.fc = _xavier(nn.Linear(cfg.z_dim, widths[0] * 16), 1.0)
        self.blocks = nn.ModuleList(GBlock(a, b, cfg.num_classes) for a, b in zip(widths, widths[1:]))
        self.bn = nn.BatchNorm2d(widths[-1])
        self.out = _xavier(nn.Conv2d(widths[-1], cfg.channels, 3, 1, 1), 1.0)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        check_labels(self.conditional, labels, "generator", "G(z")
        x = self.fc(z).view(z.shape[0], self.c0, 4, 4)
        for block in self.blocks:
            x = block(x, labels)
        return torch.tanh(self.out(F.relu(self.bn(x))))


class DBlock(nn.Module):
    """(ReLU,) 3x3 conv, ReLU, 3x3 conv (, 2x2 average pool); shortcut: 1x1 conv (, pool) when the shape changes.
    The first block takes the image, so it has no leading ReLU and pools before its shortcut's conv."""

    def __init__(self, a: int, b: int, down: bool, first: bool = False):
        super().__init__()
        self.conv1 = spectral_norm(_xavier(nn.Conv2d(a, b, 3, 1, 1), 2**0.5))
        self.conv2 = spectral_norm(_xavier(nn.Conv2d(b, b, 3, 1, 1), 2**0.5))
        self.skip = spectral_norm(_xavier(nn.Conv2d(a, b, 1), 1.0)) if (down or a != b) else None
        self.down, self.first = down, first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(F.relu(self.conv1(x if self.first else F.relu(x))))
        if self.first:  # pool, then 1x1 conv: the same map, 4x fewer multiplications on the image
            return F.avg_pool2d(h, 2) + self.skip(F.avg_pool2d(x, 2))
        s = self.skip(x) if self.skip is not None else x
        return F.avg_pool2d(h + s, 2) if self.down else h + s


class ResNetDiscriminator(ProjectionD):
    """The ResNet: blocks down to 8x8 (channels d_width, doubling per block), two blocks at 8x8, then
    phi = ReLU and a sum over space."""

    def __init__(self, cfg: Config):
        super().__init__()
        n = n_stages(cfg.resolution) - 1  # downsampling blocks: R -> 8
        widths = [cfg.channels] + [cfg.d_width * 2**i for i in range(n)]
        blocks = [DBlock(a, b, down=True, first=i == 0) for i, (a, b) in enumerate(zip(widths, widths[1:]))]
        c = widths[-1]
        self.blocks = nn.Sequential(*blocks, DBlock(c, c, down=False), DBlock(c, c, down=False))
        self.head = spectral_norm(_xavier(nn.Linear(c, 1), 1.0))
        self.embed = spectral_norm(nn.Embedding(cfg.num_classes, c)) if cfg.num_classes else None

    def features(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return F.relu(self.blocks(x)).sum((2, 3))


def build(cfg: Config) -> tuple[nn.Module, nn.Module]:
    if cfg.arch == "resnet":
        return ResNetGenerator(cfg), ResNetDiscriminator(cfg)
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
