"""The conformance suite over every registered variant (third-party ones installed here included), and
proof that it fails variants that would break in training."""

import dataclasses
import itertools

import pytest
import torch
from torch import nn

from ganhub import registry
from ganhub.errors import PluginError
from ganhub.testing import CHECKS, check_conditional, check_hooks, check_resume_exact, check_variant
from ganhub.variant import BaseConfig, Variant


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
@pytest.mark.parametrize("name", [e.name for e in registry.entries()])
def test_conformance(name, check):
    check(name)


@dataclasses.dataclass
class Cfg(BaseConfig):
    pass


class G_(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(cfg.z_dim, 8), nn.Tanh(), nn.Linear(8, 2))

    def forward(self, z):  # takes no labels, yet build accepts num_classes > 0
        return self.net(z)


def _build(cfg):
    return G_(cfg), nn.Sequential(nn.Linear(2, 8), nn.LeakyReLU(0.2), nn.Linear(8, 1), nn.Flatten(0))


def _loss(phase, *, G, D, real, fake, real_labels, fake_labels, z, cfg, step):
    if phase == "D":
        loss = nn.functional.softplus(D(fake)).mean() + nn.functional.softplus(-D(real)).mean()
        return loss, {"loss_D": loss.item()}
    loss = nn.functional.softplus(-D(fake)).mean()
    return loss, {"loss_G": loss.item()}


TOY = Variant(name="toy", summary="toy", config_cls=Cfg, build=_build, loss=_loss, modalities=("points",),
              test_config={"data": "points", "batch_size": 4, "z_dim": 4})


def test_suite_fails_a_variant_that_accepts_num_classes_but_ignores_labels():
    with pytest.raises(AssertionError, match="refuse num_classes > 0 in build"):
        check_conditional(TOY)


def test_suite_fails_state_kept_outside_G_D_and_optimisers():
    counter = itertools.count()

    def post_step(phase, *, G, D, cfg, step):  # a hidden Python-side counter drives training: resume breaks
        with torch.no_grad():
            D[0].bias.add_(0.01 * next(counter))

    with pytest.raises(AssertionError, match="resuming from saved state diverged in [GD]"):
        check_resume_exact(dataclasses.replace(TOY, post_step=post_step))


def test_suite_fails_a_hook_nothing_calls():
    @dataclasses.dataclass(frozen=True)
    class WithTrainStep(Variant):
        train_step: object = None

    v = WithTrainStep(**{f.name: getattr(TOY, f.name) for f in dataclasses.fields(Variant)}, train_step=lambda **kw: {})
    with pytest.raises(PluginError, match="declares train_step, which ganhub never calls"):
        check_hooks(v)


def test_suite_exercises_declared_hooks():
    calls = []

    def make(G, D, cfg):
        calls.append("make")
        return torch.optim.RMSprop(G.parameters(), lr=1e-3), torch.optim.RMSprop(D.parameters(), lr=1e-3)

    def post(phase, *, G, D, cfg, step):
        calls.append(phase)

    check_hooks(dataclasses.replace(TOY, make_optimizers=make, post_step=post))
    assert calls[0] == "make" and calls.count("D") == 3 and calls.count("G") == 3


def test_a_toy_that_refuses_classes_passes_everything():
    def build(cfg):
        if cfg.num_classes:
            from ganhub.errors import ConfigError

            raise ConfigError("toy is unconditional")
        return _build(cfg)

    check_variant(dataclasses.replace(TOY, build=build))
