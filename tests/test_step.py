"""ganhub.step.PhaseRunner: the one iteration every variant trains through (and the conformance suite)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ganhub import registry
from ganhub.errors import ConfigError, PluginError, TrainingDiverged
from ganhub.losses import gradient_penalty, lazy_r1, nonsaturating_g, nonsaturating_loss, r1_penalty
from ganhub.step import Optimizers, PhaseRunner, make_optimizers
from ganhub.variant import BaseConfig, Variant, build_models, make_config


@dataclass
class Cfg(BaseConfig):
    pass


class G_(nn.Module):  # no BatchNorm and no randomness: the same z gives the same fake, bit for bit
    def __init__(self, cfg):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(cfg.z_dim, 16), nn.Tanh(), nn.Linear(16, 2))
        self.cfg = cfg

    def forward(self, z, c=None):
        return self.net(z)


def _build(cfg):
    return G_(cfg), nn.Sequential(nn.Linear(2, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1), nn.Flatten(0))


def _loss(phase, *, G, D, real, fake, real_labels, fake_labels, z, cfg, step):
    if phase == "D":
        loss = nn.functional.softplus(D(fake)).mean() + nn.functional.softplus(-D(real)).mean()
        return loss, {"loss_D": loss.item()}
    if phase == "R1":
        r1 = r1_penalty(D, real)
        return r1, {"r1": r1.item()}
    loss = nonsaturating_g(D(fake))
    return loss, {"loss_G": loss.item()}


TOY = Variant(name="toy", summary="toy", config_cls=Cfg, build=_build, loss=_loss, modalities=("points",))


def _cfg(**kw):
    return make_config(Cfg, {"data": "points", "z_dim": 4, "batch_size": 8, **kw})


class Batches:
    def __init__(self, labels: int = 0):
        self.n, self.labels = 0, labels

    def next(self):
        self.n += 1
        real = torch.randn(8, 2) + 3
        return real, (torch.randint(0, self.labels, (8,)) if self.labels else None)


def _runner(v=TOY, seed=0, **cfg_kw):
    cfg = _cfg(**cfg_kw)
    torch.manual_seed(seed)
    G, D = build_models(v, cfg)
    return PhaseRunner(v, cfg, G, D, make_optimizers(v, G, D, cfg), device="cpu")


def _params(r):
    return torch.cat([p.detach().flatten() for p in [*r.G.parameters(), *r.D.parameters()]])


def test_reuse_fakes_equals_recomputing_them_with_the_same_z():
    """reuse_fakes only saves the G forward: with the same z, the weights after training are identical."""
    a, b = _runner(reuse_fakes=True), _runner(reuse_fakes=False)
    draws = []
    real_draw = b.draw

    def draw_same_z_for_the_g_phase(n):  # b draws again for its G phase: hand it the D phase's z
        if len(draws) % 2 == 1:
            z = draws[-1]
        else:
            z = real_draw(n)
        draws.append(z)
        return z

    b.draw = draw_same_z_for_the_g_phase
    for step in range(4):
        torch.manual_seed(100 + step)
        a.run(Batches(), step)
        torch.manual_seed(100 + step)
        b.run(Batches(), step)
    assert torch.equal(_params(a), _params(b))
    assert len(draws) == 8  # b drew for D and for G each iteration; a only for D


def test_reuse_fakes_saves_one_G_forward():
    counts = {}
    for reuse in (True, False):
        r = _runner(reuse_fakes=reuse)
        n = [0]
        r.G.register_forward_hook(lambda *_, n=n: n.__setitem__(0, n[0] + 1))
        r.run(Batches(), 0)
        counts[reuse] = n[0]
    assert counts == {True: 1, False: 2}


def test_the_other_network_is_frozen_during_a_phase_and_restored_after():
    seen = []

    def loss(phase, *, G, D, **kw):
        seen.append((phase, {p.requires_grad for p in G.parameters()}, {p.requires_grad for p in D.parameters()}))
        return _loss(phase, G=G, D=D, **kw)

    v = dataclasses.replace(TOY, loss=loss, reg_phases={"R1": ("D", 1)})
    r = _runner(v)
    r.G.net[0].bias.requires_grad_(False)  # frozen by the plugin: must stay frozen
    r = PhaseRunner(v, r.cfg, r.G, r.D, r.opts, device="cpu")
    r.run(Batches(), 0)
    g_phase = [s for s in seen if s[0] == "G"][0]
    assert g_phase[2] == {False} and True in g_phase[1]
    for phase in ("D", "R1"):
        assert [s for s in seen if s[0] == phase][0][1] == {False}
        assert [s for s in seen if s[0] == phase][0][2] == {True}
    assert all(p.requires_grad for p in r.D.parameters())
    assert not r.G.net[0].bias.requires_grad and r.G.net[0].weight.requires_grad


def test_post_step_after_every_optimiser_step_and_reg_phases_on_their_interval():
    calls = []
    v = dataclasses.replace(TOY, reg_phases={"R1": ("D", 2)},
                            post_step=lambda phase, *, G, D, cfg, step: calls.append((step, phase)))
    r = _runner(v, n_critic=2, n_gen=2)
    for step in range(3):
        logs = r.run(Batches(), step)
    assert calls == [(0, "D"), (0, "D"), (0, "R1"), (0, "G"), (0, "G"),
                     (1, "D"), (1, "D"), (1, "G"), (1, "G"),
                     (2, "D"), (2, "D"), (2, "R1"), (2, "G"), (2, "G")]
    assert set(logs) == {"loss_D", "r1", "loss_G"}


def test_post_step_can_clip_weights():
    def clip(phase, *, G, D, cfg, step):
        if phase == "D":
            for p in D.parameters():
                p.data.clamp_(-0.01, 0.01)

    r = _runner(dataclasses.replace(TOY, post_step=clip))
    r.run(Batches(), 0)
    assert max(p.abs().max().item() for p in r.D.parameters()) <= 0.01


def test_make_optimizers_and_schedulers_step_once_per_iteration():
    def make(G, D, cfg):
        opt_G, opt_D = torch.optim.RMSprop(G.parameters(), lr=0.1), torch.optim.RMSprop(D.parameters(), lr=0.1)
        return opt_G, opt_D, [torch.optim.lr_scheduler.StepLR(opt_D, step_size=1, gamma=0.5)]

    r = _runner(dataclasses.replace(TOY, make_optimizers=make), n_critic=3)
    assert isinstance(r.opts.D, torch.optim.RMSprop) and len(r.opts.schedulers) == 1
    for step in range(3):
        r.run(Batches(), step)
    assert r.opts.schedulers[0].last_epoch == 3
    assert r.opts.D.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**3)
    state = r.opts.state_dict()
    fresh = make(r.G, r.D, r.cfg)
    o = Optimizers(*fresh[:2], fresh[2])
    o.load_state_dict(state)
    assert o.schedulers[0].last_epoch == 3 and o.D.param_groups[0]["lr"] == pytest.approx(0.0125)


def test_make_optimizers_mistakes_are_one_line_plugin_errors():
    v = dataclasses.replace(TOY, make_optimizers=lambda G, D, cfg: (torch.optim.SGD(D.parameters(), lr=1),
                                                                    torch.optim.SGD(D.parameters(), lr=1)))
    with pytest.raises(PluginError, match="optimiser for G holds parameters that are not G's") as e:
        _runner(v)
    assert "\n" not in str(e.value) and "'toy'" in str(e.value)
    with pytest.raises(PluginError, match="make_optimizers returned"):
        _runner(dataclasses.replace(TOY, make_optimizers=lambda G, D, cfg: None))


def test_wrong_shape_G_is_one_line_naming_the_plugin():
    v = dataclasses.replace(TOY, build=lambda cfg: (nn.Linear(cfg.z_dim, 3), _build(cfg)[1]))
    with pytest.raises(PluginError) as e:
        _runner(v).run(Batches(), 0)
    msg = str(e.value)
    assert "\n" not in msg and "'toy'" in msg and "shape (8, 3)" in msg and "(8, 2)" in msg


def test_out_of_range_and_integer_G_outputs_are_refused():
    class Pixels(nn.Module):  # images in [0, 255]: the classic mistake
        def forward(self, z):
            return torch.full((z.shape[0], 1, 8, 8), 255.0) + 0 * z.sum()

    v = dataclasses.replace(TOY, build=lambda cfg: (Pixels(), nn.Sequential(nn.Flatten(), nn.Linear(64, 1), nn.Flatten(0))),
                            modalities=("image",))
    cfg = make_config(Cfg, {"resolution": 8, "z_dim": 4, "batch_size": 8})
    G, D = build_models(v, cfg)
    r = PhaseRunner(v, cfg, G, D, Optimizers(torch.optim.SGD(D.parameters(), lr=1), torch.optim.SGD(D.parameters(), lr=1)),
                    device="cpu")

    class Images:
        def next(self):
            return torch.zeros(8, 1, 8, 8), None

    with pytest.raises(PluginError, match=r"far outside \[-1, 1\]; end G with tanh"):
        r.run(Images(), 0)


def test_logs_that_are_not_floats_and_losses_without_grad_are_plugin_errors():
    def tensor_logs(phase, **kw):
        loss, logs = _loss(phase, **kw)
        return loss, {k: torch.tensor(x) for k, x in logs.items()}

    with pytest.raises(PluginError, match=r"logs non-floats .*tensor.item\(\)") as e:
        _runner(dataclasses.replace(TOY, loss=tensor_logs)).run(Batches(), 0)
    assert "\n" not in str(e.value)

    def no_grad(phase, **kw):
        return torch.tensor(1.0), {}

    with pytest.raises(PluginError, match="does not depend on D's parameters"):
        _runner(dataclasses.replace(TOY, loss=no_grad)).run(Batches(), 0)


def test_a_crashing_loss_is_a_one_line_plugin_error():
    def crash(phase, **kw):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied\n(8x3 and 2x16)")

    with pytest.raises(PluginError, match="loss phase 'D' raised RuntimeError"):
        _runner(dataclasses.replace(TOY, loss=crash)).run(Batches(), 0)


def test_nan_loss_is_training_diverged_naming_phase_and_step():
    def nan_at_2(phase, *, step, **kw):
        loss, logs = _loss(phase, step=step, **kw)
        return (loss * float("nan") if step == 2 and phase == "G" else loss), logs

    r = _runner(dataclasses.replace(TOY, loss=nan_at_2))
    r.run(Batches(), 0)
    r.run(Batches(), 1)
    before = _params(r)
    with pytest.raises(TrainingDiverged) as e:
        r.run(Batches(), 2)
    msg = str(e.value)
    assert "\n" not in msg and "step 2" in msg and "G loss is nan" in msg
    assert torch.isfinite(_params(r)).all() and not torch.equal(before, _params(r))  # D stepped, G never saw the NaN
    assert all(p.requires_grad for p in r.G.parameters())  # freezing undone even on the error path


def test_conditional_labels_reach_G_and_the_loss():
    seen = {}

    class CondG(G_):
        def forward(self, z, c):
            seen.setdefault("G", c)
            return self.net(z) + c[:, None].float() * 0

    def loss(phase, *, real_labels, fake_labels, **kw):
        seen.setdefault(phase, (real_labels, fake_labels))
        return _loss(phase, real_labels=real_labels, fake_labels=fake_labels, **kw)

    v = dataclasses.replace(TOY, build=lambda cfg: (CondG(cfg), _build(cfg)[1]), loss=loss)
    r = _runner(v, num_classes=5)
    r.run(Batches(labels=5), 0)
    rl, fl = seen["D"]
    assert rl.shape == fl.shape == (8,) and rl.dtype == fl.dtype == torch.int64 and 0 <= fl.min() and fl.max() < 5
    assert torch.equal(seen["G"], fl)  # G was called as G(z, c) with the fake labels the loss sees
    with pytest.raises(ConfigError, match="num_classes is 5 but the dataset has no labels"):
        _runner(v, num_classes=5).run(Batches(labels=0), 0)
    class EightClasses:
        def next(self):
            return torch.randn(8, 2), torch.arange(8)

    with pytest.raises(ConfigError, match="labels reach 7; --set num_classes=8"):
        _runner(v, num_classes=2).run(EightClasses(), 0)


def test_sync_grads_and_augment_are_applied():
    synced, augmented = [], []

    def aug(x):
        augmented.append(x.shape[0])
        return x * 1.0

    cfg = _cfg()
    torch.manual_seed(0)
    G, D = build_models(TOY, cfg)
    r = PhaseRunner(TOY, cfg, G, D, make_optimizers(TOY, G, D, cfg), device="cpu",
                    sync_grads=lambda m: synced.append(m), augment=aug)
    r.run(Batches(), 0)
    assert synced == [D, G]
    assert augmented == [8, 8, 8]  # D phase: real and fake; G phase: fake


def test_an_adaptive_augmentation_sees_d_on_each_d_phases_real_batch_only():
    class Watch:  # an augmentation with observe(), as ganhub.augment.AdaptiveAugment has
        def __init__(self):
            self.seen = []

        def __call__(self, x):
            return x * 1.0

        def observe(self, out):
            self.seen.append(out.shape)

    watch, v, cfg = Watch(), dataclasses.replace(TOY, reg_phases={"R1": ("D", 1)}), _cfg(n_critic=2)
    torch.manual_seed(0)
    G, D = build_models(v, cfg)
    r = PhaseRunner(v, cfg, G, D, make_optimizers(v, G, D, cfg), device="cpu", augment=watch)
    logs = r.run(Batches(), 0)
    assert "r1" in logs  # the R1 phase ran (on its own copy of the reals, with grad): not counted
    assert watch.seen == [(8,), (8,)]  # D(real) in each of the two D phases; no fakes, no G phase
    assert r.D_seen.reals is None


def test_bf16_autocast_in_phases_and_fp32_penalties():
    inside = {}

    def loss(phase, *, G, D, real, fake, **kw):
        inside[phase] = torch.is_autocast_enabled("cpu")
        if phase == "D":
            gp = gradient_penalty(lambda x: (inside.__setitem__("gp", (x.dtype, torch.is_autocast_enabled("cpu"))),
                                             D(x))[1], real, fake)
            loss = D(fake).mean() - D(real).mean() + gp
            return loss, {"gp": gp.item()}
        return -D(fake).mean(), {}

    cfg = _cfg()
    torch.manual_seed(0)
    G, D = build_models(TOY, cfg)
    v = dataclasses.replace(TOY, loss=loss)
    r = PhaseRunner(v, cfg, G, D, make_optimizers(v, G, D, cfg), device="cpu", precision="bf16")
    r.run(Batches(), 0)
    assert inside["D"] and inside["G"]
    assert inside["gp"] == (torch.float32, False)


def test_draw_is_from_the_global_rng_on_the_device():
    r = _runner(num_classes=4)
    torch.manual_seed(3)
    z1, c1 = r.draw(5)
    torch.manual_seed(3)
    z2, c2 = r.draw(5)
    assert z1.shape == (5, 4) and c1.shape == (5,) and torch.equal(z1, z2) and torch.equal(c1, c2)
    assert _runner().draw(2)[1] is None


def test_lazy_modules_are_refused_at_build_naming_the_plugin():
    v = dataclasses.replace(TOY, build=lambda cfg: (nn.LazyLinear(2), _build(cfg)[1]))
    with pytest.raises(PluginError, match="'toy': G has lazy .*give every layer its sizes"):
        build_models(v, _cfg())


def test_config_bounds_name_key_value_and_bound():
    for over, msg in [({"lr_d": "nan"}, "'lr_d' must be a finite number, got nan"),
                      ({"lr_d": -1}, "'lr_d' must be > 0 and <= 1, got -1.0"),
                      ({"z_dim": 0}, "'z_dim' must be >= 1 and <= 4096, got 0"),
                      ({"betas": "0.5,1.0"}, "each value of config key 'betas' must be >= 0 and < 1"),
                      ({"ema_half_life_kimg": "inf"}, "'ema_half_life_kimg' must be a finite number"),
                      ({"channels": 2}, "'channels' must be one of 1, 3, got 2"),
                      ({"augment": "color,zoom"}, "'augment' must be 'auto', 'off' or a comma list"),
                      ({"n_gen": 0}, "'n_gen' must be >= 1"),
                      ({"batch_size": "many"}, "'batch_size' expects int")]:
        with pytest.raises(ConfigError, match=msg) as e:
            make_config(Cfg, over)
        assert "\n" not in str(e.value)
    assert make_config(Cfg, {"augment": "translation,cutout", "num_classes": "10"}).num_classes == 10


def test_plugin_fields_keep_base_bounds_when_redeclared():
    @dataclass
    class Sub(BaseConfig):
        lr_d: float = 1e-4  # a plain re-declaration keeps BaseConfig's (0, 1] bound

    with pytest.raises(ConfigError, match="'lr_d' must be > 0 and <= 1"):
        make_config(Sub, {"lr_d": 5})


def test_lazy_r1_weighs_gamma_over_two_on_average_and_costs_nothing_between():
    D = nn.Linear(3, 1, bias=False)  # D(x) = w.x, so ||grad_x D||^2 = ||w||^2 for every sample
    real = torch.randn(5, 3)
    w2 = D.weight.pow(2).sum().item()
    assert lazy_r1(D, real, gamma=0.2, interval=4, step=8).item() == pytest.approx(w2 * 0.2 / 2 * 4)
    assert lazy_r1(D, real, gamma=0.2, interval=4, step=9) is None
    assert lazy_r1(D, real, gamma=0.0, interval=1, step=8) is None
    term = lazy_r1(D, real, gamma=0.2, interval=1, step=3)
    term.backward()  # differentiable in D's weights (create_graph): d(0.1 ||w||^2)/dw = 0.2 w
    assert torch.allclose(D.weight.grad, 0.2 * D.weight.detach())


def test_dcgan_adds_r1_to_D_on_its_interval_and_not_to_G():
    dcgan = registry.get("dcgan")
    cfg = dcgan.make_config(g_width=4, d_width=4, batch_size=4, z_dim=8, r1_gamma=0.5, r1_interval=2)
    G, D = dcgan.build(cfg)
    real, z = torch.rand(4, 1, 32, 32) * 2 - 1, torch.randn(4, 8)
    fake = G(z)
    args = dict(G=G, D=D, real=real, fake=fake.detach(), real_labels=None, fake_labels=None, z=z, cfg=cfg)
    on, off = dcgan.loss("D", step=4, **args)[1], dcgan.loss("D", step=5, **args)[1]
    assert on["loss_r1"] > 0 and "loss_r1" not in off
    assert "loss_r1" not in dcgan.loss("G", step=4, **{**args, "fake": fake})[1]
    assert "loss_r1" not in dcgan.loss("D", step=4, **{**args, "cfg": dcgan.make_config(r1_gamma=0.0)})[1]


def test_nonsaturating_loss_smooths_only_the_real_targets():
    vanilla = registry.get("vanilla")
    assert registry.get("dcgan").loss is nonsaturating_loss  # vanilla's calls it when feature matching is off
    D = nn.Sequential(nn.Flatten(1), nn.Linear(2, 1), nn.Flatten(0))
    real, fake = torch.randn(6, 2), torch.randn(6, 2)
    args = dict(G=None, D=D, real=real, fake=fake, real_labels=None, fake_labels=None, z=None, step=1)
    with torch.no_grad():
        sr, sf = D(real), D(fake)
    smoothed = vanilla.make_config(label_smoothing=0.2, r1_gamma=0.0)
    l_d, logs = nonsaturating_loss("D", cfg=smoothed, **args)
    expected = F.binary_cross_entropy_with_logits(sr, torch.full_like(sr, 0.8)) + F.softplus(sf).mean()
    assert l_d.item() == pytest.approx(expected.item())
    assert logs["loss_D"] == pytest.approx(l_d.item(), rel=1e-6)
    plain = nonsaturating_loss("D", cfg=vanilla.make_config(r1_gamma=0.0), **args)[0]
    assert plain.item() != pytest.approx(l_d.item())
    l_g = nonsaturating_loss("G", cfg=smoothed, **args)[0]  # G's loss ignores the smoothing
    assert l_g.item() == pytest.approx(F.softplus(-sf).mean().item())
    for phase in ("D", "G"):  # vanilla's own hook, feature matching off: the same numbers
        assert vanilla.loss(phase, cfg=smoothed, **args)[0].item() == pytest.approx(
            nonsaturating_loss(phase, cfg=smoothed, **args)[0].item())
