"""The conformance suite over every registered variant (third-party ones installed here included), and
proof that it fails variants that would break in training."""

import dataclasses
import itertools

import pytest
import torch
from torch import nn

from ganhub import registry
from ganhub.errors import ConfigError, PluginError
from ganhub.testing import (
    CHECKS,
    check_conditional,
    check_hooks,
    check_phases_step,
    check_resume_exact,
    check_variant,
)
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


def test_suite_fails_a_loss_that_hides_the_real_batch_from_adaptive_augmentation():
    def build(cfg):
        if cfg.num_classes:
            raise ConfigError("toy is unconditional")
        return _build(cfg)

    def concatenating(phase, *, G, D, real, fake, real_labels, fake_labels, z, cfg, step):
        if phase != "D":
            return _loss(phase, G=G, D=D, real=real, fake=fake, real_labels=real_labels, fake_labels=fake_labels,
                         z=z, cfg=cfg, step=step)
        scores = D(torch.cat([real, fake]))  # one call on both: the loop cannot tell D's output on the reals
        n = real.shape[0]
        loss = nn.functional.softplus(scores[n:]).mean() + nn.functional.softplus(-scores[:n]).mean()
        return loss, {"loss_D": loss.item()}

    toy = dataclasses.replace(TOY, build=build)
    check_phases_step(toy)  # the same toy, calling D(real): passes
    with pytest.raises(AssertionError, match=r"never calls D on its `real` argument as given .* call D\(real\)"):
        check_phases_step(dataclasses.replace(toy, loss=concatenating))


def _reference_modconv(self, x, w, gain=1.0):
    """StyleGAN2's fused path (Karras et al. 2020, eq. 1-3): per-sample modulated, demodulated weights,
    one grouped conv; the plugin's fast path must compute the same function."""
    s = self.affine(w)  # (B, I)
    wts = (self.weight * self.w_gain)[None] * s[:, None, :, None, None]  # (B, O, I, k, k)
    if self.demodulate:
        wts = wts * torch.rsqrt(wts.pow(2).sum((2, 3, 4)) + 1e-8)[:, :, None, None, None]
    if self.up:
        x = nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    b, i, h, w_ = x.shape
    o, k = wts.shape[1], wts.shape[-1]
    out = nn.functional.conv2d(x.reshape(1, b * i, h, w_), wts.reshape(b * o, i, k, k), padding=k // 2, groups=b)
    return (out.reshape(b, o, h, w_) + self.bias[None, :, None, None]) * gain


def _reference_style_layer(self, x, w):
    x = _reference_modconv(self.conv, x, w)
    noise = torch.randn(x.shape[0], 1, x.shape[2], x.shape[3], device=x.device, dtype=x.dtype)
    return nn.functional.leaky_relu(x + noise * self.noise_strength, 0.2) * 2**0.5


def test_stylegan_lite_fast_modconv_equals_per_sample_weights(monkeypatch):
    """The bundled stylegan-lite weights give the same images (and a tiny G the same gradients) as the
    per-sample-weight formulation."""
    from ganhub.source import load_generator

    mod = type(load_generator("stylegan-lite").G).__module__
    mod = __import__(mod, fromlist=["ModulatedConv"])
    G = load_generator("stylegan-lite").G
    z = torch.randn(16, G.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.manual_seed(1)
        fast = G(z)
        monkeypatch.setattr(mod.ModulatedConv, "forward", _reference_modconv)
        monkeypatch.setattr(mod.StyleLayer, "forward", _reference_style_layer)
        torch.manual_seed(1)
        ref = G(z)
    assert torch.allclose(fast, ref, atol=1e-4), (fast - ref).abs().max()
    monkeypatch.undo()

    v = registry.get("stylegan-lite")
    cfg = v.make_config(**v.test_config, mixing_prob=0.0)
    grads = []
    for patch in (False, True):
        if patch:
            monkeypatch.setattr(mod.ModulatedConv, "forward", _reference_modconv)
            monkeypatch.setattr(mod.StyleLayer, "forward", _reference_style_layer)
        torch.manual_seed(2)
        G, _ = v.build(cfg)
        G.train()
        for p in G.parameters():
            with torch.no_grad():
                p.add_(0.1 * torch.randn_like(p))  # noise strengths start at 0: make every path count
        torch.manual_seed(3)
        G(torch.randn(4, cfg.z_dim)).square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in G.parameters()]))
    assert torch.allclose(grads[0], grads[1], rtol=1e-4, atol=1e-5), (grads[0] - grads[1]).abs().max()


def test_sngan_resnet_arch_passes_the_suite():
    """sngan's `arch="resnet"` (a config option, so the registered variant's own run covers only the CNN)."""
    v = registry.get("sngan")
    resnet = dataclasses.replace(v, test_config={**v.test_config, "arch": "resnet"})
    check_variant(resnet)
    G, D = resnet.build(resnet.make_config(**resnet.test_config))
    assert type(G).__name__ == "ResNetGenerator" and type(D).__name__ == "ResNetDiscriminator"


def test_vanilla_minibatch_discrimination_matches_the_paper():
    """o(x_i)_b = sum_{j != i} exp(-||M_i,b - M_j,b||_1) (Salimans et al. 2016, eq. in sec. 3.2), appended to
    D's features, so D judges a sample by its batch: a copy in a batch of copies scores differently."""
    v = registry.get("vanilla")
    cfg = v.make_config(**v.test_config)
    assert cfg.d_minibatch_kernels == 3
    torch.manual_seed(0)
    _, D = v.build(cfg)
    D.eval()  # no dropout
    mbd = next(m for m in D.modules() if type(m).__name__ == "MinibatchDiscrimination")
    h = torch.randn(5, mbd.T.in_features)
    out = mbd(h)
    m = mbd.T(h).view(5, cfg.d_minibatch_kernels, cfg.d_minibatch_dim)
    want = torch.stack([sum(torch.exp(-(m[i] - m[j]).abs().sum(1)) for j in range(5) if j != i) for i in range(5)])
    assert torch.equal(out[:, : h.shape[1]], h)
    assert torch.allclose(out[:, h.shape[1]:], want, atol=1e-6)
    assert torch.equal(mbd(h[:1])[:, h.shape[1]:], torch.zeros(1, cfg.d_minibatch_kernels))

    x = torch.randn(4, cfg.channels, cfg.resolution, cfg.resolution)
    with torch.no_grad():
        mixed = D(x)[0]
        copies = D(x[:1].expand(4, -1, -1, -1))[0]
    assert not torch.allclose(mixed, copies)


def test_vanilla_feature_matching_matches_the_paper():
    """||E f(x) - E f(G(z))||^2 over D's last hidden features f (Salimans et al. 2016, sec. 3.1), weighted
    into G's loss; it reaches G's parameters, and real images pass through D as the loop sees them."""
    from ganhub.augment import AugmentedD
    from ganhub.losses import nonsaturating_g

    v = registry.get("vanilla")
    cfg = v.make_config(**{**v.test_config, "g_feature_matching": 2.5, "d_minibatch_kernels": 0, "d_pack": 1})
    torch.manual_seed(0)
    G, D = v.build(cfg)
    D.eval()  # no dropout, so the two passes below see the same D
    real = torch.randn(6, cfg.channels, cfg.resolution, cfg.resolution)
    fake = G(torch.randn(6, cfg.z_dim))
    rest = dict(real=real, real_labels=None, fake_labels=None, z=None, step=0)
    loss, logs = v.loss("G", G=G, D=D, fake=fake, cfg=cfg, **rest)
    f = D.net[: D.n_hidden]
    with torch.no_grad():
        want_fm = (f(real.flatten(1)).mean(0) - f(fake.flatten(1)).mean(0)).square().mean()
        want = nonsaturating_g(D(fake)) + 2.5 * want_fm
    assert logs["loss_G_fm"] == pytest.approx(float(want_fm), rel=1e-5) and float(want_fm) > 0
    assert loss.item() == pytest.approx(want.item(), rel=1e-5)
    loss.backward()
    assert all(p.grad is not None for p in G.parameters())
    assert D.n_hidden < len(D.net) and D(real, with_features=True)[1].shape == (6, cfg.d_hidden)

    flipped = AugmentedD(D, lambda x: -x)  # the loss must go through the wrapper, not around it
    _, logs_aug = v.loss("G", G=G, D=flipped, fake=fake.detach(), cfg=cfg, **rest)
    with torch.no_grad():
        want_aug = (f(-real.flatten(1)).mean(0) - f(-fake.flatten(1)).mean(0)).square().mean()
    assert logs_aug["loss_G_fm"] == pytest.approx(float(want_aug), rel=1e-5)

    off = dataclasses.replace(cfg, g_feature_matching=0.0)
    loss_off, logs_off = v.loss("G", G=G, D=D, fake=fake.detach(), cfg=off, **rest)
    assert "loss_G_fm" not in logs_off
    assert loss_off.item() == pytest.approx(nonsaturating_g(D(fake)).item(), rel=1e-5)


def test_vanilla_packing_judges_samples_together():
    """PacGAN (Lin et al. 2018): each score is D's logit for its pack's pixels side by side, repeated for
    every member; a batch the pack does not divide is refused; a spectrally normalised D has unit norms."""
    v = registry.get("vanilla")
    cfg = v.make_config(**{**v.test_config, "d_pack": 3, "batch_size": 6, "d_minibatch_kernels": 0,
                           "d_spectral_norm": False})
    torch.manual_seed(0)
    _, D = v.build(cfg)
    D.eval()
    x = torch.randn(6, cfg.channels, cfg.resolution, cfg.resolution)
    with torch.no_grad():
        s = D(x)
        assert s.shape == (6,)
        want = D.net(x.flatten(1).reshape(2, -1)).squeeze(1)  # [x0 x1 x2], [x3 x4 x5]
        assert torch.allclose(s, want.repeat_interleave(3), atol=1e-6) and s[0] != s[3]
        y = x.clone()
        y[1] = -y[1]  # a member of the first pack only
        t = D(y)
        assert not torch.allclose(t[:3], s[:3]) and torch.equal(t[3:], s[3:])
    with pytest.raises(ValueError, match="packs 3 samples"):
        D(x[:4])
    with pytest.raises(ConfigError, match="multiple of d_pack"):
        v.build(dataclasses.replace(cfg, batch_size=8))

    _, D = v.build(dataclasses.replace(cfg, d_spectral_norm=True))
    for _ in range(30):  # one power iteration per training-mode forward
        D(x)
    linears = [m for m in D.modules() if isinstance(m, nn.Linear)]
    sigmas = [torch.linalg.matrix_norm(m.weight.detach(), 2).item() for m in linears]
    assert len(sigmas) == cfg.layers + 1 and all(abs(sg - 1) < 0.05 for sg in sigmas), sigmas
