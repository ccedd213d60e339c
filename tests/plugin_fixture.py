"""A fake third-party distribution on sys.path: a `*.dist-info` with entry_points.txt, as pip leaves it."""

from __future__ import annotations

import textwrap
from pathlib import Path

GOOD = '''
"""A third-party variant written only against ganhub's public API."""
from dataclasses import dataclass

import torch
from torch import nn

from ganhub.errors import ConfigError
from ganhub.losses import hinge_d, hinge_g
from ganhub.variant import BaseConfig, Variant, bounded


@dataclass
class Config(BaseConfig):
    hidden: int = bounded(64, ge=1, le=4096)  # width of both MLPs


def build(cfg):
    if cfg.num_classes:
        raise ConfigError("toy-mlp is unconditional; --set num_classes=0")
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


# Plugins that misbehave at import or break the contract (hostile=True).
EXITS = """
import sys
sys.exit(3)
"""

KBINT = """
raise KeyboardInterrupt  # raised by the plugin itself, not by a user pressing Ctrl-C
"""

GENEXIT = """
raise GeneratorExit("escaped from a generator")
"""

V1_LOSS = """
import dataclasses
from fakeplug_good import variant as _v


def loss(phase, *, G, D, real, z, cfg, step):  # API 1: the plugin calls G itself
    return _v.loss(phase, G=G, D=D, real=real, fake=G(z), real_labels=None, fake_labels=None, z=z, cfg=cfg, step=step)


variant = dataclasses.replace(_v, name="old-style", loss=loss)
"""

V1_EXPLICIT = """
import dataclasses
from fakeplug_good import variant as _v
variant = dataclasses.replace(_v, name="old-explicit", api_version=1)
"""

V1_TRAIN_STEP = """
from ganhub.variant import Variant
import fakeplug_good as g
variant = Variant(name="old-train-step", summary="x", config_cls=g.Config, build=g.build, loss=g.loss,
                  train_step=lambda **kw: {})
"""

EXTRA_HOOK = """
import dataclasses
from ganhub.variant import Variant
import fakeplug_good as g


@dataclasses.dataclass(frozen=True)
class MyVariant(Variant):
    on_epoch_end: object = None  # a hook ganhub never calls


variant = MyVariant(name="extra-hook", summary="x", config_cls=g.Config, build=g.build, loss=g.loss,
                    on_epoch_end=lambda: None)
"""

BAD_BOUNDS = """
import dataclasses
from ganhub.variant import BaseConfig, bounded
import fakeplug_good as g


@dataclasses.dataclass
class Config(BaseConfig):
    width: int = bounded(0, ge=1)  # its own default breaks its bound


variant = dataclasses.replace(g.variant, name="bad-bounds", config_cls=Config, test_config={})
"""

SIGINT = """
import os, signal, time
os.kill(os.getpid(), signal.SIGINT)  # the user pressing Ctrl-C while this plugin imports
time.sleep(5)
"""

HOSTILE = {
    "exits": ("fakeplug_exits", EXITS), "kbint": ("fakeplug_kbint", KBINT), "genexit": ("fakeplug_genexit", GENEXIT),
    "old-style": ("fakeplug_v1", V1_LOSS), "old-explicit": ("fakeplug_v1x", V1_EXPLICIT),
    "old-train-step": ("fakeplug_v1ts", V1_TRAIN_STEP), "extra-hook": ("fakeplug_hook", EXTRA_HOOK),
    "bad-bounds": ("fakeplug_bounds", BAD_BOUNDS),
}


def make_fake_distribution(root: Path, broken: bool = True, extra: bool = False, hostile: bool = False,
                           sigint: bool = False) -> Path:
    """Write modules + `fakeplug-0.3.dist-info` into `root` (put it on sys.path / PYTHONPATH).

    extra: an API-99 plugin and a duplicate 'dcgan'; hostile: the HOSTILE plugins; sigint: a plugin whose
    import receives a real SIGINT."""
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
    if hostile:
        for name, (mod, src) in HOSTILE.items():
            (root / f"{mod}.py").write_text(src)
            lines.append(f"{name} = {mod}:variant")
    if sigint:
        (root / "fakeplug_sigint.py").write_text(SIGINT)
        lines.append("ctrl-c = fakeplug_sigint:variant")
    (info / "entry_points.txt").write_text(textwrap.dedent("\n".join(lines)) + "\n")
    return root
