"""A fake third-party distribution on sys.path: a `*.dist-info` with entry_points.txt, as pip leaves it."""

from __future__ import annotations

import textwrap
from pathlib import Path

GOOD = '''
"""A third-party variant written only against ganhub's public API."""
from dataclasses import dataclass

import torch
from torch import nn

from ganhub.losses import hinge_d, hinge_g
from ganhub.variant import BaseConfig, Variant


@dataclass
class Config(BaseConfig):
    hidden: int = 64  # width of both MLPs


def build(cfg):
    n = 2 if cfg.data == "points" else cfg.channels * cfg.resolution ** 2
    shape = (2,) if cfg.data == "points" else (cfg.channels, cfg.resolution, cfg.resolution)

    class G(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(cfg.z_dim, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, n), nn.Tanh())

        def forward(self, z):
            return self.net(z).view(-1, *shape)

    D = nn.Sequential(nn.Flatten(), nn.Linear(n, cfg.hidden), nn.LeakyReLU(0.2), nn.Linear(cfg.hidden, 1), nn.Flatten(0))
    return G(), D


def loss(phase, *, G, D, real, fake, real_labels, fake_labels, z, cfg, step):
    if phase == "D":
        l = hinge_d(D(real), D(fake))
        return l, {"loss_D": l.item()}
    l = hinge_g(D(fake))
    return l, {"loss_G": l.item()}


variant = Variant(name="toy-mlp", summary="A third-party test variant.", config_cls=Config, build=build, loss=loss,
                  test_config={"hidden": 8, "batch_size": 4, "z_dim": 8})
'''

BROKEN = '''
raise ImportError("simulated: this plugin needs a library that is not installed")
'''

WRONG_API = '''
from ganhub.variant import Variant
import fakeplug_good as g
variant = Variant(name="future", summary="from the future", config_cls=g.Config, build=g.build, loss=g.loss, api_version=99)
'''

DUPLICATE = '''
from fakeplug_good import variant as _v
import dataclasses
variant = dataclasses.replace(_v, name="dcgan")
'''


def make_fake_distribution(root: Path, broken: bool = True, extra: bool = False) -> Path:
    """Write modules + `fakeplug-0.3.dist-info` into `root` (put it on sys.path / PYTHONPATH)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "fakeplug_good.py").write_text(GOOD)
    (root / "fakeplug_broken.py").write_text(BROKEN)
    (root / "fakeplug_future.py").write_text(WRONG_API)
    (root / "fakeplug_dup.py").write_text(DUPLICATE)
    info = root / "fakeplug-0.3.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeplug\nVersion: 0.3\n")
    lines = ["[ganhub.variants]", "toy-mlp = fakeplug_good:variant"]
    if broken:
        lines.append("broken-one = fakeplug_broken:variant")
    if extra:
        lines += ["future = fakeplug_future:variant", "dcgan = fakeplug_dup:variant"]
    (info / "entry_points.txt").write_text(textwrap.dedent("\n".join(lines)) + "\n")
    return root
