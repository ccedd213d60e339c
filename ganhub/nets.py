"""Network blocks the built-in plugins share; public API, so third-party plugins may use them too.

One shared module rather than marked copies: the DCGAN generator had been copied into dcgan, wgan-gp and
sngan and had already drifted (only dcgan applied its weight init), and sngan's conditional generator
would have made a fourth variant of it. Here it is written once, the init is an explicit argument (each
plugin keeps the init its bundled weights were trained with), and the state_dict keys are those of the
old copies (`net.0.weight`, ...), so every bundled model.safetensors still loads.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import _SpectralNorm

from ganhub.errors import ConfigError
from ganhub.precision import fp32


def n_stages(resolution: int) -> int:
    """Number of 2x up/down-sampling stages between 4x4 and `resolution` (a power of two >= 8)."""
    n = int(math.log2(resolution)) - 2 if resolution >= 8 else -1
    if n < 1 or 4 * 2**n != resolution:
        raise ConfigError(f"resolution must be a power of two >= 8 (e.g. 32 or 64), got {resolution}")
    return n


def check_labels(conditional: bool, labels: torch.Tensor | None, name: str, call: str) -> None:
    """A clear error for labels handed to an unconditional network or missing from a conditional one:
    check_labels(True, None, "generator", "G(z") -> "this generator is class-conditional: call G(z, labels)"."""
    if (labels is not None) != conditional:
        raise ValueError(f"this {name} is " + (f"class-conditional: call {call}, labels)" if conditional
                                               else f"unconditional: call {call})"))


def dcgan_init(m: nn.Module) -> None:
    """Radford et al. 2015, sec. 4: all weights from N(0, 0.02); BN scale from N(1, 0.02). Use with .apply()."""
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d) and m.affine:
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


class ConditionalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm whose scale and shift are looked up per class (de Vries et al. 2017; the generator of
    Miyato & Koyama 2018). (B, C, H, W), labels (B,) -> (B, C, H, W)."""

    def __init__(self, num_features: int, num_classes: int):
        super().__init__(num_features, affine=False)
        self.gain = nn.Embedding(num_classes, num_features)
        self.shift = nn.Embedding(num_classes, num_features)
        nn.init.ones_(self.gain.weight)
        nn.init.zeros_(self.shift.weight)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x) * self.gain(labels)[:, :, None, None] + self.shift(labels)[:, :, None, None]


class DCGANGenerator(nn.Module):
    """Radford et al. 2015: transposed convs doubling the side from 4x4, BatchNorm + ReLU, tanh output.

    (B, z_dim) -> (B, channels, resolution, resolution) in [-1, 1]. With num_classes > 0 every
    BatchNorm is class-conditional and forward takes (z, labels). init: "dcgan" (N(0, 0.02)) or "torch"
    (PyTorch's defaults).
    """

    def __init__(self, z_dim: int, channels: int, resolution: int, width: int, num_classes: int = 0,
                 init: str = "dcgan"):
        super().__init__()
        n = n_stages(resolution)
        self.conditional = num_classes > 0
        widths = [width * 2 ** (n - 1 - i) for i in range(n)]  # e.g. 32 px: [4w, 2w, w]

        def norm(c: int) -> nn.Module:
            return ConditionalBatchNorm2d(c, num_classes) if self.conditional else nn.BatchNorm2d(c)

        layers: list[nn.Module] = [  # (B, z, 1, 1) -> (B, widths[0], 4, 4)
            nn.ConvTranspose2d(z_dim, widths[0], 4, 1, 0, bias=False), norm(widths[0]), nn.ReLU(True),
        ]
        for a, b in zip(widths, widths[1:]):  # (B, a, H, W) -> (B, b, 2H, 2W)
            layers += [nn.ConvTranspose2d(a, b, 4, 2, 1, bias=False), norm(b), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1), nn.Tanh()]  # no BN on the output
        self.net = nn.Sequential(*layers)
        if init == "dcgan":
            self.apply(dcgan_init)
        elif init != "torch":
            raise ValueError(f"init must be 'dcgan' or 'torch', got {init!r}")

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        check_labels(self.conditional, labels, "generator", "G(z")
        if not self.conditional:
            return self.net(z[:, :, None, None])
        x = z[:, :, None, None]
        for layer in self.net:
            x = layer(x, labels) if isinstance(layer, ConditionalBatchNorm2d) else layer(x)
        return x


class _SpectralNormFP32(_SpectralNorm):
    """torch's spectral-norm parametrization with the power iteration and sigma kept in fp32 under autocast."""

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        with fp32():
            return super().forward(weight.float())


def spectral_norm(module: nn.Module, name: str = "weight", n_power_iterations: int = 1, eps: float = 1e-12,
                  dim: int | None = None) -> nn.Module:
    """Miyato et al. 2018, as torch.nn.utils.parametrizations.spectral_norm (same state_dict keys), with the
    power iteration run in fp32 even under bf16 autocast (a bf16 sigma is too coarse to normalise by)."""
    weight = getattr(module, name)
    if dim is None:
        dim = 1 if isinstance(module, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)) else 0
    parametrize.register_parametrization(module, name, _SpectralNormFP32(weight, n_power_iterations, dim, eps))
    return module
