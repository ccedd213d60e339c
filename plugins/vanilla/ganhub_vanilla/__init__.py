"""Vanilla GAN (Goodfellow et al. 2014): MLP G and D, BCE with the non-saturating G loss.

Also learns the 2-D toy distributions (ring of 8 / grid of 25 Gaussians) for mode-collapse studies.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ganhub.errors import ConfigError
from ganhub.losses import nonsaturating_g, nonsaturating_loss
from ganhub.nets import spectral_norm
from ganhub.variant import BaseConfig, Variant, bounded


@dataclass
class Config(BaseConfig):
    z_dim: int = 64
    g_hidden: int = bounded(512, ge=1, le=65536)  # width of G's hidden layers
    d_hidden: int = bounded(512, ge=1, le=65536)  # width of D's hidden layers
    layers: int = bounded(3, ge=1, le=64)  # hidden layers in each network
    # On Fashion-MNIST the plain MLP pair collapsed onto tops (8/10 classes, recall 0.00 at 8,000
    # steps); BatchNorm in G plus the 2014 paper's dropout in D reached 9/10 and recall 0.04 at 80,000.
    g_batchnorm: bool = True  # BatchNorm1d before each of G's activations
    # Dropout after each of D's hidden layers (Goodfellow et al. 2014 used it). With d_spectral_norm, 0 pays: FID
    # 52.3 at 100,000 steps against 68.0 with 0.3 (the shipped weights use 0; without spectral norm, 0 stalled
    # at FID 173-188). The default stays 0.3: recorded commands hold only the fields they override.
    d_dropout: float = bounded(0.3, ge=0, lt=1)
    # Minibatch discrimination (Salimans et al. 2016, sec. 3.2) before D's output layer: this many kernels,
    # each giving every sample a measure of how close it lies to the rest of its batch (0 = off).
    # Off by default: on Fashion-MNIST it did not beat the shipped recipe (README, Pretrained weights).
    d_minibatch_kernels: int = bounded(0, ge=0, le=4096, absent=0)
    d_minibatch_dim: int = bounded(5, ge=1, le=1024)  # kernel size (C in the paper, 5 in its code)
    # Feature matching (Salimans et al. 2016, sec. 3.1) added to G's loss with this weight (0 = off): the mean
    # squared gap between the batch means of D's last hidden features on real and on fake images.
    # Off by default: weights 100 and 1,000 scored FID 90.0 and 92.9 at 100,000 steps, behind the EMA-only
    # run's 73.6 (README, Pretrained weights).
    g_feature_matching: float = bounded(0.0, ge=0, le=1e6, absent=0.0)
    # Packing (PacGAN, Lin et al. 2018): D judges d_pack samples of one kind (all real or all fake) at once,
    # their pixels concatenated, so a G that repeats itself is easier to catch (1 = off). Every sample gets
    # its pack's score, so D still returns (B,) and the losses are unchanged. batch_size must divide by it.
    # Off by default: packs of 2 scored FID 285.6 and 230.1 at 10,000 and 20,000 steps, far behind the
    # EMA-only run's 203.0 and 134.0 (README, Pretrained weights).
    d_pack: int = bounded(1, ge=1, le=64, absent=1)
    # Spectral normalisation (Miyato et al. 2018) of D's linear layers, kept in fp32 (ganhub.nets). The
    # shipped weights use it (with d_dropout=0 and a 300 kimg EMA: FID 37.0 at 160,000 steps). With the 100 kimg
    # EMA and dropout it scored 68.0 and 71.5 at 100,000 steps in two runs against 73.6 without, 46.8 at 300,000.
    # The default stays off, like the EMA's below, because a recorded command holds only the fields it overrides.
    d_spectral_norm: bool = bounded(False, absent=False)
    # ganhub's usual 1 kimg EMA (16 steps here) still under-produced pullovers at 80,000 steps (1.6 % of
    # samples, FID 227); averaging G over 10 kimg, same training otherwise, gave 3.8 % and FID 152. Longer
    # still pays: 100 kimg scored 97.5 at 40,000 steps, 82.0 at 80,000 and 73.6 at 100,000 (the weights before
    # the spectral-norm ones; 10 kimg: 147.9 at 80,000; README "Pretrained weights"), and with spectral norm and
    # no dropout 300 kimg beat 100 (42.7 against 52.3 at 100,000 steps, the same G). The default stays 10:
    # recorded commands hold only the fields they override.
    ema_half_life_kimg: float = 10.0  # overrides BaseConfig's 1.0
    label_smoothing: float = bounded(0.0, ge=0, lt=1)  # one-sided: D's real targets become 1 - this (Salimans et al. 2016)
    batch_size: int = 64
    # Lazy R1 on real images, added to D's loss every r1_interval steps (0 = off). Off here: the recipe that
    # transformed dcgan (R1 0.1 with lr 1e-3, betas (0, 0.99)) stalled this MLP at FID 236-253 and class KL
    # 0.14-0.19 from 6,000 to 12,000 steps (benchmarks/train_curve.py --variant vanilla --steps 16000 --every
    # 2000, stopped at 12,000); the 10 kimg EMA without R1: 147.9 and 0.094 at 80,000.
    r1_gamma: float = bounded(0.0, ge=0, le=1e4, absent=0.0)
    r1_interval: int = bounded(16, ge=1, le=10000)
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)


def out_dim(cfg: Config) -> int:
    return 2 if cfg.data == "points" else cfg.channels * cfg.resolution**2


class Generator(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.shape = (2,) if cfg.data == "points" else (cfg.channels, cfg.resolution, cfg.resolution)
        dims = [cfg.z_dim] + [cfg.g_hidden] * cfg.layers
        body: list[nn.Module] = []
        for a, b in zip(dims, dims[1:]):
            body.append(nn.Linear(a, b, bias=not cfg.g_batchnorm))
            if cfg.g_batchnorm:
                body.append(nn.BatchNorm1d(b))
            body.append(nn.LeakyReLU(0.2))
        body.append(nn.Linear(dims[-1], out_dim(cfg)))
        if cfg.data == "image":
            body.append(nn.Tanh())  # images live in [-1, 1]; points are unbounded
        self.net = nn.Sequential(*body)

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (B, z_dim) -> (B, *shape)
        return self.net(z).view(-1, *self.shape)


class MinibatchDiscrimination(nn.Module):
    """Salimans et al. 2016, sec. 3.2: appends o(x_i)_b = sum_{j != i} exp(-||M_i,b - M_j,b||_1) for each of
    `kernels` kernels to x_i's features, M_i = x_i T reshaped to (kernels, dim). A batch of one gets zeros."""

    def __init__(self, features: int, kernels: int, dim: int):
        super().__init__()
        self.kernels, self.dim = kernels, dim
        self.T = nn.Linear(features, kernels * dim, bias=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # (N, features) -> (N, features + kernels)
        m = self.T(h).view(-1, self.kernels, self.dim)
        dist = (m.unsqueeze(0) - m.unsqueeze(1)).abs().sum(3)  # (N, N, kernels), L1 between every pair
        closeness = torch.exp(-dist).sum(1) - 1  # minus each sample's own exp(0)
        return torch.cat([h, closeness.to(h.dtype)], 1)


class Discriminator(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.pack = cfg.d_pack
        dims = [out_dim(cfg) * cfg.d_pack] + [cfg.d_hidden] * cfg.layers
        norm = spectral_norm if cfg.d_spectral_norm else (lambda m: m)
        body: list[nn.Module] = []
        for a, b in zip(dims, dims[1:]):
            body += [norm(nn.Linear(a, b)), nn.LeakyReLU(0.2)]
            if cfg.d_dropout:
                body.append(nn.Dropout(cfg.d_dropout))
        self.n_hidden = len(body)  # net[:n_hidden] gives the features feature matching compares
        if cfg.d_minibatch_kernels:
            body.append(MinibatchDiscrimination(dims[-1], cfg.d_minibatch_kernels, cfg.d_minibatch_dim))
        body.append(norm(nn.Linear(dims[-1] + cfg.d_minibatch_kernels, 1)))
        self.net = nn.Sequential(*body)

    def _packed(self, x: torch.Tensor) -> torch.Tensor:  # (B, *shape) -> (B / pack, pack * prod(shape))
        if x.shape[0] % self.pack:
            raise ValueError(f"vanilla's D packs {self.pack} samples at a time (d_pack); "
                             f"got a batch of {x.shape[0]}")
        return x.reshape(x.shape[0] // self.pack, -1)

    def forward(self, x: torch.Tensor, with_features: bool = False):
        """(B, *shape) -> (B,) logits, each sample its pack's; with_features: (logits, (B / d_pack, d_hidden)
        last hidden features)."""
        h = self.net[: self.n_hidden](self._packed(x))
        logits = self.net[self.n_hidden :](h).squeeze(1).repeat_interleave(self.pack, 0)
        return (logits, h) if with_features else logits


def loss(phase, *, G, D, real, fake, real_labels, fake_labels, z, cfg, step):
    """nonsaturating_loss, plus feature matching in G's phase when cfg.g_feature_matching > 0."""
    if phase != "G" or not cfg.g_feature_matching:
        return nonsaturating_loss(phase, G=G, D=D, real=real, fake=fake, real_labels=real_labels,
                                  fake_labels=fake_labels, z=z, cfg=cfg, step=step)
    fake_logits, f_fake = D(fake, with_features=True)  # through D as the loop sees it (augmented or not)
    with torch.no_grad():
        f_real = D(real, with_features=True)[1]
    fm = (f_real.float().mean(0) - f_fake.float().mean(0)).square().mean()
    l_ns = nonsaturating_g(fake_logits)
    l_g = l_ns + cfg.g_feature_matching * fm
    return l_g, {"loss_G": l_g.item(), "loss_G_fm": fm.item()}


def build(cfg: Config) -> tuple[nn.Module, nn.Module]:
    if cfg.num_classes:
        raise ConfigError("vanilla is unconditional; --set num_classes=0, or use sngan for a class-conditional GAN")
    if cfg.batch_size % cfg.d_pack:
        raise ConfigError(f"batch_size ({cfg.batch_size}) must be a multiple of d_pack ({cfg.d_pack}): "
                          f"D judges d_pack samples at a time")
    return Generator(cfg), Discriminator(cfg)


variant = Variant(
    name="vanilla",
    paper="Goodfellow et al. 2014, Generative Adversarial Nets, https://arxiv.org/abs/1406.2661",
    summary="MLP G and D, non-saturating BCE (Goodfellow et al. 2014); also fits the 2-D toy mixtures.",
    config_cls=Config,
    build=build,
    loss=loss,
    modalities=("image", "points"),
    test_config={"g_hidden": 32, "d_hidden": 32, "layers": 2, "batch_size": 4, "z_dim": 8, "r1_gamma": 0.1, "r1_interval": 1,
                 "d_minibatch_kernels": 3, "d_minibatch_dim": 2, "g_feature_matching": 1.0, "d_pack": 2,
                 "d_spectral_norm": True},
)
