"""Research variants written as plugins without touching ganhub, trained as an outsider would.

- examples/ganhub-lsgan: a third-party package, pip-installed into a throwaway directory (offline, no
  build isolation, entry point discovered from its dist-info) and driven through the CLI.
- Here, against the public API only: an AC-GAN (conditional; D with a class head), a WGAN with RMSprop,
  a learning-rate schedule and weight clipping (make_optimizers + post_step), and an unrolled GAN
  (G's loss looks through k differentiable SGD steps of a copy of D).
Each passes the conformance suite and trains a few steps through ganhub.train.train.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ganhub import registry
from ganhub.errors import ConfigError
from ganhub.losses import bce_d, nonsaturating_g, wasserstein_d, wasserstein_g
from ganhub.nets import DCGANGenerator, n_stages
from ganhub.testing import check_variant
from ganhub.train import train
from ganhub.variant import BaseConfig, Variant, bounded

ROOT = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------- AC-GAN (Odena et al. 2017)
@dataclass
class ACConfig(BaseConfig):
    num_classes: int = 10  # AC-GAN is conditional by construction
    g_width: int = bounded(16, ge=1, le=1024)
    d_width: int = bounded(16, ge=1, le=1024)
    aux_weight: float = bounded(1.0, ge=0, le=100)  # weight of the class log-likelihood L_C (eq. 2-3)


class ACGenerator(nn.Module):
    """G(z, c): the class embedding multiplies z (as in common AC-GAN code), then a DCGAN generator."""

    def __init__(self, cfg: ACConfig):
        super().__init__()
        self.embed = nn.Embedding(cfg.num_classes, cfg.z_dim)
        self.net = DCGANGenerator(cfg.z_dim, cfg.channels, cfg.resolution, cfg.g_width)

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.net(z * self.embed(c))


class ACDiscriminator(nn.Module):
    """D(x) -> (B,) real/fake logits; D(x, with_classes=True) -> (logits, (B, K) class logits)."""

    def __init__(self, cfg: ACConfig):
        super().__init__()
        widths = [cfg.d_width * 2**i for i in range(n_stages(cfg.resolution))]
        layers: list[nn.Module] = [nn.Conv2d(cfg.channels, widths[0], 4, 2, 1), nn.LeakyReLU(0.2)]
        for a, b in zip(widths, widths[1:]):
            layers += [nn.Conv2d(a, b, 4, 2, 1), nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.source = nn.Linear(widths[-1] * 16, 1)
        self.classes = nn.Linear(widths[-1] * 16, cfg.num_classes)

    def forward(self, x: torch.Tensor, *, with_classes: bool = False):
        h = self.features(x)
        src = self.source(h).squeeze(1)
        return (src, self.classes(h)) if with_classes else src


def ac_build(cfg: ACConfig):
    if cfg.num_classes < 2:
        raise ConfigError("acgan needs num_classes >= 2 (a labelled dataset)")
    return ACGenerator(cfg), ACDiscriminator(cfg)


def ac_loss(phase, *, G, D, real, fake, real_labels, fake_labels, z, cfg, step):
    if phase == "D":  # eq. 2-3: D maximises L_S + L_C
        src_r, cls_r = D(real, with_classes=True)
        src_f, cls_f = D(fake, with_classes=True)
        l_c = F.cross_entropy(cls_r, real_labels) + F.cross_entropy(cls_f, fake_labels)
        l_d = bce_d(src_r, src_f) + cfg.aux_weight * l_c
        return l_d, {"loss_D": l_d.item(), "loss_cls": l_c.item()}
    src_f, cls_f = D(fake, with_classes=True)  # G maximises L_C - L_S (non-saturating L_S)
    l_g = nonsaturating_g(src_f) + cfg.aux_weight * F.cross_entropy(cls_f, fake_labels)
    return l_g, {"loss_G": l_g.item()}


ACGAN = Variant(name="acgan", summary="Auxiliary-classifier GAN (Odena et al. 2017).", config_cls=ACConfig,
                build=ac_build, loss=ac_loss,
                test_config={"g_width": 4, "d_width": 4, "batch_size": 4, "z_dim": 8, "num_classes": 3})


# ----------------------------------------------------------------------------- WGAN (Arjovsky et al. 2017)
@dataclass
class WConfig(BaseConfig):
    data: str = "points"
    z_dim: int = 8
    hidden: int = bounded(64, ge=1, le=4096)
    clip: float = bounded(0.01, gt=0, le=1)  # critic weights live in [-clip, clip] (Algorithm 1: c = 0.01)
    lr_g: float = 5e-5  # Algorithm 1: RMSprop, alpha = 5e-5
    lr_d: float = 5e-5
    lr_decay: float = bounded(0.999, gt=0, le=1)  # per-iteration exponential decay of both learning rates
    n_critic: int = 5


def mlp(a: int, b: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(a, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, hidden), nn.LeakyReLU(0.2),
                         nn.Linear(hidden, b))


class PointsG(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.net = mlp(cfg.z_dim, 2, cfg.hidden)

    def forward(self, z):  # (B, z_dim) -> (B, 2) points
        return self.net(z)


class PointsD(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.net = mlp(2, 1, cfg.hidden)

    def forward(self, x):  # (B, 2) -> (B,)
        return self.net(x).squeeze(1)


def points_build(cfg):
    if cfg.num_classes:
        raise ConfigError("this toy is unconditional")
    return PointsG(cfg), PointsD(cfg)


def w_loss(phase, *, G, D, real, fake, real_labels, fake_labels, z, cfg, step):
    if phase == "D":
        l_d = wasserstein_d(D(real), D(fake))
        return l_d, {"loss_D": l_d.item(), "w_dist": -l_d.item()}
    l_g = wasserstein_g(D(fake))
    return l_g, {"loss_G": l_g.item()}


def w_optimizers(G, D, cfg):
    opt_G = torch.optim.RMSprop(G.parameters(), lr=cfg.lr_g)
    opt_D = torch.optim.RMSprop(D.parameters(), lr=cfg.lr_d)
    decay = [torch.optim.lr_scheduler.ExponentialLR(o, gamma=cfg.lr_decay) for o in (opt_G, opt_D)]
    return opt_G, opt_D, decay


def w_clip(phase, *, G, D, cfg, step):
    if phase == "D":  # Algorithm 1, line 7: clip the critic's weights after every critic update
        with torch.no_grad():
            for p in D.parameters():
                p.clamp_(-cfg.clip, cfg.clip)


WGAN = Variant(name="wgan-clip", summary="WGAN with RMSprop and weight clipping (Arjovsky et al. 2017).",
               config_cls=WConfig, build=points_build, loss=w_loss, make_optimizers=w_optimizers, post_step=w_clip,
               modalities=("points",), test_config={"hidden": 8, "batch_size": 8, "n_critic": 2})


# ----------------------------------------------------------------------------- unrolled GAN (Metz et al. 2017)
@dataclass
class UConfig(BaseConfig):
    data: str = "points"
    z_dim: int = 8
    hidden: int = bounded(64, ge=1, le=4096)
    unroll_steps: int = bounded(5, ge=0, le=50)  # k in the paper (they found 5-10 enough on the 8-Gaussian ring)
    unroll_lr: float = bounded(0.1, gt=0, le=10)  # step size of the surrogate D's SGD (the paper unrolls Adam)
    lr_g: float = 1e-3
    lr_d: float = 1e-4
    betas: tuple[float, float] = (0.5, 0.999)


def unrolled(D: nn.Module, real: torch.Tensor, fake: torch.Tensor, k: int, lr: float) -> dict[str, torch.Tensor]:
    """D's parameters after k SGD steps on this batch, differentiable w.r.t. `fake` (eq. 5-6)."""
    params = {n: p.detach().requires_grad_(True) for n, p in D.named_parameters()}
    for _ in range(k):
        out_r, out_f = functional_call(D, params, (real,)), functional_call(D, params, (fake,))
        grads = torch.autograd.grad(bce_d(out_r, out_f), list(params.values()), create_graph=True)
        params = {n: p - lr * g for (n, p), g in zip(params.items(), grads)}
    return params


def u_loss(phase, *, G, D, real, fake, real_labels, fake_labels, z, cfg, step):
    if phase == "D":
        l_d = bce_d(D(real), D(fake))
        return l_d, {"loss_D": l_d.item()}
    # G is judged by the surrogate D_k; the gradient flows through the unrolled updates into G
    l_g = nonsaturating_g(functional_call(D, unrolled(D, real, fake, cfg.unroll_steps, cfg.unroll_lr), (fake,)))
    return l_g, {"loss_G": l_g.item()}


UNROLLED = Variant(name="unrolled", summary="Unrolled GAN: G sees k steps of D's future (Metz et al. 2017).",
                   config_cls=UConfig, build=points_build, loss=u_loss, modalities=("points",),
                   test_config={"hidden": 8, "batch_size": 8, "unroll_steps": 2})


# ----------------------------------------------------------------------------- tests
@pytest.mark.parametrize("v", [ACGAN, WGAN, UNROLLED], ids=lambda v: v.name)
def test_research_variant_passes_the_conformance_suite(v):
    check_variant(v)


def _train(v, tmp: Path, **kw) -> list:
    return list(train(v, **{"steps": 3, "seed": 0, "precision": "fp32", "out": tmp, **kw}))


def test_acgan_trains_on_labelled_fashion_mnist(tmp_path):
    events = _train(ACGAN, tmp_path / "run", dataset="fashion-mnist", limit=64,
                    overrides={"resolution": 16, "g_width": 8, "d_width": 8, "batch_size": 8, "z_dim": 16})
    losses = [e.losses for e in events if e.kind == "step"]
    assert events[-1].kind == "done" and len(losses) == 3
    assert all(torch.isfinite(torch.tensor(list(x.values()))).all() for x in losses) and "loss_cls" in losses[-1]
    assert (tmp_path / "run" / "config.json").is_file() and (tmp_path / "run" / "model.safetensors").is_file()


def test_wgan_clipping_rmsprop_and_schedule_train_and_resume_exactly(tmp_path):
    over = {"hidden": 16, "batch_size": 16}
    _train(WGAN, tmp_path / "straight", dataset="ring8", steps=4, overrides=over)
    _train(WGAN, tmp_path / "resumed", dataset="ring8", steps=2, overrides=over)
    _train(WGAN, tmp_path / "resumed", dataset="ring8", steps=4, resume=True)
    from safetensors.torch import load_file

    a, b = (load_file(tmp_path / d / "model.safetensors") for d in ("straight", "resumed"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), "RMSprop/scheduler state not resumed exactly"
    cfg = WGAN.make_config(**over)
    torch.manual_seed(0)
    G, D = WGAN.build(cfg)
    opt_G, opt_D, scheds = w_optimizers(G, D, cfg)
    assert isinstance(opt_D, torch.optim.RMSprop) and len(scheds) == 2


def test_wgan_post_step_keeps_the_critic_clipped():
    from ganhub.step import PhaseRunner, make_optimizers
    from ganhub.variant import build_models

    cfg = WGAN.make_config(hidden=16, batch_size=16)
    torch.manual_seed(0)
    G, D = build_models(WGAN, cfg)
    runner = PhaseRunner(WGAN, cfg, G, D, make_optimizers(WGAN, G, D, cfg), device="cpu")
    assert max(p.abs().max().item() for p in D.parameters()) > cfg.clip  # PyTorch's init is wider than c

    class Ring:
        def next(self):
            return torch.randn(16, 2), None

    for step in range(2):
        runner.run(Ring(), step)
    assert max(p.abs().max().item() for p in D.parameters()) <= cfg.clip
    assert runner.opts.G.param_groups[0]["lr"] == pytest.approx(cfg.lr_g * cfg.lr_decay**2)


def test_unrolled_gan_gradient_looks_through_the_unrolled_steps(tmp_path):
    cfg = UNROLLED.make_config(hidden=16, batch_size=16, unroll_steps=3)
    torch.manual_seed(0)
    G, D = UNROLLED.build(cfg)
    z, real = torch.randn(16, cfg.z_dim), torch.randn(16, 2)
    grads = []
    for k in (0, 3):
        G.zero_grad()
        loss, _ = u_loss("G", G=G, D=D, real=real, fake=G(z), real_labels=None, fake_labels=None, z=z,
                         cfg=UNROLLED.make_config(hidden=16, unroll_steps=k), step=0)
        loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in G.parameters()]))
    assert not torch.allclose(grads[0], grads[1]), "unrolling changed nothing"
    assert all(p.grad is None or not p.grad.abs().sum() for p in D.parameters()), "the surrogate must leave D alone"
    events = _train(UNROLLED, tmp_path / "run", dataset="ring8", overrides={"hidden": 16, "batch_size": 16})
    assert events[-1].kind == "done" and (tmp_path / "run" / "model.safetensors").is_file()


# ----------------------------------------------------------------------------- the installed example package
@pytest.fixture(scope="module")
def lsgan_site(tmp_path_factory):
    """pip-install examples/ganhub-lsgan (a copy: the build must not litter the repo) into a throwaway
    directory, offline and without build isolation, then put it on sys.path like site-packages."""
    tmp = tmp_path_factory.mktemp("lsgan")
    src = shutil.copytree(ROOT / "examples" / "ganhub-lsgan", tmp / "src")
    site = tmp / "site"
    out = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                          "--no-index", "--target", str(site), str(src)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert (site / "ganhub_lsgan-0.1.0.dist-info" / "entry_points.txt").is_file()
    sys.path.insert(0, str(site))
    registry.reload()
    yield site
    sys.path.remove(str(site))
    sys.modules.pop("ganhub_lsgan", None)
    registry.reload()


def test_installed_example_is_discovered_and_conforms(lsgan_site):
    e = registry.entry("lsgan")
    assert e.package == "ganhub-lsgan" and e.version == "0.1.0"
    assert Path(sys.modules["ganhub_lsgan"].__file__).is_relative_to(lsgan_site)  # the installed copy, not the repo
    check_variant("lsgan")


def test_installed_example_trains_and_samples_from_the_cli(lsgan_site, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(lsgan_site), os.environ.get("PYTHONPATH", "")])}
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "ganhub.cli", "train", "lsgan", "--dataset", "fashion-mnist", "--limit", "64",
           "--steps", "3", "--batch-size", "8", "--set", "resolution=16", "--set", "g_width=4", "--set", "d_width=4",
           "--out", str(run), "--quiet"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert (run / "model.safetensors").is_file() and '"variant": "lsgan"' in (run / "config.json").read_text()
    out = subprocess.run([sys.executable, "-m", "ganhub.cli", "sample", str(run), "--n", "4", "--out", str(tmp_path / "g.png")],
                         env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0 and (tmp_path / "g.png").stat().st_size > 0, out.stderr[-2000:]
