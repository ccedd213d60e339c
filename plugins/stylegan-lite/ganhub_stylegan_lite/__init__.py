"""StyleGAN-lite: the StyleGAN2 generator and training recipe, sized to train on a CPU at 32-64 px.

Karras et al. 2019 (mapping network z -> w, learned constant input, per-layer noise, style mixing,
truncation around a tracked mean w) and 2020 (modulated convolutions with weight demodulation, eq. 1-3;
skip-connected toRGB outputs; lazy R1 every 16 steps; equalised learning rate, mapping lr x 0.01).
Left out for size: progressive growing, path-length regularisation, the residual D, upfirdn filters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ganhub.errors import ConfigError
from ganhub.losses import nonsaturating_g, r1_penalty
from ganhub.variant import BaseConfig, Variant, bounded

# Synthesis runs in channels_last on CPUs (oneDNN's native layout): a 64-image grid took 185.5 ms in NCHW and
# 115.5 ms so, on one busy thread of a 2-core EPYC (`python benchmarks/speed.py --part sample --experiments
# --threads 1` times both, interleaved). Other devices keep NCHW (unmeasured there).
CHANNELS_LAST = True
SQRT2 = math.sqrt(2.0)  # gain after leaky ReLU keeps activations at unit variance (equalised lr)


@dataclass
class Config(BaseConfig):
    z_dim: int = 64
    w_dim: int = bounded(128, ge=1, le=4096)  # size of the intermediate latent w
    mapping_layers: int = bounded(4, ge=1, le=32)  # paper: 8; 4 suffice at this scale
    g_width: int = bounded(128, ge=1, le=1024)  # channels of the 4x4 synthesis block; halve per block...
    # ...down to g_width_top at the last blocks, as StyleGAN's channel schedule narrows toward high resolution.
    # 0 = g_width in every block (the layout of plugin 0.1, what a config.json without this field means).
    # 128 -> 16 needs 3.05 GFLOP per 64-image grid against 12.8 for 64 everywhere (see README "Benchmarks").
    g_width_top: int = bounded(16, ge=0, le=1024, absent=0)
    d_width: int = bounded(32, ge=1, le=1024)  # channels of D's first block; doubles per block, capped at 4x
    mixing_prob: float = bounded(0.9, ge=0, le=1)  # style-mixing regularisation probability (paper: 0.9)
    w_avg_beta: float = bounded(0.995, ge=0, le=1)  # tracked mean of w for truncation
    r1_gamma: float = bounded(0.05, ge=0, le=1e4)  # R1 weight; ~0.0002 * res^2 / batch heuristic of StyleGAN2-ADA, rounded up
    r1_interval: int = bounded(16, ge=1, le=10000)  # lazy regularisation: R1 every this many steps (paper: 16)
    batch_size: int = 32
    # Not StyleGAN2's 2e-3 to 2.5e-3: with equalised lr, Adam's step is a fixed fraction of each weight, and
    # at this scale 2e-3 learned slowly. 10 kimg EMA, one thread beside one other run, a session apart
    # (benchmarks/train_curve.py, README "What the learning rate changed for stylegan-lite"): lr 2e-3 scored
    # 500.1, 220.0, 129.0, 119.6, 110.2 at 1,000-9,000 steps (every 2,000) and 81.0 at 15,000; lr 5e-3 scored
    # 318.8, 112.4, 76.3, 76.2, 29.2, then 13.6 at 15,000 and 10.7 at 20,000 (weights/stylegan-lite). Folders
    # written before 0.3 record their rates, so they resume as they were.
    lr_g: float = 5e-3
    lr_d: float = 5e-3
    # Overrides BaseConfig's 1.0: with 1 kimg (0.2), FID swung by 15-20 between checkpoints 1,000 steps apart.
    ema_half_life_kimg: float = 10.0
    betas: tuple[float, float] = (0.0, 0.99)  # paper: (0, 0.99)


class EqualLinear(nn.Module):
    """Linear layer with runtime weight scaling (equalised learning rate, Karras et al. 2018)."""

    def __init__(self, c_in: int, c_out: int, bias_init: float = 0.0, lr_mul: float = 1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in) / lr_mul)
        self.bias = nn.Parameter(torch.full((c_out,), float(bias_init)))
        self.w_gain, self.lr_mul = lr_mul / math.sqrt(c_in), lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.w_gain, self.bias * self.lr_mul)


class EqualConv2d(nn.Module):
    def __init__(self, c_in: int, c_out: int, k: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in, k, k))
        self.bias = nn.Parameter(torch.zeros(c_out))
        self.w_gain = 1 / math.sqrt(c_in * k * k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.w_gain, self.bias, padding=self.weight.shape[-1] // 2)


class ModulatedConv(nn.Module):
    """Karras et al. 2020, eq. 1-3, in the non-fused form (StyleGAN2's fused_modconv=False): scale the
    input activations per sample, one shared conv for the batch, scale the outputs per sample. The same
    function as building per-sample weights, and far faster on CPUs.

    The style scaling runs before the upsampling (bilinear is linear per channel, so they commute; 4x
    fewer multiplications); bias, demodulation and an optional output `gain` share one fused pass.
    """

    def __init__(self, c_in: int, c_out: int, k: int, w_dim: int, demodulate: bool = True, up: bool = False):
        super().__init__()
        self.affine = EqualLinear(w_dim, c_in, bias_init=1.0)  # w -> per-input-channel style s
        self.weight = nn.Parameter(torch.randn(c_out, c_in, k, k))
        self.bias = nn.Parameter(torch.zeros(c_out))
        self.w_gain, self.demodulate, self.up = 1 / math.sqrt(c_in * k * k), demodulate, up

    def forward(self, x: torch.Tensor, w: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        """(B, Cin, H, W), w (B, w_dim) -> gain * (demod(conv(up(x * s))) + bias): (B, Cout, H', W')."""
        s = self.affine(w)  # (B, Cin)
        weight = self.weight * self.w_gain
        x = x * s[:, :, None, None]
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = F.conv2d(x, weight, padding=weight.shape[-1] // 2)
        if self.demodulate:  # eq. 3: sigma_j = sqrt(sum_{i,k} (s_i w_ijk)^2); x / sigma_j
            d = torch.rsqrt(s.pow(2) @ weight.pow(2).sum((2, 3)).t() + 1e-8)  # (B, Cout)
            return torch.addcmul((self.bias * gain)[None, :, None, None], x, (d * gain)[:, :, None, None])
        return x * gain + (self.bias * gain)[None, :, None, None] if gain != 1.0 else x + self.bias[None, :, None, None]


class StyleLayer(nn.Module):
    """Modulated conv + per-pixel noise with a learned per-layer strength + leaky ReLU (times sqrt 2)."""

    def __init__(self, c_in: int, c_out: int, w_dim: int, up: bool = False):
        super().__init__()
        self.conv = ModulatedConv(c_in, c_out, 3, w_dim, up=up)
        self.noise_strength = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        # lrelu(y) * sqrt2 == lrelu(y * sqrt2): the gain is folded into the conv's fused output pass
        x = self.conv(x, w, gain=SQRT2)
        noise = torch.randn(x.shape[0], 1, x.shape[2], x.shape[3], device=x.device, dtype=x.dtype)
        return F.leaky_relu_(x.addcmul_(noise, self.noise_strength * SQRT2), 0.2)


def g_widths(cfg: Config, n_res: int) -> list[int]:
    """Channels of the n_res synthesis blocks: g_width halving per block, never below g_width_top (nor above
    g_width); g_width_top = 0 keeps g_width everywhere."""
    if not cfg.g_width_top:
        return [cfg.g_width] * n_res
    floor = min(cfg.g_width, cfg.g_width_top)
    return [max(floor, cfg.g_width >> b) for b in range(n_res)]


class Generator(nn.Module):
    """G(z) = synthesis(mapping(z)); exposes mapping/synthesis/num_ws/w_avg for mixing and truncation."""

    def __init__(self, cfg: Config):
        super().__init__()
        n_res = int(math.log2(cfg.resolution)) - 1  # blocks at 4, 8, ..., R
        if cfg.resolution < 8 or 2 ** (n_res + 1) != cfg.resolution:
            raise ConfigError(f"resolution must be a power of two >= 8 (e.g. 32 or 64), got {cfg.resolution}")
        self.cfg = cfg
        layers: list[nn.Module] = []
        for i in range(cfg.mapping_layers):
            layers.append(EqualLinear(cfg.z_dim if i == 0 else cfg.w_dim, cfg.w_dim, lr_mul=0.01))
        self.mapping_net = nn.ModuleList(layers)
        c = g_widths(cfg, n_res)  # channels of the blocks at 4, 8, ..., R px
        self.const = nn.Parameter(torch.randn(c[0], 4, 4))
        self.convs = nn.ModuleList([StyleLayer(c[0], c[0], cfg.w_dim)])
        self.to_rgb = nn.ModuleList([ModulatedConv(c[0], cfg.channels, 1, cfg.w_dim, demodulate=False)])
        for b in range(1, n_res):
            self.convs.extend([StyleLayer(c[b - 1], c[b], cfg.w_dim, up=True), StyleLayer(c[b], c[b], cfg.w_dim)])
            self.to_rgb.append(ModulatedConv(c[b], cfg.channels, 1, cfg.w_dim, demodulate=False))
        self.num_ws = 2 * n_res  # conv i uses ws[i]; toRGB of a block shares the next block's first w
        self.register_buffer("w_avg", torch.zeros(cfg.w_dim))

    def mapping(self, z: torch.Tensor) -> torch.Tensor:  # (B, z_dim) -> (B, w_dim)
        x = z * torch.rsqrt(z.pow(2).mean(1, keepdim=True) + 1e-8)  # pixel norm of z
        for layer in self.mapping_net:
            x = F.leaky_relu(layer(x), 0.2) * SQRT2
        return x

    def synthesis(self, ws: torch.Tensor) -> torch.Tensor:  # (B, num_ws, w_dim) or (B, w_dim) -> (B, C, R, R)
        if ws.dim() == 2:
            ws = ws[:, None].expand(-1, self.num_ws, -1)
        x = self.const[None].expand(ws.shape[0], -1, -1, -1)
        if CHANNELS_LAST and x.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.convs[0](x, ws[:, 0])
        img = self.to_rgb[0](x, ws[:, 1])
        for b in range(1, len(self.to_rgb)):  # each block: up-conv, conv, toRGB added to the upsampled image
            x = self.convs[2 * b - 1](x, ws[:, 2 * b - 1])
            x = self.convs[2 * b](x, ws[:, 2 * b])
            img = F.interpolate(img, scale_factor=2, mode="bilinear", align_corners=False)
            img = img + self.to_rgb[b](x, ws[:, min(2 * b + 1, self.num_ws - 1)])
        img = img.contiguous()
        return img.clamp(-1, 1) if not self.training else img

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        w = self.mapping(z)
        if self.training:
            with torch.no_grad():  # track the mean w used by truncation
                self.w_avg.copy_(w.detach().float().mean(0).lerp(self.w_avg, self.cfg.w_avg_beta))  # fp32 under autocast
        ws = w[:, None].repeat(1, self.num_ws, 1)
        if self.training and self.cfg.mixing_prob > 0 and torch.rand(()) < self.cfg.mixing_prob:
            cutoff = int(torch.randint(1, self.num_ws, ()))  # style mixing: layers >= cutoff use a second z
            ws[:, cutoff:] = self.mapping(torch.randn_like(z))[:, None]
        return self.synthesis(ws)


class Discriminator(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        n = int(math.log2(cfg.resolution)) - 2  # downsampling blocks to reach 4x4
        widths = [cfg.d_width * min(2**i, 4) for i in range(n + 1)]
        self.from_rgb = EqualConv2d(cfg.channels, widths[0], 1)
        self.blocks = nn.ModuleList(
            nn.ModuleList([EqualConv2d(widths[i], widths[i], 3), EqualConv2d(widths[i], widths[i + 1], 3)]) for i in range(n)
        )
        self.conv_out = EqualConv2d(widths[-1] + 1, widths[-1], 3)  # +1: minibatch-stddev channel
        self.fc = EqualLinear(widths[-1] * 16, widths[-1])
        self.out = EqualLinear(widths[-1], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, R, R) -> (B,) logits
        x = F.leaky_relu(self.from_rgb(x), 0.2) * SQRT2
        for conv1, conv2 in self.blocks:  # (B, c, H, W) -> (B, c', H/2, W/2)
            x = F.leaky_relu(conv1(x), 0.2) * SQRT2
            x = F.avg_pool2d(F.leaky_relu(conv2(x), 0.2) * SQRT2, 2)
        g = max(d for d in (4, 3, 2, 1) if x.shape[0] % d == 0)  # minibatch stddev (Karras et al. 2018)
        y = x.view(g, -1, *x.shape[1:]).std(0, unbiased=False).mean((1, 2, 3))  # (B/g,)
        x = torch.cat([x, y.repeat(g)[:, None, None, None].expand(-1, 1, 4, 4)], 1)
        x = F.leaky_relu(self.conv_out(x), 0.2) * SQRT2
        x = F.leaky_relu(self.fc(x.flatten(1)), 0.2) * SQRT2
        return self.out(x).squeeze(1)


def build(cfg: Config) -> tuple[nn.Module, nn.Module]:
    if cfg.num_classes:
        raise ConfigError("stylegan-lite is unconditional; --set num_classes=0, or use sngan for a class-conditional GAN")
    return Generator(cfg), Discriminator(cfg)


def loss(phase, *, G, D, real, fake, real_labels, fake_labels, z, cfg, step):
    if phase == "D":  # logistic loss (Goodfellow et al. 2014), as in StyleGAN2
        l_d = F.softplus(D(fake)).mean() + F.softplus(-D(real)).mean()
        return l_d, {"loss_D": l_d.item()}
    if phase == "R1":  # lazy: scaled by the interval so the expected penalty matches every-step R1
        r1 = r1_penalty(D, real)
        return r1 * (cfg.r1_gamma / 2) * cfg.r1_interval, {"r1": r1.item()}
    l_g = nonsaturating_g(D(fake))
    return l_g, {"loss_G": l_g.item()}


variant = Variant(
    name="stylegan-lite",
    paper=(
        "Karras et al. 2019, A Style-Based Generator Architecture for Generative "
        "Adversarial Networks, https://arxiv.org/abs/1812.04948; Karras et al. 2020, "
        "Analyzing and Improving the Image Quality of StyleGAN, "
        "https://arxiv.org/abs/1912.04958"
    ),
    summary="Mapping network, modulated convs, noise, style mixing, truncation, lazy R1 (Karras et al. 2019/2020).",
    config_cls=Config,
    build=build,
    loss=loss,
    reg_phases={"R1": ("D", "r1_interval")},
    test_config={"g_width": 8, "g_width_top": 4, "d_width": 4, "w_dim": 8, "z_dim": 8, "mapping_layers": 2, "batch_size": 4, "r1_interval": 2},
)
